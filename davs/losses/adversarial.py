"""Adversarial terms of DAVS.

Disentanglement uses the *uniform* target: the encoder is trained so that the dis-classifier's softmax
equals 1/N on every class (MSE to the uniform distribution), not a gradient-reversed cross-entropy.
The joint embedding's domain adversary uses the binary analogue (the discriminator's probability
pushed to 1/2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def uniform_mse_loss(logits: torch.Tensor) -> torch.Tensor:
    """MSE between softmax(logits) (N, C) and the uniform 1/C, summed over classes, averaged over N."""
    p = logits.float().softmax(-1)
    return (p - 1.0 / p.shape[-1]).pow(2).sum(-1).mean() * p.shape[-1]


def domain_discriminator_loss(audio_logits: torch.Tensor, video_logits: torch.Tensor) -> torch.Tensor:
    """BCE for the domain discriminator: audio = 1, video = 0."""
    a = F.binary_cross_entropy_with_logits(audio_logits.float(), torch.ones_like(audio_logits.float()))
    v = F.binary_cross_entropy_with_logits(video_logits.float(), torch.zeros_like(video_logits.float()))
    return 0.5 * (a + v)


def domain_confusion_loss(audio_logits: torch.Tensor, video_logits: torch.Tensor) -> torch.Tensor:
    """For the encoders: both modalities should look 50/50 to the discriminator (MSE of sigmoid to 1/2)."""
    p = torch.sigmoid(torch.cat([audio_logits.flatten(), video_logits.flatten()]).float())
    return (p - 0.5).pow(2).mean() * 4
