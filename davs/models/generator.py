"""G, the DAVS generator: identity feature map (+ skips from Ep) and a word feature -> one face frame."""

from __future__ import annotations

import torch
from torch import nn

from davs.models.blocks import ConvBlock, UpBlock


class Generator(nn.Module):
    """The word feature is tiled over Ep's 8x8 map and concatenated; up-blocks decode to the image,
    concatenating Ep's skip maps at matching resolutions (the skip connection of DAVS), the last one
    being the reference image itself. The output is residual: the reference plus a predicted change
    (the last convolution starts at zero), so G starts as the copy-the-reference baseline and spends its
    capacity on what speech changes, the mouth. The word feature also modulates every decoder stage
    (FiLM: a per-channel scale and shift after normalisation), so the normalisation cannot wash out the
    spatially constant word signal."""

    def __init__(self, id_channels: int, skip_channels: list[int], feat_dim: int = 128, gen_width: int = 32) -> None:
        super().__init__()
        g = gen_width
        self.word_proj = nn.Linear(feat_dim, 2 * g)
        self.fuse = nn.Sequential(ConvBlock(id_channels + 2 * g, 4 * g), ConvBlock(4 * g, 4 * g))
        ups, ch = [], 4 * g
        for k, skip in enumerate(reversed(skip_channels)):  # coarse to fine; the last skip is the image
            out = g if k == len(skip_channels) - 1 else 2 * g
            ups.append(nn.ModuleList([UpBlock(ch, out), ConvBlock(out + skip, out)]))
            ch = out
        self.ups = nn.ModuleList(ups)
        self.film = nn.ModuleList([nn.Linear(feat_dim, 2 * c) for c in [4 * g] + [u[1][0].out_channels for u in ups]])
        for f in self.film:  # identity modulation at the start: G begins exactly as the copy baseline
            nn.init.zeros_(f.weight)
            nn.init.zeros_(f.bias)
        self.to_rgb = nn.Conv2d(ch, 3, 3, 1, 1)
        nn.init.zeros_(self.to_rgb.weight)
        nn.init.zeros_(self.to_rgb.bias)

    def _film(self, k: int, x: torch.Tensor, word: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.film[k](word)[:, :, None, None].chunk(2, 1)  # (N, C, 1, 1) each
        return x * (1 + gamma) + beta

    def forward(self, fmap: torch.Tensor, skips: list[torch.Tensor], word: torch.Tensor) -> torch.Tensor:
        """fmap (N, C, 8, 8), skips finest first (skips[0] = the reference image), word (N, D)
        -> image (N, 3, H, W) in [-1, 1]."""
        w = self.word_proj(word)[:, :, None, None].expand(-1, -1, *fmap.shape[2:])  # (N, 2g, 8, 8)
        x = self._film(0, self.fuse(torch.cat([fmap, w], 1)), word)  # (N, 4g, 8, 8)
        for k, ((up, conv), skip) in enumerate(zip(self.ups, reversed(skips))):
            x = self._film(k + 1, conv(torch.cat([up(x), skip], 1)), word)  # (N, 2g or g, 2s, 2s)
        return (skips[0] + self.to_rgb(x)).clamp(-1, 1)  # (N, 3, H, W): reference + predicted change
