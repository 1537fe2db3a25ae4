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
    align = t.track(photo[None], "the photo")[0][0]
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
    from davs.inference.resample import resample_stream, resample_to

    frames = np.arange(n)[:, None]
    n_out = max(1, int(round(n / 25 * fps)))
    want = np.minimum(np.floor(np.arange(n_out) * 25 / fps + 1e-6).astype(int), n - 1)
    got = np.array([f[0] for f in resample_stream(iter(frames), 25, fps, n_out)])
    assert (want == got).all()
    covered = np.array([f[0] for f in resample_to(iter(frames), 25, fps)])  # unknown length: to the input's end
    k = np.arange(len(covered))
    assert (covered == np.floor(k * 25 / fps + 1e-6).astype(int)).all()
    assert len(covered) == int(np.ceil(n / 25 * fps - 1e-6))  # every output time before the input's end


# ---------------------------------------------------------------- what users really have


def _frames(path):
    import av

    with av.open(str(path)) as c:
        has_audio = bool(c.streams.audio)
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]), has_audio


def test_odd_sided_photo_is_padded_by_one_pixel(tiny_models, media, real_photo, tmp_path):
    """libx264 in yuv420p needs even sides: a 515x387 crop gives a 516x388 video, said on stderr."""
    odd = tmp_path / "odd.png"
    Image.open(real_photo).convert("RGB").crop((0, 0, 387, 511)).resize((387, 515)).save(odd)
    r = davs("--face", odd, "--audio", media / "speech.wav", "--out", tmp_path / "o.mp4",
             "--checkpoint", tiny_models[0] / "gen.pt", "--quiet")
    assert r.returncode == 0, r.stderr
    frames, _ = _frames(tmp_path / "o.mp4")
    assert frames.shape[1:3] == (516, 388)
    assert "padded by one pixel" in r.stderr and "frame/s" not in r.stderr  # --quiet: no progress bar


def test_exif_orientation_is_honoured(tiny_models, media, real_photo, tmp_path):
    """A phone photo stored sideways with EXIF orientation 6 is read upright (the face is found) and the
    video has the displayed size."""
    upright = Image.open(real_photo).convert("RGB").crop((56, 0, 456, 512))  # 400 wide, 512 high
    stored = upright.transpose(Image.ROTATE_90)  # what the phone stores: turned a quarter
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display
    stored.save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    r = davs("--face", tmp_path / "phone.jpg", "--audio", media / "speech.wav", "--out", tmp_path / "o.mp4",
             "--checkpoint", tiny_models[0] / "gen.pt", "--quiet")
    assert r.returncode == 0, r.stderr
    frames, _ = _frames(tmp_path / "o.mp4")
    assert frames.shape[1:3] == (512, 400)
    assert np.abs(frames[0, :100].astype(float) - np.asarray(upright)[:100]).mean() < 4  # the top of the head, upright


def test_video_rotation_side_data_turns_frames_upright():
    from davs.inference.stores import upright

    f = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert upright(f, 0) is f
    assert upright(f, 90).shape == (3, 2, 3) and (upright(f, 90) == np.rot90(f)).all()
    assert (upright(f, -90) == np.rot90(f, 3)).all() and (upright(f, 180) == f[::-1, ::-1]).all()


def _long_speech(path, seconds: int) -> None:
    t = np.arange(16000 * seconds) / 16000
    _wav(path, 0.4 * np.sin(2 * np.pi * 200 * t) * (np.sin(2 * np.pi * 2 * t) > 0), 16000)


def _ctrl_c_as_at_a_terminal() -> None:
    """In the child, before exec: SIGINT's default action, whatever the test runner's was (a job started in the
    background by a non-interactive shell, e.g. ``nohup .ci/run &``, inherits SIGINT ignored, and Python then
    keeps ignoring it)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_interrupted_request_leaves_nothing(tiny_models, media, tmp_path, sig, code):
    """Interrupting a real run while it encodes: exit 130 / 143, no output, no temporary file beside it."""
    import signal
    import time

    _long_speech(tmp_path / "long.wav", 60)
    out = tmp_path / "out" / "talk.mp4"
    out.parent.mkdir()
    p = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "generate", "--face", str(media / "face.png"),
                          "--audio", str(tmp_path / "long.wav"), "--out", str(out), "--checkpoint",
                          str(tiny_models[0] / "gen.pt"), "--quiet", "--batch-size", "8"],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=_ctrl_c_as_at_a_terminal)
    t0 = time.time()
    while not list(out.parent.iterdir()) and time.time() - t0 < 120:  # the encoder has started writing
        time.sleep(0.05)
    assert list(out.parent.iterdir()), "the run never started writing"
    time.sleep(0.5)
    p.send_signal(getattr(signal, sig))
    _, err = p.communicate(timeout=60)
    assert p.returncode == code, err
    assert "Traceback" not in err, err
    assert list(out.parent.iterdir()) == [], "a partial output or temporary file was left"


def _covered_face_video(real_photo, path, hidden: range, n: int = 50) -> np.ndarray:
    """A face video of the real photo (slight drift), the face covered by a grey card in frames ``hidden``."""
    photo = np.asarray(Image.open(real_photo).convert("RGB"))[:384, 64:448]
    frames = []
    for i in range(n):
        f = np.roll(photo, i % 5, axis=1).copy()
        if i in hidden:
            f[40:300, 60:330] = 128
        frames.append(f)
    frames = np.stack(frames)
    write_mp4(path, frames, fps=25, audio=np.zeros(n * 640, np.float32))
    return frames


def test_face_gaps_are_filled_or_passed_through(tiny_models, media, real_photo, tmp_path):
    """A hand over the face for 12 frames: filled from the neighbours (default, about 1 s). A gap longer than
    --max-gap passes those frames through unchanged, with a warning listing them; the request succeeds."""
    frames = _covered_face_video(real_photo, tmp_path / "face.mp4", range(20, 32))
    r = davs("--face", tmp_path / "face.mp4", "--audio", media / "speech.wav", "--out", tmp_path / "a.mp4",
             "--checkpoint", tiny_models[0] / "gen.pt", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "no face in frames" not in r.stderr
    filled, _ = _frames(tmp_path / "a.mp4")
    assert np.abs(filled[25].astype(float) - frames[25]).max() > 30  # the covered frame was animated too
    r = davs("--face", tmp_path / "face.mp4", "--audio", media / "speech.wav", "--out", tmp_path / "b.mp4",
             "--checkpoint", tiny_models[0] / "gen.pt", "--quiet", "--max-gap", "5")
    assert r.returncode == 0, r.stderr
    assert "no face in frames 20, 21, 22" in r.stderr and "pass through unchanged" in r.stderr
    out, _ = _frames(tmp_path / "b.mp4")
    assert np.abs(out[25].astype(float) - frames[25]).mean() < 3  # the covered frame, as it was (H.264 noise)


def test_driving_video_without_audio_gives_a_silent_video(tiny_models, media, real_photo, tmp_path):
    frames = _covered_face_video(real_photo, tmp_path / "with_audio.mp4", range(0), n=30)
    write_mp4(tmp_path / "silent.mp4", frames)  # no audio track
    r = davs("--face", real_photo, "--driving-video", tmp_path / "silent.mp4", "--out", tmp_path / "o.mp4",
             "--checkpoint", tiny_models[0] / "gen.pt", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "no audio track" in r.stderr
    out, has_audio = _frames(tmp_path / "o.mp4")
    assert len(out) == 30 and not has_audio


def test_text_is_spoken_and_said(tiny_models, media, tmp_path):
    r = davs("--face", media / "face.png", "--text", "Hello there, how are you?", "--rate", "200",
             "--out", tmp_path / "o.mp4", "--checkpoint", tiny_models[0] / "gen.pt")
    assert r.returncode == 0, r.stderr
    out, has_audio = _frames(tmp_path / "o.mp4")
    assert has_audio and 20 < len(out) < 100
    assert np.abs(read_audio(tmp_path / "o.mp4")).max() > 0.05  # the speech is in the output
    assert "frame/s" in r.stderr  # the progress bar; --quiet turns it off
    bad = davs("--face", media / "face.png", "--text", "hi", "--rate", "1000", "--out", tmp_path / "p.mp4",
               "--checkpoint", tiny_models[0] / "gen.pt")
    assert bad.returncode == 1 and "--rate" in bad.stderr and "Traceback" not in bad.stderr


def test_word_features_read_the_audio_over_a_fixed_noise_floor(tiny_models, media, tmp_path, monkeypatch):
    """Digital silence, which no training clip has, is read over a -60 dBFS floor; any span of it equals the same
    rows of the whole (chunked inference stays exact); the output keeps the audio as it was."""
    from davs.inference import generate as G
    from davs.inference.stores import NOISE_FLOOR, AudioTrack

    track = AudioTrack(media / "silence.wav", tmp_path)
    n = track.samples
    whole = track.read_floored(-100, n + 100)  # past both ends too
    parts = np.concatenate([track.read_floored(a, min(a + 777, n + 100)) for a in range(-100, n + 100, 777)])
    assert np.array_equal(whole, parts)
    assert np.sqrt(np.mean(whole**2)) == pytest.approx(NOISE_FLOOR, rel=0.05)
    assert not track.read(0, n).any()
    track.close()
    floored = []
    orig = G.AudioTrack.read_floored

    def spy(self, a, b):
        floored.append(b - a)
        return orig(self, a, b)

    monkeypatch.setattr(G.AudioTrack, "read_floored", spy)
    from davs.inference.talk import Talker

    Talker(tiny_models[0] / "gen.pt", device="cpu").generate(media / "face.png", tmp_path / "q.mp4",
                                                             audio_path=media / "silence.wav")
    assert floored  # the word features were made from the floored audio
    _, _, _, audio = _probe(tmp_path / "q.mp4")
    assert np.abs(audio).max() < 1e-3  # the muxed audio is still the silence it was given
