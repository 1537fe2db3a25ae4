"""The three DAVS training stages as tasks: joint embedding, adversarial disentanglement, generator.

Each step a task first runs its *main* phase (the encoders or the generator, with gradients) and
stashes detached features / frames; its *adversary* phase (domain discriminator, dis-classifiers,
temporal discriminator) then trains on that stash, so every network is evaluated once per step.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from davs.losses import (
    contrastive_loss,
    domain_confusion_loss,
    domain_discriminator_loss,
    frame_sync_loss,
    gan_d_loss,
    gan_g_loss,
    lip_feature_loss,
    mask_box_mean,
    masked_l1,
    uniform_mse_loss,
)
from davs.models import DAVSConfig, build
from davs.training.loop import Task, to_device


def to_images(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-1, 1]."""
    return frames.movedim(-1, -3).float().div(127.5).sub(1.0)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, D), (B, T) bool -> (B, D) mean over the masked frames."""
    m = mask.to(x.dtype).unsqueeze(-1)  # (B, T, 1)
    return (x * m).sum(1) / m.sum(1).clamp_min(1)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(-1) == labels).float().mean()


def generate_frames(ep: nn.Module, g: nn.Module, ref: torch.Tensor, words: torch.Tensor,
                    return_mask: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """ref (B, 3, H, W) reference faces, words (B, W, D) word features -> (B, W, 3, H, W) frames
    (and G's attention masks (B, W, 1, H, W), 1 = copied from the reference)."""
    b, w = words.shape[:2]
    idf = ep(ref)
    rep = lambda x: x.repeat_interleave(w, 0)  # noqa: E731 - (B, ...) -> (B*W, ...)
    out, mask = g(rep(idf.fmap), [rep(s) for s in idf.skips], words.flatten(0, 1), return_mask=True)  # (B*W, 3|1, H, W)
    out = out.view(b, w, *out.shape[1:])  # (B, W, 3, H, W)
    return (out, mask.view(b, w, *mask.shape[1:])) if return_mask else out


def window(x: torch.Tensor, start: torch.Tensor, size: int) -> torch.Tensor:
    """Gather ``size`` consecutive steps from (B, T, ...) at per-sample ``start`` -> (B, size, ...)."""
    idx = start[:, None] + torch.arange(size, device=start.device)[None]  # (B, size)
    return x[torch.arange(x.shape[0], device=x.device)[:, None], idx]


class _DAVSTask(Task):
    def __init__(self, cfg: DAVSConfig, parts: tuple[str, ...]) -> None:
        super().__init__()
        self.cfg = cfg
        self.nets = nn.ModuleDict(build(cfg, parts))

    def load_parts(self, state: dict[str, dict[str, torch.Tensor]], parts: tuple[str, ...]) -> None:
        for p in parts:
            self.nets[p].load_state_dict(state[p])

    def export(self) -> dict[str, dict[str, torch.Tensor]]:
        """{component: state_dict} for the stage's model file."""
        return {k: v.state_dict() for k, v in self.nets.items()}

    def _word_feats(self, lrw: dict) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.nets
        return n["Ev_w"](to_images(lrw["frames"])), n["Ea_w"](lrw["mfcc"])  # (B, T, D) each

    def _embedding_losses(self, lrw: dict, v: torch.Tensor, a: torch.Tensor, margin: float) -> dict[str, torch.Tensor]:
        n, mask, y = self.nets, lrw["mask"], lrw["label"]
        lv, la = n["Cw"](v, mask), n["Cw"](a, mask)
        return {
            "loss/word_video": F.cross_entropy(lv, y),
            "loss/word_audio": F.cross_entropy(la, y),
            "loss/contrastive": contrastive_loss(masked_mean(v, mask), masked_mean(a, mask), y, margin),
            "loss/frame_sync": frame_sync_loss(v, a, mask, y),
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


@dataclass(frozen=True)
class JointWeights:
    lr: float = 2e-3
    contrastive: float = 1.0
    frame_sync: float = 1.0
    margin: float = 1.0
    domain: float = 0.1
    identity: float = 1.0
    warmup_steps: int = 200  # contrastive and domain terms ramp up linearly over these steps


class JointTask(_DAVSTask):
    """Stage 1: identity pretraining (Ep + Cp on MS-Celeb) and the joint audio-visual word embedding
    (Cw cross-entropy on both modalities, contrastive loss, domain adversary)."""

    phases = ("main", "domain")
    streams = ("lrw", "celeb")
    ENCODERS = ("Ev_w", "Ea_w", "Ep", "Cw", "Cp")

    def __init__(self, cfg: DAVSConfig, w: JointWeights = JointWeights()) -> None:
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
        return {"loss/contrastive": self.w.contrastive * ramp, "loss/frame_sync": self.w.frame_sync * ramp,
                "loss/domain_confusion": self.w.domain * ramp,
                "loss/identity": self.w.identity}

    def losses(self, phase: str) -> dict[str, torch.Tensor]:
        lrw, dd = self.batch["lrw"], self.nets["D_domain"]
        if phase == "main":
            v, a = self._word_feats(lrw)
            out = self._embedding_losses(lrw, v, a, self.w.margin)
            mask = lrw["mask"]
            out["loss/domain_confusion"] = domain_confusion_loss(dd(a[mask]), dd(v[mask]))
            out |= self._identity_loss(self.batch["celeb"])
            self.cache["va"] = (v[mask].detach(), a[mask].detach())
            return out
        v, a = self.cache["va"]
        la, lv = dd(a), dd(v)
        acc = 0.5 * ((la > 0).float().mean() + (lv <= 0).float().mean())
        return {"loss/domain_disc": domain_discriminator_loss(la, lv), "acc/domain_disc": acc.detach()}


@dataclass(frozen=True)
class DisentWeights:
    lr: float = 5e-4
    dis_lr: float = 2e-3
    uniform: float = 1.0
    keep: float = 1.0
    margin: float = 1.0
    frame_sync: float = 1.0  # the joint stage's weight, kept
    dis_steps: int = 1  # dis-classifier updates per encoder update
    dis_memory: int = 1  # the dis-classifiers train on the features of the last dis_memory steps


class DisentTask(_DAVSTask):
    """Stage 2: adversarial disentanglement in both directions.

    ``dis`` trains Cw_p (word from identity features, on LRW clips) and Cp_w (identity from word
    features, on MS-Celeb faces) with cross-entropy on true labels, the encoders frozen; where the LRW
    side names its speakers (``num_speakers > 0``), Cs_w also reads the speaker from clip-pooled audio and
    video word features. ``enc`` trains the encoders so every dis-classifier's softmax is uniform
    (MSE to 1/N), keeping the stage-1 losses.

    An adversary that lags the encoder is fooled by small moves of the features without the
    information going away; so the dis-classifiers take ``dis_steps`` updates per encoder update, on
    the detached features of the last ``dis_memory`` steps (a FIFO memory, newest first), to stay close
    to the best classifier of the current features. The memory travels in the task's checkpoint
    (``get_extra_state``), so a resumed run continues exactly as an uninterrupted one.
    """

    phases = ("enc", "dis")
    streams = ("lrw", "celeb")
    ENCODERS = ("Ev_w", "Ea_w", "Ep", "Cw", "Cp")

    def __init__(self, cfg: DAVSConfig, w: DisentWeights = DisentWeights()) -> None:
        self.dis = ("Cw_p", "Cp_w", "Cs_w") if cfg.num_speakers > 0 else ("Cw_p", "Cp_w")
        super().__init__(cfg, (*self.ENCODERS, *self.dis))
        self.w = w
        self.memory: deque[dict[str, torch.Tensor]] = deque(maxlen=max(1, w.dis_memory))

    def phase_repeats(self, phase: str) -> int:
        return max(1, self.w.dis_steps) if phase == "dis" else 1

    def get_extra_state(self) -> dict[str, list[dict[str, torch.Tensor]]]:
        return {"memory": list(self.memory)}  # plain lists and tensors: loadable with weights_only=True

    def set_extra_state(self, state: dict[str, list[dict[str, torch.Tensor]]]) -> None:
        self.memory = deque(state["memory"], maxlen=self.memory.maxlen)

    def phase_params(self, phase: str) -> list[nn.Parameter]:
        names = self.ENCODERS if phase == "enc" else self.dis
        return [p for k in names for p in self.nets[k].parameters()]

    def phase_lr(self, phase: str) -> float:
        return self.w.lr if phase == "enc" else self.w.dis_lr

    def loss_weights(self) -> dict[str, float]:
        k = self.w.keep
        return {"loss/uniform_word_from_id": self.w.uniform, "loss/uniform_id_from_word": self.w.uniform,
                "loss/uniform_speaker_from_word": self.w.uniform,
                "loss/word_video": k, "loss/word_audio": k, "loss/contrastive": k,
                "loss/frame_sync": k * self.w.frame_sync, "loss/identity": k}

    def losses(self, phase: str) -> dict[str, torch.Tensor]:
        n, lrw, celeb = self.nets, self.batch["lrw"], self.batch["celeb"]
        if phase == "enc":
            v, a = self._word_feats(lrw)
            out = self._embedding_losses(lrw, v, a, self.w.margin)
            out |= self._identity_loss(celeb)
            id_seq = n["Ep"].sequence(to_images(lrw["frames"]))  # (B, T, D)
            word_img = n["Ev_w"](to_images(celeb["image"])[:, None])[:, 0]  # (N, D): word features of a still face
            out["loss/uniform_word_from_id"] = uniform_mse_loss(n["Cw_p"](id_seq, lrw["mask"]))
            out["loss/uniform_id_from_word"] = uniform_mse_loss(n["Cp_w"](word_img))
            known = lrw["speaker"] >= 0
            pooled = torch.cat([masked_mean(v, lrw["mask"])[known], masked_mean(a, lrw["mask"])[known]])  # (2K, D)
            if "Cs_w" in n and len(pooled):
                out["loss/uniform_speaker_from_word"] = uniform_mse_loss(n["Cs_w"](pooled))
            self.memory.appendleft({
                "id_seq": id_seq.detach(), "mask": lrw["mask"], "word": lrw["label"], "word_img": word_img.detach(),
                "celeb": celeb["label"], "pooled": pooled.detach(), "speaker": lrw["speaker"][known].repeat(2),
            })
            return out
        m = {k: torch.cat([e[k] for e in self.memory]) for k in self.memory[0]}  # newest step first
        now = self.memory[0]
        lw, lp = n["Cw_p"](m["id_seq"], m["mask"]), n["Cp_w"](m["word_img"])
        out = {  # losses over the memory; accuracies on this step's features
            "loss/dis_word_from_id": F.cross_entropy(lw, m["word"]),
            "loss/dis_id_from_word": F.cross_entropy(lp, m["celeb"]),
            "acc/dis_word_from_id": accuracy(lw[: len(now["word"])], now["word"]).detach(),
            "acc/dis_id_from_word": accuracy(lp[: len(now["celeb"])], now["celeb"]).detach(),
        }
        if "Cs_w" in n and len(m["pooled"]):
            ls = n["Cs_w"](m["pooled"])
            out["loss/dis_speaker_from_word"] = F.cross_entropy(ls, m["speaker"])
            if len(now["speaker"]):
                out["acc/dis_speaker_from_word"] = accuracy(ls[: len(now["speaker"])], now["speaker"]).detach()
        return out

    @torch.no_grad()
    def validate(self, batches: dict[str, Any], device: torch.device) -> dict[str, float]:
        lrw = list(batches.get("lrw", []))
        celeb = list(batches.get("celeb", []))
        out = super().validate({"lrw": lrw, "celeb": celeb}, device)
        out |= dis_classifier_accuracy(self.nets, lrw, celeb, device)
        return out


@torch.no_grad()
def dis_classifier_accuracy(nets: nn.ModuleDict, lrw: list, celeb: list, device: torch.device) -> dict[str, float]:
    """Accuracy of Cw_p (word from identity) and Cp_w (identity from word) on held-out batches."""
    hw = nw = hp = np_ = 0
    for b in lrw:
        frames, mask, y = b["frames"].to(device), b["mask"].to(device), b["label"].to(device)
        hw += (nets["Cw_p"](nets["Ep"].sequence(to_images(frames)), mask).argmax(-1) == y).sum().item()
        nw += len(y)
    for b in celeb:
        img, y = to_images(b["image"].to(device)), b["label"].to(device)
        hp += (nets["Cp_w"](nets["Ev_w"](img[:, None])[:, 0]).argmax(-1) == y).sum().item()
        np_ += len(y)
    return {"acc/dis_word_from_id": hw / max(1, nw), "acc/dis_id_from_word": hp / max(1, np_)}


@dataclass(frozen=True)
class GenWeights:
    lr: float = 1e-3
    d_lr: float = 1e-3
    l1: float = 1.0
    mouth: float = 1.0
    gan: float = 0.01
    lip: float = 0.0  # lip-feature loss: the frozen Ev_w must read the generated mouth as the real one
    mask: float = 0.0  # attention penalty on the mouth box (GANimation), against a mask saturated to "copy"
    sync_gan: float = 0.0  # the discriminator's mouth head (official DAVS), with mismatched audio as negatives
    mouth_box: tuple[float, float, float, float] = (0.62, 0.25, 0.95, 0.75)


class GenTask(_DAVSTask):
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

    def __init__(self, cfg: DAVSConfig, w: GenWeights = GenWeights()) -> None:
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
                "loss/lip": self.w.lip, "loss/mask": self.w.mask, "loss/sync_gan": self.w.sync_gan}

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
                "loss/l1_mouth": masked_l1(fake, gt, self.w.mouth_box),
                "loss/gan": gan_g_loss(judged[0] if mouth else judged),
            }
            if mouth:
                out["loss/sync_gan"] = gan_g_loss(judged[1])
            if self.w.lip > 0:  # gradients reach G through the frozen lip reader
                out["loss/lip"] = lip_feature_loss(self.nets["Ev_w"](fake), torch.cat([p["lip"], p["lip"]]))
            if self.w.mask > 0:
                out["loss/mask"] = mask_box_mean(torch.cat([ma, mv]), self.w.mouth_box)
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
                for key, box in ((f"l1_{name}", None), (f"l1_mouth_{name}", self.w.mouth_box)):
                    sums[key] = sums.get(key, 0.0) + masked_l1(pred, p["gt"], box).item() * k
            n += k
        return {k: v / max(1, n) for k, v in sums.items()}
