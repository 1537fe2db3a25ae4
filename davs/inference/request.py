"""What a ``davs generate`` request is made of, checked before any model loads: the options, the input files,
the output path, and the photo itself (orientation honoured, any size)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from davs.errors import DavsError
from davs.inference.finetune import OFFICIAL_LR, OFFICIAL_MOUTH_WEIGHT

MODEL_FPS = 25.0
MAX_PHOTO_PIXELS = 80_000_000  # a photo is held once: 80 MP (240 MB) at most
IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}


class GenerateError(DavsError):
    """A user-facing problem with the inputs or the checkpoint; the message says what to do."""


def check_request(face: str | Path, out: str | Path, audio: str | Path | None = None,
                  driving_video: str | Path | None = None, fps: float = MODEL_FPS, batch_size: int = 1) -> None:
    """Everything about a request that can be checked before a model is loaded or a frame decoded."""
    if (audio is None) == (driving_video is None):
        raise GenerateError("give exactly one of an audio file (or --text) and a driving video")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise GenerateError(f"--batch-size must be a positive integer (got {batch_size})")
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and 1 <= fps <= 120):
        raise GenerateError(f"--fps must be between 1 and 120 (got {fps})")
    for what, p in (("face", face), ("audio", audio), ("driving video", driving_video)):
        if p is not None and not Path(p).is_file():
            raise GenerateError(f"{what} file {p} does not exist" if not Path(p).exists()
                                else f"{what} {p} is not a file")
    out = Path(out)
    if out.is_dir():
        raise GenerateError(f"--out {out} is a directory: give a file name such as {out / 'talk.mp4'}")
    if out.suffix.lower() != ".mp4":
        raise GenerateError(f"--out {out}: the output is an mp4 file (name it *.mp4)")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise GenerateError(f"--out {out}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise GenerateError(f"--out {out}: directory {parent} is not writable")


def load_photo(path: str | Path) -> np.ndarray:
    """A photo as one (H, W, 3) uint8 array (the only copy held), turned as it is displayed: the EXIF
    orientation of a phone photo (stored sideways, shown upright) is applied."""
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_PHOTO_PIXELS:
                raise GenerateError(f"{path} is {im.width}x{im.height}: more than {MAX_PHOTO_PIXELS // 10**6} MP; "
                                    "downscale it first")
            return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except GenerateError:
        raise
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError) as e:
        raise GenerateError(f"cannot read image {path}: {e}") from None


def is_photo(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXT


def even_size(h: int, w: int) -> tuple[int, int]:
    """H.264 in yuv420p needs even sides: the frame size the encoder gets (odd sides padded by one pixel)."""
    return h + h % 2, w + w % 2


def pad_even(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> the frame with an odd side padded by one replicated pixel row or column."""
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


@dataclass
class Timing:
    frames: int = 0
    model_s: float = 0.0
    total_s: float = 0.0


@dataclass(frozen=True)
class TalkOptions:
    """Inference options of the official DAVS, off by default.

    ``finetune_steps``: Adam steps adapting Ep and G to the reference face before it talks
    (:mod:`davs.inference.finetune`; the official code takes 5). ``word_scale``: word features are multiplied
    by it before G (the official code: 1.5 for audio, 0.8 for a driving video)."""

    finetune_steps: int = 0
    finetune_lr: float = OFFICIAL_LR
    finetune_mouth_weight: float = OFFICIAL_MOUTH_WEIGHT
    word_scale: float = 1.0

    def check(self) -> None:
        if not isinstance(self.finetune_steps, int) or not 0 <= self.finetune_steps <= 1000:
            raise GenerateError(f"--finetune-steps must be an integer in [0, 1000] (got {self.finetune_steps})")
        for name, lo, hi in (("finetune_lr", 0.0, 1.0), ("finetune_mouth_weight", 0.0, 1.0), ("word_scale", 0.0, 10.0)):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and lo <= v <= hi):
                raise GenerateError(f"--{name.replace('_', '-')} must be in [{lo:g}, {hi:g}] (got {v})")
