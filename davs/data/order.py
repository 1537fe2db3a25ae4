"""What fixes a training loader's data order: an epoch counter its workers share, the shard list reshuffled
by (seed, epoch) each pass, a seeded sample shuffle buffer, and the placeholders of a resumed epoch's
consumed batches. Same seed, same epoch: the same batches, whatever the workers' scheduling."""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import dataclass

import numpy as np
import torch
import webdataset as wds


class SharedEpoch:
    """An epoch counter visible to persistent dataloader workers, with the number of batches a resumed
    epoch passes over (:class:`SkipAhead`)."""

    def __init__(self, epoch: int = 0) -> None:
        self.value = mp.Value("i", epoch)
        self.skip = mp.Value("i", 0)

    def set(self, epoch: int, skip: int = 0) -> None:
        self.value.value = epoch
        self.skip.value = skip

    def get(self) -> int:
        return self.value.value


SKIPPED = "__skipped__"


def is_skipped(batch: object) -> bool:
    """A placeholder batch of :class:`SkipAhead` (its samples were read, not decoded)."""
    return isinstance(batch, dict) and SKIPPED in batch


@dataclass
class SkipAhead:
    """Placeholders instead of samples for the batches a resumed epoch passes over: the loader hands batches
    out round robin over its workers, so worker ``k`` of ``W`` made ``ceil((skip - k) / W)`` of the first
    ``skip``; it yields that many batches' worth of ``{SKIPPED: True}`` before decoding again. The decoders'
    randomness is keyed by (seed, epoch, sample key), so what follows is what an uninterrupted run decodes
    (a sample that would have failed to decode inside the skipped part shifts the rest by one)."""

    batch_size: int
    num_workers: int
    epoch: SharedEpoch | None

    def __call__(self, src):
        wid, _ = worker_rank()
        skip = self.epoch.skip.value if self.epoch is not None else 0
        workers = max(1, self.num_workers)
        n = max(0, -(-(skip - wid) // workers)) * self.batch_size
        for sample in src:
            if n > 0:
                n -= 1
                yield {SKIPPED: True}
            else:
                yield sample


class ShardCycle(wds.PipelineStage):
    """Yields ``{"url": ...}`` forever: the shard list reshuffled by (seed, epoch, cycle) each pass."""

    def __init__(self, urls: list[str], seed: int, epoch: SharedEpoch | None, shuffle: bool, cycle: bool) -> None:
        self.urls, self.seed, self.epoch, self.shuffle, self.cycle = list(urls), seed, epoch, shuffle, cycle

    def run(self):
        epoch = self.epoch.get() if self.epoch is not None else 0
        c = 0
        while True:
            urls = list(self.urls)
            if self.shuffle:
                np.random.default_rng([self.seed, epoch, c]).shuffle(urls)
            for u in urls:
                yield {"url": u}
            c += 1
            if not self.cycle:
                return


def worker_rank() -> tuple[int, int]:
    info = torch.utils.data.get_worker_info()
    dist = torch.distributed
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    return (info.id if info else 0), rank


@dataclass
class SampleShuffle:
    """Shuffle buffer seeded from (seed, epoch, worker, rank) each time iteration starts."""

    bufsize: int
    seed: int
    epoch: SharedEpoch | None

    def __call__(self, src):
        wid, rank = worker_rank()
        rng = np.random.default_rng([self.seed, self.epoch.get() if self.epoch else 0, wid, rank, 7])
        buf: list = []
        for sample in src:
            buf.append(sample)
            if len(buf) >= self.bufsize:
                j = int(rng.integers(len(buf)))
                buf[j], buf[-1] = buf[-1], buf[j]
                yield buf.pop()
        rng.shuffle(buf)
        yield from buf
