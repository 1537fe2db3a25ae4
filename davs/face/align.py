"""Face alignment: where the training crop lies in a frame or photo, as a similarity transform (used by
inference, and by LRW ingestion with ``face_align: landmarks``).

With a landmark model, three points (the eye centres and the mouth centre, as the official DAVS aligns
its faces) are mapped by least squares onto where they sit in a training crop, so the generator's mouth
lands on the photo's lips. The landmark model is dlib's 68-point shape predictor and its HOG face
detector: ``dlib-bin`` ships the library and ``face-recognition-models`` the weights, both from PyPI,
nothing downloaded at run time. Where dlib finds no face (the embedded corpus's drawn faces, which its
detector mostly misses) or is not installed, the OpenCV Haar box is mapped to the crop by a fixed
scale and offset instead (:class:`~davs.face.detect.FaceDetector`).

An alignment is a 2x3 affine matrix from frame pixels to crop pixels of an ``size`` x ``size`` crop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from davs.face.detect import FaceDetector, long_gaps

log = logging.getLogger(__name__)

# Where the eye centres and the mouth centre lie in a training crop, relative to its side. These are the
# embedded corpus's mean face geometry on the LRW-style crop (renderer: eyes 0.12 face-heights above the
# face centre, 26 px apart of a 160 px crop; mouth 0.54 face-heights below); LRW's crops are close.
TEMPLATE = np.array([[0.3375, 0.424], [0.6625, 0.424], [0.5, 0.774]], np.float64)  # (3, 2) x, y


@dataclass(frozen=True)
class Alignment:
    matrix: np.ndarray  # (2, 3) frame -> crop pixels
    size: int  # crop side
    landmarks: bool  # True: from facial landmarks; False: from a face box


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src (K, 2) onto dst (K, 2) -> (2, 3)."""
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md  # (K, 2) centred
    norm = (s**2).sum()
    if norm < 1e-9:
        raise ValueError("landmarks are degenerate")
    a = (s * d).sum() / norm  # scale * cos
    b = (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum() / norm  # scale * sin
    r = np.array([[a, -b], [b, a]])
    return np.c_[r, md - r @ ms]


def box_matrix(box: np.ndarray, size: int) -> np.ndarray:
    """A square crop box (x0, y0, side) -> the (2, 3) frame-to-crop matrix."""
    x0, y0, side = box
    s = size / side
    return np.array([[s, 0, -x0 * s], [0, s, -y0 * s]], np.float64)


class FaceAligner:
    """Landmark alignment (dlib) with a Haar-box fallback."""

    def __init__(self, size: int, use_landmarks: bool = True, upsample: int = 1) -> None:
        """``upsample``: times dlib's HOG detector doubles the frame first (1 finds faces down to ~40 px;
        0 is ~4x faster and finds faces from ~80 px, as in LRW's frames, and retries with 1 on a miss)."""
        self.size, self.upsample = size, upsample
        self.haar = FaceDetector()
        self._dlib = None
        if use_landmarks:
            try:
                import dlib
                import face_recognition_models

                self._dlib = (dlib.get_frontal_face_detector(),
                              dlib.shape_predictor(face_recognition_models.pose_predictor_model_location()))
            except Exception as e:  # noqa: BLE001 - optional dependency: fall back to Haar boxes
                log.warning("no landmark model (%s): aligning on Haar face boxes", e)

    def landmarks(self, frame: np.ndarray) -> np.ndarray | None:
        """(68, 2) dlib landmarks (x, y frame pixels) of the largest face dlib finds, or None."""
        if self._dlib is None:
            return None
        det, pred = self._dlib
        small = frame
        scale = 1.0
        if max(frame.shape[:2]) > 1024:  # HOG detection on a downscaled copy; landmarks at full resolution
            scale = 1024 / max(frame.shape[:2])
            small = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        rects = det(np.ascontiguousarray(small), self.upsample)
        if not rects and self.upsample < 1:
            rects = det(np.ascontiguousarray(small), 1)
        if not rects:
            return None
        import dlib

        r = max(rects, key=lambda r: r.width() * r.height())
        r = dlib.rectangle(int(r.left() / scale), int(r.top() / scale), int(r.right() / scale), int(r.bottom() / scale))
        shape = pred(np.ascontiguousarray(frame), r)
        return np.array([(p.x, p.y) for p in shape.parts()], np.float64)  # (68, 2)

    def points(self, frame: np.ndarray) -> np.ndarray | None:
        """(3, 2) eye centres and mouth centre of the largest face dlib finds, or None."""
        pts = self.landmarks(frame)
        if pts is None:
            return None
        return np.stack([pts[36:42].mean(0), pts[42:48].mean(0), pts[48:68].mean(0)])

    def align(self, frame: np.ndarray) -> Alignment | None:
        """The crop of one RGB frame, or None without a face."""
        pts = self.points(frame)
        if pts is not None:
            return Alignment(similarity(pts, TEMPLATE * self.size), self.size, True)
        face = self.haar.detect(frame)
        if face is None:
            return None
        return Alignment(box_matrix(self.haar.crop_box(face), self.size), self.size, False)

    def track(self, frames, max_gap: int = 5, smooth: int = 5) -> tuple[list[Alignment], list[int]]:
        """Alignments of every frame (gaps up to ``max_gap`` filled from neighbours, matrices smoothed by a
        centred median of ``smooth`` frames) and the frames left without a face."""
        found = [self.align(f) for f in frames]
        n = len(found)
        ok = [i for i, a in enumerate(found) if a is not None]
        missing = [i for i in range(n) if found[i] is None]
        if not ok:
            return [], missing
        mats = np.full((n, 6), np.nan)
        for i in ok:
            mats[i] = found[i].matrix.reshape(-1)
        idx = np.arange(n)
        for k in range(6):
            mats[:, k] = np.interp(idx, idx[ok], mats[ok, k])
        if smooth > 1 and n > 1:
            half = smooth // 2
            mats = np.stack([np.median(mats[max(0, i - half) : i + half + 1], axis=0) for i in range(n)])
        lm = any(found[i].landmarks for i in ok)
        return [Alignment(m.reshape(2, 3), self.size, lm) for m in mats], long_gaps(missing, max_gap)


def cut(frame: np.ndarray, a: Alignment) -> np.ndarray:
    """The aligned crop (size, size, 3) of a frame (edges replicated)."""
    return cv2.warpAffine(frame, a.matrix, (a.size, a.size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)


def mouth_mask(size: int, box: tuple[float, float, float, float], feather: float = 0.25) -> np.ndarray:
    """(size, size) float32 in [0, 1]: an ellipse filling the relative mouth box (y0, x0, y1, x1), its edge
    feathered over ``feather`` of the box, 0 outside the box."""
    y0, x0, y1, x1 = box
    yy, xx = (np.mgrid[0:size, 0:size].astype(np.float64) + 0.5) / size
    cy, cx, ry, rx = (y0 + y1) / 2, (x0 + x1) / 2, (y1 - y0) / 2, (x1 - x0) / 2
    r = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)  # 1 on the ellipse
    return np.clip((1 - r) / feather, 0, 1).astype(np.float32)


def paste_change(frame: np.ndarray, ref_crop: np.ndarray, gen_crop: np.ndarray, a: Alignment,
                 mask: np.ndarray) -> np.ndarray:
    """Add the generator's change (gen_crop - ref_crop, in crop pixels) to the frame at its own resolution,
    only where ``mask`` (crop pixels, [0, 1]) is non-zero; every other pixel is the frame's own."""
    h, w = frame.shape[:2]
    inv = cv2.invertAffineTransform(a.matrix)
    ys, xs = np.nonzero(mask > 0)
    if len(ys) == 0:
        return frame.copy()
    pts = np.stack([xs, ys, np.ones_like(xs)], 1).astype(np.float64) @ inv.T  # the mask's pixels in the frame
    x0, y0 = np.floor(pts.min(0)).astype(int) - 2
    x1, y1 = np.ceil(pts.max(0)).astype(int) + 3
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)  # only this window of the frame is touched
    out = frame.copy()
    if x1 <= x0 or y1 <= y0:
        return out
    shift = np.array([[1, 0, -x0], [0, 1, -y0]], np.float64)
    m = (np.vstack([shift, [0, 0, 1]]) @ np.vstack([inv, [0, 0, 1]]))[:2]  # crop -> window pixels
    delta = gen_crop.astype(np.float32) - ref_crop.astype(np.float32)  # (S, S, 3)
    dw = cv2.warpAffine(delta, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    aw = cv2.warpAffine(mask, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    patch = out[y0:y1, x0:x1].astype(np.float32) + aw[..., None] * dw
    out[y0:y1, x0:x1] = np.clip(np.round(patch), 0, 255).astype(np.uint8)
    return out
