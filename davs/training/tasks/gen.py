"""Stage 3, ``gen``: the generator and the temporal discriminator, the encoders frozen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from davs.losses import gan_d_loss, gan_g_loss, lip_feature_loss, mask_box_mean, masked_l1
from davs.models import DAVSConfig, generate_frames
from davs.tensors import to_images, window
from davs.training.loop import to_device
from davs.training.tasks.base import DAVSTask


@dataclass(frozen=True)
class GenHParams:
    lr: float = 1e-3
    d_lr: float = 1e-3
    l1: float = 1.0
    mouth: float = 8.0
    gan: float = 0.01
    lip: float = 0.0  # lip-feature loss: the frozen Ev_w must read the generated mouth as the real one
    mask: float = 0.0  # attention penalty on the mouth box (GANimation), against a mask saturated to "copy"
    sync_gan: float = 0.05  # the discriminator's mouth head (official DAVS), with mismatched audio as negatives


class GenTask(DAVSTask):
    """Stage 3: the generator G and the temporal discriminator, encoders frozen.

    A reference frame gives the identity (Ep); per-frame word features come from the audio
    (audio-driven) or from the video (video-driven). L1 on the face and on the mouth box, both scaled
    by ``l1``; a temporal GAN over ``window`` consecutive generated frames, conditioned on the audio.

    L1 alone averages the possible mouths of a word feature into a closed, blurred one. Three optional terms
    beyond the paper's losses push G to draw the mouth: ``lip``, a perceptual loss in the space of the frozen video word
    encoder (the joint stage's lip reader and sync expert, as Wav2Lip uses a frozen SyncNet): the
    generated window must give the features the real window gives; ``mask``, GANimation's attention
    penalty restricted to the mouth box, so the gate cannot settle on copying the reference's mouth; and
    ``sync_gan``, the discriminator's second head on the mouth box against the window's per-frame audio,
    which also learns real mouths with another clip's audio as fakes (a sync discriminator trained
    alongside G, as in the official DAVS code).
    """

    phases = ("g", "d")
    streams = ("lrw",)
    FROZEN = ("Ev_w", "Ea_w", "Ep")

    def __init__(self, cfg: DAVSConfig, w: GenHParams = GenHParams()) -> None:
        super().__init__(cfg, (*self.FROZEN, "G", "D_temporal"))
        self.w = w
        for k in self.FROZEN:
            self.nets[k].requires_grad_(False)

    def train(self, mode: bool = True) -> GenTask:
        super().train(mode)
        for k in self.FROZEN:  # frozen encoders keep their BatchNorm statistics
            self.nets[k].eval()
        return self

    def phase_params(self, phase: str) -> list[nn.Parameter]:
        return list(self.nets["G" if phase == "g" else "D_temporal"].parameters())

    def phase_lr(self, phase: str) -> float:
        return self.w.lr if phase == "g" else self.w.d_lr

    def phase_betas(self, phase: str) -> tuple[float, float]:
        return (0.5, 0.999)

    def loss_weights(self) -> dict[str, float]:
        return {"loss/l1": self.w.l1, "loss/l1_mouth": self.w.l1 * self.w.mouth, "loss/gan": self.w.gan,
                "loss/lip": self.w.lip, "loss/mask": self.w.mask, "loss/sync_gan": self.w.sync_gan,
                "loss/d_temporal": 1.0, "loss/d_sync": 1.0 if self.w.sync_gan > 0 else 0.0}

    def generate(self, ref: torch.Tensor, words: torch.Tensor, return_mask: bool = False):  # noqa: ANN201
        """ref (B, 3, H, W) reference faces, words (B, W, D) word features -> (B, W, 3, H, W) frames."""
        return generate_frames(self.nets["Ep"], self.nets["G"], ref, words, return_mask)

    def _prepare(self, lrw: dict) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            frames = to_images(lrw["frames"])  # (B, T, 3, H, W)
            v, a = self.nets["Ev_w"](frames), self.nets["Ea_w"](lrw["mfcc"])  # (B, T, D)
            ws = self.cfg.window
            ref = frames[torch.arange(len(frames), device=frames.device), lrw["ref"]]  # (B, 3, H, W)
            gt = window(frames, lrw["start"], ws)  # (B, W, 3, H, W)
            return {"ref": ref, "gt": gt, "a": window(a, lrw["start"], ws), "v": window(v, lrw["start"], ws),
                    "lip": self.nets["Ev_w"](gt) if self.w.lip > 0 else None}  # (B, W, D): the real window, read alone

    def losses(self, phase: str) -> dict[str, torch.Tensor]:
        dt = self.nets["D_temporal"]
        if phase == "g":
            p = self._prepare(self.batch["lrw"])
            (fa, ma), (fv, mv) = self.generate(p["ref"], p["a"], True), self.generate(p["ref"], p["v"], True)
            fake = torch.cat([fa, fv])  # (2B, W, 3, H, W): audio-driven, then video-driven
            gt, cond = torch.cat([p["gt"], p["gt"]]), torch.cat([p["a"], p["a"]])
            self.cache |= {"fake": fake.detach(), "gt": p["gt"], "cond": p["a"], "cond2": cond}
            mouth = self.w.sync_gan > 0
            judged = dt(fake, cond, with_mouth=mouth)
            out = {
                "loss/l1": masked_l1(fake, gt),
                "loss/l1_mouth": masked_l1(fake, gt, self.cfg.mouth_box),
                "loss/gan": gan_g_loss(judged[0] if mouth else judged),
            }
            if mouth:
                out["loss/sync_gan"] = gan_g_loss(judged[1])
            if self.w.lip > 0:  # gradients reach G through the frozen lip reader
                out["loss/lip"] = lip_feature_loss(self.nets["Ev_w"](fake), torch.cat([p["lip"], p["lip"]]))
            if self.w.mask > 0:
                out["loss/mask"] = mask_box_mean(torch.cat([ma, mv]), self.cfg.mouth_box)
            return out
        c = self.cache
        if self.w.sync_gan <= 0:
            return {"loss/d_temporal": gan_d_loss(dt(c["gt"], c["cond"]), dt(c["fake"], c["cond2"]))}
        (real, real_m), (fake, fake_m) = dt(c["gt"], c["cond"], True), dt(c["fake"], c["cond2"], True)
        out = {"loss/d_temporal": gan_d_loss(real, fake)}
        negatives = [fake_m]
        if len(c["gt"]) > 1:  # real mouths with another clip's audio (mostly another word): out of sync
            negatives.append(dt(c["gt"], c["cond"].roll(1, 0), True)[1])
        out["loss/d_sync"] = gan_d_loss(real_m, torch.cat(negatives))
        return out

    @torch.no_grad()
    def validate(self, batches: dict[str, Any], device: torch.device) -> dict[str, float]:
        sums: dict[str, float] = {}
        n = 0
        for b in batches.get("lrw", []):
            b = to_device(b, device)
            p = self._prepare(b)
            preds = {"audio": self.generate(p["ref"], p["a"]), "video": self.generate(p["ref"], p["v"]),
                     "copy_ref": p["ref"][:, None].expand_as(p["gt"])}
            k = len(b["label"])
            for name, pred in preds.items():  # l1_<name> on the face, l1_mouth_<name> on the mouth box
                for key, box in ((f"l1_{name}", None), (f"l1_mouth_{name}", self.cfg.mouth_box)):
                    sums[key] = sums.get(key, 0.0) + masked_l1(pred, p["gt"], box).item() * k
            n += k
        return {k: v / max(1, n) for k, v in sums.items()}
