"""Ea_w, the audio word encoder of DAVS: per-frame MFCC windows (20 x 12) -> per-frame word features; the last
layer removes the identity subspace the disentanglement stage estimates (:mod:`davs.models.identity_nuisance`)."""

from __future__ import annotations

import torch
from torch import nn

from davs.models.blocks import ConvBlock, TemporalMix
from davs.models.identity_nuisance import IdentityNuisance


class AudioWordEncoder(nn.Module):
    """A small 2-D CNN over each (mfcc_frames x mfcc_coeffs) window, then a residual temporal convolution."""

    def __init__(self, mfcc_frames: int = 20, mfcc_coeffs: int = 12, width: int = 32, feat_dim: int = 128,
                 identity_rank: int = 0) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(1)  # MFCCs have a wide dynamic range; learn their scale
        self.cnn = nn.Sequential(
            ConvBlock(1, width), ConvBlock(width, 2 * width, (2, 1)), ConvBlock(2 * width, 4 * width, 2),
            ConvBlock(4 * width, 4 * width, 1),
        )
        h, w = (mfcc_frames + 1) // 2, mfcc_coeffs
        h, w = (h + 1) // 2, (w + 1) // 2
        self.proj = nn.Linear(4 * width * h * w, feat_dim)
        self.temporal = TemporalMix(feat_dim)
        self.nuisance = IdentityNuisance(feat_dim, identity_rank)

    def forward(self, mfcc: torch.Tensor) -> torch.Tensor:
        """mfcc (B, T, F, C) -> (B, T, D) word features."""
        return self.nuisance(self.features(mfcc))

    def features(self, mfcc: torch.Tensor) -> torch.Tensor:
        """The features before the identity subspace is removed, (B, T, D)."""
        b, t = mfcc.shape[:2]
        x = self.norm(mfcc.flatten(0, 1).unsqueeze(1))  # (B*T, 1, F, C)
        x = self.cnn(x)  # (B*T, 4w, F/4, C/2)
        x = self.proj(x.flatten(1)).view(b, t, -1)  # (B, T, D)
        return self.temporal(x)
