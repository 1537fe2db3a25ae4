"""CPU cost of the training data path at a given face size: how many cores feed one accelerator.

    python benchmarks/data_path.py --image-size 256 --workers 1 2

The loader (:func:`davs.data.loader.make_loader` over WebDataset shards) reads a tar member, decodes the
clip's JPEG frames and its stored MFCC windows (MFCC is computed once, at ingestion), and samples the
reference frame and the window. Per sample, in this process: JPEG decode of the 29 frames, the whole
:class:`~davs.data.loader.LRWDecode`, and, for the ingestion side, MFCC of the clip's audio. Then the real
loader's throughput with 1..N worker processes (one thread each), from the first batch on. Shards at
another size than the pipeline's 64 px are ingested from the embedded corpus into ``benchmarks/.cache``
(:func:`common.shards_for`). Writes ``benchmarks/results/data_path_<size>.json``;
``samples_per_s_per_core`` gives the loader cores one accelerator needs at a measured step rate.
"""

from __future__ import annotations

import argparse
import json
import os
import tarfile
import time
from pathlib import Path

import numpy as np
import torch
from common import ROOT, device_name, shards_for

from davs.data.features import mfcc_windows
from davs.data.loader import LRWDecode, count_samples, make_loader
from davs.data.order import SharedEpoch
from davs.data.shards import decode_jpgs


def _samples(shard: Path, n: int) -> list[dict]:
    """The first n raw samples of a tar shard, as WebDataset hands them to the decoder."""
    out: dict[str, dict] = {}
    with tarfile.open(shard) as tf:
        for m in tf:
            key, ext = m.name.split(".", 1)
            out.setdefault(key, {"__key__": key})[ext] = tf.extractfile(m).read()
            if len(out) > n:
                break
    return list(out.values())[:n]


def _per_sample(fn, items: list, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for x in items:
            fn(x)
        best = min(best, (time.perf_counter() - t0) / len(items))
    return best


def _loader_rate(shards: Path, workers: int, batch: int, limit: int) -> float:
    ep = SharedEpoch()
    loader, _ = make_loader(f"{shards}/train-*.tar", LRWDecode(25, 2, 5, 0, ep, True), batch_size=batch, train=True,
                            num_samples=count_samples(shards, "train"), epoch=ep, num_workers=workers)
    n, t0 = 0, None
    while n < limit:
        for b in loader:
            if t0 is None:  # from the first batch on: worker start-up left out
                t0 = time.perf_counter()
                continue
            n += len(b["label"])
            if n >= limit:
                break
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--limit", type=int, default=400, help="samples timed per loader run")
    ap.add_argument("--corpus", default="data/corpus")
    ap.add_argument("--cache", default="benchmarks/.cache")
    args = ap.parse_args()
    torch.set_num_threads(1)
    lrw, _ = shards_for(args.image_size, ROOT / args.corpus, ROOT / args.cache)
    raw = _samples(sorted(lrw.glob("train-*.tar"))[0], 32)
    dec = LRWDecode(25, 2, 5, 0, None, True)
    audio = np.random.default_rng(0).standard_normal(int(1.16 * 16000)).astype(np.float32)  # one 29-frame clip
    res = {
        "image_size": args.image_size, "device": device_name(torch.device("cpu")),
        "jpeg_decode_ms_per_sample": round(1e3 * _per_sample(lambda s: decode_jpgs(s["frames.jpgs"]), raw), 2),
        "decode_ms_per_sample": round(1e3 * _per_sample(dec, raw), 2),
        "mfcc_ms_per_clip_at_ingestion": round(1e3 * _per_sample(lambda a: mfcc_windows(a, 29), [audio] * 8), 2),
        "bytes_per_sample": int(np.mean([sum(len(v) for k, v in s.items() if k != "__key__") for s in raw])),
        "loader": [],
    }
    for w in args.workers:
        rate = _loader_rate(lrw, w, args.batch_size, args.limit)
        res["loader"].append({"workers": w, "samples_per_s": round(rate, 1)})
    res["samples_per_s_per_core"] = round(max(r["samples_per_s"] / r["workers"] for r in res["loader"]), 1)
    res["cpus"] = os.cpu_count()
    res["note"] = ("one run; per-sample figures are the best of 3 passes over 32 samples in one thread; loader "
                   "figures with one thread per worker process, from the first batch on")
    out = ROOT / f"benchmarks/results/data_path_{args.image_size}.json"
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
