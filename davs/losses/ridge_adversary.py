"""A label-free, closed-form adversary: how much of a clip's own identity its word features predict.

Real LRW names no speakers, so the disentanglement cannot train a speaker classifier on word features.
Every clip has identity features, though: the identity encoder's vectors of its own frames. The adversary
here is the best *linear* predictor of those (standardised) identity vectors from the (standardised)
clip-pooled word features, a ridge regression solved in closed form on the features of the last steps.
The encoders are then trained so that its prediction on the current batch is the mean identity, i.e. no
information (the regression analogue of DAVS' uniform softmax target). Being fitted exactly, it never lags
the encoder the way an SGD-trained classifier does, and it reads what a linear evaluation probe reads: word
features with no linear covariance with any function of identity that is linear in the identity vector
(speaker indicators are nearly so: identity vectors separate speakers linearly) have equal speaker means.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

EPS = 1e-4


class RidgeProbe(NamedTuple):
    mean: torch.Tensor  # (D,) of the word features it was fitted on
    std: torch.Tensor  # (D,)
    beta: torch.Tensor  # (D, E): standardised word features -> standardised identity
    r2: torch.Tensor  # () share of the identity's variance it explains on its own fit


def fit_ridge_probe(words: torch.Tensor, ids: torch.Tensor, ridge: float) -> RidgeProbe:
    """Closed-form ridge regression from ``words`` (N, D) to ``ids`` (N, E), both standardised per
    feature; ``ridge`` is relative to the standardised features' unit variance. No gradients."""
    with torch.no_grad(), torch.autocast(words.device.type, enabled=False):
        x, y = words.float(), ids.float()
        mean, std = x.mean(0), x.std(0, unbiased=False).clamp_min(EPS)  # (D,) each
        x = (x - mean) / std  # (N, D)
        y = (y - y.mean(0)) / y.std(0, unbiased=False).clamp_min(EPS)  # (N, E)
        n, d = x.shape
        gram = x.T @ x / n + ridge * torch.eye(d, device=x.device)  # (D, D)
        beta = torch.linalg.solve(gram, x.T @ y / n)  # (D, E)
        r2 = 1 - (x @ beta - y).pow(2).mean() / y.pow(2).mean().clamp_min(EPS)
    return RidgeProbe(mean, std, beta, r2)


def pseudo_speakers(ids: torch.Tensor, k: int, iters: int = 10) -> torch.Tensor:
    """One-hot pseudo-speaker labels (N, k) of identity vectors ``ids`` (N, E): k-means on the standardised
    vectors (cosine), started from k rows spread by a deterministic farthest-point pass. No gradients."""
    with torch.no_grad(), torch.autocast(ids.device.type, enabled=False):
        x = F.normalize(ids.float() - ids.float().mean(0), dim=1)  # (N, E)
        k = min(k, len(x))
        centres = [0]
        far = 1 - x @ x[0]
        for _ in range(k - 1):
            centres.append(int(far.argmax()))
            far = torch.minimum(far, 1 - x @ x[centres[-1]])
        c = x[centres]  # (k, E)
        for _ in range(iters):
            assign = (x @ c.T).argmax(1)  # (N,)
            onehot = F.one_hot(assign, k).float()  # (N, k)
            c = F.normalize(onehot.T @ x + 1e-6 * c, dim=1)  # empty clusters keep their centre
        return F.one_hot((x @ c.T).argmax(1), k).float()


def ridge_leakage_loss(words: torch.Tensor, probe: RidgeProbe) -> torch.Tensor:
    """For the encoders: the probe's prediction on ``words`` (N, D) against the mean identity (zero in its
    standardised units), mean squared per identity feature; 0 when the words predict nothing of identity."""
    x = (words.float() - probe.mean) / probe.std  # (N, D)
    return (x @ probe.beta).pow(2).mean()
