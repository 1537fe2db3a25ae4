"""Loader throughput: the WebDataset shard loader vs a per-file loader that decodes the LRW mp4 tree.

Both produce the same training tensors (face crops, per-frame MFCC windows, word labels) with the same
number of worker processes on the same cores, in one run. The per-file loader is what training would
do without ingestion: decord decode of each mp4 + crop/resize + MFCC, in a torch DataLoader.

    python benchmarks/loader.py --lrw data/corpus/lipread_mp4 --shards data/shards/lrw --workers 2
Writes benchmarks/results/loader.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from davs.data.loader import LRWDecode, collate, count_samples, make_loader
from davs.data.lrw import list_clips, read_clip
from davs.data.order import SharedEpoch


class PerFileLRW(Dataset):
    def __init__(self, root: str, crop_box: tuple[int, int, int], size: int) -> None:
        self.refs = [r for r in list_clips(root) if r.split == "train"]
        self.crop_box, self.size = crop_box, size

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i: int) -> dict:
        c = read_clip(self.refs[i], self.crop_box, self.size)
        return {"frames": c.frames[2:27], "mfcc": c.mfcc[2:27], "mask": c.mask[2:27], "label": 0}


def bench(loader, limit: int) -> tuple[float, int]:
    n, t0 = 0, None
    for b in loader:
        if t0 is None:  # exclude worker start-up: time from the first batch on
            t0 = time.perf_counter()
            continue
        n += len(b["label"])
        if n >= limit:
            break
    return n / (time.perf_counter() - t0), n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lrw", default="data/corpus/lipread_mp4")
    ap.add_argument("--shards", default="data/shards/lrw")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--limit", type=int, default=400)
    ap.add_argument("--out", default="benchmarks/results/loader.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ep = SharedEpoch()
    wds_loader, _ = make_loader(f"{args.shards}/train-*.tar", LRWDecode(25, 2, 5, 0, ep, True), batch_size=args.batch_size,
                                train=True, num_samples=count_samples(args.shards, "train"), epoch=ep,
                                num_workers=args.workers)
    per_file = DataLoader(PerFileLRW(args.lrw, (40, 48, 160), args.image_size), batch_size=args.batch_size, shuffle=True,
                          num_workers=args.workers, collate_fn=lambda s: collate(s), generator=torch.Generator().manual_seed(0))
    wds_rate, n1 = bench(wds_loader, args.limit)
    file_rate, n2 = bench(per_file, args.limit)
    res = {
        "webdataset_samples_per_s": round(wds_rate, 1), "per_file_decord_samples_per_s": round(file_rate, 1),
        "speedup": round(wds_rate / file_rate, 2), "samples_timed": [n1, n2], "workers": args.workers,
        "batch_size": args.batch_size, "image_size": args.image_size, "cpus": os.cpu_count(),
        "machine": platform.machine(), "python": platform.python_version(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
