"""Per-clip augmentation of the word encoders' inputs: what a speaker's clips share, varied clip by clip.

A speaker's clips share things no word needs: the mouth's width and place in a fixed crop and the colour of
lips and skin (video), the vocal tract's length (audio: formants at the same mel positions in every clip).
The word classifier reads the word with their help, so the encoders keep them and a linear probe reads the
speaker. Drawing them anew for every clip, the same for all its frames (a speaker's constants stay constant
within the clip, so the motion is untouched), makes them useless for the word: no label is needed.

- video (:func:`jitter_mouth`): a horizontal scale about the mouth box's centre (log-uniform in
  ``[1/(1+scale), 1+scale]``; the height is kept, it is the mouth's opening), a shift of up to ``shift`` of the
  crop in each direction, and a gain in ``[1-colour, 1+colour]`` and an offset in ``[-colour, colour]`` per channel;
- audio (:func:`warp_mfcc`): a warp of the mel axis by a factor in ``[1-warp, 1+warp]``, applied to the
  log-mel bands the cepstra come from (the orthonormal inverse DCT, each band read at ``k * factor`` by linear
  interpolation, the DCT back), as vocal tract length perturbation does on the frequency axis.

Only training steps of the word encoders use them (``joint`` and ``disent``); evaluation, the identity
encoder and the generator see the clips as they are.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def jitter_mouth(frames: torch.Tensor, box: tuple[float, float, float, float], scale: float, shift: float,
                 colour: float) -> torch.Tensor:
    """frames (B, T, 3, H, W) in [-1, 1] -> the same clips, each with its own width, place and colour."""
    if scale == 0 and shift == 0 and colour == 0:
        return frames
    b, t = frames.shape[:2]
    dev = frames.device

    def uniform(*shape: int) -> torch.Tensor:  # in [-1, 1)
        return 2 * torch.rand(*shape, device=dev) - 1

    sx = torch.exp(uniform(b) * math.log1p(scale))  # (B,) > 1 widens the mouth
    cx = (box[1] + box[3]) - 1  # the mouth box's centre in [-1, 1] coordinates
    theta = torch.zeros(b, 2, 3, device=dev)  # (B, 2, 3): output -> input coordinates
    theta[:, 0, 0] = 1 / sx
    theta[:, 0, 2] = cx - cx / sx + 2 * shift * uniform(b)
    theta[:, 1, 1] = 1
    theta[:, 1, 2] = 2 * shift * uniform(b)
    x = frames.flatten(0, 1).float()  # (B*T, 3, H, W)
    grid = F.affine_grid(theta.repeat_interleave(t, 0), list(x.shape), align_corners=False)  # (B*T, H, W, 2)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    x = x.view_as(frames)  # (B, T, 3, H, W)
    gain = 1 + colour * uniform(b, 1, 3, 1, 1)  # (B, 1, 3, 1, 1)
    offset = colour * uniform(b, 1, 3, 1, 1)
    return (x * gain + offset).clamp(-1, 1).to(frames.dtype)


def dct_matrix(n: int, device: torch.device | None = None) -> torch.Tensor:
    """The orthonormal DCT-II (n, n): cepstra = bands @ dct (torchaudio's MFCC with ``norm='ortho'``)."""
    k = torch.arange(n, device=device, dtype=torch.float64)
    m = torch.cos(math.pi / n * (k[:, None] + 0.5) * k[None, :])  # (bands, coefficients)
    m[:, 0] *= 1 / math.sqrt(2)
    return (m * math.sqrt(2 / n)).float()


def mel_warp_matrix(n: int, factor: torch.Tensor) -> torch.Tensor:
    """(B, n, n) linear maps of n bands: band k of the output reads band ``k * factor`` of the input (linear
    interpolation, clamped to the last band). ``factor`` (B,)."""
    pos = (torch.arange(n, device=factor.device, dtype=torch.float32)[None] * factor[:, None]).clamp(0, n - 1)  # (B, n)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=n - 1)
    frac = pos - lo
    w = torch.zeros(len(factor), n, n, device=factor.device)  # (B, out, in)
    w.scatter_add_(2, lo[..., None], (1 - frac)[..., None])
    w.scatter_add_(2, hi[..., None], frac[..., None])
    return w


def warp_mfcc(mfcc: torch.Tensor, warp: float) -> torch.Tensor:
    """mfcc (B, T, F, C) -> the same windows with each clip's mel axis warped by its own factor."""
    if warp == 0:
        return mfcc
    b, c = mfcc.shape[0], mfcc.shape[-1]
    dct = dct_matrix(c, mfcc.device)  # (C, C)
    factor = 1 + warp * (2 * torch.rand(b, device=mfcc.device) - 1)  # (B,)
    op = dct.T[None] @ mel_warp_matrix(c, factor).transpose(1, 2) @ dct[None]  # (B, C, C): cepstra -> cepstra
    return (mfcc.float().flatten(1, 2) @ op).view_as(mfcc).to(mfcc.dtype)  # (B, T, F, C)
