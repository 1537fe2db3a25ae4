"""The mouth-state judge: a mouth region of interest -> (open, width, round) as the corpus renderer defines them."""

from __future__ import annotations

import torch
from torch import nn

from davs.models.blocks import ConvBlock


class MouthStateRegressor(nn.Module):
    """A small CNN over one mouth ROI (RGB, any size around 20 x 32 px at 64 px faces) -> 3 mouth states."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        self.cnn = nn.Sequential(ConvBlock(3, w), ConvBlock(w, 2 * w, 2), ConvBlock(2 * w, 4 * w, 2),
                                 ConvBlock(4 * w, 4 * w), nn.AdaptiveAvgPool2d((2, 2)))
        self.head = nn.Linear(4 * w * 4, 3)

    def forward(self, roi: torch.Tensor) -> torch.Tensor:
        """roi (N, 3, h, w) in [-1, 1] -> (N, 3) mouth states (open, width, round), roughly in [0, 1]."""
        return self.head(self.cnn(roi).flatten(1))  # (N, 4w, 2, 2) -> (N, 16w) -> (N, 3)
