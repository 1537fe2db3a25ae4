"""What a training or evaluation run reads: the shard directories and how clips are cut into samples, and
the held-out loaders built from it. Shared by training, evaluation and the judges (none imports another)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from davs.config.data import DataSpec
from davs.data.loader import LRWDecode, count_samples, decode_celeb, make_loader
from davs.models import DAVSConfig


def model_config_for(data: DataSpec, **sizes: Any) -> DAVSConfig:
    """A DAVSConfig whose class counts come from the shards (vocab.json, identities.json)."""
    vocab = json.loads((Path(data.lrw_dir) / "vocab.json").read_text())
    ids = json.loads((Path(data.celeb_dir) / "identities.json").read_text())["mids"]
    return DAVSConfig(num_words=len(vocab["words"]), num_ids=len(ids), **sizes)


def eval_loaders(data: DataSpec, window: int, split: str, streams: tuple[str, ...]) -> dict[str, Any]:
    """Factories of one-pass, fixed-order loaders over a held-out split."""
    out = {}
    if "lrw" in streams:
        dec = LRWDecode(data.num_frames, data.frame_offset, window, data.seed, None, random_sampling=False)
        n = count_samples(data.lrw_dir, split)
        out["lrw"] = lambda: make_loader(f"{data.lrw_dir}/{split}-*.tar", dec, batch_size=data.batch_size,
                                         train=False, num_samples=n)[0]
    if "celeb" in streams:
        n = count_samples(data.celeb_dir, split)
        out["celeb"] = lambda: make_loader(f"{data.celeb_dir}/{split}-*.tar", decode_celeb,
                                           batch_size=data.id_batch_size, train=False, num_samples=n)[0]
    return out
