"""The temporal discriminator of DAVS: real vs generated over stacked consecutive frames,
optionally conditioned on the audio word features of the same window."""

from __future__ import annotations

import torch
from torch import nn


class TemporalDiscriminator(nn.Module):
    def __init__(self, window: int = 5, disc_width: int = 32, image_size: int = 64, feat_dim: int = 128,
                 audio_conditioned: bool = True) -> None:
        super().__init__()
        d = disc_width
        layers, ch, s, i = [], 3 * window, image_size, 0
        while s > 8:
            out = d * min(2**i, 8)
            layers += [nn.Conv2d(ch, out, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            ch, s, i = out, s // 2, i + 1
        self.body = nn.Sequential(*layers)
        self.cond = nn.Linear(feat_dim, d) if audio_conditioned else None
        self.head = nn.Sequential(nn.Conv2d(ch + (d if audio_conditioned else 0), ch, 3, 1, 1),
                                  nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(ch, 1, 3, 1, 1))

    def forward(self, clip: torch.Tensor, audio: torch.Tensor | None = None) -> torch.Tensor:
        """clip (B, W, 3, H, W), audio (B, W, D) word features -> (B,) realness logits."""
        x = self.body(clip.flatten(1, 2))  # (B, W*3, H, W) -> (B, C, 8, 8)
        if self.cond is not None:
            if audio is None:
                raise ValueError("this discriminator is audio-conditioned: pass the window's audio features")
            c = self.cond(audio.mean(1))[:, :, None, None].expand(-1, -1, *x.shape[2:])  # (B, d, 8, 8)
            x = torch.cat([x, c], 1)
        return self.head(x).mean(dim=(1, 2, 3))  # (B,)
