"""``Talker``: a trained DAVS model that animates a face from audio (or from a driving video).

Pipeline: decode the media (PyAV: any container, codec, sample rate) -> align the face on landmarks
(:mod:`davs.inference.align`) -> for every output frame at 25 fps, the MFCC window of the audio (or the
video word features of the driving face) -> G(identity of the aligned source crop, word feature) -> the
change G makes to the crop, added to the source frame at its own resolution and only inside the mouth
region (every other pixel is the input's own) -> H.264 + AAC mp4 with the input audio, written as the
frames are made (a photo is held once, never repeated per frame).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from davs.data.features import SAMPLE_RATE, mfcc_windows
from davs.errors import DavsError
from davs.inference.align import Alignment, FaceAligner, cut, mouth_mask, paste_change
from davs.media import read_audio, read_video, write_mp4
from davs.models import DAVSConfig, build

log = logging.getLogger(__name__)

MODEL_FPS = 25.0
_IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


class GenerateError(DavsError):
    """A user-facing problem with the inputs or the checkpoint; the message says what to do."""


@dataclass
class Timing:
    frames: int = 0
    model_s: float = 0.0
    total_s: float = 0.0


def load_face(path: str | Path) -> tuple[np.ndarray, float]:
    """A photo -> (1, H, W, 3); a video -> (N, H, W, 3) and its fps."""
    path = Path(path)
    if not path.exists():
        raise GenerateError(f"face file {path} does not exist")
    if path.suffix.lower() in _IMAGE_EXT:
        try:
            return np.asarray(Image.open(path).convert("RGB"))[None], MODEL_FPS
        except (UnidentifiedImageError, OSError) as e:
            raise GenerateError(f"cannot read image {path}: {e}") from None
    try:
        return read_video(path)
    except Exception as e:  # PyAV raises several error types for unreadable media
        raise GenerateError(f"cannot read video {path}: {e}") from None


def resample_frames(frames: np.ndarray, fps: float, out_fps: float, n_out: int | None = None) -> np.ndarray:
    """Nearest-in-time frame resampling from fps to out_fps."""
    n_in = len(frames)
    n_out = n_out if n_out is not None else max(1, int(round(n_in / fps * out_fps)))
    idx = np.minimum((np.arange(n_out) / out_fps * fps).astype(int), n_in - 1)
    return frames[idx]


class Talker:
    def __init__(self, checkpoint: str | Path, device: str = "auto", batch_size: int = 64,
                 use_landmarks: bool = True) -> None:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.batch_size = batch_size
        path = Path(checkpoint)
        if not path.exists():
            raise GenerateError(f"checkpoint {path} not found: train the pipeline first (dvc repro) or pass --checkpoint")
        try:
            ck = torch.load(path, map_location=self.device, weights_only=True)
            self.cfg = DAVSConfig.from_dict(ck["model_config"])
            nets = ck["nets"]
        except Exception as e:
            raise GenerateError(f"checkpoint {path} is not a davs model file: {e}") from None
        need = ("Ev_w", "Ea_w", "Ep", "G")
        if any(k not in nets for k in need):
            raise GenerateError(f"checkpoint {path} lacks {[k for k in need if k not in nets]}: use models/gen.pt")
        self.nets = build(self.cfg, need)
        try:
            for k, m in self.nets.items():
                m.load_state_dict(nets[k])
                m.to(self.device).eval()
        except RuntimeError as e:
            raise GenerateError(f"checkpoint {path} does not match its own model config: {e}") from None
        self.aligner = FaceAligner(self.cfg.image_size, use_landmarks)
        self.mask = mouth_mask(self.cfg.image_size, self.cfg.mouth_box)  # where a generated change is kept
        self.timing = Timing()

    def _to_input(self, crops: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(crops).to(self.device)  # (N, S, S, 3) uint8
        return x.permute(0, 3, 1, 2).float().div(127.5).sub(1)  # (N, 3, S, S)

    def _track(self, frames: np.ndarray, what: str) -> list[Alignment]:
        aligns, missing = self.aligner.track(frames)
        if not aligns:
            raise GenerateError(f"no face found in {what} (checked {len(frames)} frame{'s' * (len(frames) > 1)})")
        if missing:
            shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
            raise GenerateError(f"no face found in {what} frames {shown} ({len(missing)} of {len(frames)})")
        log.info("%s: aligned on %s", what, "facial landmarks" if aligns[0].landmarks else "face boxes (no landmarks)")
        return aligns

    @torch.no_grad()
    def audio_words(self, audio: np.ndarray, n: int) -> torch.Tensor:
        """(n, D) word features from 16 kHz audio, one per 25 fps frame."""
        mfcc = mfcc_windows(audio, n, MODEL_FPS, self.cfg.mfcc_frames, self.cfg.mfcc_coeffs)  # (n, F, C)
        return self.nets["Ea_w"](torch.from_numpy(mfcc).to(self.device)[None])[0]

    @torch.no_grad()
    def video_words(self, frames: np.ndarray) -> torch.Tensor:
        """(n, D) word features from a driving face video already at 25 fps."""
        aligns = self._track(frames, "the driving video")
        crops = np.stack([cut(f, a) for f, a in zip(frames, aligns)])
        return self.nets["Ev_w"](self._to_input(crops)[None])[0]

    @torch.no_grad()
    def _generate(self, crops: np.ndarray, words: torch.Tensor) -> np.ndarray:
        """crops (N, S, S, 3) uint8 aligned sources (or one, shared), words (N, D) -> (N, S, S, 3) uint8."""
        t0 = time.perf_counter()
        idf = self.nets["Ep"](self._to_input(crops))
        rep = (lambda x: x.expand(len(words), *x.shape[1:])) if len(crops) == 1 else (lambda x: x)  # noqa: E731
        gen = self.nets["G"](rep(idf.fmap), [rep(s) for s in idf.skips], words)  # (N, 3, S, S)
        out = ((gen.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        self.timing.model_s += time.perf_counter() - t0
        return out

    def render_photo(self, photo: np.ndarray, align: Alignment, words: torch.Tensor) -> Iterator[np.ndarray]:
        """The photo saying ``words`` (n, D): frames (H, W, 3), made one batch at a time."""
        crop = cut(photo, align)[None]  # (1, S, S, 3)
        for i in range(0, len(words), self.batch_size):
            for g in self._generate(crop, words[i : i + self.batch_size]):
                yield paste_change(photo, crop[0], g, align, self.mask)

    def render_video(self, frames: np.ndarray, aligns: list[Alignment], words: torch.Tensor) -> Iterator[np.ndarray]:
        """Source frames (n, H, W, 3) saying ``words`` (n, D), each frame its own identity reference."""
        for i in range(0, len(words), self.batch_size):
            sl = slice(i, i + self.batch_size)
            crops = np.stack([cut(f, a) for f, a in zip(frames[sl], aligns[sl])])
            for f, c, g, a in zip(frames[sl], crops, self._generate(crops, words[sl]), aligns[sl]):
                yield paste_change(f, c, g, a, self.mask)

    def generate(self, face_path: str | Path, out: str | Path, audio_path: str | Path | None = None,
                 driving_video: str | Path | None = None, fps: float = MODEL_FPS) -> dict:
        t0 = time.perf_counter()
        face, face_fps = load_face(face_path)
        drive = None
        try:
            if driving_video is not None:
                dframes, dfps = load_face(driving_video)
                audio = read_audio(driving_video, SAMPLE_RATE)
                drive = resample_frames(dframes, dfps, MODEL_FPS)
            else:
                audio = read_audio(audio_path, SAMPLE_RATE)
        except GenerateError:
            raise
        except Exception as e:
            raise GenerateError(f"cannot read audio from {driving_video or audio_path}: {e}") from None
        n = drive.shape[0] if drive is not None else int(len(audio) / SAMPLE_RATE * MODEL_FPS)
        if n < 1:
            raise GenerateError(f"audio is {len(audio) / SAMPLE_RATE * 1000:.0f} ms long: shorter than one frame (40 ms)")
        if len(face) == 1:
            align = self._track(face, "the face input")[0]
            words = self.video_words(drive) if drive is not None else self.audio_words(audio, n)
            frames = self.render_photo(face[0], align, words[:n])
        else:  # loop the face video back and forth to cover the audio (as Wav2Lip does)
            face25 = resample_frames(face, face_fps, MODEL_FPS)
            pingpong = np.concatenate([face25, face25[::-1][1:-1]]) if len(face25) > 2 else face25
            aligns = self._track(pingpong, "the face input")
            idx = np.arange(n) % len(pingpong)
            words = self.video_words(drive) if drive is not None else self.audio_words(audio, n)
            frames = self.render_video(pingpong[idx], [aligns[i] for i in idx], words[:n])
        n_out = n if fps == MODEL_FPS else max(1, int(round(n / MODEL_FPS * fps)))
        if fps != MODEL_FPS:
            frames = resample_stream(frames, MODEL_FPS, fps, n_out)
        audio = audio[: int(round(n / MODEL_FPS * SAMPLE_RATE))]
        write_mp4(out, frames, fps=int(round(fps)), audio=audio, sample_rate=SAMPLE_RATE)
        self.timing.frames += n
        self.timing.total_s += time.perf_counter() - t0
        return {"out": str(out), "frames": n_out, "fps": fps, "seconds": round(n / MODEL_FPS, 3),
                "mode": "video" if drive is not None else "audio"}


def resample_stream(frames: Iterator[np.ndarray], fps: float, out_fps: float, n_out: int) -> Iterator[np.ndarray]:
    """Nearest-in-time resampling of a frame stream, as :func:`resample_frames` does, without holding it:
    output frame k is input frame int(k / out_fps * fps), the last one repeated past the end."""
    k, f = 0, None
    for i, f in enumerate(frames):
        while k < n_out and int(k / out_fps * fps) <= i:
            yield f
            k += 1
    while f is not None and k < n_out:
        yield f
        k += 1
