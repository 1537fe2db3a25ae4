"""LRW ingestion's face crop, fixed vs landmarks (``data.face_align``): CPU time per clip and alignment.

The clip is the test's: a real face (scikit-image's astronaut) sliding 1.5 px a frame through a 29-frame
LRW-format clip (``tests/test_ingest.py: _real_face_clip``). For each mode: seconds per ``read_clip`` (mean
of ``--repeats`` after one warm-up that loads dlib), the largest distance of dlib's eyes and mouth on the
128-px crops (frames 0, 14, 28) from the training template, and the mean |first crop - last crop|.

    python benchmarks/face_align.py
Writes benchmarks/results/face_align.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from davs.data.lrw import read_clip  # noqa: E402
from davs.face.align import TEMPLATE, FaceAligner  # noqa: E402
from tests.test_ingest import _real_face_clip  # noqa: E402

OUT = Path(__file__).parent / "results" / "face_align.json"
SIZE = 128


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    probe = FaceAligner(SIZE)
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        ref = _real_face_clip(Path(tmp), drift=1.5)
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
