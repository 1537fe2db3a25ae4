"""LRW reader: ``lipread_mp4/<WORD>/{train,val,test}/<WORD>_<NNNNN>.{mp4,txt}``.

Each clip is read with decord (video and audio), validated (frame count, fps, audio present), the
audio aligned to the frames and turned into per-frame MFCC windows, the face cropped and resized.
Any problem raises :class:`BadSample` with a reason that ends up in the data-quality report.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from davs.data.features import align_audio, mfcc_windows, word_mask

SPLITS = ("train", "val", "test")
_DURATION = re.compile(r"^Duration:\s*([0-9]*\.?[0-9]+)\s*seconds\s*$")
_STEM = re.compile(r"^([A-Z0-9']+)_(\d{5})$")


def clip_path(key: str) -> str:
    """A shard key (``<WORD>_<split>_<NNNNN>``) -> the clip's path relative to ``lipread_mp4/``."""
    word, split, idx = key.rsplit("_", 2)
    return f"{word}/{split}/{word}_{idx}.mp4"


class BadSample(Exception):
    """An input that cannot be used; the message says why."""


@dataclass(frozen=True)
class ClipRef:
    path: str  # mp4
    word: str
    split: str
    index: int
    speaker: str  # "" when unknown (real LRW has no speaker labels)

    @property
    def key(self) -> str:
        return f"{self.word}_{self.split}_{self.index:05d}"


@dataclass
class Clip:
    ref: ClipRef
    frames: np.ndarray  # (T, S, S, 3) uint8 face crops
    mfcc: np.ndarray  # (T, mfcc_frames, mfcc_coeffs) float32
    mask: np.ndarray  # (T,) bool, frames spanned by the word
    duration: float


def list_clips(root: str | os.PathLike, splits: tuple[str, ...] = SPLITS, max_per_word: int = 0) -> list[ClipRef]:
    """All clips under an LRW root, ordered by split, word, index (deterministic)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"LRW root {root} is not a directory")
    speakers = _speakers(root)
    refs = []
    for split in splits:
        for wdir in sorted(p for p in root.iterdir() if p.is_dir()):
            sdir = wdir / split
            if not sdir.is_dir():
                continue
            names = sorted(f for f in os.listdir(sdir) if f.endswith(".mp4"))
            if max_per_word:
                names = names[:max_per_word]
            for name in names:
                m = _STEM.match(name[:-4])
                index = int(m.group(2)) if m else 0
                rel = f"{wdir.name}/{split}/{name}"
                refs.append(ClipRef(str(sdir / name), wdir.name, split, index, speakers.get(rel, "")))
    return refs


def _speakers(root: Path) -> dict[str, str]:
    f = root / "speakers.csv"  # written by the embedded corpus only
    if not f.exists():
        return {}
    with open(f, newline="") as fh:
        return {row["clip"]: row["speaker"] for row in csv.DictReader(fh)}


def parse_duration(txt_path: str | os.PathLike) -> float:
    """The word duration from an LRW ``.txt`` (its ``Duration: 0.53 seconds`` line)."""
    try:
        lines = [ln.strip() for ln in Path(txt_path).read_text(errors="strict").splitlines() if ln.strip()]
    except FileNotFoundError:
        raise BadSample("missing .txt") from None
    except (UnicodeDecodeError, OSError) as e:
        raise BadSample(f"unreadable .txt: {e}") from None
    for line in reversed(lines):
        m = _DURATION.match(line)
        if m:
            d = float(m.group(1))
            if not 0 < d < 5:
                raise BadSample(f".txt duration out of range: {d}")
            return d
    raise BadSample(".txt has no 'Duration: N seconds' line")


def crop_resize(frames: np.ndarray, crop_box: tuple[int, int, int], size: int) -> np.ndarray:
    """Crop (top, left, side) from (T, H, W, 3) frames and resize to (T, size, size, 3)."""
    top, left, side = crop_box
    t, h, w, _ = frames.shape
    if top + side > h or left + side > w:
        raise BadSample(f"crop box {crop_box} does not fit frames of {h}x{w}")
    crop = frames[:, top : top + side, left : left + side]
    if side == size:
        return np.ascontiguousarray(crop)
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in crop])


FACE_ALIGN = ("fixed", "landmarks")
_ALIGNERS: dict[int, object] = {}  # image size -> FaceAligner, one per process (dlib's models do not pickle)


def align_faces(frames: np.ndarray, size: int) -> np.ndarray:
    """(T, H, W, 3) frames -> (T, size, size, 3) crops aligned on facial landmarks (eye centres and mouth
    centre onto the training crop's template, as the official DAVS preprocessing does; a Haar face box where
    dlib finds no landmarks), gap-filled and median-smoothed over time. BadSample where no face is found."""
    from davs.face.align import FaceAligner, cut

    aligner = _ALIGNERS.get(size)
    if aligner is None:
        aligner = _ALIGNERS[size] = FaceAligner(size, upsample=0)  # LRW's faces are large: no upsampling
    aligns, missing = aligner.track(frames)
    if not aligns:
        raise BadSample("no face found (face_align: landmarks)")
    if missing:
        raise BadSample(f"no face found in frames {', '.join(map(str, missing[:10]))} (face_align: landmarks)")
    return np.stack([cut(f, a) for f, a in zip(frames, aligns, strict=True)])


def read_clip(
    ref: ClipRef,
    crop_box: tuple[int, int, int],
    image_size: int,
    mfcc_frames: int = 20,
    mfcc_coeffs: int = 12,
    expected_frames: tuple[int, ...] = (29, 30),
    fps: float = 25.0,
    face_align: str = "fixed",
    mfcc_recipe: str = "torchaudio",
) -> Clip:
    """Decode and validate one LRW clip; raises :class:`BadSample` with the reason. ``face_align``: "fixed"
    cuts ``crop_box`` (top, left, side) from every frame (LRW's faces are roughly centred); "landmarks" aligns
    every frame on its facial landmarks (:func:`align_faces`)."""
    if face_align not in FACE_ALIGN:
        raise ValueError(f"face_align must be one of {FACE_ALIGN} (got {face_align!r})")
    import decord

    duration = parse_duration(Path(ref.path).with_suffix(".txt"))
    try:
        data = Path(ref.path).read_bytes()
    except OSError as e:
        raise BadSample(f"unreadable mp4: {e}") from None
    if len(data) < 64:
        raise BadSample(f"truncated mp4 ({len(data)} bytes)")
    try:
        vr = decord.VideoReader(io.BytesIO(data), ctx=decord.cpu(0), num_threads=1)
        n = len(vr)
        got_fps = vr.get_avg_fps()
        frames = vr.get_batch(list(range(n))).asnumpy()  # (T, H, W, 3)
    except Exception as e:  # decord raises its own DECORDError and RuntimeError types
        raise BadSample(f"corrupt mp4 (video): {str(e).splitlines()[0][:200]}") from None
    if n not in expected_frames:
        raise BadSample(f"wrong frame count {n} (expected {'/'.join(map(str, expected_frames))})")
    if abs(got_fps - fps) > 0.5:
        raise BadSample(f"wrong fps {got_fps:.2f} (expected {fps})")
    try:
        ar = decord.AudioReader(io.BytesIO(data), ctx=decord.cpu(0), sample_rate=16000, mono=True)
        audio = ar[:].asnumpy().reshape(-1)
    except Exception as e:
        raise BadSample(f"missing or corrupt audio: {str(e).splitlines()[0][:200]}") from None
    need = int(round(n * 16000 / fps))
    if len(audio) < 0.9 * need:
        raise BadSample(f"audio too short: {len(audio)} samples for {n} frames ({need} expected)")
    audio = align_audio(audio, n, fps)
    faces = crop_resize(frames, crop_box, image_size) if face_align == "fixed" else align_faces(frames, image_size)
    mfcc = mfcc_windows(audio, n, fps, mfcc_frames, mfcc_coeffs, mfcc_recipe)
    if not np.isfinite(mfcc).all():
        raise BadSample("non-finite MFCC (silent or broken audio)")
    return Clip(ref, faces, mfcc, word_mask(n, duration, fps), duration)
