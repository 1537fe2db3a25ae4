"""davs generate end to end: photo / video faces, wav / mp4 audio, driving video, errors without tracebacks."""

import subprocess
import sys
import wave

import decord
import numpy as np
import pytest
from PIL import Image

from davs.face.detect import FaceDetector
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
    diff = np.abs(frames.astype(float) - quiet.astype(float)).mean(axis=(0, 3))  # (H, W)
    ys, xs = np.nonzero(diff > 1)
    assert len(ys) > 100, len(ys)  # identical inputs would give exactly 0
    # the changed pixels sit in the mouth box of the face's crop (rows 182-238, columns 169-254 of this frame),
    # give or take H.264's 16-pixel macroblocks around it (render_photo itself is exact: the test below)
    box = np.zeros_like(diff, dtype=bool)
    box[176:245, 163:261] = True
    near = np.zeros_like(box)
    near[160:261, 147:277 + 16] = True
    inside = near[ys, xs]
    assert inside.all(), (ys[~inside], xs[~inside])
    assert diff[box].mean() > 3 * diff[near & ~box].mean()  # the change is the mouth's; around it, coding noise
    assert diff[:30, :30].max() < 1 and diff[:120].max() < 1  # corner and upper face untouched


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
    ("nockpt", "none.pt not found: train the pipeline first"),
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


@pytest.fixture(scope="module")
def real_photo(tmp_path_factory):
    """A real photograph (scikit-image's astronaut portrait, public domain, 512x512, face ~90 px)."""
    from skimage import data

    d = tmp_path_factory.mktemp("real")
    Image.fromarray(data.astronaut()).save(d / "astronaut.png")
    return d / "astronaut.png"


def test_real_photo_changes_only_the_mouth(tiny_models, media, real_photo):
    """On a real photo the face is aligned on landmarks (the generator's mouth lands on the lips) and every
    pixel outside the mouth region is the photo's own; two audios give two different mouths."""
    import cv2

    from davs.data.features import SAMPLE_RATE
    from davs.face.align import TEMPLATE, cut, mouth_mask
    from davs.inference import Talker

    t = Talker(tiny_models[0] / "gen.pt", "cpu", batch_size=16)
    photo = np.asarray(Image.open(real_photo).convert("RGB"))
    align = t._track(photo[None], "the photo")[0]
    assert align.landmarks, "dlib found no face in a real portrait"
    pts = t.aligner.points(photo)  # eyes and mouth centre land where the training crop has them
    mapped = np.c_[pts, np.ones(3)] @ align.matrix.T / align.size
    np.testing.assert_allclose(mapped, TEMPLATE, atol=0.03)
    speech = read_audio(media / "speech.wav", SAMPLE_RATE)
    n = 30
    frames = {}
    for name, audio in (("speech", speech), ("silence", np.zeros_like(speech))):
        frames[name] = np.stack(list(t.render_photo(photo, align, t.audio_words(audio, n))))  # (n, H, W, 3)
    support = cv2.warpAffine(mouth_mask(align.size, t.cfg.mouth_box), cv2.invertAffineTransform(align.matrix),
                             photo.shape[1::-1], flags=cv2.INTER_LINEAR) > 0
    near = cv2.dilate(support.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)  # interpolation margin
    for f in frames.values():
        assert f.shape == (n, *photo.shape)
        assert (f[:, ~near] == photo[~near]).all(), "pixels outside the mouth changed"
    assert near.sum() < 0.05 * near.size  # the mouth region is small against the photo
    ys, xs = np.nonzero(support)
    mouth = pts[2]
    assert abs(xs.mean() - mouth[0]) < 6 and abs(ys.mean() - mouth[1]) < 6  # centred on the lips
    diff = np.abs(frames["speech"].astype(float) - frames["silence"].astype(float))[:, near].mean()
    assert diff > 0.01, diff  # different audio, different mouths (identical would give exactly 0)
    assert cut(photo, align).shape == (t.cfg.image_size, t.cfg.image_size, 3)


def test_real_photo_end_to_end(tiny_models, media, real_photo, tmp_path):
    r = davs("--face", real_photo, "--audio", media / "speech.wav", "--out", tmp_path / "a.mp4",
             "--checkpoint", tiny_models[0] / "gen.pt", "--fps", "30")
    assert r.returncode == 0, r.stderr
    n, fps, frames, _ = _probe(tmp_path / "a.mp4")
    photo = np.asarray(Image.open(real_photo).convert("RGB")).astype(float)
    assert fps == 30 and frames.shape[1:] == photo.shape
    top = np.abs(frames[:, :200].astype(float) - photo[:200]).mean()  # above the mouth: the photo, as encoded
    assert top < 3.0, top


@pytest.mark.parametrize("n", [1, 7, 50])
@pytest.mark.parametrize("fps", [10, 12.5, 24, 25, 30, 60])
def test_streamed_resampling_is_nearest_in_time(n, fps):
    """Output frame k shows the input frame on screen at time k / fps, for both streaming resamplers."""
    from davs.inference.talk import resample_stream, resample_to

    frames = np.arange(n)[:, None]
    n_out = max(1, int(round(n / 25 * fps)))
    want = np.minimum(np.floor(np.arange(n_out) * 25 / fps + 1e-6).astype(int), n - 1)
    got = np.array([f[0] for f in resample_stream(iter(frames), 25, fps, n_out)])
    assert (want == got).all()
    covered = np.array([f[0] for f in resample_to(iter(frames), 25, fps)])  # unknown length: to the input's end
    k = np.arange(len(covered))
    assert (covered == np.floor(k * 25 / fps + 1e-6).astype(int)).all()
    assert len(covered) == int(np.ceil(n / 25 * fps - 1e-6))  # every output time before the input's end
