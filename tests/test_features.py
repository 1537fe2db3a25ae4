"""The two MFCC recipes (davs.data.features): ours (torchaudio) and the official DAVS / SyncNet one."""

import numpy as np
import pytest

from davs.data.features import MFCC_RECIPES, mfcc_windows, mfcc_windows_span, read_zero_padded

T = np.arange(16000) / 16000


def _tone(hz: float) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * hz * T)).astype(np.float32)


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


@pytest.mark.parametrize("recipe", MFCC_RECIPES)
def test_spans_equal_the_whole_signal(recipe):
    """Frame-local features: any span of frames, read on its own (as davs generate streams long audio),
    equals the same rows of the whole clip; for syncnet that needs the sample before the span (pre-emphasis)."""
    audio = (np.random.default_rng(0).standard_normal(16000 * 2) * 0.1).astype(np.float32)
    whole = mfcc_windows(audio, 50, recipe=recipe)
    assert whole.shape == (50, 20, 12) and np.isfinite(whole).all()
    for a, b in ((0, 50), (7, 19), (31, 32)):
        np.testing.assert_allclose(mfcc_windows_span(read_zero_padded(audio), a, b, recipe=recipe), whole[a:b],
                                   rtol=1e-5, atol=1e-4)


def test_syncnet_recipe_hears_300_to_3700_hz_only():
    """The syncnet recipe's filterbank spans 300-3700 Hz: two tones above it (5 and 7 kHz) give nearly the
    same features, two tones inside it (1 and 1.5 kHz) very different ones; ours (0-8 kHz) tells all apart."""
    feats = {r: {hz: mfcc_windows(_tone(hz), 20, recipe=r) for hz in (1000, 1500, 5000, 7000)} for r in MFCC_RECIPES}
    s, t = feats["syncnet"], feats["torchaudio"]
    assert _diff(s[5000], s[7000]) < 0.05 * _diff(s[1000], s[1500]), (_diff(s[5000], s[7000]), _diff(s[1000], s[1500]))
    assert _diff(t[5000], t[7000]) > 0.5 * _diff(t[1000], t[1500])


def test_syncnet_recipe_pre_emphasis_and_lifter():
    """Pre-emphasis (y = x - 0.97 x[-1]) tilts the spectrum up, so the recipes differ on the same speech-like
    signal; digital silence is finite (the mel floor); a louder copy differs only in the dropped C0."""
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(16000) * 0.05).astype(np.float32)
    s = mfcc_windows(x, 20, recipe="syncnet")
    assert _diff(s, mfcc_windows(x, 20)) > 1.0
    np.testing.assert_allclose(mfcc_windows(x * 4, 20, recipe="syncnet"), s, atol=1e-3)
    assert np.isfinite(mfcc_windows(np.zeros(16000, np.float32), 20, recipe="syncnet")).all()
    with pytest.raises(ValueError, match="recipe"):
        mfcc_windows(x, 20, recipe="htk")


def test_the_model_carries_its_recipe_to_inference(tiny_models, monkeypatch):
    """davs generate featurises audio with the recipe the model was trained on (its model_config)."""
    from davs.inference import Talker
    from davs.inference import talk as T

    t = Talker(tiny_models[0] / "gen.pt", "cpu")
    assert t.cfg.mfcc_recipe == "torchaudio"
    seen = []
    orig = T.mfcc_windows_span
    monkeypatch.setattr(T, "mfcc_windows_span", lambda *a, **k: seen.append(a[-1]) or orig(*a, **k))
    t.cfg = type(t.cfg)(**{**t.cfg.__dict__, "mfcc_recipe": "syncnet"})
    t.audio_words(np.zeros(16000, np.float32), 25)
    assert seen and set(seen) == {"syncnet"}


def test_ingestion_writes_the_chosen_recipe(corpus, tmp_path):
    """ingest_lrw with mfcc_recipe: syncnet stores the syncnet windows of each clip's own audio."""
    from davs.data.lrw import read_clip

    from .conftest import LRW_CFG, ingest_val_batch

    b, refs = ingest_val_batch(corpus, tmp_path / "syncnet", mfcc_recipe="syncnet")
    for i, key in enumerate(b["key"]):
        ours = read_clip(refs[key], LRW_CFG.crop_box, LRW_CFG.image_size).mfcc[2:27]
        theirs = read_clip(refs[key], LRW_CFG.crop_box, LRW_CFG.image_size, mfcc_recipe="syncnet").mfcc[2:27]
        np.testing.assert_allclose(b["mfcc"][i].numpy(), theirs, rtol=1e-5, atol=1e-5)
        assert _diff(theirs, ours) > 1.0
