#!/usr/bin/env bash
# Refresh everything a stage-code change touches, in order: `dvc repro` (dvc.lock, models, reports/), the seed
# sweep (reports/seeds.json), the gates' regressions (experiments/results/regressions.json), then the generated
# docs (docs/results.md and the README's table). Each step's wall time goes to benchmarks/results/refresh.json,
# written before the docs so that they show it. Commit what it changed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
declare -A took
step() {  # step NAME COMMAND...: run it and keep its wall time
  local name=$1 t0
  shift
  t0=$(date +%s)
  echo "[refresh] $name: $*"
  "$@"
  took[$name]=$(( $(date +%s) - t0 ))
}
step repro bash scripts/main.sh
step seeds python -m pipeline.seeds --seeds 0 1 2
step regressions python -m pipeline.regressions
python - "${took[repro]}" "${took[seeds]}" "${took[regressions]}" <<'PY'
import json, sys
from davs.files import atomic_write_text
from davs.provenance import environment
repro, seeds, regressions = map(int, sys.argv[1:])
env = environment()
atomic_write_text("benchmarks/results/refresh.json", json.dumps({
    "note": "bash scripts/refresh.sh, one run: wall seconds of each step on this machine (the repro step reruns "
            "what changed; a training stage whose finished checkpoint matches its code, params and inputs resumes "
            "at its last step)",
    "environment": env, "repro_s": repro, "seeds_s": seeds, "regressions_s": regressions,
    "total_min": round((repro + seeds + regressions) / 60, 1)}, indent=1) + "\n")
PY
python -m pipeline.docs
echo "[refresh] done: commit dvc.lock, reports/, experiments/results/, benchmarks/results/refresh.json, docs/ and README.md"
