"""The eval stage: every metric with its baseline, deterministic, and a clear error on a wrong checkpoint."""

import json
import os
import shutil

import pytest
import yaml

from davs.checkpoint import CheckpointError
from pipeline.params import validate

from .conftest import ROOT, TINY_PARAMS, _set


@pytest.fixture
def workdir(tiny_models, shards, corpus, tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for k, v in TINY_PARAMS.items():
        _set(raw, k, v)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    shutil.copytree(tiny_models[0], tmp_path / "models")
    (tmp_path / "data").mkdir()
    os.symlink(shards, tmp_path / "data" / "shards")
    os.symlink(corpus, tmp_path / "data" / "corpus")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    yield tmp_path, raw
    os.chdir(cwd)


def test_metrics_have_baselines_and_are_deterministic(workdir):
    from pipeline.evaluate import evaluate

    tmp, raw = workdir
    m1 = evaluate(validate(raw), "cpu")
    first = (tmp / "reports" / "metrics.json").read_text()
    evaluate(validate(raw), "cpu")
    assert (tmp / "reports" / "metrics.json").read_text() == first
    m = json.loads(first)
    assert m == json.loads(json.dumps(m1))
    pairs = [("word_acc/audio_top1", "word_acc/chance_top1"), ("retrieval/r_at_1", "retrieval/chance_r_at_1"),
             ("leakage/word_from_identity", "leakage/word_chance"),
             ("leakage/word_from_identity", "leakage/word_from_identity_joint"),
             ("leakage/identity_from_word_video", "leakage/speaker_chance"),
             ("leakage/identity_from_word_msceleb", "leakage/msceleb_identity_chance"),
             ("identity/cp_acc_msceleb", "identity/chance"),
             ("quality/audio_ssim", "quality/copy_ref_ssim"), ("quality/video_psnr_mouth", "quality/copy_ref_psnr_mouth"),
             ("sync/dist_generated", "sync/dist_shuffled_audio")]
    for key, base in pairs:
        assert key in m and base in m, (key, base)
    assert all(not isinstance(v, dict) for v in m.values()), "metrics.json is flat"
    assert 0 <= m["quality/audio_ssim"] <= 1 and m["quality/copy_ref_psnr"] > 5
    assert m["data/test_clips"] == 3 * 3
    cross = {k for k in m if k.startswith("cross/")}  # the corpus names speakers: the cross-speaker probe ran
    assert {"cross/mouth_is_target_video", "cross/mouth_is_driver_audio", "cross/mouth_probe_real"} <= cross
    assert all(0 <= m[k] <= 1 for k in cross)
    for f in ("plots/confusion_video.csv", "plots/confusion_audio.csv", "figures/grid.png"):
        assert (tmp / "reports" / f).stat().st_size > 100
    samples = list((tmp / "reports" / "samples").glob("*.mp4"))
    assert len(samples) == 1


def test_mismatched_checkpoint_is_a_clear_error(workdir):
    from pipeline.evaluate import evaluate

    _, raw = workdir
    raw["model"]["feat_dim"] = 64
    with pytest.raises(CheckpointError, match="feat_dim: checkpoint 32 vs configured 64"):
        evaluate(validate(raw), "cpu")


def test_missing_checkpoint_is_a_clear_error(workdir):
    from pipeline.evaluate import evaluate

    tmp, raw = workdir
    (tmp / "models" / "gen.pt").unlink()
    with pytest.raises(CheckpointError, match="gen.pt not found: run the stage that writes it first"):
        evaluate(validate(raw), "cpu")


def test_vectorised_ssim_psnr_match_scikit_image():
    import numpy as np
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from davs.evaluation import psnr_frames, ssim_frames

    rng = np.random.default_rng(0)
    gt = rng.integers(0, 256, (5, 24, 30, 3), dtype=np.uint8)
    pred = np.clip(gt.astype(int) + rng.integers(-40, 41, gt.shape), 0, 255).astype(np.uint8)
    pred[0] = gt[0]
    ours, psnr = ssim_frames(pred, gt), psnr_frames(pred, gt)
    for i in range(5):
        ref = structural_similarity(gt[i], pred[i], channel_axis=-1, data_range=255, win_size=7)
        assert abs(ours[i] - ref) < 1e-9
        if i:
            assert abs(psnr[i] - peak_signal_noise_ratio(gt[i], pred[i], data_range=255)) < 1e-9
    assert ours[0] == 1.0 and psnr[0] == 100.0
