"""Phoneme -> viseme table: how open, how wide and how rounded the mouth is for each eSpeak phoneme.

eSpeak NG reports English phonemes as its own ASCII mnemonics (``'aU``, ``b``, ``@``, ``tS``...). Stress
marks (``'`` and ``,``) and length / variant marks (``:``, ``#``, digits) are stripped before lookup.
Values are targets; :func:`mouth_track` interpolates them over time (coarticulation).
"""

from __future__ import annotations

import numpy as np

# (open, width, round): open 0 closed .. 1 jaw dropped; width 0 narrow .. 1 spread; round 0 .. 1 pursed.
_CLOSED = (0.0, 0.45, 0.0)
VISEMES: dict[str, tuple[float, float, float]] = {
    # bilabials: lips pressed together
    "p": (0.0, 0.45, 0.0), "b": (0.0, 0.45, 0.0), "m": (0.0, 0.5, 0.0),
    # labiodentals: lower lip under the teeth
    "f": (0.12, 0.55, 0.0), "v": (0.12, 0.55, 0.0),
    # dentals
    "T": (0.25, 0.55, 0.0), "D": (0.25, 0.55, 0.0),
    # sibilants and affricates: teeth together, lips slightly forward
    "s": (0.1, 0.7, 0.0), "z": (0.1, 0.7, 0.0), "S": (0.15, 0.45, 0.5), "Z": (0.15, 0.45, 0.5),
    "tS": (0.15, 0.45, 0.5), "dZ": (0.15, 0.45, 0.5),
    # alveolar / velar / glottal consonants: mouth follows the neighbours, mostly half-open
    "t": (0.2, 0.6, 0.0), "d": (0.2, 0.6, 0.0), "n": (0.2, 0.6, 0.0), "l": (0.3, 0.6, 0.0),
    "k": (0.3, 0.55, 0.0), "g": (0.3, 0.55, 0.0), "N": (0.25, 0.55, 0.0), "h": (0.4, 0.55, 0.0),
    "j": (0.2, 0.75, 0.0), "r": (0.25, 0.45, 0.45), "w": (0.1, 0.2, 1.0), "?": (0.1, 0.5, 0.0),
    # vowels
    "a": (0.85, 0.7, 0.0), "A": (1.0, 0.55, 0.1), "aa": (0.9, 0.65, 0.0), "V": (0.65, 0.55, 0.0),
    "aI": (0.8, 0.75, 0.0), "aU": (0.85, 0.5, 0.5), "E": (0.6, 0.75, 0.0), "e": (0.55, 0.75, 0.0),
    "eI": (0.5, 0.85, 0.0), "e@": (0.55, 0.7, 0.0), "@": (0.4, 0.55, 0.0), "3": (0.4, 0.45, 0.35),
    "I": (0.35, 0.85, 0.0), "i": (0.3, 1.0, 0.0), "I@": (0.4, 0.75, 0.0), "0": (0.75, 0.4, 0.6),
    "O": (0.7, 0.35, 0.75), "OI": (0.6, 0.45, 0.7), "o": (0.6, 0.3, 0.8), "oU": (0.55, 0.3, 0.85),
    "U": (0.4, 0.3, 0.8), "u": (0.35, 0.2, 1.0), "U@": (0.45, 0.35, 0.7), "@L": (0.4, 0.55, 0.0),
    "_": _CLOSED,
}


def viseme(phoneme: str) -> tuple[float, float, float]:
    """Viseme target for one eSpeak mnemonic; unknown phonemes fall back by their first letter."""
    key = phoneme.lstrip("',=").rstrip("#:0123456789;")
    key = key.replace(":", "").replace("#", "")
    if key in VISEMES:
        return VISEMES[key]
    for n in (2, 1):
        if key[:n] in VISEMES:
            return VISEMES[key[:n]]
    return (0.3, 0.55, 0.0) if key else _CLOSED


def mouth_track(
    phonemes: list[tuple[str, float]], end: float, offset: float, times: np.ndarray
) -> np.ndarray:
    """Mouth state (open, width, round) at each time in ``times`` (seconds in the clip).

    ``phonemes`` are (mnemonic, start) relative to the utterance, which starts at ``offset`` in the clip
    and ends at ``offset + end``. Each phoneme's target is placed at its centre and interpolated
    linearly between centres; outside the utterance the mouth rests closed.
    """
    pts_t: list[float] = [offset - 0.06]
    pts_v: list[tuple[float, float, float]] = [_CLOSED]
    for i, (name, start) in enumerate(phonemes):
        stop = phonemes[i + 1][1] if i + 1 < len(phonemes) else end
        if name.startswith("_"):
            continue
        pts_t.append(offset + 0.5 * (start + stop))
        pts_v.append(viseme(name))
    pts_t.append(offset + end + 0.04)
    pts_v.append(_CLOSED)
    t = np.asarray(pts_t)
    v = np.asarray(pts_v)  # (K, 3)
    return np.stack([np.interp(times, t, v[:, k], left=v[0, k], right=v[-1, k]) for k in range(3)], axis=1)
