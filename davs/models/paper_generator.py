"""G of the official DAVS (``network/Decoder_networks.py``): the identity vector and a word feature,
concatenated, go through a 4x4 transposed convolution, then conv blocks each followed by bilinear x2
upsampling up to the face; one skip, Ep's 1/8 map, is concatenated where the decoder reaches that
resolution; a tanh gives the image. No attention mask: G redraws the whole face.

The official decoder is written for 256 faces (six blocks: 512x2, 512x3, 256x4, [+skip] 256x4, 128x3, 64x2
channels x convs); a smaller face keeps the last log2(size/4) blocks, so the skip block is always the third
from last. Channels scale with ``gen_width`` (official: 64).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class ConvStack(nn.Sequential):
    """``nums`` x (3x3 conv -> BatchNorm -> ReLU): the official decoder's ``ConvBlock``."""

    def __init__(self, in_ch: int, out_ch: int, nums: int) -> None:
        layers: list[nn.Module] = []
        for _ in range(nums):
            layers += [nn.Conv2d(in_ch, out_ch, 3, 1, 1), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]
            in_ch = out_ch
        super().__init__(*layers)


class PaperGenerator(nn.Module):
    """[identity, word] (N, 2D) -> 4x4 deconv -> conv blocks with x2 bilinear upsampling -> (N, 3, S, S)."""

    # (output channels in units of gen_width, convs) of the official six blocks, coarse to fine
    BLOCKS = ((8, 2), (8, 3), (4, 4), (4, 4), (2, 3), (1, 2))
    SKIP_BLOCK = 3  # the official decoder concatenates the skip before its fourth block (1/8 of the face)
    context = 0  # each frame's word read alone (the official G; gen_context is refused for it)

    def __init__(self, image_size: int = 256, feat_dim: int = 256, gen_width: int = 64, skip_channels: int = 160) -> None:
        super().__init__()
        n = round(math.log2(image_size / 4))
        if 4 * 2**n != image_size or not 3 <= n <= len(self.BLOCKS):
            raise ValueError(f"the paper's G decodes 4x4 to 32..256 in doublings: image_size {image_size} is not one")
        g = gen_width
        self.skip_size = image_size // 8
        self.deconv = nn.Sequential(nn.ConvTranspose2d(2 * feat_dim, 8 * g, 4, 1, 0), nn.BatchNorm2d(8 * g),
                                    nn.ReLU(inplace=True))
        blocks, ch = [], 8 * g
        first = len(self.BLOCKS) - n
        for k in range(first, len(self.BLOCKS)):
            out, nums = self.BLOCKS[k]
            blocks.append(ConvStack(ch + (skip_channels if k == self.SKIP_BLOCK else 0), out * g, nums))
            ch = out * g
        self.blocks = nn.ModuleList(blocks)
        self.skip_index = self.SKIP_BLOCK - first  # which of our blocks takes the skip
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.to_rgb = nn.Sequential(nn.Conv2d(g, max(1, g // 2), 3, 1, 1), nn.BatchNorm2d(max(1, g // 2)),
                                    nn.ReLU(inplace=True), nn.Conv2d(max(1, g // 2), 3, 3, 1, 1), nn.Tanh())

    def contextualise(self, words: torch.Tensor) -> torch.Tensor:
        """words (B, T, D) -> the same: the official G reads each frame's word alone."""
        return words

    def forward(self, fmap: torch.Tensor, skips: list[torch.Tensor], word: torch.Tensor,
                return_mask: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """fmap (N, D, s, s) Ep's last map (its mean is the identity vector), skips Ep's finer maps (the one at
        1/8 of the face is used), word (N, D) -> image (N, 3, S, S) in [-1, 1] (and an all-zero mask: nothing
        is copied from the reference)."""
        skip = next((s for s in skips if s.shape[-1] == self.skip_size), None)
        if skip is None:
            raise ValueError(f"the paper's G needs Ep's {self.skip_size}x{self.skip_size} map among the skips")
        z = torch.cat([fmap.mean(dim=(2, 3)), word], 1)[:, :, None, None]  # (N, 2D, 1, 1)
        x = self.deconv(z)  # (N, 8g, 4, 4)
        for k, block in enumerate(self.blocks):
            if k == self.skip_index:
                x = torch.cat([skip, x], 1)  # (N, skip + C, S/8, S/8)
            x = self.up(block(x))  # (N, C', 2s, 2s)
        image = self.to_rgb(x)  # (N, 3, S, S)
        return (image, torch.zeros_like(image[:, :1])) if return_mask else image
