"""Ev_w of the official DAVS (``network/FAN_feature_extractor.py``): a one-hourglass face alignment
network (FAN, Bulat & Tzimiropoulos, ICCV 2017) over the *whole* face, whose 68 landmark-like heatmaps at
1/4 of the face are reduced by a stride-2 convolution to one map and projected to the word feature, one per
frame (then, as in ours, the identity subspace removed: :mod:`davs.models.identity_nuisance`). Channels
scale with ``width`` (official: 64, 128, 256 at ``width=32``); the hourglass has depth 4 (fewer on faces too
small to halve four times below 1/4).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from davs.models.identity_nuisance import IdentityNuisance


class FanBlock(nn.Module):
    """FAN's pre-activation block: three 3x3 convs at out/2, out/4, out/4 channels, concatenated, plus the
    (1x1-projected where the width changes) input."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        h, q = out_ch // 2, out_ch // 4
        self.bn1, self.conv1 = nn.BatchNorm2d(in_ch), nn.Conv2d(in_ch, h, 3, 1, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(h), nn.Conv2d(h, q, 3, 1, 1, bias=False)
        self.bn3, self.conv3 = nn.BatchNorm2d(q), nn.Conv2d(q, out_ch - h - q, 3, 1, 1, bias=False)
        self.down = (nn.Sequential(nn.BatchNorm2d(in_ch), nn.ReLU(inplace=True), nn.Conv2d(in_ch, out_ch, 1, bias=False))
                     if in_ch != out_ch else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o1 = self.conv1(F.relu(self.bn1(x)))
        o2 = self.conv2(F.relu(self.bn2(o1)))
        o3 = self.conv3(F.relu(self.bn3(o2)))
        return torch.cat([o1, o2, o3], 1) + self.down(x)


class HourGlass(nn.Module):
    """Recursive hourglass: an upper branch at this resolution plus a max-pooled lower branch, upsampled back."""

    def __init__(self, depth: int, ch: int) -> None:
        super().__init__()
        self.up1, self.low1, self.low3 = FanBlock(ch, ch), FanBlock(ch, ch), FanBlock(ch, ch)
        self.low2 = HourGlass(depth - 1, ch) if depth > 1 else FanBlock(ch, ch)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = self.dropout(self.up1(x))
        low = self.low3(self.low2(self.low1(F.max_pool2d(x, 2, 2))))  # (N, C, h/2, w/2)
        return up + F.interpolate(low, size=up.shape[-2:], mode="bilinear", align_corners=False)


class FanVideoWordEncoder(nn.Module):
    """(B, T, 3, S, S) faces -> FAN heatmaps (68 at S/4) -> stride-2 conv to one map -> linear -> (B, T, D)."""

    def __init__(self, image_size: int = 256, width: int = 32, feat_dim: int = 256, heatmaps: int = 68,
                 identity_rank: int = 0) -> None:
        super().__init__()
        w = 2 * width  # the official 64
        self.stem = nn.Sequential(nn.Conv2d(3, w, 7, 2, 3), nn.BatchNorm2d(w), nn.ReLU(inplace=True))
        self.conv2, self.conv3, self.conv4 = FanBlock(w, 2 * w), FanBlock(2 * w, 2 * w), FanBlock(2 * w, 4 * w)
        depth = max(1, min(4, int(math.log2(max(1, image_size // 4)))))
        self.hourglass = HourGlass(depth, 4 * w)
        self.top = nn.Sequential(FanBlock(4 * w, 4 * w), nn.Conv2d(4 * w, 4 * w, 1), nn.BatchNorm2d(4 * w),
                                 nn.ReLU(inplace=True), nn.Conv2d(4 * w, heatmaps, 1))
        self.reduce = nn.Sequential(nn.BatchNorm2d(heatmaps), nn.ReLU(inplace=True), nn.Conv2d(heatmaps, 1, 3, 2, 1),
                                    nn.ReLU(inplace=True))
        side = (image_size // 4 + 1) // 2
        self.fc = nn.Linear(side * side, feat_dim)
        self.nuisance = IdentityNuisance(feat_dim, identity_rank)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (B, T, 3, S, S) in [-1, 1] -> (B, T, D) word features. A still image is T = 1."""
        return self.nuisance(self.features(frames))

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """The features before the identity subspace is removed, (B, T, D)."""
        b, t = frames.shape[:2]
        x = self.stem(frames.flatten(0, 1))  # (B*T, w, S/2, S/2)
        x = F.max_pool2d(self.conv2(x), 2)  # (B*T, 2w, S/4, S/4)
        x = self.conv4(self.conv3(x))  # (B*T, 4w, S/4, S/4)
        heat = self.top(self.hourglass(x))  # (B*T, 68, S/4, S/4)
        x = self.reduce(heat)  # (B*T, 1, S/8, S/8)
        return self.fc(x.flatten(1)).view(b, t, -1)  # (B, T, D)
