"""The label-free speaker adversary: the closed-form ridge probe, the pseudo-speakers, the loss the encoders
minimise, and the memory it is fitted on."""

import torch

from davs.losses.ridge_adversary import fit_ridge_probe, pseudo_speakers, ridge_leakage_loss
from davs.training.tasks.clip_id import ClipIdAdversary


def _speakers(n: int = 400, k: int = 4, e: int = 8, d: int = 16, seed: int = 0):
    """n clips of k speakers: identity vectors (n, e) around a centre per speaker, word features (n, d) that
    carry the speaker along one direction (``leaky``) or nothing of it (``clean``)."""
    g = torch.Generator().manual_seed(seed)
    spk = torch.arange(n) % k
    ids = torch.randn(k, e, generator=g)[spk] * 3 + torch.randn(n, e, generator=g) * 0.3
    clean = torch.randn(n, d, generator=g)
    leaky = clean + ids @ torch.randn(e, d, generator=g)
    return spk, ids, clean, leaky


def test_the_ridge_probe_reads_what_the_features_carry():
    _, ids, clean, leaky = _speakers()
    assert fit_ridge_probe(leaky, ids, 0.01).r2 > 0.9
    assert fit_ridge_probe(clean, ids, 0.01).r2 < 0.1  # 16 noise dims on 400 clips: chance-level fit


def test_pseudo_speakers_find_the_speakers_without_their_labels():
    spk, ids, _, _ = _speakers()
    onehot = pseudo_speakers(ids, 4)
    assert onehot.shape == (400, 4) and torch.equal(onehot.sum(1), torch.ones(400))
    clusters = onehot.argmax(1)
    for s in range(4):  # each speaker's clips fall in one cluster, and no two speakers share one
        assert len(clusters[spk == s].unique()) == 1
    assert len(clusters.unique()) == 4


def test_the_leakage_loss_is_zero_without_the_speaker_and_its_gradient_removes_it():
    _, ids, clean, leaky = _speakers()
    target = pseudo_speakers(ids, 4)
    assert ridge_leakage_loss(clean, fit_ridge_probe(clean, target, 0.01)) < 0.05
    x = leaky.clone().requires_grad_(True)
    probe = fit_ridge_probe(leaky, target, 0.01)
    before = ridge_leakage_loss(x, probe)
    before.backward()
    moved = leaky - 5.0 * x.grad * len(x)  # one step along the gradient, per clip
    assert before > 0.5 and fit_ridge_probe(moved, target, 0.01).r2 < fit_ridge_probe(leaky, target, 0.01).r2


def test_the_adversary_fits_on_its_memory_and_keeps_only_the_last_steps():
    _, ids, clean, leaky = _speakers()
    adv = ClipIdAdversary(memory=3, ridge=0.01, clusters=4)
    for step in range(5):
        sl = slice(step * 80, (step + 1) * 80)
        out = adv.losses(ids[sl], {"video": leaky[sl].requires_grad_(True), "audio": clean[sl]})
    assert set(out) == {"loss/clip_id_from_video_word", "loss/clip_id_from_audio_word",
                        "acc/clip_id_from_video_word_r2", "acc/clip_id_from_audio_word_r2"}
    assert out["loss/clip_id_from_video_word"].requires_grad  # the encoders' gradient
    assert out["acc/clip_id_from_video_word_r2"] > 0.5 > out["acc/clip_id_from_audio_word_r2"]
    state = adv.state()
    assert len(state) == 3 and torch.equal(state[0]["id"], ids[320:400])  # newest step first
    assert all(not t.requires_grad for e in state for t in e.values())
    again = ClipIdAdversary(memory=3, ridge=0.01, clusters=4)
    again.load(state)
    a, b = (x.losses(ids[:80], {"video": leaky[:80]}) for x in (adv, again))
    assert torch.equal(a["loss/clip_id_from_video_word"], b["loss/clip_id_from_video_word"])
    assert len(again.state()) == 3
