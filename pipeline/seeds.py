"""Seed variance: run the pipeline once per seed as DVC experiments and write mean ± std of the metrics.

    python -m pipeline.seeds --seeds 0 1 2          # -> reports/seeds.json, and the table printed
    python -m pipeline.seeds --set gen.gan_weight=0.03 --out experiments/results/x.json   # a study's seeds

The workspace's own seed is read from ``reports/metrics.json`` when ``dvc status`` finds the workspace up to
date (as after ``dvc repro``); every other seed is ``dvc exp run --temp -S seed=N`` (a temporary copy of the workspace sharing the DVC cache, so
stages that do not depend on ``seed`` (synth, ingestion, the judges) are restored, not rerun); the
workspace and its ``reports/`` are left untouched. The training stages rerun every time, a seed run before
included: their ``dvclive/<stage>`` output is ``cache: false``, which keeps a stage out of DVC's run cache
(about 8 min a seed on 2 cores). Metrics are read back with
``dvc exp show --json``.

Runs differ by machine (another CPU model picks other float kernels; a CPU with AMX trains in bf16, another in
fp32), so ``reports/seeds.json`` keeps one entry per machine under ``machines`` (its ``environment``, as in
``reports/environment.json``): a run here replaces this machine's entry and keeps the others. The top-level
``seeds`` and ``metrics`` are the spread on the machine the committed results came from (the README's table,
rendered by ``python -m pipeline.docs``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("davs.seeds")

REPO = Path(__file__).resolve().parents[1]
METRICS = "reports/metrics.json"
HEADLINE = (  # the table printed after a sweep (the generated docs pick their own: pipeline/docs.py)
    "word_acc/audio_top1", "word_acc/video_top1", "word_acc/fused_top1", "leakage/word_from_identity",
    "quality/audio_psnr", "quality/audio_psnr_mouth", "quality/copy_ref_psnr_mouth", "judge/lse_c_real",
    "judge/lse_c_audio", "judge/lse_c_video", "judge/offset_zero_audio", "judge/mouth_open_corr_audio",
    "judge/mouth_open_corr_video", "judge/ref_mouth_leak",
)


def _dvc(args: list[str], capture: bool = False) -> str:
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    r = subprocess.run(["dvc", *args], cwd=REPO, env=env, text=True,
                       stdout=subprocess.PIPE if capture else None)
    if r.returncode != 0:
        raise RuntimeError(f"dvc {' '.join(args)} failed (exit {r.returncode})")
    return r.stdout or ""


def find_metrics(node: Any, name: str) -> dict[str, float] | None:
    """The metrics of experiment ``name`` anywhere in ``dvc exp show --json`` (its nesting varies by version)."""
    if isinstance(node, dict):
        if node.get("name") == name and isinstance(node.get("data"), dict):
            m = node["data"].get("metrics", {}).get(METRICS, {}).get("data")
            if m:
                return m
        node = list(node.values())
    if isinstance(node, list):
        for v in node:
            found = find_metrics(v, name)
            if found:
                return found
    return None


def _workspace_run() -> tuple[int, dict[str, float]] | None:
    """(seed, metrics) of the workspace when ``dvc status`` finds it up to date (its outputs are what
    ``dvc repro`` of the workspace's code and params gives: nothing to rerun for its seed), else None."""
    import yaml

    status = json.loads(_dvc(["status", "--json"], capture=True) or "{}")
    stale = {k: v for k, v in status.items() if v != ["always changed"]}
    if stale:
        log.info("workspace not up to date (%s): its seed reruns as an experiment", ", ".join(sorted(stale)))
        return None
    seed = yaml.safe_load((REPO / "params.yaml").read_text())["seed"]
    return int(seed), json.loads((REPO / METRICS).read_text())


def summarise(runs: dict[int, dict[str, float]]) -> dict[str, Any]:
    """Per metric: mean, sample std (n-1) and the per-seed values."""
    keys = sorted(set.intersection(*(set(m) for m in runs.values())))
    out: dict[str, Any] = {"seeds": sorted(runs), "metrics": {}}
    for k in keys:
        vals = [float(runs[s][k]) for s in sorted(runs)]
        mean = sum(vals) / len(vals)
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
        out["metrics"][k] = {"mean": round(mean, 5), "std": round(std, 5), "values": [round(v, 5) for v in vals]}
    return out


def merge_machines(previous: dict[str, Any] | None, summary: dict[str, Any], here: dict[str, Any],
                   committed_env: dict[str, Any] | None) -> dict[str, Any]:
    """The new ``seeds.json``: ``summary`` (this machine's seeds) becomes ``here``'s entry under ``machines``,
    replacing an entry with the same environment and keeping the others; the top level is this summary when
    ``here`` is the committed results' machine (or nothing was recorded), else stays as it was. A file written
    before ``machines`` existed holds one spread, the committed machine's: it becomes that machine's entry."""
    previous = previous or {}
    machines = list(previous.get("machines", []))
    if not machines and previous.get("metrics") and committed_env is not None:
        machines = [{"environment": committed_env, "seeds": previous["seeds"], "metrics": previous["metrics"]}]
    machines = [m for m in machines if m["environment"] != here]
    machines.append({"environment": here, **summary})
    top = summary if here == committed_env or not previous.get("metrics") else \
        {"seeds": previous["seeds"], "metrics": previous["metrics"]}
    return {**top, "machines": machines}


def table(summary: dict[str, Any], keys: tuple[str, ...] = HEADLINE) -> str:
    n = len(summary["seeds"])
    rows = [f"| metric | mean ± std over {n} seeds ({', '.join(map(str, summary['seeds']))}) | per seed |",
            "|---|---|---|"]
    for k in keys:
        m = summary["metrics"].get(k)
        if m:
            rows.append(f"| `{k}` | {m['mean']:.3f} ± {m['std']:.3f} | {' / '.join(f'{v:.3f}' for v in m['values'])} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.seeds", description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="reports/seeds.json")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a params override for every seed (dvc exp run -S); the output records them")
    ap.add_argument("--note", default="", help="what the run is, recorded in the output beside the overrides")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if len(args.seeds) < 2:
        ap.error("variance needs at least two seeds")
    if args.set and args.out == "reports/seeds.json":
        ap.error("--set runs are studies: name their file with --out (reports/seeds.json is the defaults' spread)")
    bad = [o for o in args.set if "=" not in o or not o.split("=", 1)[0]]
    if bad:
        ap.error(f"--set takes KEY=VALUE, got {bad[0]!r}")
    runs = {}
    start = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.strip()  # the code every seed ran (the study's record names it)
    here = None if args.set else _workspace_run()
    for s in args.seeds:
        if here is not None and here[0] == s:
            log.info("seed %d: the workspace run (dvc status: up to date)", s)
            runs[s] = here[1]
            continue
        name = f"seed-{s}"
        log.info("seed %d: dvc exp run --temp -S seed=%d", s, s)
        if name in _dvc(["exp", "list", "--name-only"], capture=True).split():
            _dvc(["exp", "remove", name], capture=True)  # rerun with today's code (restored if unchanged)
        base = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        _dvc(["exp", "run", "--temp", "-n", name, "-S", f"seed={s}",
              *[a for o in args.set for a in ("-S", o)]])
        # the experiment hangs off the commit it started from, which stays findable if HEAD moves meanwhile
        m = find_metrics(json.loads(_dvc(["exp", "show", "--json", "--rev", base], capture=True)), name)
        if m is None:
            raise RuntimeError(f"experiment {name} has no {METRICS} in 'dvc exp show --json'")
        runs[s] = m
    summary = summarise(runs)
    out = REPO / args.out
    if args.set:  # a study: its own file, not merged across machines
        import yaml

        from davs.files import atomic_write_text
        from davs.provenance import environment

        record = {"note": args.note or f"python -m pipeline.seeds with {' '.join(args.set)} at commit {start}",
                  "overrides": {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.set)}, "environment": environment(), **summary}
        atomic_write_text(out, json.dumps(record, indent=1) + "\n")
        print(table(summary))
        return 0
    from davs.provenance import environment
    from pipeline.repro_check import committed_text

    committed = committed_text("reports/environment.json")
    committed_env = json.loads(committed) if committed is not None else None
    previous = json.loads(out.read_text()) if out.exists() else None
    here = environment()
    merged = merge_machines(previous, summary, here, committed_env)
    log.info("%s: %d machine(s) recorded; this one (%s) %s", out, len(merged["machines"]), here["cpu"],
             "is the committed results' machine" if here == committed_env else "is another machine")
    from davs.files import atomic_write_text

    atomic_write_text(out, json.dumps(merged, indent=1) + "\n")
    print(table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
