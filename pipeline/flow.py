"""The Prefect flow ``davs``: the DVC pipeline, one Prefect task per DVC stage.

The stages and their order are read from ``dvc.yaml`` (the DAG is defined there, once). Each task runs
``dvc repro --single-item <stage>``, so a Prefect run and a hand-run ``dvc repro`` share one cache and
one history, and an unchanged stage is skipped by DVC. The subprocess's output is streamed into the
Prefect run logs line by line. Flow parameter ``overrides`` (``{"gen.l1_weight": 10}``) is applied to
``params.yaml`` before the run, with the same validation and semantics as ``dvc exp run -S``.

Serve the deployment ``davs/full``:   python -m pipeline.flow serve
Run it once without a server:         python -m pipeline.flow run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, get_run_logger, task

REPO = Path(__file__).resolve().parents[1]


def dvc_stages(dvc_file: str | Path = REPO / "dvc.yaml") -> list[str]:
    """Stage names of dvc.yaml in dependency order (file order among independent stages)."""
    stages = yaml.safe_load(Path(dvc_file).read_text())["stages"]

    def paths(entries: list) -> set[str]:
        return {next(iter(e)) if isinstance(e, dict) else e for e in entries or []}

    outs = {name: paths(s.get("outs")) | paths(s.get("metrics")) | paths(s.get("plots")) for name, s in stages.items()}
    needs = {
        name: {other for other in stages if other != name and any(
            d == o or d.startswith(o.rstrip("/") + "/") for d in paths(s.get("deps")) for o in outs[other])}
        for name, s in stages.items()
    }
    order: list[str] = []
    while len(order) < len(stages):
        ready = [n for n in stages if n not in order and needs[n] <= set(order)]
        if not ready:
            raise ValueError(f"dvc.yaml has a dependency cycle among {sorted(set(stages) - set(order))}")
        order.append(ready[0])
    return order


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")  # davs, dvc
    return env


@task(retries=1, retry_delay_seconds=10, task_run_name="dvc-{stage}")
def run_stage(stage: str, repo: str) -> str:
    """``dvc repro --single-item <stage>``, its output streamed into the Prefect logs."""
    log = get_run_logger()
    cmd = ["dvc", "repro", "--single-item", stage]
    log.info("$ %s", " ".join(cmd))
    proc = subprocess.Popen(cmd, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(),
                            bufsize=1)
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        for part in line.rstrip("\n").split("\r"):  # progress bars redraw with carriage returns
            if part.strip():
                log.info("%s", part.rstrip())
                tail = (tail + [part])[-20:]
    if proc.wait() != 0:
        raise RuntimeError(f"stage {stage} failed (exit {proc.returncode}):\n" + "\n".join(tail))
    return stage


@flow(name="davs", log_prints=True)
def davs(overrides: dict[str, Any] | None = None, repo: str = str(REPO)) -> dict:
    """Run the DVC pipeline stage by stage; returns reports/metrics.json."""
    from pipeline.params import set_params

    if overrides:
        set_params(Path(repo) / "params.yaml", overrides)
        get_run_logger().info("params overridden: %s", overrides)
    for stage in dvc_stages(Path(repo) / "dvc.yaml"):
        run_stage(stage, repo)
    return json.loads((Path(repo) / "reports" / "metrics.json").read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.flow", description="Prefect flow 'davs'")
    ap.add_argument("action", choices=["serve", "run", "stages"])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="params override for 'run' (YAML value), like dvc exp run -S")
    args = ap.parse_args(argv)
    if args.action == "stages":
        print("\n".join(dvc_stages()))
    elif args.action == "serve":
        davs.serve(name="full", tags=["davs"], description="The whole DAVS pipeline through DVC")
    else:
        overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
        print(json.dumps(davs(overrides or None), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
