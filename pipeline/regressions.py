"""Regressions the quality gates must catch, measured on the pipeline's own models.

    python -m pipeline.regressions          # after dvc repro; -> experiments/results/regressions.json (~8 min)

Each regression is scored exactly as the ``eval`` stage scores the pipeline (:func:`pipeline.evaluate.measure`,
the same judges), with one fault put into the trained models:

- ``zeroed word features``: the audio and video word encoders output zeros (a broken encoder or feature path);
- ``broken MFCC``: the audio word encoder reads MFCC windows with their coefficients in reverse order (an
  inference-time feature recipe that drifted from the one the encoders were trained on);
- ``copy the reference``: G returns its reference frame unchanged;
- ``L1-only generator``: gen retrained from ``models/disent.pt`` with the temporal and sync GAN weights at 0.

``tests/test_gates.py`` checks that each fails at least one gate of ``.ci/gates.yaml`` and that every
recorded seed run passes them all.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from unittest import mock

import torch
import yaml
from torch import nn

from davs.files import atomic_write_text
from davs.provenance import environment
from pipeline import paths
from pipeline.params import PARAMS_FILE, Params, load_params, validate

log = logging.getLogger("davs.regressions")
OUT = Path("experiments/results/regressions.json")
L1_ONLY = {"gan_weight": 0.0, "sync_gan_weight": 0.0}


class _Zeroed(nn.Module):
    """A word encoder whose features are all zero, shaped as the real one's."""

    def __init__(self, enc: nn.Module) -> None:
        super().__init__()
        self.enc = enc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(self.enc(x))  # (B, T, D)


class _ReversedCoefficients(nn.Module):
    """An audio word encoder fed MFCC windows whose coefficient axis is reversed."""

    def __init__(self, enc: nn.Module) -> None:
        super().__init__()
        self.enc = enc

    def forward(self, mfcc: torch.Tensor) -> torch.Tensor:
        return self.enc(mfcc.flip(-1))  # (B, T, frames, coeffs), coefficients last


class _CopyReference(nn.Module):
    """A generator that returns its reference (skips[0]) as every frame, mask 1 (all copied)."""

    context = 0  # reads no word

    def contextualise(self, words: torch.Tensor) -> torch.Tensor:
        return words

    def forward(self, fmap: torch.Tensor, skips: list[torch.Tensor], word: torch.Tensor,
                return_mask: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        image = skips[0]  # (N, 3, H, W)
        return (image, torch.ones_like(image[:, :1])) if return_mask else image


def _faulty_nets(fault: Callable[[dict[str, nn.Module]], None]) -> contextlib.AbstractContextManager:
    """Patch ``davs.models.load_nets`` so that every set of networks measure() loads has ``fault`` applied."""
    import davs.models

    real = davs.models.load_nets

    def load(*args, **kwargs) -> dict[str, nn.Module]:
        nets = real(*args, **kwargs)
        fault(nets)
        return nets

    return mock.patch.object(davs.models, "load_nets", load)


def _wrap(name: str, cls: type[nn.Module]) -> Callable[[dict[str, nn.Module]], None]:
    def fault(nets: dict[str, nn.Module]) -> None:
        if name in nets:
            nets[name] = cls(nets[name]).eval()
    return fault


def _both(*faults: Callable[[dict[str, nn.Module]], None]) -> Callable[[dict[str, nn.Module]], None]:
    def fault(nets: dict[str, nn.Module]) -> None:
        for f in faults:
            f(nets)
    return fault


def _copy_g(nets: dict[str, nn.Module]) -> None:
    if "G" in nets:
        nets["G"] = _CopyReference().eval()  # no conceal_box: the reference as it is


FAULTS: dict[str, Callable[[dict[str, nn.Module]], None]] = {
    "zeroed word features": _both(_wrap("Ea_w", _Zeroed), _wrap("Ev_w", _Zeroed)),
    "broken MFCC": _wrap("Ea_w", _ReversedCoefficients),
    "copy the reference": _copy_g,
}


@contextlib.contextmanager
def _l1_only_gen(p: Params, dev: torch.device) -> Iterator[Path]:
    """gen retrained from the pipeline's disent model with the GAN weights at 0 (a temporary model file)."""
    from davs.training.runners import run_gen
    from pipeline.stages import data_spec, gen_hparams, loop_config, model_config

    raw = yaml.safe_load(PARAMS_FILE.read_text())
    raw["seed"] = p.seed
    raw["gen"] = {**raw["gen"], **L1_ONLY}
    q = validate(raw, "L1-only generator")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "gen.pt"
        loop = replace(loop_config(q, "gen"), checkpoint=str(Path(tmp) / "gen.last.pt"), val_every=q.gen.steps + 1)
        run_gen(data_spec(q, "gen"), model_config(q), loop, gen_hparams(q), paths.model_file("disent"), out, dev)
        yield out


def measure_regressions(p: Params, dev: torch.device, names: list[str]) -> dict[str, dict[str, float]]:
    from pipeline.evaluate import data_counts, measure

    files = {s: paths.model_file(s) for s in ("joint", "disent", "gen")}
    runs = {}
    for name in names:
        t0 = time.perf_counter()
        log.info("regression: %s", name)
        if name == "L1-only generator":
            with _l1_only_gen(p, dev) as gen:
                m = measure(p, dev, {**files, "gen": gen})[0]
        else:
            with _faulty_nets(FAULTS[name]):
                m = measure(p, dev, files)[0]
        m |= data_counts()  # as the eval stage reports them
        runs[name] = {k: round(float(v), 5) for k, v in m.items() if isinstance(v, (int, float))}
        log.info("regression %s: %.0f s", name, time.perf_counter() - t0)
    return runs


def main(argv: list[str] | None = None) -> int:
    names = [*FAULTS, "L1-only generator"]
    ap = argparse.ArgumentParser(prog="python -m pipeline.regressions", description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", choices=names, default=names)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    p = load_params()
    dev = torch.device("cpu")
    out = Path(args.out)
    previous = json.loads(out.read_text())["runs"] if out.exists() else {}
    runs = {**previous, **measure_regressions(p, dev, args.only)}
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
    doc = {"commit": commit, "environment": environment(), "l1_only_overrides": {f"gen.{k}": v for k, v in L1_ONLY.items()},
           "runs": runs}
    if set(previous) - set(args.only):
        doc["note"] = f"runs {sorted(set(previous) - set(args.only))} are from an earlier call"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(doc, indent=1) + "\n")
    from pipeline import gates

    g = gates.load()
    for name, m in runs.items():
        failed = gates.failures(m, g)
        print(f"{name}: {len(failed)} gate(s) fail: " + "; ".join(v.gate.expression for v in failed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
