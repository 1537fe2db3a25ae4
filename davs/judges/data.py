"""Training data of the judges: mouth ROIs (with a margin for shift augmentation), MFCC windows, the word
mask and, where the corpus wrote it, the renderer's mouth state of every frame."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from davs.data.loader import LRWDecode, count_samples, make_loader
from davs.data.lrw import clip_path
from davs.models.video_word_encoder import roi_slices
from davs.synth.corpus import read_mouth_states

log = logging.getLogger(__name__)

LRW_FRAMES = 29  # every LRW clip: 1.16 s at 25 fps


@dataclass
class JudgeClips:
    rois: torch.Tensor  # (N, T, 3, h + 2m, w + 2m) uint8 mouth ROIs with margin m
    mfcc: torch.Tensor  # (N, T, F, C) float32
    mask: torch.Tensor  # (N, T) bool, frames of the word
    states: torch.Tensor | None  # (N, T, 3) float32 mouth states, or None without the sidecar
    keys: list[str]


def roi_with_margin(image_size: int, box: tuple[float, float, float, float], margin: int) -> tuple[slice, slice]:
    """The mouth ROI rows / columns widened by ``margin`` pixels (clamped to the image)."""
    rows, cols = roi_slices(image_size, box)
    return (slice(max(0, rows.start - margin), min(image_size, rows.stop + margin)),
            slice(max(0, cols.start - margin), min(image_size, cols.stop + margin)))


def load_clips(shard_dir: str | Path, split: str, image_size: int, box: tuple[float, float, float, float],
               margin: int, mouth_states: str | Path | None = None, max_clips: int = 0) -> JudgeClips:
    """Every clip of one split of the LRW shards (the first ``max_clips`` when > 0), in shard order."""
    n = count_samples(shard_dir, split)
    dec = LRWDecode(LRW_FRAMES, 0, 5, 0, None, random_sampling=False)
    loader, _ = make_loader(f"{shard_dir}/{split}-*.tar", dec, batch_size=32, train=False, num_samples=n)
    rows, cols = roi_with_margin(image_size, box, margin)
    rois, mfcc, mask, keys = [], [], [], []
    for b in loader:
        rois.append(b["frames"][:, :, rows, cols].permute(0, 1, 4, 2, 3).contiguous())  # (B, T, 3, h, w)
        mfcc.append(b["mfcc"])
        mask.append(b["mask"])
        keys += b["key"]
        if max_clips and len(keys) >= max_clips:
            break
    k = min(max_clips, len(keys)) if max_clips else len(keys)
    out = JudgeClips(torch.cat(rois)[:k], torch.cat(mfcc)[:k], torch.cat(mask)[:k], None, keys[:k])
    if mouth_states is not None and Path(mouth_states).exists():
        table = read_mouth_states(mouth_states)
        missing = [key for key in out.keys if clip_path(key) not in table]
        if missing:
            raise ValueError(f"{mouth_states} has no mouth states for {len(missing)} clips, e.g. {missing[:3]}")
        out.states = torch.from_numpy(np.stack([table[clip_path(key)][:LRW_FRAMES] for key in out.keys]))
    log.info("judges: %d %s clips (%s mouth states)", k, split, "with" if out.states is not None else "without")
    return out
