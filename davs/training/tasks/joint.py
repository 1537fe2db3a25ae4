"""Stage 1, ``joint``: identity pretraining and the joint audio-visual word embedding."""

from __future__ import annotations

import torch
from torch import nn

from davs.config.training import JointHParams
from davs.losses import domain_loss, gan_d_loss
from davs.models import DAVSConfig
from davs.training.tasks.base import ENCODERS, DAVSTask


class JointTask(DAVSTask):
    """Stage 1: identity pretraining (Ep + Cp on MS-Celeb) and the joint audio-visual word embedding
    (Cw cross-entropy on both modalities, contrastive loss, domain adversary)."""

    phases = ("main", "domain")
    streams = ("lrw", "celeb")
    ENCODERS = ENCODERS

    def __init__(self, cfg: DAVSConfig, w: JointHParams) -> None:
        super().__init__(cfg, (*self.ENCODERS, "D_domain"))
        self.w = w

    def phase_params(self, phase: str) -> list[nn.Parameter]:
        names = self.ENCODERS if phase == "main" else ("D_domain",)
        return [p for k in names for p in self.nets[k].parameters()]

    def phase_lr(self, phase: str) -> float:
        return self.w.lr

    def loss_weights(self) -> dict[str, float]:
        # Ramp the embedding-alignment terms in: from random features, pulling audio and video together
        # is easiest by collapsing both (all features equal: contrastive loss 0.5, a stationary point)
        # before the word cross-entropy has separated the classes.
        ramp = min(1.0, self.step / self.w.warmup_steps) if self.w.warmup_steps else 1.0
        return {"loss/word_video": 1.0, "loss/word_audio": 1.0, "loss/contrastive": self.w.contrastive_weight * ramp, "loss/frame_sync": self.w.frame_sync_weight * ramp,
                "loss/domain_confusion": self.w.domain_weight * ramp,
                "loss/identity": self.w.identity_weight, "loss/domain_disc": 1.0}

    def losses(self, phase: str) -> dict[str, torch.Tensor]:
        lrw, dd = self.batch["lrw"], self.nets["D_domain"]
        if phase == "main":
            v, a = self._word_feats(lrw, self.w)
            out = self._embedding_losses(lrw, v, a, self.w)
            mask = lrw["mask"]
            out["loss/domain_confusion"] = domain_loss(self.w.domain_loss, dd(a[mask]), dd(v[mask]))
            out |= self._identity_loss(self.batch["celeb"])
            self.cache["va"] = (v[mask].detach(), a[mask].detach())
            return out
        v, a = self.cache["va"]
        la, lv = dd(a), dd(v)
        acc = 0.5 * ((la > 0).float().mean() + (lv <= 0).float().mean())
        return {"loss/domain_disc": gan_d_loss(la, lv), "acc/domain_disc": acc.detach()}
