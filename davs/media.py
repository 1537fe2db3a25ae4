"""Media I/O shared by the corpus generator, ingestion and inference: mp4 writing (PyAV) and reading.

Writing goes through PyAV, which bundles FFmpeg (H.264 via libx264, AAC via FFmpeg's native encoder).
Reading of dataset clips goes through decord (see :mod:`davs.data.lrw`); generic reading of user
media (any container / codec / sample rate) goes through PyAV here.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from davs.files import atomic_path

LOW_MEMORY_PIXELS = 4_000_000  # larger frames: x264 without look-ahead or B-frames (its buffers hold tens of frames)


def write_mp4(
    path: str | os.PathLike,
    frames: np.ndarray | Iterable[np.ndarray],
    fps: int = 25,
    audio: np.ndarray | Iterable[np.ndarray] | None = None,
    sample_rate: int = 16000,
    crf: int = 20,
    preset: str = "veryfast",
) -> None:
    """Write ``frames`` (T, H, W, 3) uint8 (or any iterable of (H, W, 3) frames, consumed as encoded) as H.264 and optional mono ``audio`` (N,) float in [-1, 1] as AAC.

    The file appears under ``path`` only when complete (temp name + rename). Encoding is single-threaded
    so the same input gives the same bytes. Frames of more than ``LOW_MEMORY_PIXELS`` are encoded with
    x264's ``zerolatency`` tuning: its look-ahead and B-frame buffers would otherwise hold tens of frames
    (gigabytes at 6000x6000); the stream is somewhat larger for the same quality.
    """
    path = Path(path)
    tmp = atomic_path(path)
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError(f"{path}: no frames to write")
    h, w = first.shape[:2]
    try:
        with av.open(str(tmp), mode="w", format="mp4") as out:
            vs = out.add_stream("libx264", rate=fps)
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
            vs.thread_count = 1
            vs.options = {"crf": str(crf), "preset": preset, "threads": "1",
                          **({"tune": "zerolatency"} if h * w > LOW_MEMORY_PIXELS else {})}
            as_ = None
            if audio is not None:
                as_ = out.add_stream("aac", rate=sample_rate, layout="mono")
                as_.thread_count = 1
                as_.bit_rate = 64000
            for arr in itertools.chain([first], frames):
                for pkt in vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")):
                    out.mux(pkt)
            for pkt in vs.encode():
                out.mux(pkt)
            if as_ is not None:
                for i, pcm in _rechunk([audio] if isinstance(audio, np.ndarray) else audio, 1024):
                    chunk = np.clip(pcm, -1, 1)[None, :]  # (1, n) planar mono
                    af = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="mono")
                    af.sample_rate = sample_rate
                    af.pts = i
                    af.time_base = Fraction(1, sample_rate)
                    for pkt in as_.encode(af):
                        out.mux(pkt)
                for pkt in as_.encode():
                    out.mux(pkt)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _rechunk(chunks: Iterable[np.ndarray], size: int) -> Iterator[tuple[int, np.ndarray]]:
    """(first sample index, float32 block of ``size`` samples; the last may be shorter) from any chunking."""
    buf, pos = np.zeros(0, np.float32), 0
    for c in chunks:
        buf = np.concatenate([buf, np.asarray(c, dtype=np.float32).reshape(-1)])
        while len(buf) >= size:
            yield pos, buf[:size]
            buf, pos = buf[size:], pos + size
    if len(buf):
        yield pos, buf


def iter_audio(path: str | os.PathLike, sample_rate: int = 16000) -> Iterator[np.ndarray]:
    """Decode the first audio stream of any file PyAV opens, chunk by chunk, as mono float32 at ``sample_rate``."""
    with av.open(str(path)) as f:
        if not f.streams.audio:
            raise ValueError(f"{path}: no audio stream")
        res = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        for frame in f.decode(audio=0):
            for r in res.resample(frame):
                yield r.to_ndarray().reshape(-1).astype(np.float32, copy=False)
        for r in res.resample(None):
            yield r.to_ndarray().reshape(-1).astype(np.float32, copy=False)


def read_audio(path: str | os.PathLike, sample_rate: int = 16000) -> np.ndarray:
    """The whole first audio stream as one mono float32 array (short clips; :func:`iter_audio` streams)."""
    chunks = list(iter_audio(path, sample_rate))
    if not chunks:
        raise ValueError(f"{path}: audio stream decodes to nothing")
    return np.concatenate(chunks)


def video_fps(path: str | os.PathLike) -> float:
    """The frame rate of the first video stream."""
    with av.open(str(path)) as f:
        if not f.streams.video:
            raise ValueError(f"{path}: no video stream")
        stream = f.streams.video[0]
        return float(stream.average_rate or stream.guessed_rate or 25)


def iter_video(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Decode the first video stream frame by frame as (H, W, 3) uint8 RGB."""
    with av.open(str(path)) as f:
        if not f.streams.video:
            raise ValueError(f"{path}: no video stream")
        for fr in f.decode(video=0):
            yield fr.to_ndarray(format="rgb24")


def read_video(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """All frames of the first video stream as (T, H, W, 3) uint8 RGB, and the frame rate (short clips)."""
    fps = video_fps(path)
    frames = list(iter_video(path))
    if not frames:
        raise ValueError(f"{path}: video stream decodes to no frame")
    return np.stack(frames), fps
