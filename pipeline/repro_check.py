"""Does a fresh ``dvc repro`` give back the committed results? (CI runs it after ``scripts/main.sh``.)

    python -m pipeline.repro_check        # exit 0: reproduced; 1: not (the differences are printed)

Two checks, by what can hold where:

1. **Always:** every stage's code and params in the fresh ``dvc.lock`` equal the committed ones: the
   committed lock was made by the committed code and params (a stale lock fails here on any machine).
2. **Outputs.** When this machine's ``reports/environment.json`` (CPU instruction set, core count,
   numeric library versions) equals the committed one, every output hash in ``dvc.lock`` and every file
   under ``reports/`` must be identical, bit for bit. On another CPU model float kernels differ (another
   instruction set picks other kernels, so other rounding; a CPU with AMX trains in bf16, another in fp32)
   and training drifts as a new seed would, so another machine's figures are no yardstick: there the fresh
   ``reports/metrics.json`` must pass the quality gates of ``.ci/gates.yaml`` (:mod:`pipeline.gates`),
   each a floor or ceiling that means "the model works".
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from pipeline import gates

REPO = Path(__file__).resolve().parents[1]


def committed_text(path: str) -> str | None:
    """The file at ``path`` as committed in HEAD, or None when HEAD has none."""
    r = subprocess.run(["git", "show", f"HEAD:{path}"], cwd=REPO, capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else None


def _outputs(lock: dict) -> set[str]:
    return {o["path"] for st in lock["stages"].values() for o in st.get("outs", [])}


def code_and_params(old: dict, new: dict) -> list[str]:
    """Differences in what each stage was computed from, other than other stages' outputs."""
    problems = []
    produced = _outputs(old) | _outputs(new)
    for name in sorted(set(old["stages"]) | set(new["stages"])):
        a, b = old["stages"].get(name), new["stages"].get(name)
        if a is None or b is None:
            problems.append(f"stage {name}: {'not in the committed lock' if a is None else 'did not run'}")
            continue
        deps_a = {d["path"]: d.get("md5") for d in a.get("deps", []) if d["path"] not in produced}
        deps_b = {d["path"]: d.get("md5") for d in b.get("deps", []) if d["path"] not in produced}
        problems += [f"stage {name}: {p} differs from the committed lock" for p in sorted(set(deps_a) | set(deps_b))
                     if deps_a.get(p) != deps_b.get(p)]
        if a.get("params") != b.get("params"):
            problems.append(f"stage {name}: params differ from the committed lock")
    return problems


def output_hashes(old: dict, new: dict) -> list[str]:
    def outs(lock: dict) -> dict[str, Any]:
        return {o["path"]: o.get("md5") for st in lock["stages"].values() for o in st.get("outs", [])}

    a, b = outs(old), outs(new)
    return [f"output {p} differs" for p in sorted(set(a) | set(b)) if a.get(p) != b.get(p)]


def main() -> int:
    old_lock, old_env = committed_text("dvc.lock"), committed_text("reports/environment.json")
    if old_lock is None:
        print("repro_check: no committed dvc.lock", file=sys.stderr)
        return 1
    old, new = yaml.safe_load(old_lock), yaml.safe_load((REPO / "dvc.lock").read_text())
    problems = code_and_params(old, new)
    if problems:
        print("repro_check: FAILED: the committed dvc.lock was not made by the committed code and params:",
              *problems, "Rerun 'dvc repro' and commit dvc.lock and reports/ with the code.", sep="\n  ",
              file=sys.stderr)
        return 1
    env = json.loads((REPO / "reports" / "environment.json").read_text())
    if old_env is not None and json.loads(old_env) == env:
        problems = output_hashes(old, new)
        status = subprocess.run(["git", "status", "--porcelain", "--", "dvc.lock", "reports"], cwd=REPO,
                                capture_output=True, text=True).stdout.strip()
        if problems or status:
            print("repro_check: FAILED: same CPU, cores and libraries as the commit, but other results:",
                  *problems, *status.splitlines(), sep="\n  ", file=sys.stderr)
            subprocess.run(["git", "--no-pager", "diff", "-U0", "--", "reports/metrics.json"], cwd=REPO)
            return 1
        print("repro_check: code and params match the committed lock; every output reproduced bit for bit")
        return 0
    committed_env = json.loads(old_env) if old_env else {}
    differs = sorted(k for k in set(env) | set(committed_env) if env.get(k) != committed_env.get(k))
    metrics = json.loads((REPO / "reports" / "metrics.json").read_text())
    verdicts = gates.check(metrics, gates.load())
    print(f"repro_check: code and params match the committed lock. This machine differs from the one the "
          f"results were committed from in: {', '.join(differs)} (committed: {committed_env.get('cpu')}, "
          f"here: {env.get('cpu')}); bit-exact outputs are not expected, the metrics must pass the quality "
          f"gates (.ci/gates.yaml):", *(v.line() for v in verdicts), sep="\n")
    failed = [v for v in verdicts if not v.passed]
    if failed:
        print(f"repro_check: FAILED: {len(failed)} quality gate(s):", *(v.line() for v in failed), sep="\n  ",
              file=sys.stderr)
        return 1
    print(f"repro_check: every quality gate passes ({len(verdicts)})")
    return 0

if __name__ == "__main__":
    sys.exit(main())
