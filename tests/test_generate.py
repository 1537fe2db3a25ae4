"""davs generate end to end: photo / video faces, wav / mp4 audio, driving video, errors without tracebacks."""

import subprocess
import sys
import wave

import decord
import numpy as np
import pytest
from PIL import Image

from davs.inference.face_detect import FaceDetector
from davs.media import read_audio, write_mp4
from davs.synth.espeak import Voice, synthesize
from davs.synth.face import FaceRenderer, Identity, Scene

from .conftest import ROOT


def _wav(path, samples: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    r = FaceRenderer(Identity.make(0, 0), Scene())
    photo = np.pad(r.frame((0.0, 0.5, 0.0), 0.0), ((40, 40), (80, 80), (0, 0)), mode="edge")  # 336x416, off-size
    assert FaceDetector().detect(photo) is not None
    Image.fromarray(photo).save(d / "face.png")
    speech = synthesize("absolutely money school", Voice(variant="m3"))
    pcm = speech.samples.astype(np.float32) / 32768  # 22.05 kHz
    _wav(d / "speech.wav", pcm, speech.sample_rate)
    _wav(d / "silence.wav", np.zeros_like(pcm), speech.sample_rate)
    _wav(d / "short.wav", pcm[:200], speech.sample_rate)
    frames = np.stack([r.frame((0.5 * (1 + np.sin(i / 3)), 0.5, 0.0), i / 25) for i in range(20)])
    write_mp4(d / "face.mp4", frames, fps=25, audio=np.zeros(20 * 640, np.float32))
    Image.new("RGB", (200, 200), (90, 140, 200)).save(d / "noface.png")
    (d / "broken.mp4").write_bytes(b"\x00" * 100)
    return d


def davs(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "generate", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def _probe(path):
    vr = decord.VideoReader(str(path))
    audio = read_audio(path)
    return len(vr), vr.get_avg_fps(), vr.get_batch(list(range(len(vr)))).asnumpy(), audio


def test_photo_says_audio(tiny_models, media, tmp_path):
    ckpt = tiny_models[0] / "gen.pt"
    r = davs("--face", media / "face.png", "--audio", media / "speech.wav", "--out", tmp_path / "talk.mp4",
             "--checkpoint", ckpt, "--device", "cpu")
    assert r.returncode == 0, r.stderr
    r2 = davs("--face", media / "face.png", "--audio", media / "silence.wav", "--out", tmp_path / "quiet.mp4",
              "--checkpoint", ckpt)
    assert r2.returncode == 0, r2.stderr
    n, fps, frames, audio = _probe(tmp_path / "talk.mp4")
    dur = len(read_audio(media / "speech.wav")) / 16000
    assert fps == 25 and n == int(dur * 25)
    assert frames.shape[1:] == (336, 416, 3)  # pasted back into the original frame size
    assert abs(len(audio) / 16000 - dur) < 0.1 and np.abs(audio).max() > 0.05
    _, _, quiet, _ = _probe(tmp_path / "quiet.mp4")
    # the mouth area follows the audio; the background far from the face does not
    mouth = np.abs(frames[:, 230:300, 160:260].astype(float) - quiet[:, 230:300, 160:260]).mean()
    corner = np.abs(frames[:, :30, :30].astype(float) - quiet[:, :30, :30]).mean()
    assert mouth > 0.1 and mouth > 5 * corner, (mouth, corner)  # identical inputs would give exactly 0


def test_driving_video_and_face_video(tiny_models, media, corpus, tmp_path):
    ckpt = tiny_models[0] / "gen.pt"
    driver = sorted((corpus / "lipread_mp4").rglob("*.mp4"))[0]
    r = davs("--face", media / "face.png", "--driving-video", driver, "--out", tmp_path / "mimic.mp4",
             "--checkpoint", ckpt)
    assert r.returncode == 0, r.stderr
    n, fps, _, audio = _probe(tmp_path / "mimic.mp4")
    assert n == 29 and fps == 25 and len(audio) > 0.9 * 29 * 640
    # a 20-frame face video driven by ~2 s of audio: the video loops back and forth
    r = davs("--face", media / "face.mp4", "--audio", media / "speech.wav", "--out", tmp_path / "v.mp4",
             "--checkpoint", ckpt, "--fps", "30", "--batch-size", "7")
    assert r.returncode == 0, r.stderr
    n, fps, _, _ = _probe(tmp_path / "v.mp4")
    dur = len(read_audio(media / "speech.wav")) / 16000
    assert fps == 30 and abs(n - dur * 30) <= 2


@pytest.mark.parametrize("case,needle", [
    ("noface", "no face found in the face input"),
    ("broken", "cannot read video"),
    ("short", "shorter than one frame"),
    ("nockpt", "checkpoint"),
    ("wrongckpt", "lacks"),
    ("missing", "does not exist"),
])
def test_errors_are_messages_not_tracebacks(tiny_models, media, tmp_path, case, needle):
    ckpt = tiny_models[0] / "gen.pt"
    face, audio = media / "face.png", media / "speech.wav"
    if case == "noface":
        face = media / "noface.png"
    elif case == "broken":
        face = media / "broken.mp4"
    elif case == "short":
        audio = media / "short.wav"
    elif case == "nockpt":
        ckpt = tmp_path / "none.pt"
    elif case == "wrongckpt":
        ckpt = tiny_models[0] / "joint.pt"
    elif case == "missing":
        face = tmp_path / "nothere.jpg"
    r = davs("--face", face, "--audio", audio, "--out", tmp_path / "o.mp4", "--checkpoint", ckpt)
    assert r.returncode == 1
    assert needle in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "o.mp4").exists()
