"""Temporary stores of a request's media: the speech decoded once into a raw file and read back span by
span, and video frames spilled to a raw file and read back one at a time, so memory does not grow with the
input's length."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

from davs.data.features import SAMPLE_RATE
from davs.inference.request import MODEL_FPS, GenerateError, pad_even
from davs.inference.resample import resample_to
from davs.media import iter_audio, video_fps

log = logging.getLogger(__name__)

# What the word encoders read the speech over: a fixed noise floor at -60 dBFS (RMS). Every training clip has
# one (the corpus mixes noise at 25-40 dB SNR; a recording has its room's); digital silence (synthesised
# speech's padding, muted parts), which no training clip has, would otherwise read as a mouth held open.
NOISE_FLOOR = 1e-3
_FLOOR = np.random.default_rng(0).standard_normal(1 << 16).astype(np.float32)  # tiled: sample i gets _FLOOR[i % n]


def has_audio(path: str | Path) -> bool:
    try:
        with av.open(str(path)) as f:
            return bool(f.streams.audio)
    except Exception:  # noqa: BLE001 - unreadable media: AudioTrack says why
        return True


class AudioTrack:
    """Speech decoded once, as it streams, into a temporary raw float32 file at 16 kHz; spans read back."""

    def __init__(self, path: str | Path, workdir: Path) -> None:
        self.file = workdir / "audio.f32"
        n = 0
        try:
            with open(self.file, "wb") as f:
                for chunk in iter_audio(path, SAMPLE_RATE):
                    f.write(chunk.astype("<f4", copy=False).tobytes())
                    n += len(chunk)
        except Exception as e:  # PyAV raises several error types for unreadable media
            raise GenerateError(f"cannot read audio from {path}: {e}") from None
        if n == 0:
            raise GenerateError(f"{path}: the audio stream decodes to nothing")
        self.samples = n
        self._fh = open(self.file, "rb")  # noqa: SIM115 - closed by close()

    def read(self, a: int, b: int) -> np.ndarray:
        """Samples [a, b), zeros outside the signal."""
        out = np.zeros(b - a, np.float32)
        lo, hi = max(a, 0), min(b, self.samples)
        if hi > lo:
            self._fh.seek(lo * 4)
            out[lo - a : hi - a] = np.frombuffer(self._fh.read((hi - lo) * 4), "<f4")
        return out

    def read_floored(self, a: int, b: int) -> np.ndarray:
        """Samples [a, b) over the noise floor (``NOISE_FLOOR``; sample i always gets the same noise, so any
        span equals the same rows of the whole): what the word features are made from. The output keeps the
        audio as it is (:meth:`read`)."""
        return self.read(a, b) + NOISE_FLOOR * _FLOOR[np.arange(a, b) % len(_FLOOR)]

    def chunks(self, stop: int, size: int = 10 * SAMPLE_RATE) -> Iterator[np.ndarray]:
        for a in range(0, stop, size):
            yield self.read(a, min(a + size, stop))

    def close(self) -> None:
        self._fh.close()


class FrameFile:
    """Video frames spilled to a temporary raw file as they decode; frame i read back on demand."""

    def __init__(self, frames: Iterable[np.ndarray], file: Path) -> None:
        self.file, self.n, self.shape = file, 0, None
        with open(file, "wb") as f:
            for fr in frames:
                if self.shape is None:
                    self.shape = fr.shape
                elif fr.shape != self.shape:
                    raise GenerateError(f"frame {self.n} is {fr.shape[1]}x{fr.shape[0]}, not like the first")
                f.write(np.ascontiguousarray(fr, np.uint8).tobytes())
                self.n += 1
        self._size = int(np.prod(self.shape)) if self.shape else 0
        self._fh = open(file, "rb")  # noqa: SIM115 - closed by close()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> np.ndarray:
        self._fh.seek(i * self._size)
        return np.frombuffer(self._fh.read(self._size), np.uint8).reshape(self.shape)

    def close(self) -> None:
        self._fh.close()


def encodable(frames: Iterable[np.ndarray], n: int, progress: bool) -> Iterator[np.ndarray]:
    """Frames as H.264 takes them (an odd side padded by one pixel, said once), counted by a progress bar."""
    bar = tqdm(total=n, unit="frame", desc="davs generate", disable=not progress, leave=False)
    try:
        for i, f in enumerate(frames):
            if i == 0 and (f.shape[0] % 2 or f.shape[1] % 2):
                log.info("the frame is %dx%d: padded by one pixel to an even size for H.264 (yuv420p)",
                         f.shape[1], f.shape[0])
            yield pad_even(f)
            bar.update()
    finally:
        bar.close()


def upright(frame: np.ndarray, rotation: int) -> np.ndarray:
    """A decoded frame turned as a player shows it: ``rotation`` is the display matrix's counter-clockwise
    angle in degrees (a phone's portrait video: 90 or -90)."""
    k = int(round(rotation / 90)) % 4
    return np.ascontiguousarray(np.rot90(frame, k)) if k else frame


def iter_upright(path: str | Path) -> Iterator[np.ndarray]:
    """The first video stream's frames as (H, W, 3) uint8 RGB, each turned by its rotation side data."""
    with av.open(str(path)) as f:
        if not f.streams.video:
            raise ValueError(f"{path}: no video stream")
        for fr in f.decode(video=0):
            yield upright(fr.to_ndarray(format="rgb24"), getattr(fr, "rotation", 0) or 0)


def load_video(path: str | Path, workdir: Path, name: str) -> FrameFile:
    """A video resampled to 25 fps, upright, into a :class:`FrameFile`."""
    try:
        store = FrameFile(resample_to(iter_upright(path), video_fps(path), MODEL_FPS), workdir / f"{name}.rgb")
    except GenerateError:
        raise
    except Exception as e:  # PyAV raises several error types for unreadable media
        raise GenerateError(f"cannot read video {path}: {e}") from None
    if len(store) == 0:
        raise GenerateError(f"{path}: the video stream decodes to no frame")
    return store
