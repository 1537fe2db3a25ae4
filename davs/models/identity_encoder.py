"""Ep, the video identity (person-ID) encoder of DAVS: one face -> identity vector, feature map, skips."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from davs.models.blocks import ConvBlock, channels


class IdentityFeatures(NamedTuple):
    vector: torch.Tensor  # (N, D) pooled identity feature (classified by Cp)
    fmap: torch.Tensor  # (N, C, 8, 8) spatial feature decoded by G
    skips: list[torch.Tensor]  # higher-resolution maps for G's skip connections, finest (the image) first


class IdentityEncoder(nn.Module):
    """Stride-2 conv stages down to an 8x8 map; the vector is its global average, projected."""

    def __init__(self, image_size: int = 64, width: int = 32, feat_dim: int = 128) -> None:
        super().__init__()
        stages, ch, s, i = [], 3, image_size, 0
        while s > 8:
            out = channels(width, i)
            stages.append(nn.Sequential(ConvBlock(ch, out, 2), ConvBlock(out, out)))
            ch, s, i = out, s // 2, i + 1
        self.stages = nn.ModuleList(stages)
        self.out_channels = ch
        self.fmap_size = s  # side of the feature map G decodes (8 for 64 or 256 px faces)
        self.skip_channels = [3] + [channels(width, j) for j in range(i - 1)]
        self.proj = nn.Linear(ch, feat_dim)

    def forward(self, images: torch.Tensor) -> IdentityFeatures:
        """images (N, 3, H, W) in [-1, 1]."""
        skips = [images]  # the reference image itself: G copies unchanged regions at full resolution
        x = images
        for k, stage in enumerate(self.stages):
            x = stage(x)
            if k < len(self.stages) - 1:
                skips.append(x)
        vector = self.proj(x.mean(dim=(2, 3)))  # (N, D)
        return IdentityFeatures(vector, x, skips)

    def sequence(self, frames: torch.Tensor) -> torch.Tensor:
        """Identity vectors of every frame: (B, T, 3, H, W) -> (B, T, D)."""
        b, t = frames.shape[:2]
        return self(frames.flatten(0, 1)).vector.view(b, t, -1)  # (B, T, D)

    def dis_input(self, frames: torch.Tensor) -> torch.Tensor:
        """What Cw_p reads: the identity vectors of every frame, (B, T, 3, H, W) -> (B, T, D)."""
        return self.sequence(frames)
