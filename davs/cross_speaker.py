"""Whose mouth does a face driven by another speaker get? Speaker A's reference frame, speaker B's words.

Word features that carry their speaker bring the driver into the target's mouth: B's lip colour or shape
drawn on A's face. To measure it, a speaker probe is fitted on *real* mouth crops of a held-out split (a
logistic regression on the mouth box's pixels, every frame of every clip with a known speaker; fitted at
evaluation time, never seen by training) and applied to the generated mouths of cross-driven test clips:
each test clip of A is paired with the next clip in its batch spoken by another known speaker B, and
regenerated from its own first frame with B's video words and, separately, B's audio words.

Reported per driving modality: the share of generated mouth frames the probe calls A (the target: higher is
better) and B (the driver: should stay near chance), beside the probe's accuracy on real test mouths (its
ceiling) and chance.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from davs.models import generate_frames
from davs.tensors import box_slices, to_images

POOL = 2  # the probe reads the mouth box average-pooled by this factor


def _mouths(frames: torch.Tensor, box: tuple[float, float, float, float]) -> torch.Tensor:
    """(B, T, 3, H, W) in [-1, 1] -> (B, T, F) pooled mouth-box pixels."""
    rows, cols = box_slices(*frames.shape[-2:], box)
    m = frames[..., rows, cols].flatten(0, 1).float()  # (B*T, 3, h, w)
    m = torch.nn.functional.avg_pool2d(m, POOL, ceil_mode=True)
    return m.flatten(1).view(*frames.shape[:2], -1)  # (B, T, F)


def driver_index(speakers: torch.Tensor) -> torch.Tensor:
    """For each clip, the next clip (cyclically, in batch order) with another known speaker; -1 if none or
    if the clip's own speaker is unknown. speakers (B,) -> (B,)."""
    b = len(speakers)
    out = torch.full((b,), -1, dtype=torch.long)
    for i in range(b):
        if speakers[i] < 0:
            continue
        for k in range(1, b):
            j = (i + k) % b
            if speakers[j] >= 0 and speakers[j] != speakers[i]:
                out[i] = j
                break
    return out


@torch.no_grad()
def real_mouths(batches: Any, box: tuple[float, float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Every word frame's pooled mouth pixels (N, F) and its speaker (N,), of clips with a known speaker."""
    xs, ys = [], []
    for b in batches:
        keep = b["speaker"] >= 0
        if not keep.any():
            continue
        m = _mouths(to_images(b["frames"][keep]), box)  # (K, T, F)
        mask = b["mask"][keep].bool()  # (K, T)
        xs.append(m[mask].numpy())
        ys.append(b["speaker"][keep][:, None].expand_as(mask)[mask].numpy())
    return np.concatenate(xs), np.concatenate(ys)


def fit_mouth_probe(x: np.ndarray, y: np.ndarray, c: float) -> Any:
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
    return clf.fit(x, y)


@torch.no_grad()
def cross_speaker(nets: dict, test: Any, val: Any, box: tuple[float, float, float, float], device: torch.device,
                  c: float) -> dict[str, float]:
    """The metrics above; ``test`` and ``val`` are one-pass loader factories."""
    probe = fit_mouth_probe(*real_mouths(val(), box), c)
    known = set(probe.classes_.tolist())
    calls: dict[str, list[np.ndarray]] = {"target_video": [], "driver_video": [], "target_audio": [],
                                          "driver_audio": [], "real": []}
    for b in test():
        frames, mfcc = to_images(b["frames"].to(device)), b["mfcc"].to(device)
        spk = torch.tensor([s if int(s) in known else -1 for s in b["speaker"].tolist()])
        drv = driver_index(spk)
        pair = drv >= 0
        if not pair.any():
            continue
        a, j = torch.nonzero(pair).flatten(), drv[pair]
        mask = b["mask"][a].bool()  # (P, T): the target's word frames
        tgt_frames, drv_frames = frames[a.to(device)], frames[j.to(device)]  # (P, T, 3, H, W) each
        target, driver = spk[a][:, None].expand_as(mask)[mask].numpy(), spk[j][:, None].expand_as(mask)[mask].numpy()
        real = probe.predict(_mouths(tgt_frames.cpu(), box)[mask].numpy())
        calls["real"].append(real == target)
        ref = tgt_frames[:, 0]  # (P, 3, H, W)
        for name, words in (("video", nets["Ev_w"](drv_frames)), ("audio", nets["Ea_w"](mfcc[j.to(device)]))):
            gen = generate_frames(nets["Ep"], nets["G"], ref, words)  # (P, T, 3, H, W)
            pred = probe.predict(_mouths(gen.clamp(-1, 1).cpu(), box)[mask].numpy())
            calls[f"target_{name}"].append(pred == target)
            calls[f"driver_{name}"].append(pred == driver)
    out = {f"mouth_is_{k}": float(np.concatenate(v).mean()) for k, v in calls.items() if k != "real" and v}
    if calls["real"]:
        out["mouth_probe_real"] = float(np.concatenate(calls["real"]).mean())
    out["chance"] = 1.0 / max(1, len(known))
    return out
