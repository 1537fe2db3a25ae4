"""Adversarial terms of DAVS.

Disentanglement uses the *uniform* target: the encoder is trained so that the dis-classifier's softmax
equals 1/N on every class (MSE to the uniform distribution), not a gradient-reversed cross-entropy.
The joint embedding's domain adversary uses the binary analogue (the discriminator's probability
pushed to 1/2); the discriminator itself trains with :func:`davs.losses.gan.gan_d_loss` (audio as "real").
The official DAVS trains its encoders against the domain discriminator with flipped labels instead
(:func:`domain_flip_loss`, ``joint.domain_loss: flip``).
"""

from __future__ import annotations

import torch

from davs.losses.gan import gan_d_loss

DOMAIN_LOSSES = ("confusion", "flip")


def uniform_mse_loss(logits: torch.Tensor, form: str = "davs") -> torch.Tensor:
    """MSE between softmax(logits) (N, C) and the uniform 1/C. ``"davs"``: summed over classes, averaged over
    N, times C (a scale that does not shrink with the class count); ``"paper"``: the official
    ``L2SoftmaxLoss``, the mean over every element (the official code weights it by 1e6)."""
    p = logits.float().softmax(-1)
    if form == "paper":
        return (p - 1.0 / p.shape[-1]).pow(2).mean()
    if form != "davs":
        raise ValueError(f"uniform form must be 'davs' or 'paper' (got {form!r})")
    return (p - 1.0 / p.shape[-1]).pow(2).sum(-1).mean() * p.shape[-1]


def domain_confusion_loss(audio_logits: torch.Tensor, video_logits: torch.Tensor) -> torch.Tensor:
    """For the encoders: both modalities should look 50/50 to the discriminator (MSE of sigmoid to 1/2)."""
    p = torch.sigmoid(torch.cat([audio_logits.flatten(), video_logits.flatten()]).float())
    return (p - 0.5).pow(2).mean() * 4


def domain_flip_loss(audio_logits: torch.Tensor, video_logits: torch.Tensor) -> torch.Tensor:
    """For the encoders, as the official DAVS: the discriminator's BCE with the labels swapped (audio called
    video, video called audio), so the encoders move each modality towards the other's side."""
    return gan_d_loss(video_logits, audio_logits)


def domain_loss(form: str, audio_logits: torch.Tensor, video_logits: torch.Tensor) -> torch.Tensor:
    """The encoders' domain-adversarial term: ``"confusion"`` (ours) or ``"flip"`` (the official DAVS)."""
    if form == "confusion":
        return domain_confusion_loss(audio_logits, video_logits)
    if form == "flip":
        return domain_flip_loss(audio_logits, video_logits)
    raise ValueError(f"domain loss must be one of {DOMAIN_LOSSES} (got {form!r})")
