"""Non-saturating GAN losses (logits in, BCE out)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gan_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, soft: float = 0.0) -> torch.Tensor:
    """The discriminator's BCE, real = 1, fake = 0. ``soft > 0``: the official DAVS's soft labels, real
    1 - u and fake u with u ~ U(0, soft) drawn per call (the official ``GANLoss(softlabel=True)`` draws it
    once and caches the label tensor while the batch shape holds: a quirk not kept)."""
    u = float(torch.rand(()) * soft) if soft > 0 else 0.0
    real = F.binary_cross_entropy_with_logits(real_logits.float(), torch.full_like(real_logits.float(), 1.0 - u))
    fake = F.binary_cross_entropy_with_logits(fake_logits.float(), torch.full_like(fake_logits.float(), u))
    return 0.5 * (real + fake)


def gan_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(fake_logits.float(), torch.ones_like(fake_logits.float()))
