"""The disentanglement stage's last part: the word classifier Cw refitted on word features whose identity
subspace has been removed (:mod:`davs.models.identity_nuisance`), the encoders frozen but for the linear map
(``nuisance.mix``) after the removal.

Removing directions moves every frame's feature along them to their mean, and Cw, trained on the features
before, reads those directions; the word itself is still there (a linear probe reads it). What is left of audio
and video words is no longer aligned where the removed directions aligned them, so the linear maps are trained
too, on the embedding stages' losses (word cross-entropies, the contrastive loss, frame sync): being linear,
they cannot bring a speaker back for a linear probe (equal speaker means stay equal).
"""

from __future__ import annotations

import torch
from torch import nn

from davs.config.training import WordHeadHParams
from davs.models import DAVSConfig
from davs.tensors import to_images
from davs.training.tasks.base import DAVSTask


class WordHeadTask(DAVSTask):
    phases = ("cw",)
    streams = ("lrw",)
    FROZEN = ("Ev_w", "Ea_w")
    PARTS = (*FROZEN, "Cw")

    def __init__(self, cfg: DAVSConfig, w: WordHeadHParams) -> None:
        super().__init__(cfg, self.PARTS)
        self.w = w
        self.frozen = self.FROZEN
        for k in self.frozen:
            self.nets[k].requires_grad_(False)
            self.nets[k].nuisance.requires_grad_(True)

    def phase_params(self, phase: str) -> list[nn.Parameter]:
        return [p for k in self.PARTS for p in self.nets[k].parameters() if p.requires_grad]

    def phase_lr(self, phase: str) -> float:
        return self.w.lr

    def loss_weights(self) -> dict[str, float]:
        return {"loss/word_video": 1.0, "loss/word_audio": 1.0, "loss/contrastive": 1.0,
                "loss/frame_sync": self.w.joint.frame_sync_weight}

    def losses(self, phase: str) -> dict[str, torch.Tensor]:
        lrw, n = self.batch["lrw"], self.nets
        with torch.no_grad():  # (B, T, D) each, before the identity subspace is removed
            v, a = n["Ev_w"].features(to_images(lrw["frames"])), n["Ea_w"].features(lrw["mfcc"])
        v, a = n["Ev_w"].nuisance(v), n["Ea_w"].nuisance(a)
        return self._embedding_losses(lrw, v, a, self.w.joint)
