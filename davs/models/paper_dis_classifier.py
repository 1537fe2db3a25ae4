"""Cw_p of the official DAVS (``ID_dis32`` in ``network/Discriminator_networks.py``): the word read from
Ep's *early* maps (1/4 of the face: 64x64 on a 256 face) over a run of consecutive frames, so the
disentanglement removes word information from the maps the generator receives, not only from the pooled
identity vector. Per frame a stride-2 convolution to one channel and a linear layer to 128; the frames'
features are concatenated, dropped out and classified.
"""

from __future__ import annotations

import torch
from torch import nn


class WordFromIdentityMaps(nn.Module):
    """(B, T, C, h, w) Ep maps of ``frames`` consecutive frames -> (B, num_words) logits."""

    def __init__(self, in_channels: int = 64, map_size: int = 64, num_words: int = 500, frames: int = 20,
                 hidden: int = 128) -> None:
        super().__init__()
        self.frames = frames
        self.conv = nn.Sequential(nn.Conv2d(in_channels, 1, 3, 2, 1), nn.ReLU(inplace=True))
        side = (map_size + 1) // 2
        self.fc = nn.Linear(side * side, hidden)
        self.dropout = nn.Dropout(0.5)
        self.out = nn.Linear(frames * hidden, num_words)
        nn.init.normal_(self.out.weight, std=1e-4)  # as the official code: start near the uniform softmax
        nn.init.zeros_(self.out.bias)

    def forward(self, maps: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """maps (B, T, C, h, w) with T = ``frames`` (``mask`` is accepted for the interface and unused: the
        official classifier reads every frame of its run)."""
        b, t = maps.shape[:2]
        if t != self.frames:
            raise ValueError(f"the paper's Cw_p reads runs of {self.frames} frames (got {t})")
        x = self.conv(maps.flatten(0, 1))  # (B*T, 1, h/2, w/2)
        x = self.fc(x.flatten(1)).view(b, t * self.fc.out_features)  # (B, T*hidden)
        return self.out(self.dropout(x))
