"""Does a fresh ``dvc repro`` give back the committed results? (CI runs it after ``scripts/main.sh``.)

    python -m pipeline.repro_check        # exit 0: reproduced; 1: not (the differences are printed)

Two checks, by what can hold where:

1. **Always:** every stage's code and params in the fresh ``dvc.lock`` equal the committed ones: the
   committed lock was made by the committed code and params (a stale lock fails here on any machine).
2. **Outputs.** When this machine's ``reports/environment.json`` (CPU instruction set, core count,
   numeric library versions) equals the committed one, every output hash in ``dvc.lock`` and every file
   under ``reports/`` must be identical, bit for bit. On another CPU model float kernels differ (another
   instruction set or cache size picks other kernels, so other rounding) and training drifts as a
   different seed would: there each headline metric must lie within ``TOLERANCE_STD`` standard
   deviations of the committed value, and the report says which check ran. The standard deviation is
   taken over every seed run ``reports/seeds.json`` records, on every machine it records (``machines``):
   a CPU with AMX trains in bf16 and another in fp32, a shift of the mean that one machine's seeds alone
   do not show (measured: audio word accuracy 0.986 +- 0.010 over seeds on a Sapphire Rapids, 0.942 for
   seed 0 on an AMD EPYC).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
TOLERANCE_STD = 4.0
MIN_TOLERANCE = 0.02  # relative floor, for metrics whose seeds nearly agreed


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


def spread(seeds: dict) -> dict[str, dict[str, float]]:
    """Per metric: the sample std over every recorded run, the seeds of every machine in ``machines`` pooled,
    and how many runs it is over. A file without ``machines`` (one machine's spread) gives its std as is."""
    if not seeds.get("machines"):
        return {k: {"std": s["std"], "runs": len(s.get("values", []))} for k, s in seeds.get("metrics", {}).items()}
    values: dict[str, list[float]] = {}
    for machine in seeds["machines"]:
        for key, s in machine["metrics"].items():
            values.setdefault(key, []).extend(s["values"])
    return {key: {"std": statistics.stdev(v), "runs": len(v)} for key, v in values.items() if len(v) >= 2}


def within_seed_spread(old: dict, new: dict, seeds: dict) -> tuple[list[str], list[str]]:
    """(failures, table rows) for the metrics seeds.json has a spread for (:func:`spread`: over every machine
    it records). Metrics the seed does not move (std 0: e.g. the judges' scores of real clips, which have
    their own seed) give no yardstick for a machine's drift and are listed as not compared."""
    fails, rows = [], []
    for key, s in sorted(spread(seeds).items()):
        if key not in old or key not in new:
            continue
        if s["std"] < 1e-9:
            rows.append(f"  {key}: not compared (neither the seed nor the machine moves it)")
            continue
        tol = max(TOLERANCE_STD * s["std"], MIN_TOLERANCE * max(1.0, abs(old[key])))
        d = abs(new[key] - old[key])
        rows.append(f"  {key}: committed {old[key]:.4f}, here {new[key]:.4f}, |diff| {d:.4f} "
                    f"(tolerance {tol:.4f}; std over {s['runs']} runs)")
        if d > tol:
            fails.append(f"{key}: {new[key]:.4f} vs committed {old[key]:.4f} (> {tol:.4f})")
    return fails, rows


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
    seeds_text = committed_text("reports/seeds.json")
    if not seeds_text:
        print(f"repro_check: FAILED: another environment than the commit's ({', '.join(differs)}) and no "
              "reports/seeds.json to judge the drift by", file=sys.stderr)
        return 1
    old_m = json.loads(committed_text("reports/metrics.json") or "{}")
    new_m = json.loads((REPO / "reports" / "metrics.json").read_text())
    seeds = json.loads(seeds_text)
    n_machines = len(seeds.get("machines") or [seeds])
    fails, rows = within_seed_spread(old_m, new_m, seeds)
    print(f"repro_check: code and params match the committed lock. This machine differs from the one the "
          f"results were committed from in: {', '.join(differs)} (committed: {committed_env.get('cpu')}, "
          f"here: {env.get('cpu')}); bit-exact outputs are not expected, metrics are compared within "
          f"{TOLERANCE_STD:g} standard deviations over the seeds of {n_machines} recorded machine(s) "
          f"(reports/seeds.json):", *rows, sep="\n")
    if fails:
        print("repro_check: FAILED: beyond the seed spread:", *fails, sep="\n  ", file=sys.stderr)
        return 1
    print("repro_check: every headline metric within the seed spread")
    return 0


if __name__ == "__main__":
    sys.exit(main())
