"""What the judges say about a set of videos: lip sync (LSE-D, LSE-C, offset) and mouth shape (openness
correlation with the ground truth, mouth-state error)."""

from __future__ import annotations

import numpy as np
import torch

from davs.judges.mouth_regressor import MouthStateRegressor
from davs.judges.syncnet import SyncNet


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 -> float in [-1, 1]."""
    return x.float().div(127.5).sub(1.0)


def gray(x: torch.Tensor) -> torch.Tensor:
    """(..., 3, h, w) -> (..., h, w) luma."""
    return 0.299 * x[..., 0, :, :] + 0.587 * x[..., 1, :, :] + 0.114 * x[..., 2, :, :]


def stacks(rois: torch.Tensor, stack: int) -> torch.Tensor:
    """(B, T, 3, h, w) float ROIs -> (B, T - stack + 1, stack, h, w) grayscale stacks, centre t + stack // 2."""
    g = gray(rois)  # (B, T, h, w)
    return g.unfold(1, stack, 1).permute(0, 1, 4, 2, 3)  # (B, T', h, w, stack) -> (B, T', stack, h, w)


@torch.no_grad()
def offset_distances(net: SyncNet, rois: torch.Tensor, mfcc: torch.Tensor, audio_start: int,
                     max_shift: int = 7) -> torch.Tensor:
    """Mean embedding distance per audio offset, as SyncNet's evaluation computes it.

    rois (B, T, 3, h, w) in [-1, 1]: mouth ROIs of T video frames; mfcc (B, Ta, F, C): MFCC windows of the
    audio, where video frame t is audio frame ``t + audio_start``. For each offset o in
    [-max_shift, max_shift], the distance between the stack centred on t and the audio window at
    t + audio_start + o, averaged over the centres where that window exists -> (B, 2 * max_shift + 1).
    """
    st = stacks(rois, net.stack)  # (B, T', stack, h, w)
    b, n = st.shape[:2]
    ev = net.embed_video(st.flatten(0, 1)).view(b, n, -1)  # (B, T', E)
    ea = net.embed_audio(mfcc.flatten(0, 1)).view(b, mfcc.shape[1], -1)  # (B, Ta, E)
    centres = torch.arange(n) + net.stack // 2 + audio_start  # audio index of each stack's centre
    out = []
    for o in range(-max_shift, max_shift + 1):
        idx = centres + o
        ok = (idx >= 0) & (idx < ea.shape[1])
        d = (ev[:, ok] - ea[:, idx[ok]]).norm(dim=-1)  # (B, valid)
        out.append(d.mean(1))
    return torch.stack(out, 1)  # (B, offsets)


def lse(dists: torch.Tensor, max_shift: int = 7) -> dict[str, float]:
    """LSE-D (min over offsets of the mean distance), LSE-C (median minus min) and the offset found,
    averaged over videos; ``offset_abs`` is the mean |offset| and ``offset_zero`` the share found at 0."""
    dmin, arg = dists.min(1)
    conf = dists.median(1).values - dmin
    off = (arg - max_shift).float()
    return {"lse_d": float(dmin.mean()), "lse_c": float(conf.mean()), "offset": float(off.median()),
            "offset_abs": float(off.abs().mean()), "offset_zero": float((off == 0).float().mean())}


@torch.no_grad()
def mouth_states(net: MouthStateRegressor, rois: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """rois (..., 3, h, w) in [-1, 1] -> (..., 3) predicted (open, width, round), on the rois' device (each
    batch goes to the net's device and back)."""
    dev = next(net.parameters()).device
    flat = rois.flatten(0, -4)
    out = torch.cat([net(flat[i : i + batch].to(dev)).to(rois.device) for i in range(0, len(flat), batch)])
    return out.view(*rois.shape[:-3], 3)


def mouth_scores(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """pred, gt (N, 3) mouth states -> Pearson r of openness, its gain (least-squares slope of predicted on
    true openness: 1 opens as far as the truth, 0 does not move; r alone cannot tell a mouth that barely
    moves in sync from one that talks) and the mean absolute state error."""
    po, go = pred[:, 0], gt[:, 0]
    r = float(np.corrcoef(po, go)[0, 1]) if po.std() > 1e-8 and go.std() > 1e-8 else 0.0
    gain = float(np.cov(po, go)[0, 1] / go.var(ddof=1)) if go.std() > 1e-8 else 0.0
    return {"open_corr": r, "open_gain": gain, "state_mae": float(np.abs(pred - gt).mean())}


@torch.no_grad()
def judge_videos(judges, videos: dict[str, np.ndarray], mfcc: torch.Tensor, audio_start: int,
                 states: torch.Tensor | None, shuffled: str | None = "real", batch: int = 32) -> dict[str, float]:
    """Both judges' figures for named sets of videos of the same clips.

    videos: {name: (N, T, H, W, 3) uint8}; mfcc (N, Ta, F, C) every clip's audio, video frame t being
    audio frame ``t + audio_start``; states (N, Ta, 3) ground-truth mouth states on the audio's frame
    grid, or None. The video set named ``shuffled`` is also scored against another clip's audio (half the
    set away, so mostly another word), as ``shuffled_audio``. Frame 0 (the reference of generated videos)
    is left out of the mouth scores. Keys: ``lse_{d,c}_<name>``, ``offset_<name>``, ``offset_zero_<name>``,
    ``mouth_{open_corr,open_gain,state_mae}_<name>``.
    """
    dev = next(judges.sync.parameters()).device
    k = judges.cfg.max_shift
    out: dict[str, float] = {}
    n = len(mfcc)
    for name, vid in videos.items():
        runs = [(name, mfcc)]
        if name == shuffled and n > 1:
            runs.append(("shuffled_audio", mfcc.roll(n // 2, 0)))
        rois = judges.rois(to_float(torch.from_numpy(vid)).movedim(-1, -3))  # (N, T, 3, h, w)
        for label, audio in runs:
            d = torch.cat([offset_distances(judges.sync, rois[i : i + batch].to(dev), audio[i : i + batch].to(dev),
                                            audio_start, k).cpu() for i in range(0, n, batch)])
            out |= {f"{key}_{label}": v for key, v in lse(d, k).items() if key != "offset_abs"}
        if judges.mouth is not None and states is not None:
            pred = mouth_states(judges.mouth, rois)  # (N, T, 3)
            gt = states[:, audio_start : audio_start + rois.shape[1]]  # (N, T, 3)
            s = mouth_scores(pred[:, 1:].flatten(0, 1).numpy(), gt[:, 1:].flatten(0, 1).numpy())
            out |= {f"mouth_{k}_{name}": v for k, v in s.items()}
    return out


@torch.no_grad()
def reference_leak(judges, from_rest: np.ndarray, from_open: np.ndarray, rest_ref: np.ndarray,
                   open_ref: np.ndarray) -> dict[str, float]:
    """Does the reference's own mouth show through G's skip connections? The same clips, the same audio
    words, generated once from a reference at rest and once from an open-mouthed reference of the same clip.

    from_rest, from_open (N, T, H, W, 3) uint8 generated clips; rest_ref, open_ref (N, H, W, 3) uint8.
    Returns ``ref_mouth_leak``: the generated clips' mean predicted openness difference over the references'
    (0: the mouth follows the words alone; 1: the reference's opening is copied into every frame), and
    ``ref_open_gap``, the references' own predicted openness difference (the denominator).
    """
    def openness(u8: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(u8)).reshape(-1, *u8.shape[-3:])  # (M, H, W, 3)
        return mouth_states(judges.mouth, judges.rois(to_float(x).movedim(-1, -3)))[:, 0]  # (M, 3, h, w) -> (M,)

    gap = float((openness(open_ref) - openness(rest_ref)).mean())
    moved = float((openness(from_open[:, 1:]) - openness(from_rest[:, 1:])).mean())
    return {"ref_mouth_leak": moved / gap if abs(gap) > 1e-6 else 0.0, "ref_open_gap": gap}
