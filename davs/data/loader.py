"""Training-side WebDataset pipelines, built the way open_clip builds them.

Seeded shard shuffle tied to a shared epoch, ``split_by_node`` (DDP ranks), ``split_by_worker``,
tar expansion with a log-and-continue handler, a sample shuffle buffer, batching inside the workers
and ``with_epoch`` so every worker yields the same number of batches. Per-sample randomness (the
reference frame, the generator's window) comes from an RNG seeded by (seed, epoch, key), so batches
do not depend on worker scheduling (the stages that fix the order: :mod:`davs.data.order`).

LRW batches: ``frames`` (B, T, H, W, 3) uint8, ``mfcc`` (B, T, F, C) float32, ``mask`` (B, T) bool,
``label`` (B,), ``speaker`` (B,) (-1 = unknown), ``ref`` (B,) reference-frame index, ``start`` (B,)
window start. In training the reference is any frame or, with ``rest_ref_prob``, one outside the word,
like the still portrait generation starts from (and evaluation's first frame).
MS-Celeb batches: ``image`` (B, H, W, 3) uint8, ``label`` (B,).
"""

from __future__ import annotations

import csv
import glob
import json
import logging
import math
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import webdataset as wds

from davs.data.order import SKIPPED, SampleShuffle, ShardCycle, SharedEpoch, SkipAhead
from davs.data.shards import decode_jpg, decode_jpgs, npy_load
from davs.errors import DavsError

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_FAILURES = 200  # samples (or shards) in a row that fail to read or decode before a loader stops


class DataError(DavsError, RuntimeError):
    """A loader met only failing samples: the message names the last cause."""


class SkipBudget:
    """Log-and-continue for bad samples and corrupt shards, counted; after ``max_consecutive`` failures in a
    row (every sample failing: a corrupt shard set, or params that no clip satisfies) it stops with the
    cause instead of spinning forever. One per loader worker (each counts its own stream)."""

    def __init__(self, what: str, max_consecutive: int = MAX_CONSECUTIVE_FAILURES) -> None:
        self.what, self.max_consecutive = what, max_consecutive
        self.failures = 0
        self.consecutive = 0

    def ok(self) -> None:
        self.consecutive = 0

    def handler(self, exn: BaseException) -> bool:
        self.failures += 1
        self.consecutive += 1
        if self.failures <= 10 or self.failures % 100 == 0:
            log.warning("%s: skipped a bad sample or shard (%d so far): %s", self.what, self.failures, exn)
        if self.consecutive >= self.max_consecutive:
            raise DataError(f"{self.what}: {self.consecutive} samples in a row failed to load; the last: {exn}")
        return True


@dataclass
class _Checked:
    """A decode function that tells its :class:`SkipBudget` when a sample went through."""

    fn: object
    budget: SkipBudget

    def __call__(self, sample: dict) -> dict:
        if SKIPPED in sample:
            return sample
        out = self.fn(sample)
        self.budget.ok()
        return out


def expand_shards(pattern: str | list[str]) -> list[str]:
    """A glob (``data/shards/lrw/train-*.tar``), a brace pattern or a list -> sorted shard paths."""
    if isinstance(pattern, list):
        return pattern
    urls = sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else wds.shardlists.expand_urls(pattern)
    if not urls:
        raise FileNotFoundError(f"no shards match {pattern}")
    return urls


def expected_counts(shards: list[str]) -> dict[str, int]:
    """Samples per shard file name, from the ``manifest.csv`` beside the shards (empty if there is none)."""
    manifest = Path(shards[0]).parent / "manifest.csv" if shards else None
    if manifest is None or not manifest.exists():
        return {}
    with open(manifest, newline="") as f:
        return dict(Counter(row["shard"] for row in csv.DictReader(f)))


@dataclass
class CheckedTars:
    """``tarfile_to_samples`` that also notices a shard cut short: Python's tar reader takes a corrupt
    header after the first member for the end of the archive, silently. A shard yielding fewer samples
    than its manifest lists goes to the handler (logged, counted) and the stream continues."""

    handler: object
    expected: dict[str, int]

    def __call__(self, src):
        expand = wds.tarfile_to_samples(handler=self.handler)
        for item in src:
            n = 0
            for sample in expand(iter([item])):
                n += 1
                yield sample
            want = self.expected.get(Path(item["url"]).name)
            if want is not None and n < want:
                self.handler(DataError(f"{item['url']}: {n} of {want} samples readable (truncated or corrupt)"))


def _rng(seed: int, epoch: int, key: str) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, zlib.crc32(key.encode())])


@dataclass
class LRWDecode:
    """Raw LRW sample -> arrays: frames [offset, offset + num_frames), MFCC windows, mask, sampling."""

    num_frames: int
    frame_offset: int
    window: int
    seed: int
    epoch: SharedEpoch | None
    random_sampling: bool
    rest_ref_prob: float = 0.0  # training: chance the reference frame is drawn from outside the word

    def __call__(self, s: dict) -> dict:
        meta = json.loads(s["json"])
        frames = decode_jpgs(s["frames.jpgs"]) if "frames.jpgs" in s else npy_load(s["frames.npy"])
        mfcc = npy_load(s["mfcc.npy"])
        mask = np.asarray(meta["mask"], bool)
        sl = slice(self.frame_offset, self.frame_offset + self.num_frames)
        frames, mfcc, mask = frames[sl], mfcc[sl], mask[sl]
        if len(frames) < self.num_frames:
            raise ValueError(f"{s['__key__']}: {len(frames)} frames < num_frames {self.num_frames}")
        if self.random_sampling:
            rng = _rng(self.seed, self.epoch.get() if self.epoch else 0, s["__key__"])
            ref = int(rng.integers(self.num_frames))
            rest = np.flatnonzero(~mask)  # frames outside the word: the mouth at rest on the embedded corpus
            if len(rest) and rng.random() < self.rest_ref_prob:
                ref = int(rng.choice(rest))
            word = np.flatnonzero(mask)
            if len(word) and rng.random() < 0.8:  # mostly windows where the mouth moves: centred in the word
                start = int(np.clip(int(rng.choice(word)) - self.window // 2, 0, self.num_frames - self.window))
            else:
                start = int(rng.integers(self.num_frames - self.window + 1))
        else:  # evaluation: a fixed reference frame (the first) and the window around the centre
            ref, start = 0, (self.num_frames - self.window) // 2
        return {
            "key": s["__key__"], "frames": frames, "mfcc": mfcc.astype(np.float32), "mask": mask,
            "label": int(meta["label"]), "speaker": int(meta.get("speaker_id", -1)), "ref": ref, "start": start,
        }


def decode_celeb(s: dict) -> dict:
    meta = json.loads(s["json"])
    return {"key": s["__key__"], "image": decode_jpg(s["jpg"]), "label": int(meta["label"])}


def collate(samples: list[dict]) -> dict:
    if SKIPPED in samples[0]:
        return {SKIPPED: len(samples)}
    out = {}
    for k in samples[0]:
        vals = [s[k] for s in samples]
        if isinstance(vals[0], str):
            out[k] = vals
        elif isinstance(vals[0], np.ndarray):
            out[k] = torch.from_numpy(np.stack(vals))
        else:
            out[k] = torch.tensor(vals)
    return out


def count_samples(shard_dir: str | Path, split: str) -> int:
    summary = json.loads((Path(shard_dir) / "summary.json").read_text())
    return int(summary["samples"][split])


def make_loader(
    urls: str | list[str],
    decode,  # LRWDecode or decode_celeb
    *,
    batch_size: int,
    train: bool,
    num_samples: int,
    seed: int = 0,
    epoch: SharedEpoch | None = None,
    num_workers: int = 0,
    world_size: int = 1,
    shuffle_buffer: int = 256,
) -> tuple[wds.WebLoader, int]:
    """A WebLoader and its number of batches per epoch (per rank).

    ``train``: infinite seeded shard cycle, split by node and worker, sample shuffle, ``with_epoch``
    so each worker yields ``ceil(batches / workers)`` batches. Otherwise: every sample exactly once,
    in shard order, last batch partial.
    """
    shards = expand_shards(urls)
    workers = max(1, num_workers)
    if train and len(shards) < workers * world_size:
        raise ValueError(f"{len(shards)} shards < workers x ranks = {workers} x {world_size}: re-shard with more "
                         "shards (ingest.min_shards) or use fewer workers")
    budget = SkipBudget(f"{'train' if train else 'eval'} loader over {shards[0]}{' ...' * (len(shards) > 1)}")
    handler = budget.handler
    stages: list = [ShardCycle(shards, seed, epoch, shuffle=train, cycle=train)]
    if train:
        stages += [wds.split_by_node, wds.split_by_worker, CheckedTars(handler, expected_counts(shards)),
                   SampleShuffle(shuffle_buffer, seed, epoch), SkipAhead(batch_size, num_workers, epoch)]
    else:
        stages += [wds.split_by_worker, CheckedTars(handler, expected_counts(shards))]
    stages += [wds.map(_Checked(decode, budget), handler=handler), wds.batched(batch_size, collation_fn=collate, partial=not train)]
    dataset = wds.DataPipeline(*stages)
    if train:
        global_batch = batch_size * world_size
        worker_batches = math.ceil(math.ceil(num_samples / global_batch) / workers)
        dataset = dataset.with_epoch(worker_batches)
        batches = worker_batches * workers
    else:
        batches = math.ceil(num_samples / batch_size)
    loader = wds.WebLoader(dataset, batch_size=None, shuffle=False, num_workers=num_workers,
                           persistent_workers=num_workers > 0 and train)
    return loader, batches
