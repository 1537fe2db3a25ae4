"""Checkpoints: written atomically (temp file + rename), read with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from davs.errors import DavsError
from davs.files import atomic_path


class CheckpointError(DavsError, RuntimeError):
    """A checkpoint is missing, unreadable or does not match the configured model."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_path(path)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} not found: run the stage that writes it first")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory, not a model file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"(?:unsupported GLOBAL|Unsupported global: GLOBAL) ([\w.]+)", str(e))
        if found and zipfile.is_zipfile(path):
            raise CheckpointError(f"checkpoint {path} refused: it holds a Python object ({found.group(1)}), not "
                                  "only tensors, and loading it could run code; davs model files hold tensors "
                                  "only") from None
        raise CheckpointError(f"checkpoint {path} is not a PyTorch model file") from None
    except Exception as e:  # zip / EOF errors from a truncated or foreign file
        raise CheckpointError(f"checkpoint {path} is not a PyTorch model file or is truncated "
                              f"({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    """The error's first sentence, without torch's advice."""
    text = str(e).strip().split(". ")[0].splitlines()
    return text[0][:200] if text else type(e).__name__


def check_config(ckpt: dict[str, Any], expected: dict[str, Any], path: str | os.PathLike,
                 fields: tuple[str, ...] | None = None, defaults: dict[str, Any] | None = None) -> None:
    """Fail with the differing fields when a checkpoint was trained with another model config
    (only ``fields`` are compared when given). A field the checkpoint does not name was added to the config
    after it was written, so it was trained with that field's value in ``defaults`` (the value before the
    field existed)."""
    got = ckpt.get("model_config")
    if got is None:
        raise CheckpointError(f"{path} has no model_config: not a davs checkpoint")
    got = {**(defaults or {}), **got}
    keys = fields or tuple(expected)
    diff = {k: (got.get(k), expected[k]) for k in keys if got.get(k) != expected[k]}
    if diff:
        detail = ", ".join(f"{k}: checkpoint {a!r} vs configured {b!r}" for k, (a, b) in sorted(diff.items()))
        raise CheckpointError(f"{path} does not match the configured model ({detail})")


def load_model(path: str | os.PathLike, config: Any = None, device: str | torch.device = "cpu",
               fields: tuple[str, ...] | None = None) -> dict[str, Any]:
    """A stage's model file ``{"model_config", "stage", "nets": {component: state_dict}, ...}``; with
    ``config`` (a :class:`~davs.models.DAVSConfig`, or one as a dict), fail clearly if it was trained with another one (comparing only
    ``fields`` when given)."""
    ck = load_checkpoint(path, map_location=device)
    if not isinstance(ck, dict) or not isinstance(ck.get("nets"), dict) or not isinstance(ck.get("model_config"), dict):
        raise CheckpointError(f"checkpoint {path} is not a davs model file (no model_config / nets): "
                              "use a file from models/")
    if config is not None:
        if hasattr(config, "to_dict"):  # a DAVSConfig: fields added since the file was written take their old value
            check_config(ck, config.to_dict(), path, fields, getattr(type(config), "LEGACY", None))
        else:
            check_config(ck, dict(config), path, fields)
    return ck
