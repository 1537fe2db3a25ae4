"""A parametric 2-D face renderer: one stable look per identity, a mouth driven by viseme states.

Each identity draws its face shape, skin tone, hair style and colour, eyes, brows, nose, lips, clothes
and background from its own seeded RNG, so the same identity id always looks the same. Per clip, a
:class:`Scene` adds lighting (brightness and a directional gradient) and a smooth head-pose path
(small rotation and translation). Per frame, only the mouth is drawn on top of a cached base image,
then the whole frame is moved by the head pose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

CANVAS = 256


@dataclass(frozen=True)
class Identity:
    """Everything that makes one person look like themselves."""

    ident: int
    background: tuple[int, int, int]
    background2: tuple[int, int, int]
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    hair_style: int  # 0 short, 1 long, 2 receding, 3 fringe
    shirt: tuple[int, int, int]
    iris: tuple[int, int, int]
    lips: tuple[int, int, int]
    face_hw: float  # half width of the face ellipse (px)
    face_hh: float  # half height
    face_cy: float
    eye_dx: float  # half distance between the eyes
    eye_r: float
    brow_tilt: float
    brow_width: int
    nose_len: float
    nose_w: float
    mouth_w: float  # half width of the resting mouth
    mouth_y: float  # mouth centre, as a fraction of face_hh below face_cy

    @staticmethod
    def make(ident: int, seed: int = 0) -> Identity:
        rng = np.random.default_rng([seed, 7919, ident])

        def col(lo: int, hi: int) -> tuple[int, int, int]:
            return tuple(int(v) for v in rng.integers(lo, hi, size=3))

        tone = rng.uniform(0.25, 1.0)
        skin = (int(110 + 135 * tone), int(70 + 120 * tone), int(45 + 110 * tone))
        hair_palette = [(20, 15, 10), (60, 40, 20), (120, 80, 40), (200, 170, 100), (150, 150, 150), (130, 40, 20)]
        hair = hair_palette[int(rng.integers(len(hair_palette)))]
        return Identity(
            ident=ident,
            background=col(30, 230),
            background2=col(30, 230),
            skin=skin,
            hair=tuple(int(np.clip(c + rng.integers(-15, 16), 0, 255)) for c in hair),
            hair_style=int(rng.integers(4)),
            shirt=col(20, 235),
            iris=[(60, 40, 20), (40, 90, 140), (60, 110, 60), (90, 70, 50)][int(rng.integers(4))],
            lips=(int(np.clip(skin[0] * 0.8 + 30, 0, 255)), int(skin[1] * 0.55), int(skin[2] * 0.55)),
            face_hw=float(rng.uniform(58, 74)),
            face_hh=float(rng.uniform(78, 92)),
            face_cy=float(rng.uniform(112, 124)),
            eye_dx=float(rng.uniform(22, 30)),
            eye_r=float(rng.uniform(6, 9)),
            brow_tilt=float(rng.uniform(-4, 4)),
            brow_width=int(rng.integers(2, 6)),
            nose_len=float(rng.uniform(16, 28)),
            nose_w=float(rng.uniform(6, 12)),
            mouth_w=float(rng.uniform(17, 24)),
            mouth_y=float(rng.uniform(0.5, 0.58)),
        )


@dataclass(frozen=True)
class Scene:
    """Per-clip conditions: lighting and a smooth head-pose path."""

    brightness: float = 1.0
    light_dir: float = 0.0  # radians; direction of the lighting gradient
    light_strength: float = 0.0  # 0 flat .. 0.3 strong
    pose_amp: tuple[float, float, float] = (0.0, 0.0, 0.0)  # (degrees, dx px, dy px)
    pose_phase: tuple[float, float, float] = (0.0, 0.0, 0.0)
    pose_freq: float = 0.5  # Hz

    @staticmethod
    def random(rng: np.random.Generator, jitter: float = 1.0) -> Scene:
        return Scene(
            brightness=float(rng.uniform(1 - 0.2 * jitter, 1 + 0.15 * jitter)),
            light_dir=float(rng.uniform(0, 2 * math.pi)),
            light_strength=float(rng.uniform(0, 0.25 * jitter)),
            pose_amp=(float(rng.uniform(0, 4 * jitter)), float(rng.uniform(0, 4 * jitter)), float(rng.uniform(0, 3 * jitter))),
            pose_phase=tuple(float(p) for p in rng.uniform(0, 2 * math.pi, size=3)),
            pose_freq=float(rng.uniform(0.3, 0.9)),
        )

    def pose(self, t: float) -> tuple[float, float, float]:
        """(rotation degrees, dx, dy) at time ``t`` seconds."""
        w = 2 * math.pi * self.pose_freq * t
        return tuple(a * math.sin(w + p) for a, p in zip(self.pose_amp, self.pose_phase))  # type: ignore[return-value]


def mouth_centre(idt: Identity) -> tuple[float, float]:
    """Mouth centre (x, y) on the canvas before head pose."""
    return CANVAS / 2, idt.face_cy + idt.mouth_y * idt.face_hh


class FaceRenderer:
    """Renders frames of one identity under one scene; the base (all but the mouth) is cached."""

    def __init__(self, idt: Identity, scene: Scene = Scene()) -> None:
        self.idt = idt
        self.scene = scene
        self.base = self._base()
        yy, xx = np.mgrid[0:CANVAS, 0:CANVAS].astype(np.float32) / CANVAS - 0.5
        grad = np.cos(scene.light_dir) * xx + np.sin(scene.light_dir) * yy  # (H, W) in [-0.7, 0.7]
        self.light = (scene.brightness * (1 + 2 * scene.light_strength * grad))[..., None]  # (H, W, 1)

    def _base(self) -> Image.Image:
        i = self.idt
        img = Image.new("RGB", (CANVAS, CANVAS), i.background)
        d = ImageDraw.Draw(img)
        for y in range(0, CANVAS, 8):  # vertical background gradient
            a = y / CANVAS
            c = tuple(int((1 - a) * b1 + a * b2) for b1, b2 in zip(i.background, i.background2))
            d.rectangle([0, y, CANVAS, y + 8], fill=c)
        cx, cy, hw, hh = CANVAS / 2, i.face_cy, i.face_hw, i.face_hh
        d.ellipse([cx - 1.9 * hw, cy + 0.8 * hh, cx + 1.9 * hw, cy + 2.6 * hh], fill=i.shirt)  # shoulders
        d.rectangle([cx - 0.45 * hw, cy + 0.6 * hh, cx + 0.45 * hw, cy + 1.1 * hh], fill=_shade(i.skin, 0.85))  # neck
        if i.hair_style == 1:  # long hair behind the face
            d.rounded_rectangle([cx - 1.2 * hw, cy - 1.1 * hh, cx + 1.2 * hw, cy + 0.9 * hh], radius=40, fill=i.hair)
        d.ellipse([cx - 1.08 * hw, cy - 0.1 * hh, cx - 0.9 * hw, cy + 0.25 * hh], fill=_shade(i.skin, 0.9))  # ears
        d.ellipse([cx + 0.9 * hw, cy - 0.1 * hh, cx + 1.08 * hw, cy + 0.25 * hh], fill=_shade(i.skin, 0.9))
        d.ellipse([cx - hw, cy - hh, cx + hw, cy + hh], fill=i.skin)
        if i.hair_style in (0, 1):
            d.chord([cx - 1.03 * hw, cy - 1.12 * hh, cx + 1.03 * hw, cy + 0.1 * hh], 180, 360, fill=i.hair)
        elif i.hair_style == 2:
            d.chord([cx - 1.03 * hw, cy - 1.05 * hh, cx + 1.03 * hw, cy - 0.2 * hh], 200, 340, fill=i.hair)
        else:
            d.chord([cx - 1.03 * hw, cy - 1.12 * hh, cx + 1.03 * hw, cy + 0.1 * hh], 180, 360, fill=i.hair)
            d.polygon([(cx - hw, cy - 0.45 * hh), (cx + 0.2 * hw, cy - 0.5 * hh), (cx + hw, cy - 0.2 * hh),
                       (cx + hw, cy - 0.55 * hh), (cx - hw, cy - 0.6 * hh)], fill=i.hair)
        ey = cy - 0.12 * hh
        for s in (-1, 1):
            ex = cx + s * i.eye_dx
            d.ellipse([ex - 1.8 * i.eye_r, ey - i.eye_r, ex + 1.8 * i.eye_r, ey + i.eye_r], fill=(245, 245, 240))
            d.ellipse([ex - i.eye_r, ey - i.eye_r, ex + i.eye_r, ey + i.eye_r], fill=i.iris)
            d.ellipse([ex - 0.45 * i.eye_r, ey - 0.45 * i.eye_r, ex + 0.45 * i.eye_r, ey + 0.45 * i.eye_r], fill=(10, 10, 10))
            by = ey - 2.2 * i.eye_r
            d.line([(ex - 2 * i.eye_r, by + s * i.brow_tilt), (ex + 2 * i.eye_r, by - s * i.brow_tilt)],
                   fill=_shade(i.hair, 0.8), width=i.brow_width)
        ny = ey + 0.5 * i.eye_r
        d.polygon([(cx, ny), (cx - i.nose_w, ny + i.nose_len), (cx + i.nose_w, ny + i.nose_len)], fill=_shade(i.skin, 0.8))
        return img

    def frame(self, mouth: tuple[float, float, float], t: float) -> np.ndarray:
        """One (H, W, 3) uint8 frame with mouth state (open, width, round) at time ``t``."""
        i = self.idt
        img = self.base.copy()
        d = ImageDraw.Draw(img)
        open_, width, rnd = mouth
        mx, my = mouth_centre(i)
        w = 1.25 * i.mouth_w * (0.75 + 0.5 * width - 0.3 * rnd)
        h = 2.0 + 24.0 * open_
        lip = 3.0 + 2.5 * rnd
        d.ellipse([mx - w - lip, my - h / 2 - lip, mx + w + lip, my + h / 2 + lip], fill=i.lips)
        d.ellipse([mx - w, my - h / 2, mx + w, my + h / 2], fill=(50, 12, 18))
        if open_ > 0.15:  # upper teeth
            d.rectangle([mx - 0.6 * w, my - h / 2, mx + 0.6 * w, my - h / 2 + min(4.0, 0.3 * h)], fill=(235, 235, 225))
        rot, dx, dy = self.scene.pose(t)
        img = img.rotate(rot, resample=Image.BILINEAR, center=(mx, my - 40), translate=(dx, dy),
                         fillcolor=i.background2)
        out = np.asarray(img, dtype=np.float32) * self.light
        return np.clip(out, 0, 255).astype(np.uint8)


def _shade(c: tuple[int, int, int], k: float) -> tuple[int, int, int]:
    return tuple(int(np.clip(v * k, 0, 255)) for v in c)  # type: ignore[return-value]
