"""Ev_w, the video word encoder of DAVS (Zhou et al., AAAI 2019): face frames -> per-frame word features.

Like lip-reading front ends trained on LRW, it reads the mouth region of interest: the relative
``mouth_box`` of the aligned face (the same box the generator's mouth loss uses) is cut from every
frame at the face's resolution. Each ROI is stacked with its difference to the previous frame
(6 channels), which carries the lip motion and cancels static appearance. A small CNN, a linear
projection, then a residual temporal convolution give one word feature per frame; the last layer removes
the identity subspace the disentanglement stage estimates (:mod:`davs.models.identity_nuisance`).
"""

from __future__ import annotations

import torch
from torch import nn

from davs.models.blocks import ConvBlock, TemporalMix, channels
from davs.models.identity_nuisance import IdentityNuisance
from davs.tensors import box_slices

ROI_MIN = 8  # pixels: the smallest mouth ROI the CNN reads


def roi_slices(image_size: int, box: tuple[float, float, float, float]) -> tuple[slice, slice]:
    """Row and column slices of the mouth ROI (the relative (y0, x0, y1, x1) box, at least ROI_MIN pixels)
    on an image_size face: what Ev_w reads, and what the judges read."""
    return box_slices(image_size, image_size, box, ROI_MIN)


class VideoWordEncoder(nn.Module):
    """Mouth ROI (+ frame difference) -> CNN -> pooled 3x4 grid -> linear -> temporal mixing."""

    def __init__(
        self,
        image_size: int = 64,
        width: int = 32,
        feat_dim: int = 128,
        mouth_box: tuple[float, float, float, float] = (0.62, 0.25, 0.95, 0.75),
        identity_rank: int = 0,
    ) -> None:
        super().__init__()
        self.rows, self.cols = roi_slices(image_size, mouth_box)
        h = self.rows.stop - self.rows.start
        layers, ch, i = [ConvBlock(6, width)], width, 0
        while h > 6:
            out = channels(width, i + 1)
            layers.append(ConvBlock(ch, out, 2))
            ch, h, i = out, (h + 1) // 2, i + 1
        self.cnn = nn.Sequential(*layers, nn.AdaptiveAvgPool2d((3, 4)))
        self.proj = nn.Linear(ch * 3 * 4, feat_dim)
        self.temporal = TemporalMix(feat_dim)
        self.nuisance = IdentityNuisance(feat_dim, identity_rank)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (B, T, 3, H, W) in [-1, 1] -> (B, T, D) word features. A still image is T = 1."""
        return self.nuisance(self.features(frames))

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """The features before the identity subspace is removed, (B, T, D)."""
        b, t = frames.shape[:2]
        roi = frames[..., self.rows, self.cols]  # (B, T, 3, h, w)
        prev = torch.cat([roi[:, :1], roi[:, :-1]], 1)  # (B, T, 3, h, w), first frame repeated
        x = torch.cat([roi, roi - prev], 2)  # (B, T, 6, h, w)
        x = self.cnn(x.flatten(0, 1))  # (B*T, C, 3, 4)
        x = self.proj(x.flatten(1)).view(b, t, -1)  # (B, T, D)
        return self.temporal(x)
