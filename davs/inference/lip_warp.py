"""A real photo's own lips and jaw, moved by the lip head's mouth states, at the photo's resolution.

The generator draws 64 px corpus mouths; on a real photo that reads as paint. Here the photo itself is
warped instead, so every pixel of the output is the photo's own (its lips, teeth, skin and grain) except
the new opening between the lips, a darkness shaded from the photo's lip colour. Where the photo's mouth is
already open, its own teeth and interior move with their lips on either side of the opening.

Geometry, from dlib's 68 landmarks, in the face's own axes (x along the eye line, y perpendicular, so a
tilted head opens its mouth along its own axis): the lip line is the midline between the inner lips. For
each frame, the mouth state (open, width, round; :mod:`davs.models.lip_head`) sets

- the opening: ``open * open_gain`` eye distances, split between the jaw and lower lip moving down
  (``lower_share``) and the upper lip moving up, with an elliptic profile along the mouth (corners stay
  closed); the jaw's motion widens from the mouth's width at the lips to the chin's below them and fades out
  under the chin, the upper lip's fades out toward the nose;
- the width: the corners move along the eye line by ``width_gain * (width - rest width) - round_gain * round``
  of the half mouth width.

The gains are the embedded corpus renderer's own geometry (:mod:`davs.synth.face`: an opening of 24 px at
open 1 on faces whose eyes are about 52 px apart; a width factor ``0.75 + 0.5 width - 0.3 round``), so a
state means the same opening on a photo as on the faces the head was fitted on.

Each output pixel is mapped back into the photo (a fixed-point inversion of the displacement, per side of the
lip line), so the warp is one ``cv2.remap`` of a window around the lower face; every pixel outside it is the
photo's own, unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from davs.models.lip_head import REST_STATE, LipHead

INNER_TOP = (60, 61, 62, 63, 64)  # dlib: inner lip, left corner .. right corner, upper edge
INNER_BOTTOM = (60, 67, 66, 65, 64)  # lower edge, same order
OUTER = tuple(range(48, 60))
STRIP_PIXELS = 1 << 18  # output pixels warped at a time (each needs a few dozen bytes of temporaries)


@dataclass(frozen=True)
class WarpGeometry:
    open_gain: float = 24.0 / 52.0  # opening at open = 1, in eye distances
    lower_share: float = 0.8  # of the opening, the part the jaw and lower lip make
    width_gain: float = 0.5 / 0.975  # relative width change per unit of the width state
    round_gain: float = 0.3 / 0.975  # relative width change per unit of the round state
    rest_open: float = 0.05  # open states up to this are the mouth at rest (the head's noise in silence)
    neck_fade: float = 0.6  # eye distances under the jaw line over which the jaw's motion fades out
    lip_depth: float = 0.25  # eye distances under the lip line over which the lower lip's elliptic profile
    #                          becomes the jaw's (the mandible turning about the ears)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


class LipWarper:
    """One photo and its landmarks; :meth:`frame` renders it with one mouth state."""

    def __init__(self, photo: np.ndarray, landmarks: np.ndarray, geometry: WarpGeometry = WarpGeometry()) -> None:
        self.photo, self.g = photo, geometry
        lm = np.asarray(landmarks, np.float64)  # (68, 2)
        left, right = lm[36:42].mean(0), lm[42:48].mean(0)
        self.eye = float(np.linalg.norm(right - left))
        self.ex = (right - left) / self.eye  # unit vector along the eye line
        self.ey = np.array([-self.ex[1], self.ex[0]])  # perpendicular, pointing down the face
        top, bottom = lm[list(INNER_TOP)], lm[list(INNER_BOTTOM)]
        self.centre = (top + bottom).mean(0) / 2  # (2,) mouth centre
        self.half_w = max(float(np.linalg.norm(lm[54] - lm[48])) / 2, 1.0)  # half mouth width, px
        mid = self._uv((top + bottom) / 2)  # (5, 2) the lip line, u in half widths, v in eye distances
        mid = mid[np.argsort(mid[:, 0])]  # np.interp needs increasing u (a turned face may reorder points)
        self.line_u, self.line_v = mid[:, 0], mid[:, 1]
        # the inner corners bound the opening, each on its own side (a turned face's far side is shorter)
        self.left_u, self.right_u = max(-float(mid[0, 0]), 0.3), max(float(mid[-1, 0]), 0.3)
        uv = self._uv(lm)
        jaw = uv[:17][np.argsort(uv[:17, 0])]
        self.jaw_u, self.jaw_v = jaw[:, 0], jaw[:, 1]  # the jaw line, ear to ear
        self.nose_v = float(uv[33, 1])
        self.face_hw = max(float(np.abs(uv[[0, 16], 0]).mean()), 1.5)  # half the face's width, in half mouth widths
        self.interior = self._interior_colour(lm)
        self.window = self._window(lm)

    def _uv(self, xy: np.ndarray) -> np.ndarray:
        d = xy - self.centre
        return np.stack([d @ self.ex / self.half_w, d @ self.ey / self.eye], -1)

    def _interior_colour(self, lm: np.ndarray) -> np.ndarray:
        """The inside of the mouth: the photo's lip colour, darkened and a little more saturated (RGB float32)."""
        pts = np.round(lm[list(OUTER)]).astype(np.int32)  # (12, 2)
        h, w = self.photo.shape[:2]
        (bx0, by0), (bx1, by1) = np.clip(pts.min(0), 0, [w, h]), np.clip(pts.max(0) + 1, 0, [w, h])
        outer = np.zeros((by1 - by0, bx1 - bx0), np.uint8)  # the lips' bounding box only
        cv2.fillPoly(outer, [pts - [bx0, by0]], 1)
        ys, xs = np.nonzero(outer)
        lips = self.photo[by0 + ys, bx0 + xs].astype(np.float32) if len(ys) else np.full((1, 3), 120, np.float32)
        c = np.median(lips, 0)
        return np.clip(c.mean() + 1.3 * (c - c.mean()), 0, 255) * 0.4

    def _window(self, lm: np.ndarray) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1): the part of the photo the warp can move (the lower face, with room to open)."""
        reach = self.g.open_gain * self.eye
        u = self.face_hw * self.half_w
        bottom = (float(self.jaw_v.max()) + self.g.neck_fade) * self.eye + reach
        corners = [self.centre + a * u * self.ex + b * self.ey for a in (-1, 1)
                   for b in ((self.nose_v - 0.05) * self.eye, bottom)]
        pts = np.array(corners)
        h, w = self.photo.shape[:2]
        x0, y0 = np.floor(pts.min(0)).astype(int) - 2
        x1, y1 = np.ceil(pts.max(0)).astype(int) + 3
        return max(0, x0), max(0, y0), min(w, x1), min(h, y1)

    def _line(self, u: np.ndarray) -> np.ndarray:
        return np.interp(u, self.line_u, self.line_v)

    def _along(self, u: np.ndarray) -> np.ndarray:
        """u scaled so that the inner corners are at -1 and 1."""
        return np.where(u < 0, u / self.left_u, u / self.right_u)

    def _lower(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Weight in [0, 1] of the jaw's downward motion at (u, v) below the lip line: the lower lip's
        elliptic profile at the line (corners closed), the mandible's deeper down (1 at the chin, 0 at the
        ears), faded out under the jaw line."""
        lip = np.sqrt(np.clip(1 - self._along(u) ** 2, 0, 1))
        jaw = np.sqrt(np.clip(1 - np.abs(u) / self.face_hw, 0, 1))
        t = _smoothstep((v - self._line(u)) / self.g.lip_depth)
        below_jaw = v - np.interp(u, self.jaw_u, self.jaw_v)
        return ((1 - t) * lip + t * jaw) * (1 - _smoothstep(below_jaw / self.g.neck_fade))

    def _upper(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        lateral = np.sqrt(np.clip(1 - self._along(u) ** 2, 0, 1))
        return lateral * (1 - _smoothstep((self._line(u) - v) / max(self._line(0.0) - self.nose_v, 1e-3)))

    def _spread(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Weight of the mouth's sideways stretch: the lips and corners, fading over the cheeks."""
        near = np.exp(-(((v - self._line(np.clip(u, -1, 1))) / 0.15) ** 2))
        return np.clip(u, -1.3, 1.3) * near * np.exp(-np.maximum(np.abs(u) - 1, 0) ** 2 / 0.1)

    def frame(self, state: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The photo with the mouth state (open, width, round) -> (H, W, 3) uint8. With ``out`` (a frame this
        warper made before, or a copy of the photo), the frame is drawn into it: only the window is rewritten,
        so a stream of frames needs one photo-sized buffer."""
        o = max(float(state[0]) - REST_STATE[0] - self.g.rest_open, 0.0) / (1 - self.g.rest_open)
        stretch = self.g.width_gain * (float(state[1]) - REST_STATE[1]) - self.g.round_gain * float(state[2])
        x0, y0, x1, y1 = self.window
        if out is None:
            out = self.photo.copy()
        else:
            out[y0:y1, x0:x1] = self.photo[y0:y1, x0:x1]
        if (o < 1e-4 and abs(stretch) < 1e-4) or x1 <= x0 or y1 <= y0:
            return out
        rows = max(1, STRIP_PIXELS // (x1 - x0))  # the window in strips: memory bounded whatever the face's size
        for ya in range(y0, y1, rows):
            yb = min(ya + rows, y1)
            out[ya:yb, x0:x1] = self._strip(o, stretch, (x0, ya, x1, yb))
        return out

    def _strip(self, o: float, stretch: float, box: tuple[int, int, int, int]) -> np.ndarray:
        """Rows box[1]:box[3], columns box[0]:box[2] of the warped frame -> (h, w, 3) uint8."""
        x0, y0, x1, y1 = box
        opening = self.g.open_gain * o  # eye distances
        down, up = opening * self.g.lower_share, opening * (1 - self.g.lower_share)
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        q = self._uv(np.stack([xx, yy], -1))  # (h, w, 2) output pixels in face axes
        qu, qv = q[..., 0], q[..., 1]
        gap_top = self._line(qu) - up * self._upper(qu, self._line(qu))
        gap_bottom = self._line(qu) + down * self._lower(qu, self._line(qu))
        below, above = qv >= gap_bottom, qv <= gap_top
        su, sv = qu.copy(), qv.copy()
        for _ in range(4):  # source = output - displacement(source), per side of the lip line
            du = stretch * self._spread(su, sv)
            dv = np.where(below, down * self._lower(su, sv), np.where(above, -up * self._upper(su, sv), 0.0))
            su, sv = qu - du, qv - dv
        src = self.centre + su[..., None] * self.half_w * self.ex + sv[..., None] * self.eye * self.ey  # (h, w, 2)
        patch = cv2.remap(self.photo, src[..., 0].astype(np.float32), src[..., 1].astype(np.float32),
                          cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        inside = np.minimum(qv - gap_top, gap_bottom - qv) * self.eye  # px from the nearer lip edge
        height = (gap_bottom - gap_top) * self.eye  # the opening's height there, px
        gap = np.clip(inside + 0.5, 0, 1) * np.clip(height, 0, 1)  # pixel coverage: a sub-pixel gap stays faint
        depth = np.clip((qv - gap_top) / np.maximum(gap_bottom - gap_top, 1e-6), 0, 1)
        shade = 0.45 + 0.55 * depth**1.5  # in the upper lip's shadow at the top, the tongue's colour below
        fill = self.interior[None, None] * shade[..., None]
        patch = patch * (1 - gap[..., None]) + fill * gap[..., None]
        return np.clip(np.round(patch), 0, 255).astype(np.uint8)


def warp_frames(warper: LipWarper, head: LipHead, words: Iterable[torch.Tensor]) -> Iterator[np.ndarray]:
    """The warper's photo saying word-feature chunks (b, D): one frame per word feature, drawn into one
    buffer (each frame valid until the next is made; an encoder copies it)."""
    buf = warper.photo.copy()
    with torch.no_grad():
        for states in head.stream(words):
            for s in states.float().cpu().numpy():
                yield warper.frame(s, buf)
