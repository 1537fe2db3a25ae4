"""Evaluation of a trained DAVS model on held-out data; every number comes with its baseline.

* Word accuracy (top-1/top-5) from audio, video and fused logits vs chance; audio->video retrieval
  (R@1, R@10, median rank) as the DAVS code reports it.
* Leakage: scikit-learn logistic-regression probes on frozen features (word from identity features,
  identity from word features) after disentanglement, beside the same probes on the joint-stage
  (pre-disentanglement) features and chance. Cp identity accuracy on held-out MS-Celeb faces.
* Generated frames, audio- and video-driven: SSIM / PSNR (scikit-image's definitions, vectorised over
  frames and checked against scikit-image in the tests) on the face and the mouth box
  vs copying the reference frame; a lip-sync distance / confidence (LSE-D / LSE-C in spirit) between
  the word embedding of generated video and the audio, vs real video and vs shuffled audio.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import uniform_filter
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from davs.models import generate_frames
from davs.tensors import box_slices, masked_mean, to_images, to_uint8

log = logging.getLogger(__name__)


@torch.no_grad()
def lrw_features(nets: dict, batches: Any, device: torch.device) -> dict[str, np.ndarray]:
    """Per-clip pooled features, logits and labels over one pass of an LRW loader."""
    out: dict[str, list] = {k: [] for k in ("v", "a", "id", "lv", "la", "label", "speaker")}
    keys: list[str] = []
    for b in batches:
        frames, mfcc, mask = to_images(b["frames"].to(device)), b["mfcc"].to(device), b["mask"].to(device)
        v, a = nets["Ev_w"](frames), nets["Ea_w"](mfcc)  # (B, T, D)
        out["v"].append(masked_mean(v, mask))
        out["a"].append(masked_mean(a, mask))
        out["id"].append(nets["Ep"].sequence(frames).mean(1))
        out["lv"].append(nets["Cw"](v, mask))
        out["la"].append(nets["Cw"](a, mask))
        out["label"].append(b["label"])
        out["speaker"].append(b["speaker"])
        keys += b["key"]
    res = {k: torch.cat(v).float().cpu().numpy() for k, v in out.items()}
    res["key"] = np.asarray(keys)
    return res


@torch.no_grad()
def celeb_features(nets: dict, batches: Any, device: torch.device) -> dict[str, np.ndarray]:
    out: dict[str, list] = {"id": [], "word": [], "logits": [], "label": []}
    for b in batches:
        img = to_images(b["image"].to(device))
        idv = nets["Ep"](img).vector
        out["id"].append(idv)
        out["logits"].append(nets["Cp"](idv))
        out["word"].append(nets["Ev_w"](img[:, None])[:, 0])
        out["label"].append(b["label"])
    return {k: torch.cat(v).float().cpu().numpy() for k, v in out.items()}


def topk(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    k = min(k, logits.shape[1])
    top = np.argsort(-logits, axis=1)[:, :k]
    return float((top == labels[:, None]).any(1).mean())


def retrieval(a: np.ndarray, v: np.ndarray) -> dict[str, float]:
    """Audio -> video retrieval over the test set: the true video's rank among all videos."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True).clip(1e-8)
    v = v / np.linalg.norm(v, axis=1, keepdims=True).clip(1e-8)
    sim = a @ v.T  # (N, N)
    ranks = (sim > np.diag(sim)[:, None]).sum(1) + 1
    return {"r_at_1": float((ranks <= 1).mean()), "r_at_10": float((ranks <= 10).mean()),
            "median_rank": float(np.median(ranks)), "chance_r_at_1": 1.0 / len(a),
            "chance_median_rank": (len(a) + 1) / 2}


def probe(x_fit: np.ndarray, y_fit: np.ndarray, x_eval: np.ndarray, y_eval: np.ndarray, c: float) -> float | None:
    """Accuracy on (x_eval, y_eval) of a logistic-regression probe fitted on (x_fit, y_fit).

    Evaluation samples whose class the probe never saw are left out (e.g. test-only speakers).
    """
    seen = np.isin(y_eval, np.unique(y_fit))
    if len(np.unique(y_fit)) < 2 or seen.sum() == 0:
        return None
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
    clf.fit(x_fit, y_fit)
    return float(clf.score(x_eval[seen], y_eval[seen]))


def leakage(fit: dict[str, np.ndarray], ev: dict[str, np.ndarray], celeb_fit: dict[str, np.ndarray],
            celeb_ev: dict[str, np.ndarray], c: float) -> dict[str, float | None]:
    """Linear-probe accuracies: what identity features say about words and word features about identity.

    Probes are fitted on one held-out split (val) and scored on another (test). In the embedded
    corpus every speaker says every word in val, so word and speaker are independent there: a probe
    cannot read the word from identity features by recognising the speaker, nor the reverse.
    """
    out = {
        "word_from_identity": probe(fit["id"], fit["label"], ev["id"], ev["label"], c),
        "word_from_video_word": probe(fit["v"], fit["label"], ev["v"], ev["label"], c),  # reference
        "identity_from_word_msceleb": probe(celeb_fit["word"], celeb_fit["label"], celeb_ev["word"], celeb_ev["label"], c),
        "identity_from_identity_msceleb": probe(celeb_fit["id"], celeb_fit["label"], celeb_ev["id"], celeb_ev["label"], c),
    }
    kf, ke = fit["speaker"] >= 0, ev["speaker"] >= 0
    if kf.sum() and ke.sum():
        for name, key in (("identity_from_word_video", "v"), ("identity_from_word_audio", "a"), ("identity_from_identity", "id")):
            out[name] = probe(fit[key][kf], fit["speaker"][kf], ev[key][ke], ev["speaker"][ke], c)
    return out


def _u8(x: torch.Tensor) -> np.ndarray:
    """(..., 3, H, W) in [-1, 1] -> (..., H, W, 3) uint8 on the host."""
    return to_uint8(x).cpu().numpy()


def _box(img: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """(..., H, W, 3) -> the relative box's pixels (..., h, w, 3)."""
    rows, cols = box_slices(*img.shape[-3:-1], box)
    return img[..., rows, cols, :]


def ssim_frames(pred: np.ndarray, gt: np.ndarray, win: int = 7, data_range: float = 255.0) -> np.ndarray:
    """Per-frame SSIM of (N, H, W, C) stacks, computed exactly as scikit-image's ``structural_similarity``
    (uniform window, sample covariance, K1=0.01, K2=0.03, borders cropped, channel mean) but for all frames
    at once; tests check it against scikit-image frame by frame."""
    x, y = pred.astype(np.float64), gt.astype(np.float64)
    size = (1, win, win, 1)
    ux, uy = uniform_filter(x, size), uniform_filter(y, size)
    uxx, uyy, uxy = uniform_filter(x * x, size), uniform_filter(y * y, size), uniform_filter(x * y, size)
    cov = win * win / (win * win - 1.0)
    vx, vy, vxy = cov * (uxx - ux * ux), cov * (uyy - uy * uy), cov * (uxy - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    pad = (win - 1) // 2
    return s[:, pad:-pad, pad:-pad, :].mean(axis=(1, 2)).mean(-1)  # (N,)


def psnr_frames(pred: np.ndarray, gt: np.ndarray, data_range: float = 255.0) -> np.ndarray:
    """Per-frame PSNR (dB) of (N, H, W, C) stacks, capped at 100 dB for identical frames."""
    mse = ((pred.astype(np.float64) - gt.astype(np.float64)) ** 2).mean(axis=(1, 2, 3))
    return np.minimum(100.0, 10 * np.log10(data_range**2 / np.maximum(mse, 1e-20)))


def image_quality(pred: np.ndarray, gt: np.ndarray, box: tuple[float, float, float, float]) -> dict[str, float]:
    """Mean SSIM / PSNR over frames (N, H, W, 3) uint8, on the face and on the mouth box, and the mouth's
    sharpness: its gradient energy against the ground truth's (1: as sharp as real video; a blurred,
    averaged mouth scores well below, though blur raises PSNR)."""
    pm, gm = _box(pred, box), _box(gt, box)
    win = min(7, min(pm.shape[1:3]) // 2 * 2 - 1)
    return {"ssim": float(ssim_frames(pred, gt).mean()), "psnr": float(psnr_frames(pred, gt).mean()),
            "ssim_mouth": float(ssim_frames(pm, gm, win).mean()), "psnr_mouth": float(psnr_frames(pm, gm).mean()),
            "sharpness_mouth": gradient_energy(pm) / max(gradient_energy(gm), 1e-9)}


def gradient_energy(frames: np.ndarray) -> float:
    """Mean squared finite-difference gradient of the grey level, frames (N, h, w, 3) uint8."""
    g = frames.astype(np.float64).mean(-1)  # (N, h, w)
    gy, gx = np.diff(g, axis=1)[:, :, :-1], np.diff(g, axis=2)[:, :-1, :]  # (N, h - 1, w - 1) each
    return float((gx**2 + gy**2).mean())


@dataclass
class Generated:
    ref: np.ndarray  # (N, H, W, 3) uint8 reference frames
    gt: np.ndarray  # (N, T, H, W, 3)
    audio: np.ndarray  # (N, T, H, W, 3) audio-driven
    video: np.ndarray  # (N, T, H, W, 3) video-driven
    keys: list[str]
    sync: dict[str, float]


@torch.no_grad()
def generate_test(nets: dict, batches: Any, device: torch.device) -> Generated:
    """Regenerate every test clip from its first frame (identity) and its own audio / video words."""
    refs, gts, auds, vids, keys = [], [], [], [], []
    d_real, d_gen, d_shuf = [], [], []
    for b in batches:
        frames, mfcc, mask = to_images(b["frames"].to(device)), b["mfcc"].to(device), b["mask"].to(device)
        ref = frames[:, 0]  # (B, 3, H, W)
        a, v = nets["Ea_w"](mfcc), nets["Ev_w"](frames)  # (B, T, D)
        ga = generate_frames(nets["Ep"], nets["G"], ref, a)  # (B, T, 3, H, W)
        gv = generate_frames(nets["Ep"], nets["G"], ref, v)
        ea = F.normalize(masked_mean(a, mask), dim=-1)
        er = F.normalize(masked_mean(v, mask), dim=-1)
        eg = F.normalize(masked_mean(nets["Ev_w"](ga), mask), dim=-1)
        d_real.append((er - ea).norm(dim=-1))
        d_gen.append((eg - ea).norm(dim=-1))
        d_shuf.append((eg - ea.roll(1, 0)).norm(dim=-1))
        refs.append(_u8(ref))
        gts.append(_u8(frames))
        auds.append(_u8(ga))
        vids.append(_u8(gv))
        keys += b["key"]
    dr, dg, ds = (torch.cat(x).cpu().numpy() for x in (d_real, d_gen, d_shuf))
    sync = {"dist_real": float(dr.mean()), "dist_generated": float(dg.mean()), "dist_shuffled_audio": float(ds.mean()),
            "confidence_generated": float((ds - dg).mean())}
    return Generated(np.concatenate(refs), np.concatenate(gts), np.concatenate(auds), np.concatenate(vids), keys, sync)


@torch.no_grad()
def generate_from(nets: dict, batches: Any, device: torch.device, ref_index: dict[str, int]) -> np.ndarray:
    """Regenerate every test clip from its own audio words, with the reference taken from the frame
    ``ref_index[key]`` of each clip (keys as in the batches) -> (N, T, H, W, 3) uint8."""
    out = []
    for b in batches:
        frames, mfcc = to_images(b["frames"].to(device)), b["mfcc"].to(device)
        idx = torch.tensor([ref_index[k] for k in b["key"]], device=device)
        ref = frames[torch.arange(len(frames), device=device), idx]  # (B, 3, H, W)
        out.append(_u8(generate_frames(nets["Ep"], nets["G"], ref, nets["Ea_w"](mfcc))))
    return np.concatenate(out)


def majority_rate(y: np.ndarray) -> float:
    _, counts = np.unique(y, return_counts=True)
    return float(counts.max() / counts.sum())
