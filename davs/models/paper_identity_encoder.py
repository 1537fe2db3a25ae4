"""Ep of the official DAVS (Zhou et al., AAAI 2019; ``network/IdentityEncoder.py`` of the official code):
max-feature-map conv blocks (each the element-wise max of two conv + BatchNorm branches, as in LightCNN)
with max-pooling between stages. Besides the pooled identity vector it exposes four maps, at 1/4, 1/8,
1/16 and 1/32 of the face (64, 32, 16 and 8 on a 256 face): the paper's Cw_p reads the 1/4 map of a run
of frames, and its generator takes one skip, the 1/8 map.

Widths scale with ``width`` (the official network is ``width=32``: 32, 64, 160, 320 channels, then
``feat_dim`` = 256). The vector is the plain average of the last map (no projection), so ``feat_dim`` is
also that map's channel count. The official dropout layer is defined but never applied; it is left out.
"""

from __future__ import annotations

import torch
from torch import nn

from davs.models.identity_encoder import IdentityFeatures


class MaxFeatureBlock(nn.Module):
    """max(conv_a(x) -> BN, conv_b(x) -> BN): the official ``BasicBlock`` (no ReLU: the max is the nonlinearity)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2), nn.BatchNorm2d(out_ch))
        self.b = nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.maximum(self.a(x), self.b(x))


def _stage(chans: list[int], in_ch: int, kernel: int = 3) -> nn.Sequential:
    blocks = []
    for c in chans:
        blocks.append(MaxFeatureBlock(in_ch, c, kernel))
        in_ch = c
    return nn.Sequential(*blocks)


class PaperIdentityEncoder(nn.Module):
    """7x7 stride-2 stem, then four max-pooled stages of 4, 6, 4 and 2 blocks (the last with 5x5 kernels)."""

    def __init__(self, image_size: int = 256, width: int = 32, feat_dim: int = 256) -> None:
        super().__init__()
        if image_size % 32:
            raise ValueError(f"the paper's Ep halves the face five times: image_size {image_size} is not a multiple of 32")
        w = width
        self.stem = MaxFeatureBlock(3, w, kernel=7, stride=2)
        self.pool = nn.MaxPool2d(2, 2)
        self.stage1 = _stage([w, w, 2 * w, 2 * w], w)  # 1/4 of the face
        self.stage2 = _stage([3 * w, 3 * w, 4 * w, 4 * w, 5 * w, 5 * w], 2 * w)  # 1/8
        self.stage3 = _stage([10 * w] * 4, 5 * w)  # 1/16
        self.stage4 = _stage([feat_dim] * 2, 10 * w, kernel=5)  # 1/32
        self.out_channels = feat_dim
        self.fmap_size = image_size // 32
        self.map_channels = [2 * w, 5 * w, 10 * w]  # the skip maps, finest first
        self.map_sizes = [image_size // 4, image_size // 8, image_size // 16]

    def forward(self, images: torch.Tensor) -> IdentityFeatures:
        """images (N, 3, H, W) in [-1, 1] -> vector (N, feat_dim), fmap (N, feat_dim, H/32, W/32) and
        skips [(N, 2w, H/4, W/4), (N, 5w, H/8, W/8), (N, 10w, H/16, W/16)]."""
        net1 = self.stage1(self.pool(self.stem(images)))  # (N, 2w, H/4, W/4)
        net2 = self.stage2(self.pool(net1))  # (N, 5w, H/8, W/8)
        net3 = self.stage3(self.pool(net2))  # (N, 10w, H/16, W/16)
        net4 = self.stage4(self.pool(net3))  # (N, feat_dim, H/32, W/32)
        return IdentityFeatures(net4.mean(dim=(2, 3)), net4, [net1, net2, net3])

    def sequence(self, frames: torch.Tensor) -> torch.Tensor:
        """Identity vectors of every frame: (B, T, 3, H, W) -> (B, T, D)."""
        b, t = frames.shape[:2]
        return self(frames.flatten(0, 1)).vector.view(b, t, -1)  # (B, T, D)

    def dis_input(self, frames: torch.Tensor) -> torch.Tensor:
        """What the paper's Cw_p reads: the 1/4 maps of every frame, (B, T, 3, H, W) -> (B, T, 2w, H/4, W/4)."""
        b, t = frames.shape[:2]
        net1 = self.stage1(self.pool(self.stem(frames.flatten(0, 1))))  # (B*T, 2w, H/4, W/4)
        return net1.view(b, t, *net1.shape[1:])
