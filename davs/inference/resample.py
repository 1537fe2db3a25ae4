"""Frame-rate conversion of frame streams of unknown length: nearest in time, nothing held."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np


def source_index(k: int, fps: float, out_fps: float) -> int:
    """The input frame (at ``fps``) on screen at output frame k's time (k / out_fps); exact when the rates
    are equal (1.16 * 25 is 28.999999999999996 in floating point)."""
    return int(k * fps / out_fps + 1e-6)


def resample_to(frames: Iterable[np.ndarray], fps: float, out_fps: float) -> Iterator[np.ndarray]:
    """Output frame k (time k / out_fps) is input frame :func:`source_index`, for every k / out_fps before
    the input's end (the length follows the input)."""
    k = 0
    for i, f in enumerate(frames):
        while source_index(k, fps, out_fps) <= i:
            yield f
            k += 1


def resample_stream(frames: Iterator[np.ndarray], fps: float, out_fps: float, n_out: int) -> Iterator[np.ndarray]:
    """As :func:`resample_to`, for exactly ``n_out`` output frames: the last input frame repeated past its end."""
    k, f = 0, None
    for i, f in enumerate(frames):
        while k < n_out and source_index(k, fps, out_fps) <= i:
            yield f
            k += 1
    while f is not None and k < n_out:
        yield f
        k += 1
