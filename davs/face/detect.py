"""Face detection with OpenCV's Haar cascades: the fallback of :mod:`davs.face.align` where dlib's
landmark model finds no face (drawn faces, such as the embedded corpus's).

Why Haar: the cascades ship inside the ``opencv-python-headless`` wheel (``cv2.data.haarcascades``), so
detection needs no model download, runs at hundreds of frames per second on a CPU, and finds frontal
talking heads. The detected box is mapped to the training crop (the face region ``data.crop_box``
selects on LRW frames) by a fixed scale and offset.
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
