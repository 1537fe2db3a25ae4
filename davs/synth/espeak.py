"""Real speech from the eSpeak NG engine, through ctypes, with phoneme timings.

The shared library and its voice data come from the ``espeakng-loader`` package. The engine runs in
synchronous mode (``AUDIO_OUTPUT_SYNCHRONOUS``) with phoneme events enabled, so one call to
:func:`synthesize` returns the waveform and, for each phoneme, its mnemonic and start time. These
timings drive the rendered mouth, so audio and lips are in sync by construction.

eSpeak NG keeps global state across utterances (its pitch-flutter phase, the C library's ``rand()``),
so the same text spoken twice in one process differs; and its own noise generator (the ``breath``
of voice variants such as ``f2``/``f3``) is seeded from the wall clock at initialisation, so the same
text differs between two processes started in different seconds. For a deterministic corpus,
:func:`synthesize` (``fresh=True``) reloads the library (``dlclose`` + ``dlopen``, about 12 ms),
reseeds ``rand()`` and sets eSpeak's seed (``espeak_ng_SetRandSeed``) before each utterance: the
output then depends only on its arguments. Not thread-safe.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass

import numpy as np

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_INIT_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000

_EVENT_PHONEME = 7
_EVENT_LIST_TERMINATED = 0

_RATE, _VOLUME, _PITCH, _RANGE, _WORDGAP = 1, 2, 3, 4, 7


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Speech:
    """A synthesized utterance: int16 mono ``samples`` at ``sample_rate`` and phoneme timings."""

    samples: np.ndarray  # (N,) int16
    sample_rate: int
    phonemes: list[tuple[str, float]]  # (mnemonic, start seconds), in order


@dataclass(frozen=True)
class Voice:
    """How a speaker sounds: a base voice, an eSpeak variant, and prosody."""

    name: str = "en-us"
    variant: str = ""  # e.g. "m3", "f2"; "" = the base voice
    pitch: int = 50  # 0..100
    pitch_range: int = 50  # 0..100
    rate: int = 175  # words per minute, 80..450


class _Engine:
    def __init__(self) -> None:
        import espeakng_loader

        self.lib = ctypes.cdll.LoadLibrary(espeakng_loader.get_library_path())
        data = espeakng_loader.get_data_path().encode()
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.sample_rate = self.lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, ctypes.c_char_p(data), _INIT_PHONEME_EVENTS | _INIT_DONT_EXIT
        )
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed (data path {data!r})")
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.seedable = hasattr(self.lib, "espeak_ng_SetRandSeed")  # eSpeak NG >= 1.51
        if self.seedable:
            self.lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[str, int]] = []
        self._cb = _CALLBACK(self._on_audio)  # keep a reference: ctypes does not
        self.lib.espeak_SetSynthCallback(self._cb)
        self.lock = threading.Lock()

    def _on_audio(self, wav, n, events) -> int:  # ctypes callback
        if n > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_PHONEME:
                name = bytes(ev.id.string).split(b"\0", 1)[0].decode("ascii", "replace")
                self._events.append((name, ev.sample))
            i += 1
        return 0

    def synth(self, text: str, voice: Voice) -> Speech:
        with self.lock:
            full = voice.name + (f"+{voice.variant}" if voice.variant else "")
            if self.lib.espeak_SetVoiceByName(full.encode()) != 0:
                raise ValueError(f"eSpeak NG has no voice {full!r}")
            for key, value in ((_RATE, voice.rate), (_PITCH, voice.pitch), (_RANGE, voice.pitch_range)):
                self.lib.espeak_SetParameter(key, int(value), 0)
            self._chunks, self._events = [], []
            if self.seedable:  # breath noise: seeded from time() at initialisation otherwise
                self.lib.espeak_ng_SetRandSeed(ctypes.c_long(0))
            buf = ctypes.create_string_buffer(text.encode())
            err = self.lib.espeak_Synth(buf, len(buf), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            if err != 0:
                raise RuntimeError(f"espeak_Synth failed with code {err} for {text!r}")
            self.lib.espeak_Synchronize()
            samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
            phonemes = [(name, s / self.sample_rate) for name, s in self._events]
            return Speech(samples=samples.astype(np.int16), sample_rate=self.sample_rate, phonemes=phonemes)


_ENGINE: _Engine | None = None


def _unload() -> None:
    global _ENGINE
    if _ENGINE is not None:
        import _ctypes

        handle = _ENGINE.lib._handle
        _ENGINE = None
        _ctypes.dlclose(handle)


def synthesize(text: str, voice: Voice = Voice(), fresh: bool = True) -> Speech:
    """Speak ``text`` with ``voice``; returns the waveform and phoneme start times.

    ``fresh`` reloads the engine first so the result is reproducible (see the module docstring).
    """
    global _ENGINE
    if fresh:
        _unload()
        ctypes.CDLL(None).srand(0)
    if _ENGINE is None:
        _ENGINE = _Engine()
    return _ENGINE.synth(text, voice)
