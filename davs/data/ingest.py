"""Ingestion's shared machinery: an ordered, bounded process map, peak-memory sampling, the data-quality
report and the end of a run (report, refusal, manifest, summary).

Decoding runs in worker processes through :func:`ordered_map`, which keeps at most a bounded number
of items in flight and yields results in input order: memory stays flat on LRW's 500k clips and the
shards are identical from run to run. A bad input is skipped, counted and listed with its reason;
the run fails (after writing the report) only when the bad fraction exceeds ``max_bad_fraction``.
The datasets: :mod:`davs.data.ingest_lrw` and :mod:`davs.data.ingest_msceleb`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pandas as pd

from davs.errors import DavsError
from davs.files import atomic_write_text
from davs.parallel import init_worker, process_pool

log = logging.getLogger(__name__)


class IngestError(DavsError, RuntimeError):
    """Too many bad inputs (the data-quality report says which and why)."""


def ordered_map(fn: Callable, items: Iterable, workers: int, inflight: int = 64) -> Iterator:
    """``map(fn, items)`` over processes, in order, with at most ``inflight`` pending items."""
    if workers <= 1:
        init_worker()
        yield from map(fn, items)
        return
    with process_pool(workers) as pool:
        pending = []
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= inflight:
                yield pending.pop(0).result()
        for fut in pending:
            yield fut.result()


class PeakMemory:
    """Peak resident memory of this process and of all its worker processes together (sampled)."""

    def __init__(self, every: int = 25) -> None:
        self.every, self.n, self.workers_mb = every, 0, 0.0

    def tick(self) -> None:
        self.n += 1
        if self.n % self.every:
            return
        import psutil

        total = 0
        for child in psutil.Process().children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        self.workers_mb = max(self.workers_mb, total / 2**20)

    def report(self) -> dict[str, float]:
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {"peak_rss_main_mb": round(own, 1), "peak_rss_workers_total_mb": round(self.workers_mb, 1)}


def publish(stage: Path, summary: dict, rows: list[dict], quality: QualityReport, report: str | os.PathLike,
             max_bad_fraction: float, source: str | os.PathLike, refusal: str | None = None) -> None:
    """The end of an ingestion, inside its staging directory: the data-quality report (which raises over the
    bad-fraction threshold), a refusal when no training sample is left, then ``manifest.csv`` and
    ``summary.json``; :func:`davs.files.staged_dir` publishes the set when the caller's block ends.

    ``summary.json`` holds only what the data determines (no timings, memory or worker counts): it is
    part of the shard set's identity for DVC and for resume (davs/provenance.py)."""
    quality.write(Path(report), max_bad_fraction)  # raises over the threshold: nothing published
    if refusal:
        raise IngestError(refusal)
    if not summary["samples"].get("train"):
        raise IngestError(f"{summary['dataset']}: no training sample left from {source} "
                          f"(samples per split: {summary['samples']}); nothing published")
    pd.DataFrame(rows).to_csv(stage / "manifest.csv", index=False)
    atomic_write_text(stage / "summary.json", json.dumps(summary, indent=2) + "\n")


def finished(what: str, summary: dict, t0: float, workers: int, mem: PeakMemory) -> dict:
    perf = {"seconds": round(time.time() - t0, 1), "workers": workers, **mem.report()}
    log.info("%s ingestion: %s %s", what, summary, perf)
    return {**summary, "perf": perf}


def per_shard(n: int, max_samples: int, min_shards: int) -> int:
    return max(1, min(max_samples, math.ceil(n / min_shards)))


class QualityReport:
    """Counts and lists bad inputs; written to ``reports/data_quality/<dataset>.json``."""

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset
        self.total = 0
        self.bad: list[dict[str, str]] = []
        self.extra: dict = {}  # dataset-specific findings (e.g. MS-Celeb identities dropped)

    def ok(self) -> None:
        self.total += 1

    def fail(self, item: str, reason: str) -> None:
        self.total += 1
        self.bad.append({"item": item, "reason": reason})
        log.warning("%s: skipping %s: %s", self.dataset, item, reason)

    @property
    def bad_fraction(self) -> float:
        return len(self.bad) / max(1, self.total)

    def to_dict(self, max_bad_fraction: float) -> dict:
        kinds = Counter(b["reason"].split(":")[0].split(" (")[0] for b in self.bad)
        return {
            "dataset": self.dataset,
            "total": self.total,
            "good": self.total - len(self.bad),
            "bad": len(self.bad),
            "bad_fraction": round(self.bad_fraction, 6),
            "max_bad_fraction": max_bad_fraction,
            "passed": self.bad_fraction <= max_bad_fraction,
            "bad_by_reason": dict(sorted(kinds.items())),
            "bad_items": self.bad,
            **self.extra,
        }

    def write(self, path: Path, max_bad_fraction: float) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(max_bad_fraction), indent=2) + "\n")
        if self.bad_fraction > max_bad_fraction:
            raise IngestError(
                f"{self.dataset}: {len(self.bad)}/{self.total} inputs bad ({self.bad_fraction:.2%} > "
                f"{max_bad_fraction:.2%}); see {path}"
            )
