"""The lip head (mouth states from word features) and the photo warp that real photos talk with."""

from __future__ import annotations

import json
import subprocess
import sys
import wave

import numpy as np
import pytest
import torch
from PIL import Image

from davs.models.lip_head import LipHead, load_lip_head, save_lip_head
from davs.training.lip_head import LipHeadConfig, fit_lip_head, score_lip_head, word_features

from .conftest import CPU, ROOT, tiny_data


def _synthetic(n_clips: int, t: int, d: int, seed: int, w: np.ndarray | None = None) -> tuple[dict, np.ndarray]:
    """Clips whose states are a known temporal linear filter ``w`` of their features (plus a little noise)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(3, d, 5)) * 0.02 if w is None else w  # states within (0, 1): no clipping
    clips = {"audio": [], "video": [], "states": []}
    for _ in range(n_clips):
        x = rng.normal(size=(t, d)).astype(np.float32)
        p = np.pad(x, ((2, 2), (0, 0)), mode="edge")
        y = np.stack([sum(p[k : k + t] @ w[s, :, k] for k in range(5)) for s in range(3)], 1) + 0.5
        clips["audio"].append(x)
        clips["video"].append(x + rng.normal(scale=0.01, size=x.shape).astype(np.float32))
        clips["states"].append(np.clip(y + rng.normal(scale=0.005, size=y.shape), 0, 1).astype(np.float32))
    return clips, w


def test_ridge_fit_recovers_a_known_temporal_filter():
    train, w = _synthetic(60, 25, 8, 0)
    head = fit_lip_head(train, LipHeadConfig(context=2, ridge=1e-6))
    # the conv weight is laid out as [state, feature, tap]: the generating filter, tap for tap
    np.testing.assert_allclose(head.filter.weight.detach().numpy(), w, atol=0.003)
    held_out, _ = _synthetic(20, 25, 8, 1, w)
    scores = score_lip_head(head, held_out)
    assert min(scores[f"{m}_{s}_r2"] for m in ("audio", "video") for s in ("open", "width", "round")) > 0.95
    shuffled = dict(held_out, states=held_out["states"][1:] + held_out["states"][:1])  # states of other clips
    assert score_lip_head(head, shuffled)["audio_open_r2"] < 0.2


@pytest.mark.parametrize("sizes", [[23], [5, 5, 5, 8], [1, 1, 1, 20], [3, 20], [1] * 23])
def test_streamed_states_equal_the_whole_sequence(sizes):
    torch.manual_seed(0)
    head = LipHead(8, context=2)
    x = torch.randn(23, 8)
    whole = head(x[None])[0]
    streamed = torch.cat(list(head.stream(torch.split(x, sizes))))
    assert streamed.shape == whole.shape
    torch.testing.assert_close(streamed, whole, atol=1e-5, rtol=0)


def test_lip_head_file_round_trips_and_a_bad_file_is_a_clear_error(tmp_path):
    from davs.checkpoint import CheckpointError

    head = LipHead(8, context=1)
    save_lip_head(head, tmp_path / "lips.pt", {"audio_open_r2": 0.5})
    again = load_lip_head(tmp_path / "lips.pt")
    x = torch.randn(1, 9, 8)
    torch.testing.assert_close(again(x), head(x))
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="not a lip head model file"):
        load_lip_head(tmp_path / "bad.pt")


@pytest.fixture(scope="module")
def tiny_lips(tiny_models, shards, corpus, tmp_path_factory):
    """A lip head fitted on the tiny models' word features as the lips stage fits it."""
    from davs.checkpoint import load_model
    from davs.data.spec import eval_loaders
    from davs.models import load_nets
    from davs.synth.corpus import read_mouth_states

    nets = load_nets(load_model(tiny_models[0] / "gen.pt", device=CPU), ("Ea_w", "Ev_w"), CPU)
    states = read_mouth_states(corpus / "lipread_mp4" / "mouth_states.csv")
    data = tiny_data(shards)
    feats = {s: word_features(nets, eval_loaders(data, tiny_models[1].window, s, ("lrw",))["lrw"](), states,
                              data.frame_offset, CPU) for s in ("train", "val")}
    assert feats["train"]["audio"] and len(feats["train"]["states"]) == len(feats["train"]["audio"])
    assert feats["train"]["states"][0].shape == (data.num_frames, 3)
    head = fit_lip_head(feats["train"], LipHeadConfig(context=2, ridge=0.01))
    out = tmp_path_factory.mktemp("lips") / "lips.pt"
    save_lip_head(head, out, score_lip_head(head, feats["val"]))
    return out


@pytest.fixture(scope="module")
def astronaut():
    from skimage import data

    from davs.face.align import FaceAligner

    photo = data.astronaut()
    return photo, FaceAligner(64).landmarks(photo)


def _aperture(frame: np.ndarray) -> float:
    """Inner-lip aperture in eye distances, read by dlib (the independent judge of experiments/photo_lips.py)."""
    from davs.face.align import FaceAligner

    p = FaceAligner(64).landmarks(frame)
    eye = np.linalg.norm(p[42:48].mean(0) - p[36:42].mean(0))
    return float(np.mean([np.linalg.norm(p[a] - p[b]) for a, b in ((61, 67), (62, 66), (63, 65))]) / eye)


def test_warp_opens_the_photos_own_mouth_and_leaves_the_rest(astronaut):
    from davs.inference.lip_warp import LipWarper

    photo, lm = astronaut
    w = LipWarper(photo, lm)
    assert (w.frame(np.array([0.0, 0.45, 0.0])) == photo).all()  # at rest: the photo itself
    x0, y0, x1, y1 = w.window
    assert (x1 - x0) * (y1 - y0) < 0.08 * photo.shape[0] * photo.shape[1]
    apertures = []
    for o in (0.0, 0.3, 0.6):
        f = w.frame(np.array([o, 0.45, 0.0]))
        outside = np.ones(photo.shape[:2], bool)
        outside[y0:y1, x0:x1] = False
        assert (f[outside] == photo[outside]).all(), "pixels outside the mouth's window changed"
        apertures.append(_aperture(f))
    assert apertures[0] < apertures[1] < apertures[2], apertures  # dlib sees the mouth open wider
    assert apertures[2] - apertures[0] > 0.1
    wide, narrow = w.frame(np.array([0.3, 0.9, 0.0])), w.frame(np.array([0.3, 0.2, 1.0]))
    assert np.abs(wide.astype(float) - narrow).max() > 50  # width and rounding move the corners


def test_warp_follows_a_turned_head(astronaut):
    """The mouth opens along the face's own axis: turned photo, turned opening."""
    import cv2

    from davs.face.align import FaceAligner
    from davs.inference.lip_warp import LipWarper

    photo, _ = astronaut
    m = cv2.getRotationMatrix2D((230, 150), 12, 1.0)
    turned = cv2.warpAffine(photo, m, photo.shape[1::-1], flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    w = LipWarper(turned, FaceAligner(64).landmarks(turned))
    assert abs(np.degrees(np.arctan2(w.ex[1], w.ex[0])) + 12) < 4  # the eye line is turned by 12 degrees
    assert _aperture(w.frame(np.array([0.6, 0.45, 0.0]))) > _aperture(turned) + 0.1


def _wav(path, samples, rate=16000):
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes((np.clip(samples, -1, 1) * 32767).astype(np.int16).tobytes())


def test_generate_warps_a_real_photo_with_the_lip_head(tiny_models, tiny_lips, astronaut, tmp_path):
    """``davs generate --lips``: the output is the photo's own pixels outside the mouth's window (up to H.264),
    speech moves the mouth and silence leaves it as the photo has it."""
    import av

    from davs.inference.lip_warp import LipWarper

    photo, lm = astronaut
    Image.fromarray(photo).save(tmp_path / "face.png")
    t = np.arange(16000 * 2) / 16000
    _wav(tmp_path / "speech.wav", 0.5 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0))
    _wav(tmp_path / "silence.wav", np.zeros_like(t))
    frames = {}
    for name in ("speech", "silence"):
        out = tmp_path / f"{name}.mp4"
        r = subprocess.run([sys.executable, "-m", "pipeline.cli", "generate", "--face", str(tmp_path / "face.png"),
                            "--audio", str(tmp_path / f"{name}.wav"), "--out", str(out), "--checkpoint",
                            str(tiny_models[0] / "gen.pt"), "--lips", str(tiny_lips)],
                           cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["frames"] == 50
        with av.open(str(out)) as c:
            frames[name] = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]).astype(float)
    x0, y0, x1, y1 = LipWarper(photo, lm).window
    outside = np.ones(photo.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    for f in frames.values():
        assert f.shape[1:] == photo.shape
        assert np.abs(f[:, outside] - photo[outside]).mean() < 3.0  # H.264 noise only
    motion = {k: f[:, y0:y1, x0:x1].std(0).mean() for k, f in frames.items()}
    assert motion["speech"] > 2 * motion["silence"], motion
