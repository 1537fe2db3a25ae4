"""Stage 3, ``gen``: the generator and the temporal discriminator, the encoders frozen."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from davs.config.training import GenHParams
from davs.losses import (
    domain_loss,
    gan_d_loss,
    gan_g_loss,
    lip_feature_loss,
    mask_box_mean,
    masked_l1,
    smoothness_l1,
    uniform_mse_loss,
)
from davs.models import DAVSConfig, generate_frames
from davs.tensors import to_images, window
from davs.training.streams import to_device
from davs.training.tasks.base import DAVSTask
from davs.training.tasks.clip_id import ClipIdAdversary, clip_id_losses
from davs.training.tasks.disent import dis_run


class GenTask(DAVSTask):
    """Stage 3: the generator G and the temporal discriminator, encoders frozen.

    A reference frame gives the identity (Ep); per-frame word features come from the audio
    (audio-driven) or from the video (video-driven). L1 on the face and on the mouth box, both scaled
    by ``l1_weight``; a temporal GAN over ``window`` consecutive generated frames, conditioned on the audio.

    L1 alone averages the possible mouths of a word feature into a closed, blurred one. Three optional terms
    beyond the paper's losses push G to draw the mouth: ``lip_weight``, a perceptual loss in the space of the frozen video word
    encoder (the joint stage's lip reader and sync expert, as Wav2Lip uses a frozen SyncNet): the
    generated window must give the features the real window gives; ``mask_weight``, GANimation's attention
    penalty restricted to the mouth box, so the gate cannot settle on copying the reference's mouth; and
    ``sync_gan_weight``, the discriminator's second head on the mouth box against the window's per-frame audio,
    which also learns real mouths with another clip's audio as fakes (a sync discriminator trained
    alongside G, as in the official DAVS code).

    With the paper variant (``cfg.variant == "paper"``) the discriminator is the official one, conditioned
    on the window's raw MFCC instead of Ea_w's features, and its mouth head learns, as there, real against
    generated only. ``smooth_weight`` and ``soft_labels`` are the official temporal term and soft labels.

    ``train_encoders`` trains end to end, as the official code does after pretraining: G, Ev_w, Ea_w, Ep and
    Cw in one optimiser with the word cross-entropies, the contrastive and domain losses and the uniform
    loss against Cw_p; the temporal discriminator, the domain discriminator and Cw_p in the other. With
    ``clip_id_weight`` the encoders also keep fighting disent's label-free speaker adversary
    (:class:`~davs.training.tasks.clip_id.ClipIdAdversary`, its memory in the task's checkpoint): trained for the
    frames alone, they would put the speaker back into the word features (experiments/speaker_free.py).
    """

    phases = ("g", "d")
    streams = ("lrw",)
    FROZEN = ("Ev_w", "Ea_w", "Ep")
    END_TO_END = ("Ev_w", "Ea_w", "Ep", "Cw", "G")  # what the g phase trains end to end
    ADVERSARIES = ("D_temporal", "D_domain", "Cw_p")  # ... and the d phase

    def __init__(self, cfg: DAVSConfig, w: GenHParams) -> None:
        e2e = w.train_encoders
        super().__init__(cfg, (*self.END_TO_END, *self.ADVERSARIES) if e2e else (*self.FROZEN, "G", "D_temporal"))
        self.w = w
        self.frozen = () if e2e else self.FROZEN
        for k in self.frozen:
            self.nets[k].requires_grad_(False)
        d = w.disent
        self.clip_id = ClipIdAdversary(d.clip_id_memory, d.clip_id_ridge, d.clip_id_clusters)

    def get_extra_state(self) -> dict[str, list[dict[str, torch.Tensor]]]:
        return {"id_memory": self.clip_id.state()}  # plain lists and tensors: loadable with weights_only=True

    def set_extra_state(self, state: dict[str, list[dict[str, torch.Tensor]]]) -> None:
        self.clip_id.load(state["id_memory"])

    @classmethod
    def init_parts(cls, w: GenHParams) -> tuple[str, ...]:
        """What the previous stage's model file gives: its encoders (and, end to end, Cw and Cw_p)."""
        return (*cls.FROZEN, "Cw", "Cw_p") if w.train_encoders else cls.FROZEN

    def phase_params(self, phase: str) -> list[nn.Parameter]:
        if self.w.train_encoders:
            names = self.END_TO_END if phase == "g" else self.ADVERSARIES
            return [p for k in names for p in self.nets[k].parameters()]
        return list(self.nets["G" if phase == "g" else "D_temporal"].parameters())

    def phase_lr(self, phase: str) -> float:
        return self.w.lr if phase == "g" else self.w.d_lr

    def phase_betas(self, phase: str) -> tuple[float, float]:
        return (0.5, 0.999)

    def loss_weights(self) -> dict[str, float]:
        w = self.w
        out = {"loss/l1": w.l1_weight, "loss/l1_mouth": w.l1_weight * w.mouth_weight, "loss/gan": w.gan_weight,
               "loss/lip": w.lip_weight, "loss/mask": w.mask_weight, "loss/sync_gan": w.sync_gan_weight,
               "loss/smooth": w.smooth_weight, "loss/d_temporal": 1.0, "loss/d_sync": 1.0 if w.sync_gan_weight > 0 else 0.0}
        if w.train_encoders:
            j, e = w.disent.joint, w.embed_weight
            out |= {"loss/word_video": e, "loss/word_audio": e, "loss/contrastive": e * j.contrastive_weight,
                    "loss/frame_sync": e * j.frame_sync_weight, "loss/domain_confusion": j.domain_weight,
                    "loss/uniform_word_from_id": w.disent.uniform_weight, "loss/domain_disc": 1.0,
                    "loss/dis_word_from_id": 1.0, "loss/clip_id_from_video_word": w.clip_id_weight,
                    "loss/clip_id_from_audio_word": w.clip_id_weight}
        return out

    def generate(self, ref: torch.Tensor, words: torch.Tensor, return_mask: bool = False):
        """ref (B, 3, H, W) reference faces, words (B, W, D) word features -> (B, W, 3, H, W) frames."""
        return generate_frames(self.nets["Ep"], self.nets["G"], ref, words, return_mask, contextualised=True)

    def _prepare(self, lrw: dict) -> dict[str, torch.Tensor]:
        with torch.set_grad_enabled(self.w.train_encoders and torch.is_grad_enabled()):  # end to end: through the encoders
            frames = to_images(lrw["frames"])  # (B, T, 3, H, W)
            v, a = self.nets["Ev_w"](frames), self.nets["Ea_w"](lrw["mfcc"])  # (B, T, D)
            ws = self.cfg.window
            ref = frames[torch.arange(len(frames), device=frames.device), lrw["ref"]]  # (B, 3, H, W)
            gt = window(frames, lrw["start"], ws)  # (B, W, 3, H, W)
            aw = window(a, lrw["start"], ws)  # (B, W, D)
            out = {"ref": ref, "gt": gt, "frames": frames, "v_all": v, "a_all": a,
                   # what the discriminator is conditioned on: the official one reads the raw MFCC (B, W, F, C)
                   "cond": window(lrw["mfcc"], lrw["start"], ws) if self.cfg.variant == "paper" else aw,
                   "lip": self.nets["Ev_w"](gt) if self.w.lip_weight > 0 else None}  # (B, W, D): the real window, read alone
        g = self.nets["G"]  # what G reads: the whole clip's words contextualised, then windowed (B, W, D)
        return out | {"a": window(g.contextualise(a), lrw["start"], ws), "v": window(g.contextualise(v), lrw["start"], ws)}

    def losses(self, phase: str) -> dict[str, torch.Tensor]:
        dt = self.nets["D_temporal"]
        if phase == "g":
            p = self._prepare(self.batch["lrw"])
            (fa, ma), (fv, mv) = self.generate(p["ref"], p["a"], True), self.generate(p["ref"], p["v"], True)
            fake = torch.cat([fa, fv])  # (2B, W, 3, H, W): audio-driven, then video-driven
            c1 = p["cond"].detach()  # the discriminator's condition: end to end, not a path into Ea_w
            gt, cond = torch.cat([p["gt"], p["gt"]]), torch.cat([c1, c1])
            self.cache |= {"fake": fake.detach(), "gt": p["gt"], "cond": c1, "cond2": cond}
            mouth = self.w.sync_gan_weight > 0
            judged = dt(fake, cond, with_mouth=mouth)
            out = {
                "loss/l1": masked_l1(fake, gt),
                "loss/l1_mouth": masked_l1(fake, gt, self.cfg.mouth_box),
                "loss/gan": gan_g_loss(judged[0] if mouth else judged),
            }
            if mouth:
                out["loss/sync_gan"] = gan_g_loss(judged[1])
            if self.w.lip_weight > 0:  # gradients reach G through the frozen lip reader
                out["loss/lip"] = lip_feature_loss(self.nets["Ev_w"](fake), torch.cat([p["lip"], p["lip"]]))
            if self.w.mask_weight > 0:
                out["loss/mask"] = mask_box_mean(torch.cat([ma, mv]), self.cfg.mouth_box)
            if self.w.smooth_weight > 0:
                out["loss/smooth"] = smoothness_l1(fa, p["ref"], self.cfg.mouth_box)
            if self.w.train_encoders:
                out |= self._encoder_losses(self.batch["lrw"], p)
            return out
        c, soft = self.cache, self.w.soft_labels
        if self.w.train_encoders:
            return self._discriminate(c, soft) | self._adversaries(c)
        return self._discriminate(c, soft)

    def _encoder_losses(self, lrw: dict, p: dict) -> dict[str, torch.Tensor]:
        """End to end: the encoders keep their embedding losses and fight the domain discriminator and Cw_p."""
        d, n, mask = self.w.disent, self.nets, lrw["mask"]
        v, a = p["v_all"], p["a_all"]  # (B, T, D), with gradients
        out = self._embedding_losses(lrw, v, a, d.joint)
        dd = n["D_domain"]
        out["loss/domain_confusion"] = domain_loss(d.joint.domain_loss, dd(a[mask]), dd(v[mask]))
        run, run_mask = dis_run(n["Ep"], p["frames"], mask, self.cfg)  # what Cw_p reads
        out["loss/uniform_word_from_id"] = uniform_mse_loss(n["Cw_p"](run, run_mask), d.uniform_form)
        if self.w.clip_id_weight > 0:
            out |= clip_id_losses(self.clip_id, n["Ep"], lrw, v, a, run, self.cfg)
        self.cache |= {"va": (v[mask].detach(), a[mask].detach()), "run": (run.detach(), run_mask), "word": lrw["label"]}
        return out

    def _adversaries(self, c: dict) -> dict[str, torch.Tensor]:
        dd, (v, a) = self.nets["D_domain"], c["va"]
        lw = self.nets["Cw_p"](*c["run"])
        return {"loss/domain_disc": gan_d_loss(dd(a), dd(v)), "loss/dis_word_from_id": F.cross_entropy(lw, c["word"])}

    def _discriminate(self, c: dict, soft: float) -> dict[str, torch.Tensor]:
        dt = self.nets["D_temporal"]
        if self.w.sync_gan_weight <= 0:
            return {"loss/d_temporal": gan_d_loss(dt(c["gt"], c["cond"]), dt(c["fake"], c["cond2"]), soft)}
        (real, real_m), (fake, fake_m) = dt(c["gt"], c["cond"], True), dt(c["fake"], c["cond2"], True)
        out = {"loss/d_temporal": gan_d_loss(real, fake, soft)}
        negatives = [fake_m]
        if len(c["gt"]) > 1 and self.cfg.variant != "paper":  # real mouths with another clip's audio: out of sync
            negatives.append(dt(c["gt"], c["cond"].roll(1, 0), True)[1])
        out["loss/d_sync"] = gan_d_loss(real_m, torch.cat(negatives), soft)
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
