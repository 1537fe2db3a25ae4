"""Stage 2, ``disent``: adversarial disentanglement of word and identity features."""

from __future__ import annotations

from collections import deque
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from davs.config.training import DisentHParams
from davs.losses import uniform_mse_loss
from davs.models import DAVSConfig
from davs.tensors import to_images
from davs.training.tasks.base import ENCODERS, DAVSTask, accuracy
from davs.training.tasks.clip_id import ClipIdAdversary, clip_id_losses


class DisentTask(DAVSTask):
    """Stage 2: adversarial disentanglement in both directions.

    ``dis`` trains Cw_p (word from identity features, on LRW clips) and Cp_w (identity from word
    features, on MS-Celeb faces) with cross-entropy on true labels, the encoders frozen. ``enc`` trains the
    encoders so every dis-classifier's softmax is uniform (MSE to 1/N), keeping the stage-1 losses. No step
    reads a speaker label: real LRW has none, and the corpus's are for evaluation only. With
    ``cfg.identity_rank``, what a speaker's clips share in word-feature space is removed after the last step,
    label-free (:func:`davs.training.runners.remove_identity`); optionally (``clip_id_weight > 0``) the encoders are also
    trained against a closed-form ridge adversary that reads the clip's own identity vectors from its
    pooled word features (:mod:`davs.losses.ridge_adversary`).

    An adversary that lags the encoder is fooled by small moves of the features without the
    information going away; so the dis-classifiers take ``dis_steps`` updates per encoder update, on
    the detached features of the last ``dis_memory`` steps (a FIFO memory, newest first), to stay close
    to the best classifier of the current features. The memories travel in the task's checkpoint
    (``get_extra_state``), so a resumed run continues exactly as an uninterrupted one.
    """

    phases = ("enc", "dis")
    streams = ("lrw", "celeb")
    ENCODERS = ENCODERS
    dis = ("Cw_p", "Cp_w")

    def __init__(self, cfg: DAVSConfig, w: DisentHParams) -> None:
        super().__init__(cfg, (*self.ENCODERS, *self.dis))
        self.w = w
        self.memory: deque[dict[str, torch.Tensor]] = deque(maxlen=max(1, w.dis_memory))
        self.clip_id = ClipIdAdversary(w.clip_id_memory, w.clip_id_ridge, w.clip_id_clusters)

    def phase_repeats(self, phase: str) -> int:
        return max(1, self.w.dis_steps) if phase == "dis" else 1

    def get_extra_state(self) -> dict[str, list[dict[str, torch.Tensor]]]:
        # plain lists and tensors: loadable with weights_only=True
        return {"memory": list(self.memory), "id_memory": self.clip_id.state()}

    def set_extra_state(self, state: dict[str, list[dict[str, torch.Tensor]]]) -> None:
        self.memory = deque(state["memory"], maxlen=self.memory.maxlen)
        self.clip_id.load(state["id_memory"])

    def phase_params(self, phase: str) -> list[nn.Parameter]:
        names = self.ENCODERS if phase == "enc" else self.dis
        return [p for k in names for p in self.nets[k].parameters()]

    def phase_lr(self, phase: str) -> float:
        return self.w.lr if phase == "enc" else self.w.dis_lr

    def loss_weights(self) -> dict[str, float]:
        k, u, c = self.w.keep_weight, self.w.uniform_weight, self.w.clip_id_weight
        return {"loss/uniform_word_from_id": u, "loss/uniform_id_from_word": u,
                "loss/clip_id_from_video_word": c, "loss/clip_id_from_audio_word": c,
                "loss/word_video": k, "loss/word_audio": k, "loss/contrastive": k,
                "loss/frame_sync": k * self.w.joint.frame_sync_weight, "loss/identity": k,
                "loss/dis_word_from_id": 1.0, "loss/dis_id_from_word": 1.0}

    def losses(self, phase: str) -> dict[str, torch.Tensor]:
        n, lrw, celeb = self.nets, self.batch["lrw"], self.batch["celeb"]
        if phase == "enc":
            v, a = self._word_feats(lrw, self.w.joint)
            out = self._embedding_losses(lrw, v, a, self.w.joint)
            out |= self._identity_loss(celeb)
            id_seq, id_mask = dis_run(n["Ep"], to_images(lrw["frames"]), lrw["mask"], self.cfg)  # (B, T', ...)
            word_img = n["Ev_w"](to_images(celeb["image"])[:, None])[:, 0]  # (N, D): word features of a still face
            form = self.w.uniform_form
            out["loss/uniform_word_from_id"] = uniform_mse_loss(n["Cw_p"](id_seq, id_mask), form)
            out["loss/uniform_id_from_word"] = uniform_mse_loss(n["Cp_w"](word_img), form)
            if self.w.clip_id_weight > 0:
                out |= clip_id_losses(self.clip_id, n["Ep"], lrw, v, a, id_seq, self.cfg)
            self.memory.appendleft({
                "id_seq": id_seq.detach(), "mask": id_mask, "word": lrw["label"], "word_img": word_img.detach(),
                "celeb": celeb["label"],
            })
            return out
        m = {k: torch.cat([e[k] for e in self.memory]) for k in self.memory[0]}  # newest step first
        now = self.memory[0]
        lw, lp = n["Cw_p"](m["id_seq"], m["mask"]), n["Cp_w"](m["word_img"])
        return {  # losses over the memory; accuracies on this step's features
            "loss/dis_word_from_id": F.cross_entropy(lw, m["word"]),
            "loss/dis_id_from_word": F.cross_entropy(lp, m["celeb"]),
            "acc/dis_word_from_id": accuracy(lw[: len(now["word"])], now["word"]).detach(),
            "acc/dis_id_from_word": accuracy(lp[: len(now["celeb"])], now["celeb"]).detach(),
        }

    @torch.no_grad()
    def validate(self, batches: dict[str, Any], device: torch.device) -> dict[str, float]:
        lrw = list(batches.get("lrw", []))
        celeb = list(batches.get("celeb", []))
        out = super().validate({"lrw": lrw, "celeb": celeb}, device)
        out |= dis_classifier_accuracy(self.nets, lrw, celeb, device, self.cfg)
        return out


def dis_run(ep: nn.Module, frames: torch.Tensor, mask: torch.Tensor, cfg: DAVSConfig,
            start: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """What Cw_p reads from a clip, and its word mask: ours, every frame's identity vector (B, T, D); the
    paper's, Ep's 1/4 maps of a run of ``cfg.dis_frames`` consecutive frames (B, dis_frames, C, h, w) at a
    random start (the official code draws it per batch; ``start`` fixes it, as validation does)."""
    if cfg.variant != "paper":
        return ep.dis_input(frames), mask
    n, t = cfg.dis_frames, frames.shape[1]
    if t < n:
        raise ValueError(f"the paper's Cw_p reads {n} frames but the clips hold {t}")
    s = int(torch.randint(0, t - n + 1, ())) if start is None else start
    return ep.dis_input(frames[:, s:s + n]), mask[:, s:s + n]

@torch.no_grad()
def dis_classifier_accuracy(nets: nn.ModuleDict, lrw: list, celeb: list, device: torch.device,
                            cfg: DAVSConfig) -> dict[str, float]:
    """Accuracy of Cw_p (word from identity) and Cp_w (identity from word) on held-out batches."""
    hw = nw = hp = np_ = 0
    for b in lrw:
        frames, mask, y = b["frames"].to(device), b["mask"].to(device), b["label"].to(device)
        run = dis_run(nets["Ep"], to_images(frames), mask, cfg, start=(frames.shape[1] - cfg.dis_frames) // 2)
        hw += (nets["Cw_p"](*run).argmax(-1) == y).sum().item()
        nw += len(y)
    for b in celeb:
        img, y = to_images(b["image"].to(device)), b["label"].to(device)
        hp += (nets["Cp_w"](nets["Ev_w"](img[:, None])[:, 0]).argmax(-1) == y).sum().item()
        np_ += len(y)
    return {"acc/dis_word_from_id": hw / max(1, nw), "acc/dis_id_from_word": hp / max(1, np_)}
