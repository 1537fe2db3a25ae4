"""What the three DAVS training tasks share: the networks of one config, loading and exporting them, and
the word-embedding and identity losses of the joint stage (which disent keeps).

Each step a task first runs its *main* phase (the encoders or the generator, with gradients) and
stashes detached features / frames; its *adversary* phase (domain discriminator, dis-classifiers,
temporal discriminator) then trains on that stash, so every network is evaluated once per step.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from davs.config.training import JointHParams
from davs.losses import embedding_contrastive_loss, frame_sync_loss
from davs.models import DAVSConfig, build
from davs.tensors import to_images
from davs.training.augment import jitter_mouth, warp_mfcc
from davs.training.loop import Task
from davs.training.streams import to_device

ENCODERS = ("Ev_w", "Ea_w", "Ep", "Cw", "Cp")  # trained by joint and disent; gen freezes the first three


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(-1) == labels).float().mean()


class DAVSTask(Task):
    frozen: tuple[str, ...] = ()  # networks the task does not train: they stay in eval mode

    def __init__(self, cfg: DAVSConfig, parts: tuple[str, ...]) -> None:
        super().__init__()
        self.cfg = cfg
        self.nets = nn.ModuleDict(build(cfg, parts))

    def train(self, mode: bool = True) -> DAVSTask:
        super().train(mode)
        for k in self.frozen:  # frozen encoders keep their BatchNorm statistics
            self.nets[k].eval()
        return self

    def load_parts(self, state: dict[str, dict[str, torch.Tensor]], parts: tuple[str, ...]) -> None:
        for p in parts:
            self.nets[p].load_state_dict(state[p])

    def export(self) -> dict[str, dict[str, torch.Tensor]]:
        """{component: state_dict} for the stage's model file."""
        return {k: v.state_dict() for k, v in self.nets.items()}

    def _word_feats(self, lrw: dict, aug: JointHParams | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Both word encoders on a batch; with ``aug``, on its inputs varied clip by clip (training steps)."""
        n, frames, mfcc = self.nets, to_images(lrw["frames"]), lrw["mfcc"]
        if aug is not None:
            frames = jitter_mouth(frames, self.cfg.mouth_box, aug.aug_scale, aug.aug_shift, aug.aug_colour)
            mfcc = warp_mfcc(mfcc, aug.aug_warp)
        return n["Ev_w"](frames), n["Ea_w"](mfcc)  # (B, T, D) each

    def _embedding_losses(self, lrw: dict, v: torch.Tensor, a: torch.Tensor, j: JointHParams) -> dict[str, torch.Tensor]:
        """Cw on both modalities, the contrastive loss (``j.contrastive_form``: ours or the official one) and frame
        sync (negatives: ``j.sync_negatives``)."""
        n, mask, y = self.nets, lrw["mask"], lrw["label"]
        lv, la = n["Cw"](v, mask), n["Cw"](a, mask)
        return {
            "loss/word_video": F.cross_entropy(lv, y),
            "loss/word_audio": F.cross_entropy(la, y),
            "loss/contrastive": embedding_contrastive_loss(j.contrastive_form, v, a, mask, y, j.margin),
            "loss/frame_sync": frame_sync_loss(v, a, mask, y, across_clips=j.sync_negatives == "batch"),
            "acc/word_video": accuracy(lv, y).detach(),
            "acc/word_audio": accuracy(la, y).detach(),
        }

    def _identity_loss(self, celeb: dict) -> dict[str, torch.Tensor]:
        logits = self.nets["Cp"](self.nets["Ep"](to_images(celeb["image"])).vector)
        return {"loss/identity": F.cross_entropy(logits, celeb["label"]),
                "acc/identity": accuracy(logits, celeb["label"]).detach()}

    @torch.no_grad()
    def validate(self, batches: dict[str, Any], device: torch.device) -> dict[str, float]:
        n = self.nets
        hits = {"word_video": 0.0, "word_audio": 0.0, "identity": 0.0}
        count = {"lrw": 0, "celeb": 0}
        for b in batches.get("lrw", []):
            b = to_device(b, device)
            v, a = self._word_feats(b)
            hits["word_video"] += (n["Cw"](v, b["mask"]).argmax(-1) == b["label"]).sum().item()
            hits["word_audio"] += (n["Cw"](a, b["mask"]).argmax(-1) == b["label"]).sum().item()
            count["lrw"] += len(b["label"])
        for b in batches.get("celeb", []):
            img = to_images(b["image"].to(device))
            hits["identity"] += (n["Cp"](n["Ep"](img).vector).argmax(-1).cpu() == b["label"]).sum().item()
            count["celeb"] += len(b["label"])
        out = {}
        if count["lrw"]:
            out |= {"acc/word_video": hits["word_video"] / count["lrw"], "acc/word_audio": hits["word_audio"] / count["lrw"]}
        if count["celeb"]:
            out["acc/identity"] = hits["identity"] / count["celeb"]
        return out
