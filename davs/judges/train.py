"""Training of the judges on real clips of the train split, with their own seed, and their model file.

The mouth-state regressor regresses (open, width, round) with MSE; the SyncNet learns, for a mouth stack
centred on frame c, to pick the audio window at c among the windows at c + o (o in [-max_shift,
max_shift], o != 0) and the windows of other clips at c (InfoNCE on cosine similarities). Both see every
ROI shifted by up to ``margin`` pixels and with random brightness / contrast, so that they judge mouth
shape, not the exact placement or colour of a generated frame.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from davs.checkpoint import load_checkpoint, save_checkpoint
from davs.config.judges import JudgeConfig
from davs.judges.data import JudgeClips, roi_with_margin
from davs.judges.mouth_regressor import MouthStateRegressor
from davs.judges.scores import stacks, to_float
from davs.judges.syncnet import SyncNet
from davs.models.video_word_encoder import roi_slices

log = logging.getLogger(__name__)


@dataclass
class Judges:
    cfg: JudgeConfig
    sync: SyncNet
    mouth: MouthStateRegressor | None  # None where the data has no mouth-state ground truth

    def rois(self, frames: torch.Tensor) -> torch.Tensor:
        """(..., 3, H, W) faces in [-1, 1] at ``image_size`` -> (..., 3, h, w) mouth ROIs."""
        rows, cols = roi_slices(self.cfg.image_size, self.cfg.mouth_box)
        return frames[..., rows, cols]


def _augment(rois: torch.Tensor, size: tuple[int, int], margin: int, g: torch.Generator) -> torch.Tensor:
    """uint8 (N, ..., 3, h + 2m, w + 2m) -> float (N, ..., 3, h, w): one random shift, brightness and
    contrast per sample (the same for all frames of a stack)."""
    n, hh, ww = rois.shape[0], rois.shape[-2], rois.shape[-1]
    h, w = size
    flat = rois.reshape(n, -1, hh, ww)  # (N, M, h', w'): M = frames x channels
    dy = torch.randint(0, hh - h + 1, (n,), generator=g)
    dx = torch.randint(0, ww - w + 1, (n,), generator=g)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]  # (N, 1, h, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]  # (N, 1, 1, w)
    out = to_float(flat[torch.arange(n)[:, None, None, None], torch.arange(flat.shape[1])[None, :, None, None],
                        rows, cols])  # (N, M, h, w)
    gain = 1 + 0.3 * (torch.rand(n, 1, 1, 1, generator=g) - 0.5)
    bias = 0.2 * (torch.rand(n, 1, 1, 1, generator=g) - 0.5)
    return (out * gain + bias).clamp(-1, 1).view(*rois.shape[:-2], h, w)


def train_mouth(data: JudgeClips, cfg: JudgeConfig) -> tuple[MouthStateRegressor, float]:
    """The mouth-state regressor and its final training loss."""
    assert data.states is not None
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    net = MouthStateRegressor(cfg.width)
    opt = torch.optim.Adam(net.parameters(), cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.mouth_steps)
    rois = data.rois.flatten(0, 1)  # (N*T, 3, h', w')
    states = data.states.flatten(0, 1)  # (N*T, 3)
    size = _roi_size(cfg)
    ema = None
    for _ in tqdm(range(cfg.mouth_steps), desc="judge: mouth-state regressor", unit="step", mininterval=5):
        idx = torch.randint(0, len(rois), (cfg.mouth_batch,), generator=g)
        loss = F.mse_loss(net(_augment(rois[idx], size, cfg.margin, g)), states[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
    return net.eval(), float(ema or 0.0)


def train_sync(data: JudgeClips, cfg: JudgeConfig) -> tuple[SyncNet, float]:
    """The SyncNet judge and its final training accuracy (offset 0 picked among all candidates)."""
    torch.manual_seed(cfg.seed + 1)
    g = torch.Generator().manual_seed(cfg.seed + 1)
    net = SyncNet(cfg.stack, cfg.width, cfg.embed_dim)
    opt = torch.optim.Adam(net.parameters(), cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.sync_steps)
    n, t = data.mfcc.shape[:2]
    k, half = cfg.max_shift, cfg.stack // 2
    lo, hi = max(half, k), min(t - 1 - half, t - 1 - k)  # centres where every offset has audio
    if hi < lo:
        raise ValueError(f"clips of {t} frames are too short for +/-{k} frame offsets")
    offsets = torch.arange(-k, k + 1)
    size = _roi_size(cfg)
    word = data.mask.clone()
    word[:, :lo] = False
    word[:, hi + 1 :] = False
    ema = None
    for _ in tqdm(range(cfg.sync_steps), desc="judge: SyncNet", unit="step", mininterval=5):
        clip = torch.randint(0, n, (cfg.sync_batch,), generator=g)
        centre = torch.empty(cfg.sync_batch, dtype=torch.long)
        for i, c in enumerate(clip.tolist()):  # mostly centres inside the word: that is where lips move
            choices = torch.nonzero(word[c]).flatten()
            if len(choices) == 0 or torch.rand((), generator=g) < 0.25:
                choices = torch.arange(lo, hi + 1)
            centre[i] = choices[torch.randint(0, len(choices), (), generator=g)]
        frames = centre[:, None] + torch.arange(-half, half + 1)  # (B, stack)
        rois = _augment(data.rois[clip[:, None], frames], size, cfg.margin, g)  # (B, stack, 3, h, w)
        ev = net.embed_video(stacks(rois, cfg.stack)[:, 0])  # (B, E)
        own = data.mfcc[clip[:, None], centre[:, None] + offsets]  # (B, 2k+1, F, C)
        ea = net.embed_audio(own.flatten(0, 1)).view(len(clip), len(offsets), -1)  # (B, 2k+1, E)
        logits_own = torch.einsum("be,bke->bk", ev, ea)  # (B, 2k+1)
        logits_other = ev @ ea[:, k].T  # (B, B): other clips' audio at their own centres
        same = clip[:, None] == clip[None]
        logits_other = logits_other.masked_fill(same, float("-inf"))
        logits = torch.cat([logits_own, logits_other], 1) / cfg.temperature
        loss = F.cross_entropy(logits, torch.full((len(clip),), k))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        acc = (logits.argmax(1) == k).float().mean().item()
        ema = acc if ema is None else 0.95 * ema + 0.05 * acc
    return net.eval(), float(ema or 0.0)


def _roi_size(cfg: JudgeConfig) -> tuple[int, int]:
    rows, cols = roi_slices(cfg.image_size, cfg.mouth_box)
    return rows.stop - rows.start, cols.stop - cols.start


def train_judges(data: JudgeClips, cfg: JudgeConfig, out: str | Path) -> dict[str, float]:
    """Train both judges (the mouth regressor only where ``data`` has mouth states) and write their file."""
    rows, cols = roi_with_margin(cfg.image_size, cfg.mouth_box, cfg.margin)
    if tuple(data.rois.shape[-2:]) != (rows.stop - rows.start, cols.stop - cols.start):
        raise ValueError(f"judge ROIs are {tuple(data.rois.shape[-2:])}, expected the margin ROI of {cfg}")
    sync, sync_acc = train_sync(data, cfg)
    metrics: dict[str, float] = {"sync_train_acc": sync_acc}
    state: dict[str, Any] = {"config": cfg.to_dict(), "sync": sync.state_dict(), "mouth": None}
    if data.states is not None:
        mouth, mse = train_mouth(data, cfg)
        state["mouth"] = mouth.state_dict()
        metrics["mouth_train_mse"] = mse
    state["metrics"] = metrics
    save_checkpoint(out, state)
    log.info("judges: %s", metrics)
    return metrics


def load_judges(path: str | Path, device: str | torch.device = "cpu") -> Judges:
    ck = load_checkpoint(path, map_location=device)
    cfg = JudgeConfig.from_dict(ck["config"])
    sync = SyncNet(cfg.stack, cfg.width, cfg.embed_dim)
    sync.load_state_dict(ck["sync"])
    mouth = None
    if ck.get("mouth") is not None:
        mouth = MouthStateRegressor(cfg.width)
        mouth.load_state_dict(ck["mouth"])
        mouth.to(device).eval()
    return Judges(cfg, sync.to(device).eval(), mouth)
