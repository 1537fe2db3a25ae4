#!/usr/bin/env bash
# The main job: install, then run the whole DVC pipeline (embedded corpus by default).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export PATH="$PWD/.venv/bin:$PATH"
dvc repro "$@"
echo
echo "metrics (reports/metrics.json):"
dvc metrics show
