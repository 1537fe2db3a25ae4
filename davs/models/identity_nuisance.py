"""The last layer of both word encoders: a fixed projection that removes the identity subspace.

A speaker's clips share an offset in word-feature space (lip shape and colour in the mouth crop, the voice
in the MFCC) that a linear probe reads however the adversaries push. The disentanglement stage estimates the
directions of the word features that the clip's own identity vectors predict (a reduced-rank regression,
:meth:`IdentityStats.subspace`, label-free) and this layer removes them from every frame's feature::

    f  ->  mix(scale * (g - (g @ readout) @ basis.T)),   g = f - mean,   basis, readout (D, r)

``disent.identity_form`` chooses the projection: ``plain`` (readout = basis, orthonormal: the orthogonal
projection off the directions identity predicts best) or ``motion`` (the oblique projection that removes the
speakers' directions while keeping as much of the frames' motion about their clip's mean as such a removal can:
:meth:`IdentityStats.motion_subspace`) or ``slow`` (``plain``'s directions, from which each frame loses only the
local mean of its coordinates, over ``window`` frames either side: what is static in a clip, as a speaker is,
goes; how the frame moves about it stays, :func:`remove_along`).

Class means along the removed directions become equal, so a linear probe cannot separate speakers by them.
The identity directions can hold most of the features' variance; ``scale`` gives what is left the variance
the features had, so the networks that read them see inputs of the usual size, and the output is centred
(each modality about its own mean), so cosine similarities between audio and video words compare what is
left rather than a shared offset. ``mix`` is a linear map (the identity until the disentanglement stage's
last part trains it, with the word classifier, to align audio and video words again): any linear map keeps the
speakers' means equal, so it cannot bring the speaker back for a linear probe.
Being linear (and, but for ``slow``, per frame) it commutes with pooling; chunked streaming stays exact with
:attr:`IdentityNuisance.context` frames either side. With ``rank`` 0 it is the
identity; before the subspace is fitted (an all-zero basis) it is ``mix`` alone.
"""

from __future__ import annotations

import torch
from torch import nn

MOTION_FLOOR = 1e-3  # the within-clip covariance's ridge in motion_subspace, relative to its mean variance


def remove_along(g: torch.Tensor, basis: torch.Tensor, readout: torch.Tensor, window: int = 0) -> torch.Tensor:
    """The removal on centred features ``g`` (..., D): their coordinates along ``readout`` (D, r) taken away
    along ``basis`` (D, r); a projection when ``readout.T @ basis`` is the identity. ``window`` > 0 (``g`` is
    (..., T, D)): only the coordinates' local mean over ``window`` frames either side goes, each frame keeps its
    movement about it."""
    c = g @ readout  # (..., T, r)
    if window > 0:
        c = local_mean(c, window)
    return g - c @ basis.T  # (..., T, D)


def local_mean(x: torch.Tensor, window: int) -> torch.Tensor:
    """x (..., T, r) -> (..., T, r): each frame's mean over frames [t - window, t + window] within the
    sequence. Every frame sums its own window in one fixed order, so a chunk with ``window`` frames of context
    either side gives the whole sequence's values exactly."""
    t, k = x.shape[-2], 2 * window + 1
    lead = x.shape[:-2]
    flat = x.reshape(-1, t, x.shape[-1]).transpose(1, 2)  # (N, r, T)
    padded = torch.nn.functional.pad(flat, (window, window))  # (N, r, T + 2 window), zeros outside
    sums = padded.unfold(-1, k, 1).sum(-1)  # (N, r, T)
    ones = torch.nn.functional.pad(torch.ones(t, device=x.device, dtype=x.dtype), (window, window))
    counts = ones.unfold(0, k, 1).sum(-1)  # (T,): frames inside each window
    return (sums / counts).transpose(1, 2).reshape(*lead, t, x.shape[-1])  # (..., T, r)


class IdentityNuisance(nn.Module):
    """(..., D) -> (..., D): centred on ``mean``, the span of ``basis`` removed, rescaled by ``scale``."""

    def __init__(self, feat_dim: int = 128, rank: int = 0) -> None:
        super().__init__()
        self.rank = rank
        # persistent only when in use: model files of rank 0 keep the keys they always had
        self.register_buffer("mean", torch.zeros(feat_dim), persistent=rank > 0)
        self.register_buffer("basis", torch.zeros(feat_dim, rank), persistent=rank > 0)
        self.register_buffer("readout", torch.zeros(feat_dim, rank), persistent=rank > 0)
        self.register_buffer("scale", torch.ones(()), persistent=rank > 0)
        self.register_buffer("window", torch.zeros((), dtype=torch.long), persistent=rank > 0)
        self._window = 0  # the buffer's value as a Python int: read each forward without a device sync
        self.mix = nn.Linear(feat_dim, feat_dim, bias=False) if rank > 0 else None
        if self.mix is not None:
            nn.init.eye_(self.mix.weight)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if self.rank == 0:
            return feats
        basis, readout, mean = (b.to(feats.dtype) for b in (self.basis, self.readout, self.mean))
        g = feats - mean  # (..., D)
        kept = remove_along(g, basis, readout, self.context)  # (..., T, D)
        return self.mix(self.scale.to(feats.dtype) * kept)  # (..., T, D), centred

    @property
    def context(self) -> int:
        """Frames either side a frame's output reads (0: it is per frame)."""
        return self._window if self.rank else 0

    @torch.no_grad()
    def set(self, mean: torch.Tensor, basis: torch.Tensor, scale: float = 1.0,
            readout: torch.Tensor | None = None, window: int = 0) -> None:
        """``readout`` None: the orthogonal projection (readout = basis); ``window`` > 0: only the local mean
        along the directions is removed (:func:`remove_along`)."""
        readout = basis if readout is None else readout
        for name, b in (("basis", basis), ("readout", readout)):
            if b.shape != self.basis.shape:
                raise ValueError(f"identity {name} of shape {tuple(b.shape)}, expected {tuple(self.basis.shape)}")
        self.mean.copy_(mean)
        self.basis.copy_(basis)
        self.readout.copy_(readout)
        self.scale.fill_(scale)
        self.window.fill_(window)
        self._window = int(window)
        if self.mix is not None:  # what it mixed is gone: start again from the identity
            nn.init.eye_(self.mix.weight)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args) -> None:
        """Model files written before the readout and the window existed hold the orthogonal projection of every
        frame: readout = basis, window 0."""
        if self.rank and prefix + "readout" not in state_dict and prefix + "basis" in state_dict:
            state_dict[prefix + "readout"] = state_dict[prefix + "basis"]
        if self.rank and prefix + "window" not in state_dict and prefix + "basis" in state_dict:
            state_dict[prefix + "window"] = torch.zeros((), dtype=torch.long)
        super()._load_from_state_dict(state_dict, prefix, *args)
        if self.rank and prefix + "window" in state_dict:
            self._window = int(state_dict[prefix + "window"])


class IdentityStats:
    """Running sums over clips of pooled word features w (D,) and identity vectors z (E,), in float64: all a
    reduced-rank regression from z to w needs, in O((D + E)^2) memory however many clips are added."""

    def __init__(self) -> None:
        self.n = 0
        self.sums: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def add(self, words: torch.Tensor, ids: torch.Tensor, motion: torch.Tensor | None = None) -> None:
        """``words`` (N, D), ``ids`` (N, E) of N clips; ``motion`` (M, D): their frames' features about their
        clip's mean (what :meth:`motion_subspace` keeps)."""
        w, z = words.detach().double().cpu(), ids.detach().double().cpu()
        parts = {"w": w.sum(0), "z": z.sum(0), "zz": z.T @ z, "zw": z.T @ w}
        if motion is not None:
            m = motion.detach().double().cpu()
            parts |= {"mm": m.T @ m, "m_n": torch.tensor(float(len(m)), dtype=torch.float64)}
        for k, v in parts.items():
            self.sums[k] = self.sums[k] + v if k in self.sums else v
        self.n += len(w)

    def fitted_covariance(self, ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
        """A ridge regression from the standardised identities to the centred words: returns (the words' mean
        (D,), the covariance of their identity-predicted part (D, D)), float64. ``ridge`` is relative to the
        standardised identities' unit variance."""
        if self.n < 2:
            raise ValueError(f"the identity subspace needs at least 2 clips (got {self.n})")
        n, s = self.n, self.sums
        mw, mz = s["w"] / n, s["z"] / n  # (D,), (E,)
        czz = s["zz"] / n - torch.outer(mz, mz)  # (E, E) covariance of the identities
        czw = s["zw"] / n - torch.outer(mz, mw)  # (E, D) their cross-covariance with the words
        sd = czz.diagonal().clamp_min(1e-12).sqrt()  # (E,)
        czz, czw = czz / torch.outer(sd, sd), czw / sd[:, None]  # standardised identities
        coef = torch.linalg.solve(czz + ridge * torch.eye(len(sd), dtype=czz.dtype), czw)  # (E, D)
        return mw, coef.T @ czz @ coef

    def subspace(self, rank: int, ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``rank`` directions of the word features that the identity vectors predict best: the top
        principal directions of the regression's fitted values (:meth:`fitted_covariance`; reduced-rank
        regression). Returns (mean (D,), basis (D, rank)), orthonormal columns."""
        mw, fitted_cov = self.fitted_covariance(ridge)
        _, vecs = torch.linalg.eigh(fitted_cov)  # ascending eigenvalues
        basis = vecs.flip(1)[:, :rank]  # (D, rank)
        return mw.float(), basis.float().contiguous()

    def motion_subspace(self, rank: int, ridge: float, floor: float = MOTION_FLOOR
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The ``rank`` directions where identity explains the most *for the motion they carry*: the top
        eigenvectors ``e`` of the identity-predicted covariance (:meth:`fitted_covariance`) in coordinates
        whitened by the frames' within-clip covariance ``W`` (ridge ``floor`` x its mean variance). Returns
        (mean (D,), basis = W^1/2 e, readout = W^-1/2 e): ``g - (g @ readout) @ basis.T`` is the projection,
        orthogonal in whitened coordinates, that makes the identity-predicted part vanish along ``e`` while
        taking as little of the motion as such a removal can."""
        if "mm" not in self.sums:
            raise ValueError("the motion subspace needs the frames' motion (IdentityStats.add(..., motion=))")
        mw, fitted = self.fitted_covariance(ridge)
        w = self.sums["mm"] / self.sums["m_n"]  # (D, D) within-clip covariance of the frames
        w = w + floor * w.diagonal().mean() * torch.eye(len(w), dtype=w.dtype)
        lam, u = torch.linalg.eigh(w)
        half, inv_half = u @ torch.diag(lam.sqrt()) @ u.T, u @ torch.diag(lam.rsqrt()) @ u.T  # (D, D) each
        e = torch.linalg.eigh(inv_half @ fitted @ inv_half)[1].flip(1)[:, :rank]  # (D, r), whitened coordinates
        return mw.float(), (half @ e).float().contiguous(), (inv_half @ e).float().contiguous()
