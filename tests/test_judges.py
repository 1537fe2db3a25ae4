"""The evaluation judges on inputs with known answers: the sidecar, the mouth-state regressor's ceiling on
real frames, SyncNet on real vs shuffled audio and on audio shifted by a known number of frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from davs.data.lrw import clip_path
from davs.judges.data import load_clips
from davs.judges.scores import judge_videos, lse, mouth_scores, offset_distances, to_float
from davs.judges.train import load_judges, train_judges
from davs.models.video_word_encoder import roi_slices
from davs.synth.corpus import MOUTH_STATES, read_mouth_states, write_mouth_states

from . import configs

BOX = (0.62, 0.25, 0.95, 0.75)
JUDGE_CFG = configs.judges(seed=5, image_size=32, mouth_box=BOX, margin=1, width=8, embed_dim=32, mouth_steps=300,
                        sync_steps=400, sync_batch=16, mouth_batch=64)


def test_sidecar_round_trip(tmp_path, corpus):
    tracks = {"A/train/A_00001.mp4": np.random.default_rng(0).random((29, 3)).astype(np.float32),
              "B/test/B_00002.mp4": np.zeros((29, 3), np.float32)}
    write_mouth_states(tmp_path / "m.csv", tracks)
    back = read_mouth_states(tmp_path / "m.csv")
    assert list(back) == list(tracks)
    for k in tracks:
        np.testing.assert_allclose(back[k], tracks[k], atol=1e-4)
    # the corpus writes one beside speakers.csv: every clip, every frame, states in [0, 1], the mouth open
    # only inside the word
    table = read_mouth_states(corpus / "lipread_mp4" / MOUTH_STATES)
    clips = sorted(p.relative_to(corpus / "lipread_mp4").as_posix() for p in (corpus / "lipread_mp4").rglob("*.mp4"))
    assert sorted(table) == clips
    states = np.stack([table[c] for c in clips])
    assert states.shape[1:] == (29, 3) and states.min() >= 0 and states.max() <= 1.2
    assert states[:, :2, 0].max() == 0 and states[:, 10:19, 0].max(1).min() > 0.2
    assert clip_path("MONEY_test_00003") == "MONEY/test/MONEY_00003.mp4"


def test_sidecar_mismatch_is_an_error(shards, tmp_path):
    write_mouth_states(tmp_path / "m.csv", {"X/train/X_00001.mp4": np.zeros((29, 3))})
    with pytest.raises(ValueError, match="no mouth states"):
        load_clips(shards / "lrw", "train", 32, BOX, 1, tmp_path / "m.csv")


@pytest.fixture(scope="module")
def judges(shards, corpus, tmp_path_factory):
    torch.manual_seed(0)
    data = load_clips(shards / "lrw", "train", 32, BOX, JUDGE_CFG.margin, corpus / "lipread_mp4" / MOUTH_STATES)
    out = tmp_path_factory.mktemp("judges") / "judges.pt"
    metrics = train_judges(data, JUDGE_CFG, out)
    return load_judges(out), metrics, out


@pytest.fixture(scope="module")
def heldout_clips(shards, corpus):
    return load_clips(shards / "lrw", "test", 32, BOX, 0, corpus / "lipread_mp4" / MOUTH_STATES)


def test_judges_are_deterministic_and_load_with_weights_only(judges, shards, corpus, tmp_path):
    j, metrics, path = judges
    ck = torch.load(path, weights_only=True)
    assert set(ck) == {"config", "sync", "mouth", "metrics"}
    data = load_clips(shards / "lrw", "train", 32, BOX, JUDGE_CFG.margin, corpus / "lipread_mp4" / MOUTH_STATES)
    cfg = configs.judges(**{**JUDGE_CFG.__dict__, "mouth_steps": 20, "sync_steps": 20})
    a, b = train_judges(data, cfg, tmp_path / "a.pt"), train_judges(data, cfg, tmp_path / "b.pt")
    assert a == b
    sa, sb = torch.load(tmp_path / "a.pt", weights_only=True), torch.load(tmp_path / "b.pt", weights_only=True)
    assert all(torch.equal(sa["sync"][k], sb["sync"][k]) for k in sa["sync"])


def test_mouth_regressor_reads_real_frames(judges, heldout_clips):
    """The ceiling: on real held-out frames (unseen speakers included) the regressor follows the truth."""
    j = judges[0]
    from davs.judges.scores import mouth_states

    pred = mouth_states(j.mouth, to_float(heldout_clips.rois))  # (N, T, 3)
    s = mouth_scores(pred.flatten(0, 1).numpy(), heldout_clips.states.flatten(0, 1).numpy())
    assert s["open_corr"] > 0.8, s
    assert 0.6 < s["open_gain"] < 1.4, s
    # a still mouth (every frame the first, closed one) gives no correlation and no gain
    still = to_float(heldout_clips.rois[:, :1]).expand_as(to_float(heldout_clips.rois))
    s0 = mouth_scores(mouth_states(j.mouth, still).flatten(0, 1).numpy(), heldout_clips.states.flatten(0, 1).numpy())
    assert abs(s0["open_gain"]) < 0.2 and s0["state_mae"] > s["state_mae"]


def test_sync_real_beats_shuffled_and_finds_shifts(judges, heldout_clips):
    j = judges[0]
    rois = to_float(heldout_clips.rois)[:, 2:27]  # the 25 frames DAVS generates, audio starting 2 frames earlier
    real = lse(offset_distances(j.sync, rois, heldout_clips.mfcc, 2, 7))
    shuffled = lse(offset_distances(j.sync, rois, heldout_clips.mfcc.roll(len(rois) // 2, 0), 2, 7))
    assert real["offset"] == 0 and real["offset_zero"] >= 0.6, real
    assert real["lse_c"] > shuffled["lse_c"] and real["lse_d"] < shuffled["lse_d"], (real, shuffled)
    for k in (-3, 2):  # audio delayed by k frames: its window for frame t is the original's for t - k
        shifted = heldout_clips.mfcc.roll(k, 1)
        found = lse(offset_distances(j.sync, rois, shifted, 2, 7))
        assert found["offset"] == k, (k, found)


def test_judge_videos_keys(judges, heldout_clips):
    j = judges[0]
    u8 = lambda x: ((x + 1) * 127.5).round().byte()  # noqa: E731
    frames = torch.zeros(len(heldout_clips.keys), 25, 32, 32, 3, dtype=torch.uint8)
    rows, cols = roi_slices(32, BOX)
    frames[:, :, rows, cols] = u8(to_float(heldout_clips.rois[:, 2:27])).permute(0, 1, 3, 4, 2)
    m = judge_videos(j, {"real": frames.numpy()}, heldout_clips.mfcc, 2, heldout_clips.states)
    for key in ("lse_d_real", "lse_c_real", "offset_real", "offset_zero_real", "lse_c_shuffled_audio",
                "mouth_open_corr_real", "mouth_open_gain_real", "mouth_state_mae_real"):
        assert key in m, key
    assert m["lse_c_real"] > m["lse_c_shuffled_audio"]


def test_reference_leak_reads_copied_and_ignored_references(judges, heldout_clips):
    """A generator that pastes the reference's mouth into every frame leaks 1; one that ignores it, 0."""
    from davs.judges.scores import reference_leak

    j = judges[0]
    u8 = lambda x: ((x + 1) * 127.5).round().byte()  # noqa: E731
    n = len(heldout_clips.keys)
    rows, cols = roi_slices(32, BOX)
    frames = torch.zeros(n, 29, 32, 32, 3, dtype=torch.uint8)
    frames[:, :, rows, cols] = u8(to_float(heldout_clips.rois)).permute(0, 1, 3, 4, 2)
    widest = heldout_clips.states[:, :, 0].argmax(1)
    rest, opened = frames[:, 0], frames[torch.arange(n), widest]  # (N, H, W, 3)
    talk = frames.numpy()  # the mouth follows the words whatever the reference
    copied = opened[:, None].expand(-1, 29, -1, -1, -1).numpy()
    still = rest[:, None].expand(-1, 29, -1, -1, -1).numpy()
    none = reference_leak(j, talk, talk, rest.numpy(), opened.numpy())
    full = reference_leak(j, still, copied, rest.numpy(), opened.numpy())
    assert none["ref_open_gap"] > 0.2, none  # the widest frame reads as open
    assert none["ref_mouth_leak"] == 0.0 and abs(full["ref_mouth_leak"] - 1.0) < 1e-4, (none, full)
