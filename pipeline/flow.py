"""The Prefect flow ``davs``: the DVC pipeline, one Prefect task per DVC stage.

The stages and their order are read from ``dvc.yaml`` (the DAG is defined there, once). Each task runs
``dvc repro --single-item <stage>``, so a Prefect run and a hand-run ``dvc repro`` share one cache and
one history, and an unchanged stage is skipped by DVC. The subprocess's output is streamed into the
Prefect run logs line by line. With the flow parameter ``overrides`` (``{"gen.l1_weight": 10}``) the run is
a DVC experiment instead: the overrides are validated like params.yaml, then one task runs
``dvc exp run --temp -n <name> -S key=value ...`` (a temporary copy of the workspace sharing the DVC cache,
so only what depends on the overrides reruns), which leaves the workspace and its ``params.yaml`` as they
were; the experiment is listed by ``dvc exp show`` and its metrics are the flow's result.

Serve the deployment ``davs/full``:   python -m pipeline.flow serve
Run it once without a server:         python -m pipeline.flow run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
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
    _stream(["dvc", "repro", "--single-item", stage], repo, f"stage {stage}")
    return stage


def _stream(cmd: list[str], repo: str, what: str) -> None:
    """Run ``cmd`` in ``repo``, its output streamed into the Prefect logs; a failure raises with its tail."""
    log = get_run_logger()
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
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n" + "\n".join(tail))


def check_overrides(params_file: Path, overrides: dict[str, Any]) -> list[str]:
    """The ``-S key=value`` arguments of valid overrides (each key must exist; the result must validate)."""
    from pipeline.params import validate

    raw = yaml.safe_load(params_file.read_text())
    for key, value in overrides.items():
        node = raw
        *parents, leaf = key.split(".")
        for p in parents:
            if not isinstance(node, dict) or p not in node:
                raise ValueError(f"override {key}: no such section in {params_file.name}")
            node = node[p]
        if not isinstance(node, dict) or leaf not in node:
            raise ValueError(f"override {key}: no such key in {params_file.name}")
        node[leaf] = value
    validate(raw, f"{params_file.name} with overrides {overrides}")
    return [a for k, v in overrides.items() for a in ("-S", f"{k}={json.dumps(v)}")]


@task(task_run_name="dvc-exp-{name}")
def run_experiment(name: str, set_args: list[str], repo: str) -> dict:
    """``dvc exp run --temp`` with the overrides; returns the experiment's reports/metrics.json."""
    from pipeline.seeds import find_metrics

    _stream(["dvc", "exp", "run", "--temp", "-n", name, *set_args], repo, f"experiment {name}")
    base = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()
    shown = subprocess.run(["dvc", "exp", "show", "--json", "--rev", base], cwd=repo, capture_output=True, text=True,
                           env=_env(), check=True).stdout
    metrics = find_metrics(json.loads(shown), name)
    if metrics is None:
        raise RuntimeError(f"experiment {name} has no reports/metrics.json in 'dvc exp show'")
    return metrics


@flow(name="davs", log_prints=True)
def davs(overrides: dict[str, Any] | None = None, repo: str = str(REPO)) -> dict:
    """Run the DVC pipeline stage by stage and return reports/metrics.json; with ``overrides``, run it as a
    DVC experiment (the workspace untouched) and return the experiment's metrics."""
    if overrides:
        set_args = check_overrides(Path(repo) / "params.yaml", overrides)
        name = "prefect-" + time.strftime("%Y%m%d-%H%M%S")
        get_run_logger().info("params overridden in experiment %s: %s", name, overrides)
        return run_experiment(name, set_args, repo)
    for stage in dvc_stages(Path(repo) / "dvc.yaml"):
        run_stage(stage, repo)
    return json.loads((Path(repo) / "reports" / "metrics.json").read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.flow", description="Prefect flow 'davs'")
    ap.add_argument("action", choices=["serve", "run", "stages"])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="params override for 'run' (YAML value): run as a DVC experiment, like dvc exp run -S")
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
