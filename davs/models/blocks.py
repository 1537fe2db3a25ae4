"""Building blocks shared by the DAVS networks.

Normalisation is GroupNorm, not BatchNorm: the encoders change fast under adversarial training and see
batches of very different make-up (shuffled training clips, word-sorted evaluation shards, single
still faces), and BatchNorm's running statistics then disagree with the batch statistics it trained
with. GroupNorm behaves the same in training and evaluation.
"""

from __future__ import annotations

import torch
from torch import nn


def norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, ch), ch)


class ConvBlock(nn.Sequential):
    """3x3 conv -> GroupNorm -> ReLU (stride 1 or 2)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int | tuple[int, int] = 1) -> None:
        super().__init__(nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False), norm(out_ch), nn.ReLU(inplace=True))


class UpBlock(nn.Sequential):
    """x2 nearest upsampling -> 3x3 conv -> GroupNorm -> ReLU."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False),
                         norm(out_ch), nn.ReLU(inplace=True))


class TemporalMix(nn.Module):
    """Residual 1-D convolution over time on per-frame features: (B, T, D) -> (B, T, D)."""

    def __init__(self, dim: int, kernel: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)  # (B, D, T) inside


def channels(width: int, i: int, cap: int = 8) -> int:
    """Channel count at down-sampling stage ``i``: width, 2w, 4w, ... capped at cap * width."""
    return width * min(2**i, cap)
