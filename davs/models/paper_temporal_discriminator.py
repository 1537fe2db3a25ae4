"""The temporal discriminator of the official DAVS (``Discriminator`` in ``network/Discriminator_networks.py``,
used as ``netD_mul`` on a stack of frames): a PatchGAN (3 stride-2 layers, BatchNorm) whose patch map says
real or generated, and a second head that cuts the PatchGAN's cells over the mouth, encodes them and
concatenates a small CNN's encoding of the *raw MFCC* windows of the same frames: is this mouth real and
does it go with this audio.

Choices where the official code is fixed to 256 faces: the mouth cells are the ``mouth_box`` on the patch
grid (the official rows 19:28, columns 11:20 of a 31x31 grid are that box on a 256 face), and the official
7x7 convolution over them is an average pool to 3x3 and a linear layer; the official MFCC branch has no
nonlinearity between its convolutions (BatchNorm only) -- here each is followed by a LeakyReLU.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class PaperTemporalDiscriminator(nn.Module):
    def __init__(self, window: int = 6, disc_width: int = 64, image_size: int = 256, mfcc_frames: int = 20,
                 mfcc_coeffs: int = 12, mouth_box: tuple[float, float, float, float] = (0.62, 0.25, 0.95, 0.75)) -> None:
        super().__init__()
        d = disc_width
        lrelu = lambda: nn.LeakyReLU(0.2, inplace=True)  # noqa: E731
        self.body = nn.Sequential(
            nn.Conv2d(3 * window, d, 4, 2, 1), lrelu(),
            nn.Conv2d(d, 2 * d, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * d), lrelu(),
            nn.Conv2d(2 * d, 4 * d, 4, 2, 1, bias=False), nn.BatchNorm2d(4 * d), lrelu(),
            nn.Conv2d(4 * d, 8 * d, 4, 1, 1, bias=False), nn.BatchNorm2d(8 * d), lrelu(),
        )
        self.patch = nn.Conv2d(8 * d, 1, 4, 1, 1)
        s = image_size // 8 - 1  # the body's grid (31 on a 256 face)
        y0, x0, y1, x1 = mouth_box
        self.mouth_rows = (math.floor(y0 * s), max(math.floor(y0 * s) + 1, math.ceil(y1 * s)))
        self.mouth_cols = (math.floor(x0 * s), max(math.floor(x0 * s) + 1, math.ceil(x1 * s)))
        self.mouth = nn.Sequential(nn.Conv2d(8 * d, 8 * d, 3, 1, 1, bias=False), nn.BatchNorm2d(8 * d), lrelu(),
                                   nn.AdaptiveAvgPool2d(3), nn.Flatten(), nn.Linear(8 * d * 9, 8 * d), nn.ReLU(inplace=True))
        self.mfcc = nn.Sequential(
            nn.Conv2d(window, d, 3, (3, 2), (1, 2), bias=False), nn.BatchNorm2d(d), lrelu(),
            nn.Conv2d(d, 2 * d, 3, 2, 1, bias=False), nn.BatchNorm2d(2 * d), lrelu(),
            nn.Conv2d(2 * d, 4 * d, 3, 1, 1, bias=False), nn.BatchNorm2d(4 * d), lrelu(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.out = nn.Sequential(nn.Linear(4 * d + 8 * d, 8 * d), nn.Linear(8 * d, 1))  # official fc, fc2 (no activation)

    def forward(self, clip: torch.Tensor, mfcc: torch.Tensor | None = None,
                with_mouth: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """clip (B, W, 3, S, S), mfcc (B, W, F, C) the frames' raw MFCC windows -> (B, 1, s-1, s-1) patch
        logits (and, with ``with_mouth``, the mouth head's (B,) logits)."""
        x = self.body(clip.flatten(1, 2))  # (B, W*3, S, S) -> (B, 8d, s, s)
        patches = self.patch(x)  # (B, 1, s-1, s-1)
        if not with_mouth:
            return patches
        if mfcc is None:
            raise ValueError("the mouth head needs the window's raw MFCC")
        cells = x[:, :, slice(*self.mouth_rows), slice(*self.mouth_cols)]  # (B, 8d, r, c): the mouth
        m = self.mouth(cells)  # (B, 8d)
        a = self.mfcc(mfcc.float())  # (B, W, F, C): the frames as channels -> (B, 4d)
        return patches, self.out(torch.cat([m, a], 1)).squeeze(1)  # (B,)
