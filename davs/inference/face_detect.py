"""Face detection and alignment for inference, with OpenCV's Haar cascades.

Why Haar: the cascades ship inside the ``opencv-python-headless`` wheel (``cv2.data.haarcascades``), so
detection needs no model download (this project cannot fetch weights at run time), runs at hundreds
of frames per second on a CPU, and finds frontal talking heads, which is what DAVS animates. The
detected box is mapped to the training crop (the face region ``data.crop_box`` selects on LRW frames)
by a fixed scale and offset, and smoothed over time so the pasted face does not jitter.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_CASCADES = ("haarcascade_frontalface_alt2.xml", "haarcascade_frontalface_default.xml")


@dataclass(frozen=True)
class CropMap:
    """Training crop relative to a Haar face box (x, y, w): square of side ``scale * w``."""

    scale: float = 0.95
    dx: float = 0.035  # crop left = x + dx * w
    dy: float = 0.01  # crop top = y + dy * w


class FaceDetector:
    def __init__(self, min_size: int = 40, crop: CropMap = CropMap()) -> None:
        self.cascades = [cv2.CascadeClassifier(cv2.data.haarcascades + name) for name in _CASCADES]
        if any(c.empty() for c in self.cascades):
            raise RuntimeError("OpenCV Haar cascades not found in cv2.data.haarcascades")
        self.min_size = min_size
        self.crop = crop

    def detect(self, frame: np.ndarray) -> tuple[int, int, int, int] | None:
        """Largest frontal face (x, y, w, h) in an RGB frame, or None."""
        gray = cv2.equalizeHist(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))
        min_size = max(self.min_size, min(gray.shape) // 8)
        for c in self.cascades:
            faces = c.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=3, minSize=(min_size, min_size))
            if len(faces):
                x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
                return int(x), int(y), int(w), int(h)
        return None

    def crop_box(self, face: tuple[int, int, int, int]) -> np.ndarray:
        """(x0, y0, side) of the training-style crop for a detected face."""
        x, y, w, _ = face
        return np.array([x + self.crop.dx * w, y + self.crop.dy * w, self.crop.scale * w], np.float64)

    def track(self, frames: np.ndarray, max_gap: int = 5, smooth: int = 5) -> tuple[np.ndarray, list[int]]:
        """Crop boxes (N, 3) for every frame, and the frames without a detection.

        Gaps of up to ``max_gap`` frames are filled from the nearest detections; boxes are smoothed with
        a centred moving median of ``smooth`` frames. Returns the missing frame indices as well, so the
        caller can refuse when faces are missing for longer.
        """
        n = len(frames)
        boxes = np.full((n, 3), np.nan)
        for i, f in enumerate(frames):
            face = self.detect(f)
            if face is not None:
                boxes[i] = self.crop_box(face)
        missing = [i for i in range(n) if np.isnan(boxes[i, 0])]
        if len(missing) == n:
            return boxes, missing
        idx = np.arange(n)
        ok = ~np.isnan(boxes[:, 0])
        for k in range(3):
            boxes[:, k] = np.interp(idx, idx[ok], boxes[ok, k])
        unfilled = long_gaps(missing, max_gap)
        if smooth > 1 and n > 1:
            half = smooth // 2
            boxes = np.stack([np.median(boxes[max(0, i - half) : i + half + 1], axis=0) for i in range(n)])
        return boxes, unfilled


def long_gaps(missing: list[int], max_gap: int) -> list[int]:
    """The missing indices that belong to runs longer than max_gap."""
    out, run = [], []
    for i in missing + [None]:
        if run and (i is None or i != run[-1] + 1):
            if len(run) > max_gap:
                out += run
            run = []
        if i is not None:
            run.append(i)
    return out


def cut(frame: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """The square crop (x0, y0, side) of an RGB frame, resized to size x size (edge pixels replicated)."""
    x0, y0, side = box
    m = np.array([[size / side, 0, -x0 * size / side], [0, size / side, -y0 * size / side]], np.float64)
    return cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)


def paste(frame: np.ndarray, face: np.ndarray, box: np.ndarray, feather: float = 0.12) -> np.ndarray:
    """Paste a generated square face back into the frame over ``box``, with feathered edges."""
    x0, y0, side = box
    h, w = frame.shape[:2]
    s = face.shape[0]
    m = np.array([[side / s, 0, x0], [0, side / s, y0]], np.float64)
    warped = cv2.warpAffine(face, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    ramp = np.clip(np.minimum(np.arange(s), np.arange(s)[::-1]) / max(1.0, feather * s), 0, 1)
    alpha = np.outer(ramp, ramp).astype(np.float32)
    alpha = cv2.warpAffine(alpha, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)[..., None]
    return (frame * (1 - alpha) + warped * alpha).round().clip(0, 255).astype(np.uint8)
