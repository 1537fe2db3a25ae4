"""``Talker``: a trained DAVS model that animates a face from audio (or from a driving video).

Pipeline: decode the media (PyAV: any container, codec, sample rate) -> detect and track the face
(:mod:`davs.inference.face_detect`) -> for every output frame at 25 fps, the MFCC window of the audio
(or the video word features of the driving face) -> G(identity of the source frame, word feature) ->
paste back into the full frame -> H.264 + AAC mp4 with the input audio.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from davs.data.features import SAMPLE_RATE, mfcc_windows
from davs.inference.face_detect import FaceDetector, cut, paste
from davs.media import read_audio, read_video, write_mp4
from davs.models import DAVSConfig, build

log = logging.getLogger(__name__)

MODEL_FPS = 25.0
_IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


class GenerateError(Exception):
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
    def __init__(self, checkpoint: str | Path, device: str = "auto", batch_size: int = 64) -> None:
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
        self.detector = FaceDetector()
        self.timing = Timing()

    def _to_input(self, crops: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(crops).to(self.device)  # (N, S, S, 3) uint8
        return x.permute(0, 3, 1, 2).float().div(127.5).sub(1)  # (N, 3, S, S)

    def _track(self, frames: np.ndarray, what: str) -> np.ndarray:
        boxes, missing = self.detector.track(frames)
        if len(missing) == len(frames):
            raise GenerateError(f"no face found in {what} (checked {len(frames)} frame{'s' * (len(frames) > 1)})")
        if missing:
            shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
            raise GenerateError(f"no face found in {what} frames {shown} ({len(missing)} of {len(frames)})")
        return boxes

    @torch.no_grad()
    def audio_words(self, audio: np.ndarray, n: int) -> torch.Tensor:
        """(n, D) word features from 16 kHz audio, one per 25 fps frame."""
        mfcc = mfcc_windows(audio, n, MODEL_FPS, self.cfg.mfcc_frames, self.cfg.mfcc_coeffs)  # (n, F, C)
        return self.nets["Ea_w"](torch.from_numpy(mfcc).to(self.device)[None])[0]

    @torch.no_grad()
    def video_words(self, frames: np.ndarray) -> torch.Tensor:
        """(n, D) word features from a driving face video already at 25 fps."""
        boxes = self._track(frames, "the driving video")
        crops = np.stack([cut(f, b, self.cfg.image_size) for f, b in zip(frames, boxes)])
        return self.nets["Ev_w"](self._to_input(crops)[None])[0]

    @torch.no_grad()
    def render(self, face: np.ndarray, boxes: np.ndarray, words: torch.Tensor) -> np.ndarray:
        """Generate and paste back: face (n, H, W, 3) source frames, boxes (n, 3), words (n, D)."""
        out = np.empty_like(face)
        s = self.cfg.image_size
        for i in range(0, len(face), self.batch_size):
            sl = slice(i, i + self.batch_size)
            crops = np.stack([cut(f, b, s) for f, b in zip(face[sl], boxes[sl])])
            t0 = time.perf_counter()
            idf = self.nets["Ep"](self._to_input(crops))
            gen = self.nets["G"](idf.fmap, idf.skips, words[sl])  # (B, 3, S, S)
            gen = ((gen.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
            self.timing.model_s += time.perf_counter() - t0
            for k, (f, g, b) in enumerate(zip(face[sl], gen, boxes[sl])):
                out[i + k] = paste(f, g, b)
        return out

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
            src = np.repeat(face, n, 0)
        else:  # loop the face video back and forth to cover the audio (as Wav2Lip does)
            face25 = resample_frames(face, face_fps, MODEL_FPS)
            pingpong = np.concatenate([face25, face25[::-1][1:-1]]) if len(face25) > 2 else face25
            src = pingpong[np.arange(n) % len(pingpong)]
        boxes = self._track(face if len(face) == 1 else src, "the face input")
        if len(face) == 1:
            boxes = np.repeat(boxes, n, 0)
        words = self.video_words(drive) if drive is not None else self.audio_words(audio, n)
        frames = self.render(src, boxes, words[:n])
        if fps != MODEL_FPS:
            frames = resample_frames(frames, MODEL_FPS, fps)
        audio = audio[: int(round(n / MODEL_FPS * SAMPLE_RATE))]
        write_mp4(out, frames, fps=int(round(fps)), audio=audio, sample_rate=SAMPLE_RATE)
        self.timing.frames += n
        self.timing.total_s += time.perf_counter() - t0
        return {"out": str(out), "frames": len(frames), "fps": fps, "seconds": round(n / MODEL_FPS, 3),
                "mode": "video" if drive is not None else "audio"}
