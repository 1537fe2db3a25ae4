"""Fit the lip head (:class:`davs.models.lip_head.LipHead`) on a trained model's word features.

The word encoders are frozen (the generator's own, ``models/gen.pt``); the head is a linear temporal
filter fitted in closed form by ridge regression on the training split's audio *and* video word features
against the corpus's per-frame mouth states, so the fit is exact and deterministic (no steps, nothing
to resume). Held-out frames (the validation split) score it: R^2 and Pearson r per state and modality.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import torch

from davs.config.training import LipHeadConfig
from davs.data.lrw import clip_path
from davs.models.lip_head import STATE_NAMES, LipHead
from davs.tensors import to_images

log = logging.getLogger(__name__)


@torch.no_grad()
def word_features(nets: dict, batches: Iterable[dict], states: dict[str, np.ndarray], offset: int,
                  device: torch.device) -> dict[str, list[np.ndarray]]:
    """Per clip: audio words (T, D), video words (T, D) and the true mouth states (T, 3) of frames
    offset .. offset + T (clips without states are skipped)."""
    out: dict[str, list[np.ndarray]] = {"audio": [], "video": [], "states": []}
    for b in batches:
        frames, mfcc = to_images(b["frames"].to(device)), b["mfcc"].to(device)
        a, v = nets["Ea_w"](mfcc).float().cpu().numpy(), nets["Ev_w"](frames).float().cpu().numpy()  # (B, T, D)
        t = a.shape[1]
        for i, key in enumerate(b["key"]):
            s = states.get(clip_path(key))
            if s is None:
                continue
            out["audio"].append(a[i])
            out["video"].append(v[i])
            out["states"].append(s[offset : offset + t])
    return out


def _windows(x: np.ndarray, context: int) -> np.ndarray:
    """(T, D) -> (T, (2c + 1) D): each frame with its neighbours, edges replicated (as LipHead pads)."""
    p = np.pad(x, ((context, context), (0, 0)), mode="edge")
    return np.concatenate([p[k : k + len(x)] for k in range(2 * context + 1)], 1)


def fit_lip_head(train: dict[str, list[np.ndarray]], cfg: LipHeadConfig) -> LipHead:
    """Ridge regression of the states on both modalities' windowed word features."""
    xs = [_windows(x, cfg.context) for m in ("audio", "video") for x in train[m]]
    ys = train["states"] * 2
    x = np.concatenate(xs).astype(np.float64)  # (N, (2c + 1) D)
    y = np.concatenate(ys).astype(np.float64)  # (N, 3)
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    gram = xc.T @ xc
    lam = cfg.ridge * np.trace(gram) / len(gram)
    w = np.linalg.solve(gram + lam * np.eye(len(gram)), xc.T @ yc)  # ((2c + 1) D, 3)
    bias = my - mx @ w
    d = train["audio"][0].shape[1]
    head = LipHead(d, cfg.context, y.shape[1])
    k = 2 * cfg.context + 1
    # window row k*D + j is frame t - c + k, feature j: conv weight [state, j, k]
    weight = torch.from_numpy(w.T.reshape(y.shape[1], k, d).transpose(0, 2, 1).copy()).float()  # (3, D, k)
    head.filter.weight.data.copy_(weight)
    head.filter.bias.data.copy_(torch.from_numpy(bias).float())
    log.info("lip head: ridge fit on %d frames (%d clips x 2 modalities), %d inputs per frame", len(x), len(ys) // 2,
             x.shape[1])
    return head.eval()


@torch.no_grad()
def score_lip_head(head: LipHead, held_out: dict[str, list[np.ndarray]]) -> dict[str, float]:
    """R^2 and Pearson r of each state on held-out clips, per modality."""
    y = np.concatenate(held_out["states"]).astype(np.float64)  # (N, 3)
    out = {}
    for m in ("audio", "video"):
        pred = np.concatenate([head(torch.from_numpy(x)[None])[0].numpy() for x in held_out[m]]).astype(np.float64)
        for j, name in enumerate(STATE_NAMES):
            resid = ((pred[:, j] - y[:, j]) ** 2).sum()
            total = ((y[:, j] - y[:, j].mean()) ** 2).sum()
            out[f"{m}_{name}_r2"] = float(1 - resid / total) if total > 0 else 0.0
            out[f"{m}_{name}_r"] = float(np.corrcoef(pred[:, j], y[:, j])[0, 1]) if pred[:, j].std() > 0 else 0.0
    return out
