"""The contrastive loss DAVS puts on paired audio / video word embeddings (Hadsell et al., 2006)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def contrastive_loss(video: torch.Tensor, audio: torch.Tensor, labels: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Pull paired (video_i, audio_i) together; push mismatched pairs at least ``margin`` apart.

    video, audio: (B, D) embeddings (L2-normalised here). Negatives pair video_i with audio_{i+k} for
    every shift k whose word differs, so the loss cannot be won by collapsing the embedding.
    """
    v = F.normalize(video.float(), dim=-1)
    a = F.normalize(audio.float(), dim=-1)
    pos = (v - a).pow(2).sum(-1)  # (B,) squared distances of the true pairs
    b = v.shape[0]
    if b < 2:
        return pos.mean()
    d = torch.cdist(v, a)  # (B, B) distances of every video to every audio
    neg_mask = labels[:, None] != labels[None, :]
    neg = F.relu(margin - d).pow(2)
    neg_term = (neg * neg_mask).sum() / neg_mask.sum().clamp_min(1)
    return pos.mean() + neg_term
