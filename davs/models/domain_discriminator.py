"""The audio-vs-video domain discriminator of DAVS' joint embedding: per-frame word feature -> logit.

It is trained to tell the modality apart; the word encoders are trained to make it fail, so the
shared word space does not encode which modality a feature came from.
"""

from __future__ import annotations

import torch
from torch import nn


class DomainDiscriminator(nn.Module):
    def __init__(self, feat_dim: int = 128, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(feat_dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden),
                                 nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (...) logits, positive = audio."""
        return self.net(feats).squeeze(-1)
