"""Does a real photo talk with its own lips? ``davs generate`` renderers compared by an independent judge.

For each portrait (scikit-image's public-domain astronaut, and variants of it: enlarged so the face is
about 225 px wide, turned 8 degrees, mirrored, darker; or ``--photo`` files) and each renderer (``warp``: the
photo's own lips moved by the lip head; ``paste``: the generator's 64 px mouth change pasted on the photo),
``davs generate`` makes the photo say eSpeak NG speech framed by silence, and say 4 s of silence. dlib's
68-point landmark model and its face-descriptor network, which no part of davs trains or selects with,
then read every decoded output frame:

- ``aperture_env_r``: Pearson r of the inner-lip aperture (in eye distances) with the speech envelope (RMS per
  40 ms frame), at the best lag within +-2 frames (``lag``);
- ``silence_motion``: the aperture's std over the silent request, over its std on speech (0: still);
- ``identity_distance``: mean face-descriptor distance of the output frames to the photo (dlib's
  same-person threshold is 0.6; ``identity_distance_h264``: the photo alone through the same H.264);
- ``outside_diff``: mean |output - photo| (0-255) outside the mouth's window, against H.264 of the photo alone.

    python experiments/photo_lips.py                   # after dvc repro; -> experiments/results/photo_lips.json
    python experiments/photo_lips.py --photo me.jpg --no-builtin --out /tmp/mine.json   # your own portraits

It pins: the pipeline's models (``models/gen.pt``, ``models/lips.pt``), the sentence below, the defaults of
``davs generate``. One run; deterministic on one machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SENTENCE = ("The quick brown fox jumps over the lazy dog. Peter Piper picked a peck of pickled peppers. "
            "How are you today? I am fine, thank you very much.")
RENDERERS = ("warp", "paste")


def _write_wav(path: Path, x: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(x.astype(np.int16).tobytes())


def speech(work: Path) -> tuple[Path, Path, np.ndarray]:
    """(speech wav, silence wav, speech envelope per 25 fps frame)."""
    from davs.synth.espeak import synthesize

    sp = synthesize(SENTENCE)
    pad = np.zeros(int(sp.sample_rate * 1.5), np.int16)
    x = np.concatenate([pad, sp.samples, pad])
    _write_wav(work / "speech.wav", x, sp.sample_rate)
    _write_wav(work / "silence.wav", np.zeros(sp.sample_rate * 4, np.int16), sp.sample_rate)
    hop = sp.sample_rate // 25
    env = np.array([np.sqrt(np.mean(x[i : i + hop].astype(np.float64) ** 2)) for i in range(0, len(x) - hop + 1, hop)])
    return work / "speech.wav", work / "silence.wav", env


def portraits(work: Path, extra: list[str], builtin: bool = True) -> dict[str, Path]:
    import skimage.data
    from PIL import Image, ImageEnhance

    if not builtin:
        return {Path(p).name: Path(p) for p in extra}
    base = Image.fromarray(skimage.data.astronaut())
    variants = {
        "astronaut": base,
        "astronaut x2.5": base.resize((1280, 1280), Image.LANCZOS),
        "astronaut turned 8 deg": base.rotate(8, resample=Image.BICUBIC, center=(230, 150)),
        "astronaut mirrored": base.transpose(Image.FLIP_LEFT_RIGHT),
        "astronaut darker": ImageEnhance.Brightness(base).enhance(0.6),
    }
    out = {}
    for name, im in variants.items():
        out[name] = work / (name.replace(" ", "_") + ".png")
        im.save(out[name])
    out |= {Path(p).name: Path(p) for p in extra}
    return out


class Judge:
    """dlib's landmarks and face descriptor (face-recognition-models), read off decoded frames."""

    def __init__(self) -> None:
        import dlib
        import face_recognition_models as frm

        self.det = dlib.get_frontal_face_detector()
        self.pred = dlib.shape_predictor(frm.pose_predictor_model_location())
        self.rec = dlib.face_recognition_model_v1(frm.face_recognition_model_location())

    def read(self, frame: np.ndarray) -> tuple[float, np.ndarray] | None:
        """(inner-lip aperture in eye distances, 128-d descriptor) of the largest face, or None."""
        rects = self.det(frame, 1)
        if not rects:
            return None
        r = max(rects, key=lambda r: r.width() * r.height())
        shape = self.pred(frame, r)
        p = np.array([(q.x, q.y) for q in shape.parts()], np.float64)
        eye = np.linalg.norm(p[42:48].mean(0) - p[36:42].mean(0))
        aperture = np.mean([np.linalg.norm(p[a] - p[b]) for a, b in ((61, 67), (62, 66), (63, 65))]) / eye
        return float(aperture), np.asarray(self.rec.compute_face_descriptor(frame, shape))


def frames_of(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [np.ascontiguousarray(f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]


def h264_of(photo: np.ndarray, work: Path) -> np.ndarray:
    """The photo through the same encoder as davs generate (one frame back)."""
    from davs.media import write_mp4

    h, w = photo.shape[:2]
    even = photo[: h - h % 2, : w - w % 2]
    write_mp4(work / "photo.mp4", iter([even] * 3), fps=25)
    return frames_of(work / "photo.mp4")[1]


def best_lag_r(a: np.ndarray, env: np.ndarray, max_lag: int = 2) -> tuple[float, int]:
    n = min(len(a), len(env))
    best = (-2.0, 0)
    for lag in range(-max_lag, max_lag + 1):
        x, y = a[max(0, lag) : n + min(0, lag)], env[max(0, -lag) : n - max(0, lag)]
        ok = np.isfinite(x)
        if ok.sum() > 10 and x[ok].std() > 0:
            best = max(best, (float(np.corrcoef(x[ok], y[ok])[0, 1]), lag))
    return best


def run(photo_path: Path, renderer: str, audio: Path, out: Path) -> None:
    cmd = [sys.executable, "-m", "pipeline.cli", "generate", "--face", str(photo_path), "--audio", str(audio),
           "--out", str(out), "--renderer", renderer]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)


def score(judge: Judge, photo: np.ndarray, frames: list[np.ndarray]) -> tuple[np.ndarray, float]:
    ref = judge.read(photo)
    if ref is None:
        raise SystemExit("the judge finds no face in the photo")
    reads = [judge.read(f) for f in frames]
    ap = np.array([r[0] if r else np.nan for r in reads])
    dist = np.array([np.linalg.norm(r[1] - ref[1]) for r in reads if r])
    return ap, float(dist.mean()) if len(dist) else float("nan")


def outside_diff(photo: np.ndarray, frame: np.ndarray, window: tuple[int, int, int, int]) -> float:
    x0, y0, x1, y1 = window
    h, w = frame.shape[:2]
    mask = np.ones((h, w), bool)
    mask[y0:y1, x0:x1] = False
    return float(np.abs(frame.astype(np.float64) - photo[:h, :w]).mean(-1)[mask].mean())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photo", nargs="*", default=[])
    ap.add_argument("--no-builtin", action="store_true", help="only the --photo portraits")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "photo_lips.json"))
    args = ap.parse_args()
    from davs.face.align import FaceAligner
    from davs.inference.lip_warp import LipWarper
    from davs.provenance import environment

    judge, aligner = Judge(), FaceAligner(64)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        talk, quiet, env = speech(work)
        for name, path in portraits(work, args.photo, not args.no_builtin).items():
            photo = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            coded = h264_of(photo, work)
            window = LipWarper(photo, aligner.landmarks(photo)).window
            _, id_h264 = score(judge, photo, [coded])
            for renderer in RENDERERS:
                run(path, renderer, talk, work / "talk.mp4")
                run(path, renderer, quiet, work / "quiet.mp4")
                talking, silent = frames_of(work / "talk.mp4"), frames_of(work / "quiet.mp4")
                a_talk, id_talk = score(judge, photo, talking)
                a_quiet, id_quiet = score(judge, photo, silent)
                r, lag = best_lag_r(a_talk, env)
                row = {"photo": name, "renderer": renderer, "face_px": int(round(np.ptp(aligner.landmarks(photo)[:17, 0]))),
                       "aperture_env_r": round(r, 3), "lag": lag,
                       "silence_motion": round(float(np.nanstd(a_quiet) / max(np.nanstd(a_talk), 1e-9)), 3),
                       "identity_distance": round((id_talk + id_quiet) / 2, 3), "identity_distance_h264": round(id_h264, 3),
                       "outside_diff": round(np.mean([outside_diff(photo, f, window) for f in talking[::10]]), 2),
                       "outside_diff_h264": round(outside_diff(photo, coded, window), 2),
                       "judge_missed_frames": int(np.isnan(a_talk).sum())}
                rows.append(row)
                print(json.dumps(row), flush=True)
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    doc = {"note": "experiments/photo_lips.py, one run: davs generate on each portrait (eSpeak NG speech framed by "
                   "silence, and 4 s of silence), read by dlib's landmarks and face descriptor",
           "environment": environment(), "commit": commit, "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
