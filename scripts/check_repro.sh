#!/usr/bin/env bash
# Reproducibility check (CI runs it on a clean clone after the tests): `dvc repro` from scratch, then
# pipeline/repro_check.py: the fresh dvc.lock must record the committed code and params for every stage,
# and on a machine like the one the results were committed from (reports/environment.json: CPU
# instruction set, cores, library versions) every output and reports/ file must be identical; on another
# CPU model the headline metrics must pass the quality gates of .ci/gates.yaml (docs/reproducibility.md).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "$(git status --porcelain -- dvc.lock reports)" ]; then
  echo "check_repro: dvc.lock or reports/ already differ from the commit; run on a clean checkout" >&2
  exit 2
fi
bash scripts/main.sh
.venv/bin/python -m pipeline.repro_check
