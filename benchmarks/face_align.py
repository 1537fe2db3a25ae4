"""LRW ingestion's face crop, fixed vs landmarks (``data.face_align``): CPU time per clip and alignment.

The clip: a real face (scikit-image's astronaut) sliding 1.5 px a frame through a 29-frame LRW-format
clip (:func:`real_face_clip`; the same clip as ``tests/test_ingest.py``'s landmark-alignment test). For each mode: seconds per ``read_clip`` (mean
of ``--repeats`` after one warm-up that loads dlib), the largest distance of dlib's eyes and mouth on the
128-px crops (frames 0, 14, 28) from the training template, and the mean |first crop - last crop|.

    python benchmarks/face_align.py
Writes benchmarks/results/face_align.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from skimage import data

from davs.data.lrw import ClipRef, read_clip
from davs.face.align import TEMPLATE, FaceAligner
from davs.media import write_mp4

OUT = Path(__file__).parent / "results" / "face_align.json"
SIZE = 128


def real_face_clip(root: Path, drift: float) -> ClipRef:
    """An LRW-format clip of a real face (scikit-image's astronaut) that slides ``drift`` px per frame."""
    face = cv2.resize(data.astronaut()[20:260, 130:370], (256, 256), interpolation=cv2.INTER_AREA)
    frames = [cv2.warpAffine(face, np.float64([[1, 0, (i - 14) * drift], [0, 1, (i - 14) * drift / 2]]), (256, 256),
                             borderMode=cv2.BORDER_REPLICATE) for i in range(29)]
    d = root / "ABOUT" / "test"
    d.mkdir(parents=True)
    t = np.arange(29 * 640) / 16000
    write_mp4(d / "ABOUT_00001.mp4", np.stack(frames), fps=25, audio=(0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32))
    (d / "ABOUT_00001.txt").write_text("Text:  ABOUT\nConf:  1\n\nDuration: 0.40 seconds\n")
    return ClipRef(str(d / "ABOUT_00001.mp4"), "ABOUT", "test", 1, "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    probe = FaceAligner(SIZE)
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        ref = real_face_clip(Path(tmp), drift=1.5)
        for mode, box in (("fixed", (48, 48, 160)), ("landmarks", (48, 48, 160))):
            read_clip(ref, box, SIZE, face_align=mode)  # warm-up
            t0 = time.perf_counter()
            for _ in range(args.repeats):
                crops = read_clip(ref, box, SIZE, face_align=mode).frames
            secs = (time.perf_counter() - t0) / args.repeats
            errs = [np.abs(p - TEMPLATE * SIZE).max() if (p := probe.points(crops[i])) is not None else None
                    for i in (0, 14, 28)]
            res[mode] = {"seconds_per_clip": round(secs, 3),
                         "landmark_error_px": [None if e is None else round(float(e), 2) for e in errs],
                         "first_vs_last_crop": round(float(np.abs(crops[0].astype(float) - crops[-1]).mean()), 2)}
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({"crop_px": SIZE, "frames": 29, **res}, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
