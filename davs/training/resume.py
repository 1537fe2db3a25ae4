"""The loop's resume checkpoint (``last.pt``): weights, optimizers, where each stream is, every random
generator the run draws from (the CPU's, and each GPU's on CUDA: dropout on a GPU draws from the device's
generator) and the records logged so far. A resumed run continues as the uninterrupted one would."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from davs.checkpoint import load_checkpoint, save_checkpoint
from davs.training.streams import Stream

log = logging.getLogger(__name__)

History = list[tuple[int, dict[str, float]]]


def rng_state(device: torch.device) -> dict[str, Any]:
    """The generators a step on ``device`` draws from."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: Any, device: torch.device) -> None:
    """Restore :func:`rng_state` (a bare tensor: a checkpoint that kept only the CPU's)."""
    if isinstance(state, torch.Tensor):
        state = {"cpu": state}
    torch.set_rng_state(state["cpu"].cpu())
    if device.type == "cuda":
        if "cuda" not in state:
            log.warning("the checkpoint has no CUDA random state: dropout after the resume differs from an "
                        "uninterrupted run")
        else:
            torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def save_state(path: str, done: int, fp: str, task: nn.Module, opts: dict[str, torch.optim.Optimizer],
               streams: dict[str, Stream], history: History, device: torch.device) -> None:
    save_checkpoint(path, {
        "step": done, "fingerprint": fp, "task": task.state_dict(),
        "optim": {k: o.state_dict() for k, o in opts.items()},
        "streams": {k: [s.current, s.consumed] for k, s in streams.items()},
        "rng": rng_state(device),
        "history": [[s, m] for s, m in history],
    })


def restore_state(path: str | None, seed: int, fp: str, task: nn.Module, opts: dict[str, torch.optim.Optimizer],
                  streams: dict[str, Stream], device: torch.device) -> tuple[int, History]:
    """Seed the run and start its streams; from ``path`` when it holds a checkpoint of this run (same
    fingerprint). Returns the step to start from and the records logged before it (fresh: 0 and none)."""
    torch.manual_seed(seed)
    ck = load_checkpoint(path, map_location=device) if path and Path(path).exists() else None
    if ck is not None and ck.get("fingerprint") != fp:
        log.warning("ignoring %s: it was written by a run with other params or data", path)
        ck = None
    if ck is None:
        for s in streams.values():
            s.start(0, 0)
        return 0, []
    task.load_state_dict(ck["task"])
    for k, o in opts.items():
        o.load_state_dict(ck["optim"][k])
    for k, s in streams.items():
        epoch, consumed = ck["streams"][k]
        s.start(epoch, consumed)
    set_rng_state(ck["rng"], device)
    log.info("resumed from %s at step %d", path, ck["step"])
    return int(ck["step"]), [(int(s), dict(m)) for s, m in ck.get("history", [])]
