"""Frame storage in shards: JPEG sequence (``frames.jpgs``) vs raw uint8 (``frames.npy``).

Measures bytes per clip and decode time per clip on real clips of the corpus, in one run:
    python benchmarks/shard_format.py --lrw data/corpus/lipread_mp4
Writes benchmarks/results/shard_format.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from davs.data.lrw import list_clips, read_clip
from davs.data.shards import decode_jpgs, encode_jpgs, npy_bytes, npy_load


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lrw", default="data/corpus/lipread_mp4")
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--out", default="benchmarks/results/shard_format.json")
    args = ap.parse_args()
    refs = list_clips(args.lrw)[:: max(1, len(list_clips(args.lrw)) // args.clips)][: args.clips]
    clips = [read_clip(r, (40, 48, 160), args.image_size).frames for r in refs]
    res = {"clips": len(clips), "image_size": args.image_size}
    for name, enc, dec in (("jpg", encode_jpgs, decode_jpgs), ("npy", npy_bytes, npy_load)):
        blobs = [enc(c) for c in clips]
        t0 = time.perf_counter()
        for _ in range(3):
            out = [dec(b) for b in blobs]
        dt = (time.perf_counter() - t0) / 3 / len(blobs)
        err = float(np.mean([np.abs(o.astype(int) - c).mean() for o, c in zip(out, clips)]))
        res[name] = {"kb_per_clip": round(np.mean([len(b) for b in blobs]) / 1024, 1),
                     "decode_ms_per_clip": round(dt * 1000, 3), "mean_abs_error": round(err, 3)}
    res["size_ratio_npy_over_jpg"] = round(res["npy"]["kb_per_clip"] / res["jpg"]["kb_per_clip"], 2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
