"""The word encoders' per-clip input augmentation (davs/training/augment.py)."""

from __future__ import annotations

import torch

from davs.training.augment import dct_matrix, jitter_mouth, mel_warp_matrix, warp_mfcc

BOX = (0.62, 0.25, 0.95, 0.75)


def _bar_clip(b: int, t: int, half_width: int) -> torch.Tensor:
    """(B, T, 3, 64, 64) clips of a bright rectangle on the mouth box's centre, on a dark face."""
    x = -torch.ones(b, t, 3, 64, 64)
    x[..., 46:56, 32 - half_width : 32 + half_width] = 1.0
    return x


def test_off_is_the_identity_and_draws_nothing() -> None:
    x, m = torch.rand(2, 3, 3, 64, 64) * 2 - 1, torch.randn(2, 3, 20, 12)
    state = torch.get_rng_state()
    assert jitter_mouth(x, BOX, 0.0, 0.0, 0.0) is x
    assert warp_mfcc(m, 0.0) is m
    assert torch.equal(torch.get_rng_state(), state)


def test_each_clip_keeps_one_width_and_height_for_all_its_frames() -> None:
    torch.manual_seed(0)
    x = _bar_clip(16, 4, half_width=8)
    y = jitter_mouth(x, BOX, scale=0.3, shift=0.0, colour=0.0)
    assert torch.equal(y, y[:, :1].expand_as(y))  # the same transform on every frame of a clip
    lit = (y[:, 0, 0] > 0).float()  # (B, 64, 64)
    widths = lit[:, 51].sum(-1)  # the bar's width on its middle row
    assert widths.min() >= 16 / 1.3 - 1.5 and widths.max() <= 16 * 1.3 + 1.5
    assert widths.max() - widths.min() > 3  # clips differ
    assert torch.equal(lit[:, :, 32].sum(-1), torch.full((16,), 10.0))  # the height (the opening) is kept


def test_colour_is_a_per_clip_gain_and_offset_within_bounds() -> None:
    torch.manual_seed(1)
    x = torch.zeros(8, 3, 3, 64, 64)
    y = jitter_mouth(x, BOX, scale=0.0, shift=0.0, colour=0.2)
    assert y.abs().max() <= 0.2 + 1e-6
    assert torch.equal(y, y[:, :, :, :1, :1].expand_as(y))  # one colour per clip and channel
    assert y[:, 0, :, 0, 0].std() > 0.01


def test_the_mel_warp_moves_a_band_by_its_factor() -> None:
    x = torch.zeros(1, 12)
    x[0, 4] = 1.0
    w = mel_warp_matrix(12, torch.tensor([2.0]))  # band k reads band 2k
    assert torch.equal((x @ w[0].T)[0].nonzero().flatten(), torch.tensor([2]))
    assert torch.allclose(mel_warp_matrix(12, torch.tensor([1.0]))[0], torch.eye(12))


def test_warped_cepstra_are_the_warped_bands_cepstra() -> None:
    torch.manual_seed(2)
    dct = dct_matrix(12)
    bands = torch.zeros(32, 5, 20, 12)
    bands[..., 6] = 10.0  # a formant at band 6 in every frame
    y = warp_mfcc(bands @ dct, warp=0.3) @ dct.T  # back to bands
    peaks = y.argmax(-1)  # (B, T, F)
    assert torch.equal(peaks, peaks[:, :1, :1].expand_as(peaks))  # one factor per clip
    assert set(peaks[:, 0, 0].tolist()) <= {5, 6, 7, 8}  # band k reads band k * factor, factor in 1 +- 0.3
    assert len(set(peaks[:, 0, 0].tolist())) > 1


def test_the_same_seed_gives_the_same_augmentation() -> None:
    x, m = torch.rand(2, 3, 3, 64, 64) * 2 - 1, torch.randn(2, 3, 20, 12)
    torch.manual_seed(3)
    a = jitter_mouth(x, BOX, 0.2, 0.05, 0.2), warp_mfcc(m, 0.1)
    torch.manual_seed(3)
    b = jitter_mouth(x, BOX, 0.2, 0.05, 0.2), warp_mfcc(m, 0.1)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
