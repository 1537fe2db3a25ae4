"""Reconstruction losses of the DAVS generator: L1 on the whole face and on the mouth region."""

from __future__ import annotations

import torch


def masked_l1(pred: torch.Tensor, target: torch.Tensor, box: tuple[float, float, float, float] | None = None) -> torch.Tensor:
    """Mean |pred - target| over (..., C, H, W), or over the relative box (y0, x0, y1, x1) only."""
    if box is not None:
        h, w = pred.shape[-2:]
        y0, x0, y1, x1 = int(box[0] * h), int(box[1] * w), max(int(box[2] * h), int(box[0] * h) + 1), max(int(box[3] * w), int(box[1] * w) + 1)
        pred, target = pred[..., y0:y1, x0:x1], target[..., y0:y1, x0:x1]
    return (pred.float() - target.float()).abs().mean()
