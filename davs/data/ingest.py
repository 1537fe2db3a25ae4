"""Ingestion: raw LRW / MS-Celeb -> WebDataset shards, a manifest, a summary and a data-quality report.

Decoding runs in worker processes through :func:`ordered_map`, which keeps at most a bounded number
of items in flight and yields results in input order: memory stays flat on LRW's 500k clips and the
shards are identical from run to run. A bad input is skipped, counted and listed with its reason;
the run fails (after writing the report) only when the bad fraction exceeds ``max_bad_fraction``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from davs.data.lrw import SPLITS, BadSample, ClipRef, list_clips, read_clip
from davs.data.msceleb import FaceRow, decode_row, iter_tsv, read_recordio, row_mid, tsv_columns
from davs.data.shards import AtomicShardWriter, decode_jpg, encode_jpg, encode_jpgs, json_bytes, npy_bytes
from davs.errors import DavsError
from davs.files import atomic_write_text, staged_dir
from davs.parallel import init_worker, process_pool

log = logging.getLogger(__name__)


class IngestError(DavsError, RuntimeError):
    """Too many bad inputs (the data-quality report says which and why)."""


@dataclass(frozen=True)
class LRWIngestConfig:
    crop_box: tuple[int, int, int] = (40, 48, 160)  # face_align "fixed": (top, left, side) of every frame
    face_align: str = "fixed"  # "fixed" | "landmarks" (davs.data.lrw.align_faces)
    image_size: int = 64
    mfcc_frames: int = 20
    mfcc_coeffs: int = 12
    mfcc_recipe: str = "torchaudio"  # "torchaudio" | "syncnet" (davs.data.features)
    frame_format: str = "jpg"  # "jpg" | "npy"
    jpeg_quality: int = 92
    shard_max_samples: int = 128
    min_shards: int = 4
    max_clips_per_word: int = 0
    max_bad_fraction: float = 0.01
    workers: int = 0


@dataclass(frozen=True)
class CelebIngestConfig:
    image_size: int = 64
    jpeg_quality: int = 92
    min_per_identity: int = 7
    max_per_identity: int = 100
    val_per_identity: int = 2
    test_per_identity: int = 4
    shard_max_samples: int = 512
    min_shards: int = 4
    max_bad_fraction: float = 0.01
    workers: int = 0


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


def _publish(stage: Path, summary: dict, rows: list[dict], quality: QualityReport, report: str | os.PathLike,
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


def _finished(what: str, summary: dict, t0: float, workers: int, mem: PeakMemory) -> dict:
    perf = {"seconds": round(time.time() - t0, 1), "workers": workers, **mem.report()}
    log.info("%s ingestion: %s %s", what, summary, perf)
    return {**summary, "perf": perf}


def _per_shard(n: int, max_samples: int, min_shards: int) -> int:
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


def _lrw_sample(args: tuple[ClipRef, LRWIngestConfig, dict[str, int], dict[str, int]]) -> tuple[ClipRef, dict | str]:
    ref, cfg, vocab, speakers = args
    try:
        clip = read_clip(ref, cfg.crop_box, cfg.image_size, cfg.mfcc_frames, cfg.mfcc_coeffs,
                         face_align=cfg.face_align, mfcc_recipe=cfg.mfcc_recipe)
    except BadSample as e:
        return ref, str(e)
    frames = (
        {"frames.jpgs": encode_jpgs(clip.frames, cfg.jpeg_quality)}
        if cfg.frame_format == "jpg" else {"frames.npy": npy_bytes(clip.frames)}
    )
    meta = {
        "word": ref.word, "label": vocab[ref.word], "split": ref.split, "speaker": ref.speaker,
        "speaker_id": speakers.get(ref.speaker, -1), "duration": clip.duration,
        "mask": clip.mask.astype(int).tolist(), "num_frames": int(clip.frames.shape[0]),
        "source": f"{ref.word}/{ref.split}/{os.path.basename(ref.path)}",
    }
    return ref, {"__key__": ref.key, **frames, "mfcc.npy": npy_bytes(clip.mfcc), "json": json_bytes(meta)}


def ingest_lrw(root: str | os.PathLike, out: str | os.PathLike, report: str | os.PathLike,
               cfg: LRWIngestConfig, lrw_vocab: list[str]) -> dict:
    """Shard an LRW tree into ``out/{train,val,test}-NNNNNN.tar`` + ``vocab.json``, ``manifest.csv``, ``summary.json``.

    The set is built in a hidden staging directory and replaces ``out`` whole only when the run passes
    the bad-fraction gate (:func:`davs.files.staged_dir`): a failed or killed run publishes nothing.
    """
    t0 = time.time()
    refs = list_clips(root, SPLITS, cfg.max_clips_per_word)
    if not refs:
        raise IngestError(f"no clips found under {root}")
    words = sorted({r.word for r in refs})
    unknown = [w for w in words if w not in lrw_vocab]
    if unknown:
        log.warning("words not in the LRW vocabulary: %s", unknown[:10])
    vocab = {w: i for i, w in enumerate(words)}
    speakers = {s: i for i, s in enumerate(sorted({r.speaker for r in refs if r.speaker}))}
    quality = QualityReport("lrw")
    rows, shards = [], {}
    workers = cfg.workers or os.cpu_count() or 1
    by_split = defaultdict(list)
    for r in refs:
        by_split[r.split].append(r)
    mem = PeakMemory()
    with staged_dir(out) as stage, tqdm(total=len(refs), desc="ingest LRW", unit="clip") as bar:
        (stage / "vocab.json").write_text(json.dumps({
            "words": words, "speakers": sorted(speakers),
        }, indent=1) + "\n")
        for split in SPLITS:
            items = by_split.get(split, [])
            if not items:
                continue
            per = _per_shard(len(items), cfg.shard_max_samples, cfg.min_shards)
            with AtomicShardWriter(str(stage / f"{split}-%06d.tar"), per) as w:
                for ref, res in ordered_map(_lrw_sample, ((r, cfg, vocab, speakers) for r in items), workers):
                    bar.update()
                    mem.tick()
                    if isinstance(res, str):
                        quality.fail(os.path.relpath(ref.path, root), res)
                        continue
                    quality.ok()
                    rows.append({"key": ref.key, "word": ref.word, "label": vocab[ref.word],
                                 "speaker": ref.speaker, "split": split,
                                 "shard": os.path.basename(w.pattern % w.shard)})
                    w.write(res)
            shards[split] = w.written
        summary = {
            "dataset": "lrw", "root": str(root), "words": len(words), "speakers": len(speakers),
            "samples": {s: sum(r["split"] == s for r in rows) for s in SPLITS},
            "shards": {s: len(v) for s, v in shards.items()}, "frame_format": cfg.frame_format,
            "bytes": sum(os.path.getsize(p) for v in shards.values() for p in v),
        }
        _publish(stage, summary, rows, quality, report, cfg.max_bad_fraction, root)
    return _finished("LRW", summary, t0, workers, mem)


def _iter_celeb(path: Path, ncols: int = 7) -> Iterator[tuple[str, str, FaceRow | str]]:
    """(identity or "", source, row-or-raw-line) for TSV lines or RecordIO records."""
    if path.suffix == ".rec":
        for key, item in read_recordio(path):
            src = f"{path.name}#{key}"
            yield ("", src, str(item)) if isinstance(item, BadSample) else (item.mid, src, item)
    else:
        for i, line in iter_tsv(path):
            yield row_mid(line, ncols) or "", f"{path.name}:{i}", line


def _celeb_face(source: str, row: str | FaceRow, ncols: int) -> tuple[FaceRow | None, np.ndarray | str]:
    """(row, RGB image) of a good face, or (None, why it is bad)."""
    if isinstance(row, str) and row.startswith("record"):
        return None, row  # a RecordIO read error, already worded
    try:
        face = row if isinstance(row, FaceRow) else decode_row(row, source, ncols)
        return face, decode_jpg(face.jpeg)
    except BadSample as e:
        return None, str(e)
    except ValueError:
        return None, "undecodable JPEG in FaceData"


def _celeb_probe(args: tuple[str, str | FaceRow, int]) -> tuple[str, str, str | None]:
    """Pass 1: (source, identity, None) for a good face, (source, identity or "", reason) for a bad one."""
    source, row, ncols = args
    face, img = _celeb_face(source, row, ncols)
    if face is None:
        return source, "", img
    if not face.mid:
        return source, "", "row has no identity"
    return source, face.mid, None


def _celeb_sample(args: tuple[str, str | FaceRow, str, int, str, int, CelebIngestConfig]) -> tuple[str, dict | str]:
    source, row, key, label, split, ncols, cfg = args
    face, img = _celeb_face(source, row, ncols)
    if face is None:
        return source, img
    img = cv2.resize(img, (cfg.image_size, cfg.image_size), interpolation=cv2.INTER_AREA)
    meta = {"mid": face.mid, "label": label, "split": split, "source": source,
            "rect": list(face.rect) if face.rect else None}
    return source, {"__key__": key, "jpg": encode_jpg(img, cfg.jpeg_quality), "json": json_bytes(meta)}


def _celeb_split(k: int, cfg: CelebIngestConfig) -> str:
    """The split of an identity's k-th good face: the first ``test_per_identity`` test, then val, then train."""
    t, v = cfg.test_per_identity, cfg.val_per_identity
    return "test" if k < t else "val" if k < t + v else "train"


def ingest_msceleb(path: str | os.PathLike, out: str | os.PathLike, report: str | os.PathLike,
                   cfg: CelebIngestConfig) -> dict:
    """Shard an MS-Celeb TSV (or MS1M RecordIO) into ``out/{train,val,test}-NNNNNN.tar``.

    Pass 1 decodes every row (base64 and JPEG) and counts the *good* faces per identity; bad rows are
    reported and never take a place. Identities with fewer than ``min_per_identity`` good faces are
    dropped (counted and listed in the summary), at most ``max_per_identity`` are kept. Per identity the
    first ``test_per_identity`` kept faces go to test, the next ``val_per_identity`` to val, the rest to
    train. Pass 2 writes the shards into a staging directory that replaces ``out`` only when the run
    passes (:func:`davs.files.staged_dir`); an empty train split fails the stage.
    """
    t0 = time.time()
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"MS-Celeb input {path} not found")
    ncols = 7 if path.suffix == ".rec" else tsv_columns(path)
    workers = cfg.workers or os.cpu_count() or 1
    mem = PeakMemory()
    quality = QualityReport("msceleb")
    good: Counter[str] = Counter()
    bad_sources: set[str] = set()
    probes = ((src, row, ncols) for _, src, row in _iter_celeb(path, ncols))
    for src, mid, reason in tqdm(ordered_map(_celeb_probe, probes, workers), desc="check MS-Celeb", unit="row"):
        mem.tick()
        if reason is not None:
            quality.fail(src, reason)
            bad_sources.add(src)
        else:
            quality.ok()
            good[mid] += 1
    kept = sorted(m for m, c in good.items() if c >= cfg.min_per_identity)
    dropped = sorted(m for m, c in good.items() if c < cfg.min_per_identity)
    if dropped:
        log.warning("MS-Celeb: %d identities have fewer than %d good faces and are dropped: %s",
                    len(dropped), cfg.min_per_identity, dropped[:10] + (["..."] if len(dropped) > 10 else []))
    labels = {m: i for i, m in enumerate(kept)}
    expected = Counter()
    for m in kept:
        for k in range(min(good[m], cfg.max_per_identity)):
            expected[_celeb_split(k, cfg)] += 1
    seen: Counter[str] = Counter()

    def jobs() -> Iterator:
        for mid, src, row in _iter_celeb(path, ncols):
            if src in bad_sources or mid not in labels or seen[mid] >= cfg.max_per_identity:
                continue
            k = seen[mid]
            seen[mid] += 1
            key = f"{mid.replace('.', '-').replace(':', '-')}_{k:06d}"
            yield src, row, key, labels[mid], _celeb_split(k, cfg), ncols, cfg

    rows = []
    with staged_dir(out) as stage:
        if kept:
            (stage / "identities.json").write_text(json.dumps({"mids": kept}, indent=1) + "\n")
        writers = {s: AtomicShardWriter(str(stage / f"{s}-%06d.tar"),
                                        _per_shard(max(1, expected[s]), cfg.shard_max_samples, cfg.min_shards))
                   for s in SPLITS}
        try:
            for src, res in tqdm(ordered_map(_celeb_sample, jobs(), workers), desc="ingest MS-Celeb", unit="img",
                                 total=sum(expected.values())):
                mem.tick()
                if isinstance(res, str):  # decoded in pass 1, so only a file changed under us lands here
                    quality.fail(src, res)
                    continue
                meta = json.loads(res["json"])
                w = writers[meta["split"]]
                rows.append({"key": res["__key__"], "mid": meta["mid"], "label": meta["label"],
                             "split": meta["split"], "shard": os.path.basename(w.pattern % w.shard)})
                w.write(res)
        except BaseException:
            for w in writers.values():
                w.abort()
            raise
        for w in writers.values():
            w.close()
        shards = {s: w.written for s, w in writers.items()}
        summary = {
            "dataset": "msceleb", "source": str(path), "identities": len(kept),
            "dropped_identities": len(dropped),
            "samples": {s: sum(r["split"] == s for r in rows) for s in SPLITS},
            "shards": {s: len(v) for s, v in shards.items()},
            "bytes": sum(os.path.getsize(p) for v in shards.values() for p in v),
        }
        quality.extra["dropped_identities"] = {"min_good_faces": cfg.min_per_identity, "count": len(dropped),
                                               "identities": dropped[:1000]}
        refusal = None if kept else (f"msceleb: no identity in {path} has {cfg.min_per_identity}+ good faces; "
                                     "nothing published")
        _publish(stage, summary, rows, quality, report, cfg.max_bad_fraction, path, refusal)
    return _finished("MS-Celeb", summary, t0, workers, mem)
