"""Cp, the identity classifier on Ep's identity vector (trained on MS-Celeb identities)."""

from __future__ import annotations

import torch
from torch import nn


class IdentityClassifier(nn.Module):
    def __init__(self, feat_dim: int = 128, num_ids: int = 1000) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Dropout(0.1), nn.Linear(feat_dim, num_ids))

    def forward(self, vector: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N, num_ids) logits."""
        return self.fc(vector)
