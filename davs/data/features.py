"""DAVS audio features: for each video frame, a window of 20 MFCC frames x 12 coefficients.

16 kHz audio, 25 ms Hamming window, 10 ms hop, 13 mel filterbank channels, C0 dropped. At 25 fps
there are 4 MFCC frames per video frame; the window for video frame ``i`` is centred on the frame's
centre time ``(i + 0.5) / fps`` and spans ``mfcc_frames`` hops (0.2 s by default).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch
import torchaudio

SAMPLE_RATE = 16000
HOP = 160  # 10 ms
WIN = 400  # 25 ms
N_FFT = 512  # each MFCC frame reads N_FFT samples (the WIN window zero-padded)


@functools.lru_cache(maxsize=4)
def _mfcc(n_mfcc: int) -> torchaudio.transforms.MFCC:
    return torchaudio.transforms.MFCC(
        sample_rate=SAMPLE_RATE,
        n_mfcc=n_mfcc,
        log_mels=True,
        melkwargs={"n_fft": N_FFT, "win_length": WIN, "hop_length": HOP, "n_mels": n_mfcc,
                   "window_fn": torch.hamming_window, "center": False, "power": 2.0},
    )


def align_audio(audio: np.ndarray, num_frames: int, fps: float = 25.0, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Trim or zero-pad decoded audio to exactly ``num_frames`` video frames (AAC pads the end)."""
    n = int(round(num_frames * sample_rate / fps))
    out = np.zeros(n, np.float32)
    m = min(n, len(audio))
    out[:m] = audio[:m]
    return out


def mfcc_windows(
    audio: np.ndarray, num_frames: int, fps: float = 25.0, window: int = 20, coeffs: int = 12
) -> np.ndarray:
    """(num_frames, window, coeffs) float32 MFCC windows, one per video frame, centred on the frame."""
    pad = window * HOP // 2 + WIN  # room for the first and last windows
    x = np.pad(audio.astype(np.float32), (pad, pad))
    with torch.no_grad():
        m = _mfcc(coeffs + 1)(torch.from_numpy(x))  # (coeffs+1, K); frame k centred at k*HOP + WIN/2
    m = m[1:].T.numpy()  # (K, coeffs), C0 dropped
    out = np.empty((num_frames, window, coeffs), np.float32)
    for i in range(num_frames):
        centre = (i + 0.5) / fps * SAMPLE_RATE + pad  # sample index in the padded signal
        first = int(round((centre - WIN / 2) / HOP)) - window // 2  # first MFCC frame of the window
        out[i] = m[first : first + window]
    return out


def _first_mfcc(i: int, fps: float, window: int, pad: int) -> int:
    """The first MFCC frame (of the signal padded by ``pad`` samples) of video frame ``i``'s window."""
    centre = (i + 0.5) / fps * SAMPLE_RATE + pad
    return int(round((centre - WIN / 2) / HOP)) - window // 2


def mfcc_windows_span(
    read: Callable[[int, int], np.ndarray], start: int, stop: int, fps: float = 25.0, window: int = 20,
    coeffs: int = 12,
) -> np.ndarray:
    """The rows ``[start, stop)`` of :func:`mfcc_windows`, reading only the audio they need.

    ``read(a, b)`` returns samples ``[a, b)`` of the signal, zeros outside it. The MFCC is frame-local
    (no centring, no normalisation over the clip), so a span equals the same rows of the whole-signal
    call: long audio is featurised chunk by chunk in bounded memory.
    """
    pad = window * HOP // 2 + WIN
    f0 = _first_mfcc(start, fps, window, pad)
    f1 = _first_mfcc(stop - 1, fps, window, pad) + window  # one past the last MFCC frame used
    x = read(f0 * HOP - pad, (f1 - 1) * HOP + N_FFT - pad).astype(np.float32)
    with torch.no_grad():
        m = _mfcc(coeffs + 1)(torch.from_numpy(x))[1:].T.numpy()  # (f1 - f0, coeffs), C0 dropped
    out = np.empty((stop - start, window, coeffs), np.float32)
    for i in range(start, stop):
        first = _first_mfcc(i, fps, window, pad) - f0
        out[i - start] = m[first : first + window]
    return out


def read_zero_padded(audio: np.ndarray) -> Callable[[int, int], np.ndarray]:
    """``read(a, b)`` over an in-memory signal: samples ``[a, b)``, zeros outside it."""

    def read(a: int, b: int) -> np.ndarray:
        out = np.zeros(b - a, np.float32)
        lo, hi = max(a, 0), min(b, len(audio))
        if hi > lo:
            out[lo - a : hi - a] = audio[lo:hi]
        return out

    return read


def word_mask(num_frames: int, duration: float, fps: float = 25.0) -> np.ndarray:
    """(num_frames,) bool: the frames the word spans, centred: (n-1)//2 +/- round(d/2 * fps)."""
    c = (num_frames - 1) // 2
    h = int(round(duration / 2 * fps))
    idx = np.arange(num_frames)
    return (idx >= c - h) & (idx <= c + h)
