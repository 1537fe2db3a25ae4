"""The temporal discriminator of DAVS: real vs generated over stacked consecutive frames,
optionally conditioned on the audio word features of the same window, with a second head on the mouth."""

from __future__ import annotations

import math

import torch
from torch import nn


class TemporalDiscriminator(nn.Module):
    """Two heads over one convolutional body of the stacked window (B, W*3, H, W):

    * the whole-window head: real vs generated, conditioned on the window's mean audio feature;
    * the mouth head (the official DAVS discriminator's second output): the body's cells over the mouth box,
      pooled, against the window's per-frame audio features in order. Trained with mismatched audio as a
      further negative, it judges whether the mouth moves with this audio, which the mean-conditioned head
      cannot tell. Used only when the task asks for it (``with_mouth``).
    """

    def __init__(self, window: int = 5, disc_width: int = 32, image_size: int = 64, feat_dim: int = 128,
                 mouth_box: tuple[float, float, float, float] = (0.62, 0.25, 0.95, 0.75)) -> None:
        super().__init__()
        d = disc_width
        layers, ch, s, i = [], 3 * window, image_size, 0
        while s > 8:
            out = d * min(2**i, 8)
            layers += [nn.Conv2d(ch, out, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            ch, s, i = out, s // 2, i + 1
        self.body = nn.Sequential(*layers)
        self.cond = nn.Linear(feat_dim, d)
        self.head = nn.Sequential(nn.Conv2d(ch + d, ch, 3, 1, 1),
                                  nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(ch, 1, 3, 1, 1))
        y0, x0, y1, x1 = mouth_box
        self.mouth_rows = (math.floor(y0 * s), max(math.floor(y0 * s) + 1, math.ceil(y1 * s)))  # cells of the s x s grid
        self.mouth_cols = (math.floor(x0 * s), max(math.floor(x0 * s) + 1, math.ceil(x1 * s)))
        self.mouth_conv = nn.Sequential(nn.Conv2d(ch, ch, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True))
        self.mouth_audio = nn.Linear(window * feat_dim, ch)
        self.mouth_out = nn.Sequential(nn.Linear(2 * ch, ch), nn.LeakyReLU(0.2, inplace=True), nn.Linear(ch, 1))

    def forward(self, clip: torch.Tensor, audio: torch.Tensor,
                with_mouth: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """clip (B, W, 3, H, W), audio (B, W, D) word features -> (B,) realness logits (and, with
        ``with_mouth``, the mouth head's (B,) audio-matched-mouth logits)."""
        x = self.body(clip.flatten(1, 2))  # (B, W*3, H, W) -> (B, C, 8, 8)
        c = self.cond(audio.mean(1))[:, :, None, None].expand(-1, -1, *x.shape[2:])  # (B, d, 8, 8)
        logits = self.head(torch.cat([x, c], 1)).mean(dim=(1, 2, 3))  # (B,)
        if not with_mouth:
            return logits
        cells = x[:, :, slice(*self.mouth_rows), slice(*self.mouth_cols)]  # (B, C, r, c): the mouth box
        m = self.mouth_conv(cells).mean(dim=(2, 3))  # (B, C)
        a = self.mouth_audio(audio.flatten(1))  # (B, W*D) -> (B, C)
        return logits, self.mouth_out(torch.cat([m, a], 1)).squeeze(1)  # (B,)
