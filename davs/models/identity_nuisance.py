"""The last layer of both word encoders: a fixed projection that removes the identity subspace.

A speaker's clips share an offset in word-feature space (lip shape and colour in the mouth crop, the voice
in the MFCC) that a linear probe reads however the adversaries push. The disentanglement stage estimates the
directions of the word features that the clip's own identity vectors predict (a reduced-rank regression,
:meth:`IdentityStats.subspace`, label-free) and this layer removes them from every frame's feature::

    f  ->  mix(scale * (g - (g @ basis) @ basis.T)),   g = f - mean,   basis (D, r) orthonormal

Class means along the removed directions become equal, so a linear probe cannot separate speakers by them.
The identity directions can hold most of the features' variance; ``scale`` gives what is left the variance
the features had, so the networks that read them see inputs of the usual size, and the output is centred
(each modality about its own mean), so cosine similarities between audio and video words compare what is
left rather than a shared offset. ``mix`` is a linear map (the identity until the disentanglement stage's
last part trains it, with the word classifier, to align audio and video words again): any linear map keeps the
speakers' means equal, so it cannot bring the speaker back for a linear probe.
Being linear and per frame it commutes with pooling and with chunked streaming. With ``rank`` 0 it is the
identity; before the subspace is fitted (an all-zero basis) it is ``mix`` alone.
"""

from __future__ import annotations

import torch
from torch import nn


class IdentityNuisance(nn.Module):
    """(..., D) -> (..., D): centred on ``mean``, the span of ``basis`` removed, rescaled by ``scale``."""

    def __init__(self, feat_dim: int = 128, rank: int = 0) -> None:
        super().__init__()
        self.rank = rank
        # persistent only when in use: model files of rank 0 keep the keys they always had
        self.register_buffer("mean", torch.zeros(feat_dim), persistent=rank > 0)
        self.register_buffer("basis", torch.zeros(feat_dim, rank), persistent=rank > 0)
        self.register_buffer("scale", torch.ones(()), persistent=rank > 0)
        self.mix = nn.Linear(feat_dim, feat_dim, bias=False) if rank > 0 else None
        if self.mix is not None:
            nn.init.eye_(self.mix.weight)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if self.rank == 0:
            return feats
        basis, mean = self.basis.to(feats.dtype), self.mean.to(feats.dtype)
        g = feats - mean  # (..., D)
        return self.mix(self.scale.to(feats.dtype) * (g - (g @ basis) @ basis.T))  # (..., D), centred

    @torch.no_grad()
    def set(self, mean: torch.Tensor, basis: torch.Tensor, scale: float = 1.0) -> None:
        if basis.shape != self.basis.shape:
            raise ValueError(f"identity basis of shape {tuple(basis.shape)}, expected {tuple(self.basis.shape)}")
        self.mean.copy_(mean)
        self.basis.copy_(basis)
        self.scale.fill_(scale)
        if self.mix is not None:  # what it mixed is gone: start again from the identity
            nn.init.eye_(self.mix.weight)


class IdentityStats:
    """Running sums over clips of pooled word features w (D,) and identity vectors z (E,), in float64: all a
    reduced-rank regression from z to w needs, in O((D + E)^2) memory however many clips are added."""

    def __init__(self) -> None:
        self.n = 0
        self.sums: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def add(self, words: torch.Tensor, ids: torch.Tensor) -> None:
        """``words`` (N, D), ``ids`` (N, E) of N clips."""
        w, z = words.detach().double().cpu(), ids.detach().double().cpu()
        parts = {"w": w.sum(0), "z": z.sum(0), "zz": z.T @ z, "zw": z.T @ w}
        for k, v in parts.items():
            self.sums[k] = self.sums[k] + v if k in self.sums else v
        self.n += len(w)

    def subspace(self, rank: int, ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``rank`` directions of the word features that the identity vectors predict best: a ridge
        regression from the standardised identities to the centred words, then the top principal directions
        of its fitted values (reduced-rank regression). Returns (mean (D,), basis (D, rank)), orthonormal
        columns. ``ridge`` is relative to the standardised identities' unit variance."""
        if self.n < 2:
            raise ValueError(f"the identity subspace needs at least 2 clips (got {self.n})")
        n, s = self.n, self.sums
        mw, mz = s["w"] / n, s["z"] / n  # (D,), (E,)
        czz = s["zz"] / n - torch.outer(mz, mz)  # (E, E) covariance of the identities
        czw = s["zw"] / n - torch.outer(mz, mw)  # (E, D) their cross-covariance with the words
        sd = czz.diagonal().clamp_min(1e-12).sqrt()  # (E,)
        czz, czw = czz / torch.outer(sd, sd), czw / sd[:, None]  # standardised identities
        coef = torch.linalg.solve(czz + ridge * torch.eye(len(sd), dtype=czz.dtype), czw)  # (E, D)
        fitted_cov = coef.T @ czz @ coef  # (D, D): covariance of the words' identity-predicted part
        _, vecs = torch.linalg.eigh(fitted_cov)  # ascending eigenvalues
        basis = vecs.flip(1)[:, :rank]  # (D, rank)
        return mw.float(), basis.float().contiguous()
