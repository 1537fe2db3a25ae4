"""DAVS audio features: for each video frame, a window of 20 MFCC frames x 12 coefficients.

16 kHz audio, 25 ms Hamming window, 10 ms hop, 13 mel filterbank channels, C0 dropped. At 25 fps
there are 4 MFCC frames per video frame; the window for video frame ``i`` is centred on the frame's
centre time ``(i + 0.5) / fps`` and spans ``mfcc_frames`` hops (0.2 s by default).

Two recipes (``data.mfcc_recipe``): "torchaudio" (the default: torchaudio's MFCC, power spectrum, mel
filters over 0-8 kHz, no pre-emphasis, no lifter) and "syncnet", the recipe of the official DAVS
preprocessing (``preprocess/mfcc.m``, from SyncNet): pre-emphasis 0.97, magnitude spectrum, 13 triangular
mel filters over 300-3700 Hz, DCT, cepstral lifter 22. Both are frame-local, so chunked features equal
whole-signal ones (the pre-emphasis reads the one sample before a span).
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


MFCC_RECIPES = ("torchaudio", "syncnet")
PRE_EMPHASIS = 0.97
BAND_HZ = (300.0, 3700.0)
SYNCNET_FILTERS = 13
LIFTER = 22
INT16 = 32768.0


def _hz2mel(hz: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log(1.0 + hz / 700.0)


def _mel2hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * np.exp(mel / 1127.0) - 700.0


@functools.lru_cache(maxsize=4)
def _syncnet_matrices(n_ceps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hamming window (WIN,), triangular mel filterbank (M, N_FFT//2+1) on 300-3700 Hz, DCT-II (n_ceps, M)
    and the cepstral lifter (n_ceps,), as preprocess/trifbank.m and mfcc.m build them."""
    m = SYNCNET_FILTERS
    f = np.linspace(0.0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    lo, hi = _hz2mel(np.array(BAND_HZ))
    c = _mel2hz(lo + np.arange(m + 2) * (hi - lo) / (m + 1))  # (M + 2,) filter edges and centres, Hz
    bank = np.zeros((m, len(f)))
    for i in range(m):
        up = (f >= c[i]) & (f <= c[i + 1])
        bank[i, up] = (f[up] - c[i]) / (c[i + 1] - c[i])
        down = (f >= c[i + 1]) & (f <= c[i + 2])
        bank[i, down] = (c[i + 2] - f[down]) / (c[i + 2] - c[i + 1])
    dct = np.sqrt(2.0 / m) * np.cos(np.arange(n_ceps)[:, None] * np.pi * (np.arange(1, m + 1) - 0.5)[None] / m)
    lifter = 1.0 + 0.5 * LIFTER * np.sin(np.pi * np.arange(n_ceps) / LIFTER)
    window = 0.54 - 0.46 * np.cos(2 * np.pi * np.arange(WIN) / (WIN - 1))
    return window, bank, dct * lifter[:, None]


def _syncnet_mfcc(x: np.ndarray, coeffs: int, prev: float = 0.0) -> np.ndarray:
    """(K, coeffs) MFCC frames of x (frame k reads samples k*HOP .. k*HOP + WIN), K as torchaudio's count;
    ``prev`` is the sample before x (pre-emphasis)."""
    x = x.astype(np.float64) * INT16  # mfcc.m scales [-1, 1] speech to the int16 range
    y = x - PRE_EMPHASIS * np.concatenate([[prev * INT16], x[:-1]])  # filter([1 -0.97], 1, x)
    k = (len(y) - N_FFT) // HOP + 1
    window, bank, dct = _syncnet_matrices(coeffs + 1)
    idx = HOP * np.arange(k)[:, None] + np.arange(WIN)[None]  # (K, WIN)
    mag = np.abs(np.fft.rfft(y[idx] * window, N_FFT, axis=1))  # (K, N_FFT//2+1) magnitude, not power
    fbe = np.maximum(mag @ bank.T, 1.0)  # HTK's mel floor (commented out in mfcc.m; needed for digital silence)
    return (np.log(fbe) @ dct.T)[:, 1:].astype(np.float32)  # (K, coeffs), C0 dropped


def _mfcc_frames(x: np.ndarray, coeffs: int, recipe: str, prev: float = 0.0) -> np.ndarray:
    """(K, coeffs) MFCC frames of x, C0 dropped; ``prev``: the sample before x (the syncnet pre-emphasis)."""
    if recipe == "syncnet":
        return _syncnet_mfcc(x, coeffs, prev)
    if recipe != "torchaudio":
        raise ValueError(f"mfcc recipe must be one of {MFCC_RECIPES} (got {recipe!r})")
    with torch.no_grad():
        return _mfcc(coeffs + 1)(torch.from_numpy(x.astype(np.float32)))[1:].T.numpy()  # (K, coeffs)


def align_audio(audio: np.ndarray, num_frames: int, fps: float = 25.0, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Trim or zero-pad decoded audio to exactly ``num_frames`` video frames (AAC pads the end)."""
    n = int(round(num_frames * sample_rate / fps))
    out = np.zeros(n, np.float32)
    m = min(n, len(audio))
    out[:m] = audio[:m]
    return out


def mfcc_windows(
    audio: np.ndarray, num_frames: int, fps: float = 25.0, window: int = 20, coeffs: int = 12,
    recipe: str = "torchaudio",
) -> np.ndarray:
    """(num_frames, window, coeffs) float32 MFCC windows, one per video frame, centred on the frame."""
    pad = window * HOP // 2 + WIN  # room for the first and last windows
    x = np.pad(audio.astype(np.float32), (pad, pad))
    m = _mfcc_frames(x, coeffs, recipe)  # (K, coeffs); frame k starts at sample k*HOP
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
    coeffs: int = 12, recipe: str = "torchaudio",
) -> np.ndarray:
    """The rows ``[start, stop)`` of :func:`mfcc_windows`, reading only the audio they need.

    ``read(a, b)`` returns samples ``[a, b)`` of the signal, zeros outside it. The MFCC is frame-local
    (no centring, no normalisation over the clip), so a span equals the same rows of the whole-signal
    call: long audio is featurised chunk by chunk in bounded memory.
    """
    pad = window * HOP // 2 + WIN
    f0 = _first_mfcc(start, fps, window, pad)
    f1 = _first_mfcc(stop - 1, fps, window, pad) + window  # one past the last MFCC frame used
    x = read(f0 * HOP - pad - 1, (f1 - 1) * HOP + N_FFT - pad).astype(np.float32)  # one sample before: prev
    m = _mfcc_frames(x[1:], coeffs, recipe, prev=float(x[0]))  # (f1 - f0, coeffs)
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
