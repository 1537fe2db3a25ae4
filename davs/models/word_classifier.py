"""Cw, the word classifier DAVS shares between the audio and the video word features."""

from __future__ import annotations

import torch
from torch import nn


class TemporalClassifier(nn.Module):
    """Two temporal convolutions, a masked mean over time, a linear layer: (B, T, D) -> (B, classes)."""

    def __init__(self, feat_dim: int = 128, num_classes: int = 500, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(feat_dim, hidden, 3, padding=1), nn.GroupNorm(8, hidden), nn.ReLU(inplace=True),
            nn.Conv1d(hidden, hidden, 3, padding=1), nn.ReLU(inplace=True),
        )
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, feats: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.net(feats.transpose(1, 2))  # (B, H, T)
        if mask is None:
            pooled = h.mean(-1)
        else:
            m = mask.to(h.dtype).unsqueeze(1)  # (B, 1, T)
            pooled = (h * m).sum(-1) / m.sum(-1).clamp_min(1)
        return self.fc(pooled)  # (B, classes)


class WordClassifier(TemporalClassifier):
    """Cw: word logits from a sequence of word features, audio or video alike."""
