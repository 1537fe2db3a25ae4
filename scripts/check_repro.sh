#!/usr/bin/env bash
# Reproducibility check (CI runs it on a clean clone after the tests): `dvc repro` from scratch must give
# back exactly the committed dvc.lock and reports/ (metrics, plots, figures). Bit-for-bit holds on a
# machine like the one the results were committed from (same CPU instruction set; see README).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "$(git status --porcelain -- dvc.lock reports)" ]; then
  echo "check_repro: dvc.lock or reports/ already differ from the commit; run on a clean checkout" >&2
  exit 2
fi
bash scripts/main.sh
changed="$(git status --porcelain -- dvc.lock reports)"
if [ -n "$changed" ]; then
  echo >&2
  echo "check_repro: FAILED. dvc repro from scratch does not reproduce the committed results:" >&2
  echo "$changed" >&2
  git --no-pager diff --stat -- dvc.lock reports >&2
  git --no-pager diff -U0 -- dvc.lock reports/metrics.json | head -80 >&2
  echo "Rerun 'dvc repro' and commit dvc.lock and reports/ with the code that produced them." >&2
  exit 1
fi
echo "check_repro: dvc.lock and reports/ reproduced exactly"
