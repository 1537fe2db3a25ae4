"""After the disentanglement stage's adversarial steps: remove the identity subspace from both word encoders.

One fixed-order pass over (up to ``max_clips``) training clips accumulates the pooled word features of both
encoders before removal, each with the clip's identity vectors (the identity encoder's, averaged over its
frames): no speaker label is read. Each encoder's last layer
(:class:`davs.models.identity_nuisance.IdentityNuisance`) then removes the ``rank`` directions those identities
predict best in its own features (:meth:`davs.models.identity_nuisance.IdentityStats.subspace`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch
from torch import nn

from davs.models.identity_nuisance import IdentityStats, remove_along
from davs.tensors import masked_mean, to_images
from davs.training.streams import to_device

log = logging.getLogger(__name__)


@torch.no_grad()
def fit_identity_nuisance(nets: nn.ModuleDict, batches: Iterable[dict], device: torch.device, rank: int,
                          ridge: float, max_clips: int, form: str = "plain", window: int = 0) -> dict[str, float]:
    """Set ``nets["Ev_w"]`` and ``nets["Ea_w"]``'s identity subspace, each its own, removed as ``form`` says
    (``plain``, ``motion`` or ``slow`` over ``window`` frames either side,
    :class:`davs.models.identity_nuisance.IdentityNuisance`); returns the clips used
    and, per encoder, the share of its pooled features' variance the removal takes."""
    stats = {"Ev_w": IdentityStats(), "Ea_w": IdentityStats()}
    modes = {k: nets[k].training for k in (*stats, "Ep")}
    for k in modes:
        nets[k].eval()
    pooled: dict[str, list[torch.Tensor]] = {k: [] for k in stats}
    for b in batches:
        b = to_device(b, device)
        frames, mask = to_images(b["frames"]), b["mask"]
        ids = nets["Ep"].sequence(frames).float().mean(1)  # (B, E): each clip's identity
        for k, x in (("Ev_w", frames), ("Ea_w", b["mfcc"])):
            feats = nets[k].features(x)  # (B, T, D)
            words = masked_mean(feats, mask).float()  # (B, D)
            motion = (feats.float() - words[:, None])[mask.bool()] if form == "motion" else None  # (M, D)
            stats[k].add(words, ids, motion)
            pooled[k].append(words.cpu())
        if stats["Ev_w"].n >= max_clips:
            break
    out = {"identity/fit_clips": float(stats["Ev_w"].n)}
    for k, st in stats.items():
        if form == "motion":
            mean, basis, readout = st.motion_subspace(rank, ridge)
            g = torch.cat(pooled[k]) - mean  # (N, D)
            kept = remove_along(g, basis, readout)  # (N, D)
            removed = 1 - float(kept.pow(2).sum() / g.pow(2).sum().clamp_min(1e-12))
        else:
            mean, basis = st.subspace(rank, ridge)
            readout, g = basis, torch.cat(pooled[k]) - mean  # (N, D)
            removed = float((g @ basis).pow(2).sum() / g.pow(2).sum().clamp_min(1e-12))
        nets[k].nuisance.set(mean.to(device), basis.to(device), (1.0 / max(1.0 - removed, 1e-6)) ** 0.5,
                             readout.to(device), window if form == "slow" else 0)
        out[f"identity/removed_var_{k}"] = removed
    for k, m in modes.items():
        nets[k].train(m)
    log.info("identity subspace (rank %d) fitted on %d clips: %s", rank, stats["Ev_w"].n, out)
    return out
