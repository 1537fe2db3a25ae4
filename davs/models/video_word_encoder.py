"""Ev_w, the video word encoder of DAVS (Zhou et al., AAAI 2019): face frames -> per-frame word features."""

from __future__ import annotations

import torch
from torch import nn

from davs.models.blocks import ConvBlock, TemporalMix, channels


class VideoWordEncoder(nn.Module):
    """A per-frame CNN down to 4x4, a linear projection, then a residual temporal convolution.

    Each frame is stacked with its difference to the previous frame (6 channels): the difference
    carries the lip motion and cancels most of the static identity, which makes the word readable
    after far fewer steps than raw frames alone.
    """

    def __init__(self, image_size: int = 64, width: int = 32, feat_dim: int = 128) -> None:
        super().__init__()
        layers, ch, s, i = [], 6, image_size, 0
        while s > 4:
            out = channels(width, i)
            layers.append(ConvBlock(ch, out, 2))
            ch, s, i = out, s // 2, i + 1
        self.cnn = nn.Sequential(*layers)
        self.proj = nn.Linear(ch * 4 * 4, feat_dim)
        self.temporal = TemporalMix(feat_dim)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (B, T, 3, H, W) in [-1, 1] -> (B, T, D)."""
        b, t = frames.shape[:2]
        prev = torch.cat([frames[:, :1], frames[:, :-1]], 1)  # (B, T, 3, H, W), first frame repeated
        x = torch.cat([frames, frames - prev], 2)  # (B, T, 6, H, W)
        x = self.cnn(x.flatten(0, 1))  # (B*T, C, 4, 4)
        x = self.proj(x.flatten(1)).view(b, t, -1)  # (B, T, D)
        return self.temporal(x)
