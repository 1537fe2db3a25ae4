"""What removing the identity subspace takes from the mouth's motion (issue 27): a study on a trained model.

On a ``disent.pt`` trained without the removal (``--model``; ``model.identity_rank: 0``, e.g. the workspace's after
``dvc exp run -S model.identity_rank=0``: the default model removes the subspace already), the word features
before the encoders' last layer are read on every LRW split; the identity subspace is fitted on the training
clips as ``disent`` fits it (:class:`davs.models.identity_nuisance.IdentityStats`, label-free), at several ranks,
and removed in several ways:

- ``plain``: the orthogonal projection off the directions identity predicts best (what ``model.identity_rank``
  does);
- ``motion``: the directions where identity explains the most *for the frame-to-frame motion they carry* (the
  generalised eigenproblem of the identity-predicted covariance against the within-clip covariance of the word
  frames), removed by the projection orthogonal in motion-whitened coordinates, i.e. one that keeps as much of
  the motion as any removal of those speaker means can;
- ``plain_ridgeR``, ``plain_pcsK``: the same regression with ridge R, or from the identity vectors' top K
  principal components only (they hold nearly all of the vectors' variance);
- ``clustersK``: the top principal directions of the means of K pseudo-speakers (k-means of the identity
  vectors, as the ``disent.clip_id_*`` adversary forms them; label-free), orthogonal projection;
- ``speakers``: the same with the corpus's real speakers of the training clips. It reads speaker labels, so it
  is no method for LRW: a bound on what a better label-free estimate of the speakers' directions could give.

Each row: the speaker read from the pooled features by the eval's linear probe (fitted on val, scored on test;
chance 0.1 over the probed speakers), and by the same probe on the training clips (fitted on one half, scored on
the other: the clips the encoders' adversary and the removals were fitted on), the share of the word frames'
within-clip variance removed, and the renderer's mouth openness read by a ridge regression (fitted on val, R^2 on
test) from each frame's features, from those of the frame some frames ahead or behind that reads it best, and
from those of the frame and the two either side (what the generator, which reads that context, can draw).

    python experiments/identity_motion.py --model DISENT_PT  # -> experiments/results/identity_motion.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import Ridge

from davs.checkpoint import load_checkpoint
from davs.data.lrw import clip_path
from davs.data.spec import eval_loaders
from davs.evaluation import probe
from davs.files import atomic_write_text
from davs.losses.ridge_adversary import pseudo_speakers
from davs.models import load_nets
from davs.models.identity_nuisance import IdentityStats, remove_along
from davs.provenance import environment, file_hash
from davs.synth.corpus import read_mouth_states
from davs.tensors import masked_mean, to_images
from pipeline import paths
from pipeline.params import load_params
from pipeline.stages import data_spec

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results" / "identity_motion.json"
RANKS = (4, 8, 12, 16, 24)
LEADS = range(-3, 4)  # word frame i's openness read from the features of frame i + lead
CONTEXT = 2  # ... or from those of frames i - 2 .. i + 2
CLUSTERS = (16, 32)
RIDGES = (1.0, 50.0)  # plain's regression with these ridges too (disent.identity_ridge is the pipeline's)
PCS = (10, 16)  # ... and from the identities' top principal components only


@torch.no_grad()
def features(model: str, p) -> dict[str, dict[str, torch.Tensor]]:
    """Per split: word features before the last layer (N, T, D) of both encoders, the clips' identity (N, E),
    speaker (N,), word mask (N, T) and the renderer's mouth openness (N, T)."""
    nets = load_nets(load_checkpoint(model), ("Ev_w", "Ea_w", "Ep"), "cpu")
    if nets["Ev_w"].nuisance.rank:
        raise SystemExit(f"{model} already removes an identity subspace: run on a model of identity_rank 0 "
                         "(--model; dvc exp run -S model.identity_rank=0 writes one)")
    states = read_mouth_states(paths.mouth_states(p))
    data = replace(data_spec(p, "joint"), batch_size=p.eval.batch_size, id_batch_size=p.eval.batch_size)
    out = {}
    for split in ("train", "val", "test"):
        parts: dict[str, list] = {k: [] for k in ("video", "audio", "id", "speaker", "mask", "open")}
        for b in eval_loaders(data, p.model.window, split, ("lrw",))["lrw"]():
            frames = to_images(b["frames"])  # (B, T, 3, H, W)
            parts["video"].append(nets["Ev_w"].features(frames).float())
            parts["audio"].append(nets["Ea_w"].features(b["mfcc"]).float())
            parts["id"].append(nets["Ep"].sequence(frames).float().mean(1))
            parts["speaker"].append(b["speaker"])
            parts["mask"].append(b["mask"])
            t = frames.shape[1]
            t0 = p.data.frame_offset  # the shards' first frame is the clip's frame t0
            parts["open"].append(torch.from_numpy(np.stack([states[clip_path(k)][t0 : t0 + t, 0] for k in b["key"]])))
        out[split] = {k: torch.cat(v) for k, v in parts.items()}
    return out


def removals(x: torch.Tensor, mask: torch.Tensor, ids: torch.Tensor, rank: int, ridge: float,
             speakers: torch.Tensor | None = None) -> dict[str, tuple]:
    """The removals fitted on training features ``x`` (N, T, D): name -> (mean (D,), basis (D, r),
    readout (D, r)); a feature g loses (g - mean) @ readout @ basis.T. ``speakers`` (N,) adds the real speakers'
    removal (the bound)."""
    pooled = masked_mean(x, mask)  # (N, D)
    out = {"plain": plain(pooled, ids, rank, ridge)}
    for r in RIDGES:  # the same regression, shrunk harder
        out[f"plain_ridge{r:g}"] = plain(pooled, ids, rank, r)
    zc = ids.double() - ids.double().mean(0)  # (N, E)
    pcs = torch.linalg.svd(zc, full_matrices=False)[2]  # (E, E) principal axes of the identities, rows
    for k in PCS:  # the regression from the identities' top k principal components only
        out[f"plain_pcs{k}"] = plain(pooled, zc @ pcs[:k].T, rank, ridge)
    frames = (x - pooled[:, None])[mask.bool()]  # (M, D) word frames about their clip's mean
    stats = IdentityStats()
    stats.add(pooled, ids, motion=frames)
    out["motion"] = stats.motion_subspace(rank, ridge)  # what disent.identity_form: motion removes
    for k in CLUSTERS:
        if rank < k:
            out[f"clusters{k}"] = means_removal(pooled, pseudo_speakers(ids, k), rank)
    if speakers is not None and bool((speakers >= 0).all()):  # reads labels: a bound, not a method
        onehot = torch.nn.functional.one_hot(speakers.long())  # (N, S)
        if rank < int((onehot.sum(0) > 0).sum()):
            out["speakers"] = means_removal(pooled, onehot, rank)
    return out


def plain(pooled: torch.Tensor, ids: torch.Tensor, rank: int, ridge: float) -> tuple:
    """``model.identity_rank``'s removal: off the ``rank`` directions of ``pooled`` (N, D) that ``ids`` (N, E)
    predict best (:meth:`IdentityStats.subspace`)."""
    stats = IdentityStats()
    stats.add(pooled, ids)
    mean, basis = stats.subspace(rank, ridge)
    return mean, basis, basis


def means_removal(pooled: torch.Tensor, onehot: torch.Tensor, rank: int) -> tuple:
    """The orthogonal removal of the top ``rank`` principal directions of the group means of ``pooled`` (N, D),
    groups ``onehot`` (N, K), each mean weighted by its group's share of the clips."""
    onehot = onehot.double()[:, onehot.sum(0) > 0]  # (N, K) non-empty groups
    g = pooled.double() - pooled.double().mean(0)  # (N, D)
    means = (onehot.T @ g) / onehot.sum(0)[:, None]  # (K, D)
    between = means.T @ torch.diag(onehot.sum(0) / len(g)) @ means  # (D, D) between-group covariance
    basis = torch.linalg.eigh(between)[1].flip(1)[:, :rank].float()  # (D, r)
    return pooled.mean(0), basis, basis


def apply(removal: tuple, x: torch.Tensor) -> torch.Tensor:
    """``x`` (..., D) with a removal (mean, basis, readout) applied: centred, its part along readout removed."""
    mean, basis, readout = removal
    return remove_along(x - mean, basis, readout)  # (..., D)


def score(f: dict, key: str, removal: tuple | None, c: float) -> dict[str, float]:
    def kept(split: str) -> torch.Tensor:
        x = f[split][key]
        return x if removal is None else apply(removal, x)  # (N, T, D)

    val, test = kept("val"), kept("test")
    spk = probe(masked_mean(val, f["val"]["mask"]).numpy(), f["val"]["speaker"].numpy(),
                masked_mean(test, f["test"]["mask"]).numpy(), f["test"]["speaker"].numpy(), c)
    train = masked_mean(kept("train"), f["train"]["mask"]).numpy()  # (N, D): the clips training fitted on
    halves = np.array_split(np.random.default_rng(0).permutation(len(train)), 2)
    who = f["train"]["speaker"].numpy()
    spk_train = probe(train[halves[0]], who[halves[0]], train[halves[1]], who[halves[1]], c)

    def motion(x: torch.Tensor, split: str) -> torch.Tensor:
        m = f[split]["mask"]
        return (x - masked_mean(x, m)[:, None])[m.bool()]  # (M, D)

    raw = motion(f["test"][key], "test")
    removed = 1 - float(motion(test, "test").pow(2).sum() / raw.pow(2).sum().clamp_min(1e-12))
    r2 = openness_r2(f, val, test)
    leads = {k: openness_r2(f, val, test, lead=k) for k in LEADS}
    return {"speaker": round(float(spk), 4), "speaker_train": round(float(spk_train), 4),
            "motion_removed": round(removed, 4), "openness_r2": round(r2, 4),
            "openness_lead": max(leads, key=leads.get), "openness_r2_lead": round(max(leads.values()), 4),
            "openness_r2_context": round(openness_r2(f, val, test, context=CONTEXT), 4)}


def openness_r2(f: dict, val: torch.Tensor, test: torch.Tensor, lead: int = 0, context: int = 0) -> float:
    """The renderer's openness of word frame i read by a ridge regression (fitted on val, R^2 on test; its
    penalty scaled by the frames read) from the features of frame i + ``lead``, or of frames i - ``context`` ..
    i + ``context`` side by side (edge frames repeated at the clip's ends): what a reader of one frame, or of its
    neighbours too, can draw."""
    def pairs(split: str, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        m, y = f[split]["mask"].bool(), f[split]["open"]
        t = x.shape[1]
        if context:
            pad = torch.cat([x[:, :1].expand(-1, context, -1), x, x[:, -1:].expand(-1, context, -1)], 1)
            x = torch.cat([pad[:, d : d + t] for d in range(2 * context + 1)], -1)  # (N, T, (2c + 1) D)
        src = torch.arange(t) + lead  # the feature frame read for word frame i
        ok = (src >= 0) & (src < t)
        return x[:, src[ok]][m[:, ok]].numpy(), y[:, ok][m[:, ok]].numpy()

    (xv, yv), (xt, yt) = pairs("val", val), pairs("test", test)
    mu, sd = xv.mean(0), xv.std(0) + 1e-6
    return float(Ridge(alpha=2.0 * context + 1.0).fit((xv - mu) / sd, yv).score((xt - mu) / sd, yt))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a disent.pt of model.identity_rank 0")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    p = load_params(ROOT / "params.yaml")
    f = features(args.model, p)
    rows = []
    for key in ("video", "audio"):
        rows.append({"features": key, "removal": "none", "rank": 0, **score(f, key, None, p.eval.probe_c)})
        for rank in RANKS:
            fits = removals(f["train"][key], f["train"]["mask"], f["train"]["id"], rank, p.disent.identity_ridge,
                            f["train"]["speaker"])
            for name, removal in fits.items():
                rows.append({"features": key, "removal": name, "rank": rank, **score(f, key, removal, p.eval.probe_c)})
                print(json.dumps(rows[-1]), flush=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    atomic_write_text(args.out, json.dumps({
        "note": "One model (seed 0), no retraining: the word features of --model with the identity subspace removed "
                "after training. speaker: the eval's linear probe on pooled features (chance 0.1); speaker_train: the same "
                "probe fitted on half of the training clips (the clips the encoders and the removals were fitted on), "
                "scored on the other half; motion_removed: the "
                "share of the word frames' within-clip variance removed; openness_r2: the renderer's mouth openness "
                "read from each frame's features (ridge, fitted on val, R^2 on test); openness_lead, openness_r2_lead: the "
                "frame ahead (negative: behind) whose features read a frame's openness best, and that R^2; "
                "openness_r2_context: read from the features of the frame and the 2 either side.",
        "commit": commit, "model_sha256": file_hash(args.model), "environment": environment(), "rows": rows},
        indent=1) + "\n")


if __name__ == "__main__":
    main()
