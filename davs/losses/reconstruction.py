"""Reconstruction losses of the DAVS generator: L1 on the whole face and on the mouth region."""

from __future__ import annotations

import torch

from davs.tensors import box_slices


def masked_l1(pred: torch.Tensor, target: torch.Tensor, box: tuple[float, float, float, float] | None = None) -> torch.Tensor:
    """Mean |pred - target| over (..., C, H, W), or over the relative box (y0, x0, y1, x1) only."""
    if box is not None:
        rows, cols = box_slices(*pred.shape[-2:], box)
        pred, target = pred[..., rows, cols], target[..., rows, cols]
    return (pred.float() - target.float()).abs().mean()


def lip_feature_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean (1 - cosine similarity) of per-frame word features (..., D): the generated mouth must read, to a
    frozen lip reader, as the target mouth does."""
    return (1 - torch.nn.functional.cosine_similarity(pred.float(), target.float(), dim=-1)).mean()


def mask_box_mean(mask: torch.Tensor, box: tuple[float, float, float, float]) -> torch.Tensor:
    """Mean of an attention mask (..., 1, H, W) over the relative box: GANimation's attention penalty, kept to
    the mouth so the mask cannot saturate to "copy the reference" where speech moves the face."""
    rows, cols = box_slices(*mask.shape[-2:], box)
    return mask[..., rows, cols].float().mean()


def smoothness_l1(frames: torch.Tensor, ref: torch.Tensor, box: tuple[float, float, float, float]) -> torch.Tensor:
    """The official DAVS's temporal term (``G_x_loss``): L1 between each generated frame and the one before it
    (the reference before the first), outside the mouth box, the previous frame detached. frames
    (B, W, 3, H, W), ref (B, 3, H, W). Summed over the W frames, as the official code does."""
    rows, cols = box_slices(*frames.shape[-2:], box)
    keep = torch.ones(frames.shape[-2:], device=frames.device)
    keep[rows, cols] = 0  # outside the mouth
    prev = torch.cat([ref[:, None], frames[:, :-1]], 1).detach()  # (B, W, 3, H, W)
    return ((frames.float() - prev.float()).abs() * keep).mean(dim=(0, 2, 3, 4)).sum()