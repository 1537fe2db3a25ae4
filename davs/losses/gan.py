"""Non-saturating GAN losses (logits in, BCE out)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gan_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    real = F.binary_cross_entropy_with_logits(real_logits.float(), torch.ones_like(real_logits.float()))
    fake = F.binary_cross_entropy_with_logits(fake_logits.float(), torch.zeros_like(fake_logits.float()))
    return 0.5 * (real + fake)


def gan_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(fake_logits.float(), torch.ones_like(fake_logits.float()))
