"""Quality gates: does a run's ``reports/metrics.json`` show a model that works? (``.ci/gates.yaml``)

    python -m pipeline.gates                      # reports/metrics.json; exit 0: every gate passes, 1: not
    python -m pipeline.gates path/to/metrics.json

A gate bounds one metric, alone or relative to another (``ratio_of``: metric / other; ``minus``: metric -
other), with a one-line reason. ``python -m pipeline.repro_check`` applies them on a CPU other than the one
the results were committed from, where another instruction set picks other float kernels and training
drifts as a new seed would, so another machine's figures are no yardstick.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

GATES_FILE = Path(__file__).resolve().parents[1] / ".ci" / "gates.yaml"
_KEYS = {"metric", "min", "max", "ratio_of", "minus", "why"}


class GateError(ValueError):
    """gates.yaml is malformed."""


@dataclass(frozen=True)
class Gate:
    metric: str
    why: str
    min: float | None = None
    max: float | None = None
    ratio_of: str | None = None
    minus: str | None = None

    @property
    def expression(self) -> str:
        if self.ratio_of:
            return f"{self.metric} / {self.ratio_of}"
        if self.minus:
            return f"{self.metric} - {self.minus}"
        return self.metric

    @property
    def bound(self) -> str:
        return f">= {self.min:g}" if self.min is not None else f"<= {self.max:g}"


@dataclass(frozen=True)
class Verdict:
    gate: Gate
    value: float | None  # the gated quantity, None when a metric is missing
    passed: bool

    def line(self) -> str:
        shown = "missing" if self.value is None else f"{self.value:.4f}"
        return f"{'ok  ' if self.passed else 'FAIL'} {self.gate.expression} = {shown} ({self.gate.bound}): {self.gate.why}"


def parse(doc: Any, source: str = str(GATES_FILE)) -> list[Gate]:
    """The gates of a parsed gates.yaml, validated: each has a metric, exactly one of min / max (a number),
    at most one of ratio_of / minus, and a reason."""
    if not isinstance(doc, dict) or not isinstance(doc.get("gates"), list) or not doc["gates"]:
        raise GateError(f"{source}: expected a non-empty list under 'gates'")
    gates = []
    for i, g in enumerate(doc["gates"]):
        where = f"{source}: gates[{i}]"
        if not isinstance(g, dict):
            raise GateError(f"{where}: expected a mapping")
        unknown = sorted(set(g) - _KEYS)
        if unknown:
            raise GateError(f"{where}: unknown key(s) {unknown} (allowed: {sorted(_KEYS)})")
        if not isinstance(g.get("metric"), str) or not isinstance(g.get("why"), str) or not g["why"].strip():
            raise GateError(f"{where}: needs 'metric' and a one-line 'why'")
        if ("min" in g) == ("max" in g):
            raise GateError(f"{where} ({g['metric']}): exactly one of 'min' or 'max'")
        bound = g.get("min", g.get("max"))
        if isinstance(bound, bool) or not isinstance(bound, (int, float)):
            raise GateError(f"{where} ({g['metric']}): the bound must be a number, got {bound!r}")
        if "ratio_of" in g and "minus" in g:
            raise GateError(f"{where} ({g['metric']}): at most one of 'ratio_of' or 'minus'")
        if any(not isinstance(g[k], str) for k in ("ratio_of", "minus") if k in g):
            raise GateError(f"{where} ({g['metric']}): 'ratio_of' / 'minus' name another metric")
        gates.append(Gate(**{k: (float(v) if k in ("min", "max") else v) for k, v in g.items()}))
    return gates


def load(path: Path = GATES_FILE) -> list[Gate]:
    return parse(yaml.safe_load(path.read_text()), str(path))


def value(gate: Gate, metrics: dict[str, Any]) -> float | None:
    """The gated quantity of ``metrics``, or None when a metric it needs is missing or not finite."""
    names = [gate.metric, gate.ratio_of or gate.minus] if (gate.ratio_of or gate.minus) else [gate.metric]
    xs = [metrics.get(n) for n in names]
    if any(not isinstance(x, (int, float)) or isinstance(x, bool) or not math.isfinite(x) for x in xs):
        return None
    if gate.ratio_of:
        return xs[0] / xs[1] if xs[1] > 0 else None
    if gate.minus:
        return xs[0] - xs[1]
    return float(xs[0])


def check(metrics: dict[str, Any], gates: list[Gate]) -> list[Verdict]:
    """One verdict per gate; a missing metric fails its gate."""
    out = []
    for g in gates:
        v = value(g, metrics)
        ok = v is not None and (v >= g.min if g.min is not None else v <= g.max)
        out.append(Verdict(g, v, ok))
    return out


def failures(metrics: dict[str, Any], gates: list[Gate]) -> list[Verdict]:
    return [v for v in check(metrics, gates) if not v.passed]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline.gates", description=__doc__.split("\n")[0])
    ap.add_argument("metrics", nargs="?", default="reports/metrics.json")
    ap.add_argument("--gates", default=str(GATES_FILE))
    args = ap.parse_args(argv)
    if not Path(args.metrics).is_file():
        ap.error(f"{args.metrics} not found: run dvc repro first")
    verdicts = check(json.loads(Path(args.metrics).read_text()), load(Path(args.gates)))
    print(*(v.line() for v in verdicts), sep="\n")
    failed = [v for v in verdicts if not v.passed]
    print(f"gates: {len(verdicts) - len(failed)} of {len(verdicts)} pass" + (f", {len(failed)} FAIL" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
