"""Tensor helpers shared by training, evaluation and inference: image <-> tensor, masked pooling, windows,
relative boxes. One owner each, so the three never disagree on a convention."""

from __future__ import annotations

import torch

Box = tuple[float, float, float, float]  # relative (y0, x0, y1, x1) on an aligned face


def to_images(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-1, 1]."""
    return frames.movedim(-1, -3).float().div(127.5).sub(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float (..., 3, H, W) in [-1, 1] -> uint8 (..., H, W, 3), the inverse of :func:`to_images`."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().byte().movedim(-3, -1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, D), (B, T) bool -> (B, D) mean over the masked frames."""
    m = mask.to(x.dtype).unsqueeze(-1)  # (B, T, 1)
    return (x * m).sum(1) / m.sum(1).clamp_min(1)


def window(x: torch.Tensor, start: torch.Tensor, size: int) -> torch.Tensor:
    """Gather ``size`` consecutive steps from (B, T, ...) at per-sample ``start`` -> (B, size, ...)."""
    idx = start[:, None] + torch.arange(size, device=start.device)[None]  # (B, size)
    return x[torch.arange(x.shape[0], device=x.device)[:, None], idx]


def box_slices(h: int, w: int, box: Box, min_size: int = 1) -> tuple[slice, slice]:
    """Rows and columns of the relative box (y0, x0, y1, x1) on an h x w image: at least ``min_size`` pixels
    each way where the image allows, never past its edge."""
    y0, x0 = int(box[0] * h), int(box[1] * w)
    y1, x1 = max(int(box[2] * h), y0 + min_size), max(int(box[3] * w), x0 + min_size)
    return slice(y0, min(y1, h)), slice(x0, min(x1, w))
