"""The label-free speaker adversary as the encoders' training steps use it: a FIFO memory of clips' pooled word
features and identity vectors, the closed-form ridge probe fitted on it, and the losses that push its
prediction on this step's clips to the mean identity (:mod:`davs.losses.ridge_adversary`)."""

from __future__ import annotations

from collections import deque

import torch
from torch import nn

from davs.losses.ridge_adversary import fit_ridge_probe, pseudo_speakers, ridge_leakage_loss
from davs.models import DAVSConfig
from davs.tensors import masked_mean, to_images


class ClipIdAdversary:
    """One ridge probe per modality, refitted every step on the last ``memory`` steps' clips.

    ``clusters > 0`` regresses k-means pseudo-speakers of the identity vectors (one-hot) instead of the vectors.
    The memory is plain lists of tensors (``state``/``load``), so it travels in a task's checkpoint.
    """

    def __init__(self, memory: int, ridge: float, clusters: int) -> None:
        self.memory: deque[dict[str, torch.Tensor]] = deque(maxlen=max(1, memory))
        self.ridge, self.clusters = ridge, clusters

    def losses(self, ids: torch.Tensor, pooled: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """ids (B, E) the clips' identity vectors, pooled {modality: (B, D)} their word features (with
        gradients) -> ``loss/clip_id_from_<modality>_word`` and the probe's own-fit ``acc/..._r2``."""
        self.memory.appendleft({"id": ids.detach().float(), **{k: x.detach().float() for k, x in pooled.items()}})
        target = torch.cat([e["id"] for e in self.memory])  # (N, E), newest step first
        if self.clusters > 0:
            target = pseudo_speakers(target, self.clusters)  # (N, clusters)
        out = {}
        for k, x in pooled.items():
            probe = fit_ridge_probe(torch.cat([e[k] for e in self.memory]), target, self.ridge)
            out[f"loss/clip_id_from_{k}_word"] = ridge_leakage_loss(x, probe)
            out[f"acc/clip_id_from_{k}_word_r2"] = probe.r2
        return out

    def state(self) -> list[dict[str, torch.Tensor]]:
        return list(self.memory)

    def load(self, state: list[dict[str, torch.Tensor]]) -> None:
        self.memory = deque(state, maxlen=self.memory.maxlen)


def clip_id_losses(adversary: ClipIdAdversary, ep: nn.Module, lrw: dict, v: torch.Tensor, a: torch.Tensor,
                   id_seq: torch.Tensor, cfg: DAVSConfig) -> dict[str, torch.Tensor]:
    """``adversary``'s losses on a batch: each clip's identity is the mean of its frames' identity vectors
    (ours: ``id_seq`` (B, T, E), what Cw_p reads; the paper variant's Cw_p reads maps, so Ep's vectors are
    computed here), its word features ``v``, ``a`` (B, T, D) pooled over the word's frames."""
    ids = id_seq if cfg.variant != "paper" else ep.sequence(to_images(lrw["frames"]))
    pooled = {"video": masked_mean(v, lrw["mask"]), "audio": masked_mean(a, lrw["mask"])}  # (B, D) each
    return adversary.losses(ids.detach().float().mean(1), pooled)  # ids: (B, E)
