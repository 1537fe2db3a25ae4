"""Checkpoints: written atomically (temp file + rename), read with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from davs.errors import DavsError


class CheckpointError(DavsError, RuntimeError):
    """A checkpoint is missing, unreadable or does not match the configured model."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} not found: run the stage that writes it first")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # pickle / zip errors from a truncated or foreign file
        raise CheckpointError(f"checkpoint {path} is unreadable: {e}") from None


def check_config(ckpt: dict[str, Any], expected: dict[str, Any], path: str | os.PathLike,
                 fields: tuple[str, ...] | None = None) -> None:
    """Fail with the differing fields when a checkpoint was trained with another model config
    (only ``fields`` are compared when given)."""
    got = ckpt.get("model_config")
    if got is None:
        raise CheckpointError(f"{path} has no model_config: not a davs checkpoint")
    keys = fields or tuple(expected)
    diff = {k: (got.get(k), expected[k]) for k in keys if got.get(k) != expected[k]}
    if diff:
        detail = ", ".join(f"{k}: checkpoint {a!r} vs configured {b!r}" for k, (a, b) in sorted(diff.items()))
        raise CheckpointError(f"{path} does not match the configured model ({detail})")
