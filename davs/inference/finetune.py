"""Test-time fine-tuning of Ep and G on the reference face, as the official DAVS does before it animates a
photo (``Test_Gen_Models/Test_Audio_Model.py: test_train``).

The official code takes 5 Adam steps (lr 2e-4, betas (0.9, 0.999)) on the L1 between the reference image
and G's output for it (its identity, the first frame's word feature), with the mouth region weighted 0.001
so the generator adapts to the unseen face everywhere but the mouth, where the words decide. Two places
where we had to choose:

* The official ``set_test_input`` builds a new Adam optimiser for every step, so each step is a first Adam
  step (about ``lr`` along the sign of the gradient). Here one optimiser runs all the steps; its first
  steps are of the same size (Adam's bias correction), later ones follow the gradient's history.
* The official mask is hard-coded in pixels of the 256x256 crop (rows 170-234, columns 64-192). Here it is
  the model's relative mouth box, at any image size.

The networks are changed in place; :func:`snapshot` and :func:`restore` bring the trained weights back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from davs.models.generator import generate_frames
from davs.tensors import Box, box_slices

OFFICIAL_STEPS = 5
OFFICIAL_LR = 2e-4
OFFICIAL_MOUTH_WEIGHT = 1e-3


def snapshot(*nets: nn.Module) -> list[dict[str, torch.Tensor]]:
    """Copies of the networks' weights, for :func:`restore`."""
    return [{k: v.detach().clone() for k, v in n.state_dict().items()} for n in nets]


def restore(nets: tuple[nn.Module, ...] | list[nn.Module], saved: list[dict[str, torch.Tensor]]) -> None:
    for n, sd in zip(nets, saved, strict=True):
        n.load_state_dict(sd)


def loss_weights(size: int, box: Box, mouth_weight: float, device: torch.device) -> torch.Tensor:
    """(1, 1, size, size): 1 everywhere, ``mouth_weight`` inside the relative mouth box."""
    w = torch.ones(1, 1, size, size, device=device)
    rows, cols = box_slices(size, size, box)
    w[..., rows, cols] = mouth_weight
    return w


def finetune(ep: nn.Module, g: nn.Module, ref: torch.Tensor, word: torch.Tensor, box: Box,
             steps: int = OFFICIAL_STEPS, lr: float = OFFICIAL_LR,
             mouth_weight: float = OFFICIAL_MOUTH_WEIGHT) -> list[float]:
    """Adapt Ep and G (in place) to reconstruct the reference faces ``ref`` (B, 3, H, W) in [-1, 1] from their
    own identity and the word features ``word`` (B, D), the mouth box weighted ``mouth_weight``.
    Returns the loss before each step."""
    if steps < 0:
        raise ValueError(f"fine-tune steps must be >= 0 (got {steps})")
    if steps == 0:
        return []
    params = [p for n in (ep, g) for p in n.parameters()]
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999))
    weights = loss_weights(ref.shape[-1], box, mouth_weight, ref.device)  # (1, 1, H, W)
    ref, word = ref.detach(), word.detach()
    losses = []
    with torch.enable_grad():
        for _ in range(steps):
            out = generate_frames(ep, g, ref, word[:, None])[:, 0]  # (B, 1, D) -> (B, 3, H, W)
            loss = F.l1_loss(out * weights, ref * weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    for p in params:
        p.grad = None
    return losses
