"""The word encoders' identity-subspace removal (davs.models.identity_nuisance) and its fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from davs.evaluation import probe
from davs.models.audio_word_encoder import AudioWordEncoder
from davs.models.identity_nuisance import IdentityNuisance, IdentityStats, local_mean
from davs.models.video_word_encoder import VideoWordEncoder


def _speakers_and_words(n: int = 1200, speakers: int = 6, words: int = 5, seed: int = 0):
    """Pooled word features = a word part + a large speaker offset (through a random map) + noise; identity
    vectors = a speaker embedding + noise. Word and speaker independent, as in the corpus."""
    g = torch.Generator().manual_seed(seed)
    spk, word = torch.randint(0, speakers, (n,), generator=g), torch.randint(0, words, (n,), generator=g)
    emb = torch.randn(speakers, 10, generator=g)  # (S, E)
    ids = emb[spk] + 0.3 * torch.randn(n, 10, generator=g)  # (N, E)
    word_dirs = torch.randn(words, 32, generator=g)  # (W, D)
    offsets = 4.0 * emb @ torch.randn(10, 32, generator=g)  # (S, D): speakers dominate the variance
    feats = word_dirs[word] + offsets[spk] + 0.3 * torch.randn(n, 32, generator=g)  # (N, D)
    return feats, ids, spk.numpy(), word.numpy()


def test_rank_zero_is_the_identity_and_adds_no_keys():
    layer = IdentityNuisance(16, 0)
    x = torch.randn(2, 3, 16)
    assert layer(x) is x and not layer.state_dict()
    # model files written before the layer existed load into encoders of rank 0
    assert not [k for k in VideoWordEncoder(32, 8, 16).state_dict() if k.startswith("nuisance.")]
    assert not [k for k in AudioWordEncoder(width=8, feat_dim=16).state_dict() if k.startswith("nuisance.")]
    assert {"nuisance.mean", "nuisance.basis", "nuisance.scale"} <= set(AudioWordEncoder(width=8, feat_dim=16,
                                                                                         identity_rank=2).state_dict())


def test_removal_makes_speakers_unreadable_and_keeps_words():
    feats, ids, spk, word = _speakers_and_words()
    stats = IdentityStats()
    stats.add(feats[:800], ids[:800])  # fitted on one part, probed on the rest
    layer = IdentityNuisance(32, 6)
    mean, basis = stats.subspace(6, 0.02)
    layer.set(mean, basis)
    out = layer(feats).detach()
    fit, ev = slice(800, 1000), slice(1000, 1200)
    before = probe(feats[fit].numpy(), spk[fit], feats[ev].numpy(), spk[ev], 1.0)
    after = probe(out[fit].numpy(), spk[fit], out[ev].numpy(), spk[ev], 1.0)
    assert before > 0.95 and after < 0.35, (before, after)  # chance 1/6
    assert probe(out[fit].numpy(), word[fit], out[ev].numpy(), word[ev], 1.0) > 0.9
    # speaker means equal after removal, up to noise
    m = np.stack([out[800:][spk[800:] == s].mean(0).numpy() for s in range(6)])
    m0 = np.stack([feats[800:][spk[800:] == s].mean(0).numpy() for s in range(6)])
    assert m.std(0).sum() < 0.05 * m0.std(0).sum()


def test_scale_gives_back_the_variance():
    feats, ids, *_ = _speakers_and_words()
    stats = IdentityStats()
    stats.add(feats, ids)
    mean, basis = stats.subspace(6, 0.02)
    g = feats - mean
    removed = float((g @ basis).pow(2).sum() / g.pow(2).sum())
    assert removed > 0.9  # the planted speaker offsets dominate
    layer = IdentityNuisance(32, 6)
    layer.set(mean, basis, (1 / (1 - removed)) ** 0.5)
    assert float(layer(feats).detach().var(0).sum()) == pytest.approx(float(feats.var(0).sum()), rel=1e-3)
    assert torch.allclose(layer(feats).detach().mean(0), torch.zeros(32), atol=1e-4)  # centred


def test_streamed_sums_equal_one_pass():
    feats, ids, *_ = _speakers_and_words(n=300)
    one, chunks = IdentityStats(), IdentityStats()
    one.add(feats, ids)
    for lo in range(0, 300, 70):
        chunks.add(feats[lo:lo + 70], ids[lo:lo + 70])
    (m1, b1), (m2, b2) = one.subspace(4, 0.02), chunks.subspace(4, 0.02)
    assert torch.allclose(m1, m2, atol=1e-5)
    assert torch.allclose(b1 @ b1.T, b2 @ b2.T, atol=1e-4)  # the same subspace (a basis's signs may differ)
    assert torch.allclose(b1.T @ b1, torch.eye(4), atol=1e-5)


def test_layer_is_per_frame_and_rejects_a_wrong_basis():
    layer = IdentityNuisance(8, 2)
    layer.set(torch.randn(8), torch.linalg.qr(torch.randn(8, 2)).Q, 1.5)
    x = torch.randn(3, 5, 8)
    assert torch.allclose(layer(x)[:, 2:4].detach(), layer(x[:, 2:4]).detach())  # chunked streams see the same features
    with pytest.raises(ValueError, match="expected"):
        layer.set(torch.zeros(8), torch.zeros(8, 3))
    with pytest.raises(ValueError, match="at least 2 clips"):
        IdentityStats().subspace(2, 0.02)


def _clips_with_motion(clips: int = 600, t: int = 12, seed: int = 1):
    """Frames (N, T, D): a speaker offset along directions that also carry some of the motion, and motion of
    its own; identity vectors = the speaker's embedding + noise."""
    g = torch.Generator().manual_seed(seed)
    spk = torch.randint(0, 6, (clips,), generator=g)
    emb = torch.randn(6, 10, generator=g)  # (S, E)
    ids = emb[spk] + 0.3 * torch.randn(clips, 10, generator=g)  # (N, E)
    offsets = 3.0 * emb @ torch.randn(10, 16, generator=g)  # (S, D)
    motion = torch.randn(clips, t, 4, generator=g) @ torch.randn(4, 16, generator=g)  # (N, T, D)
    frames = offsets[spk][:, None] + motion + 0.1 * torch.randn(clips, t, 16, generator=g)  # (N, T, D)
    return frames, ids, spk


def test_the_motion_form_removes_the_speaker_and_keeps_more_motion_than_plain():
    frames, ids, spk = _clips_with_motion()
    pooled = frames.mean(1)  # (N, D)
    moving = (frames - pooled[:, None]).flatten(0, 1)  # (N*T, D)
    stats = IdentityStats()
    stats.add(pooled, ids, motion=moving)
    kept = {}
    for form in ("plain", "motion"):
        layer = IdentityNuisance(16, 5)
        if form == "plain":
            layer.set(*stats.subspace(5, 0.02))
        else:
            mean, basis, readout = stats.motion_subspace(5, 0.02)
            assert not torch.allclose(basis, readout)
            layer.set(mean, basis, 1.0, readout)
            assert torch.allclose(layer.readout, readout)
        out = layer(frames).detach()  # (N, T, D)
        m = torch.stack([out[spk == s].mean((0, 1)) for s in range(6)])  # (S, D) speaker means
        m0 = torch.stack([frames[spk == s].mean((0, 1)) for s in range(6)])
        assert m.std(0).sum() < 0.1 * m0.std(0).sum(), form  # the speakers' means made equal
        kept[form] = float((out - out.mean(1, keepdim=True)).pow(2).sum() / moving.pow(2).sum())
    assert kept["motion"] > 0.9 and kept["plain"] < 0.8, kept


def test_the_motion_form_needs_the_motion_and_old_files_load_as_plain():
    stats = IdentityStats()
    stats.add(torch.randn(20, 8), torch.randn(20, 3))
    with pytest.raises(ValueError, match="motion"):
        stats.motion_subspace(2, 0.02)
    layer = IdentityNuisance(8, 2)
    layer.set(torch.randn(8), torch.linalg.qr(torch.randn(8, 2)).Q, 1.5)
    old = {k: v for k, v in layer.state_dict().items() if k not in ("readout", "window")}  # from before both
    fresh = IdentityNuisance(8, 2)
    fresh.load_state_dict(old)
    assert torch.equal(fresh.readout, layer.basis) and fresh.context == 0
    x = torch.randn(4, 8)
    assert torch.equal(fresh(x), layer(x))


def test_the_slow_form_removes_the_static_speaker_and_keeps_the_motion():
    """Only each frame's local mean along the speakers' directions goes: a static offset (the speaker) is
    removed whole even with a short window, the motion about it stays, and chunks with ``context`` frames of
    context either side equal the whole sequence exactly."""
    frames, ids, spk = _clips_with_motion()
    stats = IdentityStats()
    stats.add(frames.mean(1), ids)
    moving = frames - frames.mean(1, keepdim=True)  # (N, T, D)
    kept = {}
    for window in (0, 3, 11):
        layer = IdentityNuisance(16, 5)
        layer.set(*stats.subspace(5, 0.02), window=window)
        assert layer.context == window
        loaded = IdentityNuisance(16, 5)
        loaded.load_state_dict(layer.state_dict())
        assert loaded.context == window  # the window a model file holds, as a Python int
        out = layer(frames).detach()  # (N, T, D)
        m = torch.stack([out[spk == s].mean((0, 1)) for s in range(6)])  # (S, D) speaker means
        m0 = torch.stack([frames[spk == s].mean((0, 1)) for s in range(6)])
        assert m.std(0).sum() < 0.1 * m0.std(0).sum(), window
        kept[window] = float((out - out.mean(1, keepdim=True)).pow(2).sum() / moving.pow(2).sum())
        a, b = 4, 9  # frames [a, b), with c frames of context either side

        def chunk(c, a=a, b=b, layer=layer):
            return layer(frames[:, max(0, a - c) : b + c]).detach()[:, a - max(0, a - c) :][:, : b - a]

        torch.testing.assert_close(chunk(layer.context), out[:, a:b], rtol=1e-5, atol=1e-5)  # to rounding
        if 0 < window < a:  # one frame of context short: off by far more than rounding
            assert (chunk(layer.context - 1) - out[:, a:b]).abs().max() > 1e-2
    assert kept[11] > 0.99 and kept[3] > kept[0] + 0.1 and kept[0] < 0.8, kept  # 11: each frame sees its clip


def test_local_mean_averages_the_frames_inside_the_sequence():
    x = torch.arange(5.0).view(1, 5, 1).expand(2, 5, 3)  # (B, T, r): 0..4 on every channel
    y = local_mean(x, 1)
    assert y.shape == x.shape
    assert torch.allclose(y[0, :, 0], torch.tensor([0.5, 1.0, 2.0, 3.0, 3.5]))  # the ends average what exists
    assert torch.equal(local_mean(x, 10)[0, :, 0], torch.full((5,), 2.0))
