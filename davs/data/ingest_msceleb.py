"""MS-Celeb ingestion: a ``FaceImageCroppedWithAlignment.tsv`` (or MS1M ``train.rec``) -> WebDataset shards of
face crops per identity, in two passes (count the good faces, then write), with a manifest, a summary and a
data-quality report (:mod:`davs.data.ingest`)."""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from davs.config.data import CelebIngestConfig
from davs.data.ingest import PeakMemory, QualityReport, finished, ordered_map, per_shard, publish
from davs.data.lrw import SPLITS, BadSample
from davs.data.msceleb import FaceRow, decode_row, iter_tsv, read_recordio, row_mid, tsv_columns
from davs.data.shards import AtomicShardWriter, decode_jpg, encode_jpg, json_bytes
from davs.files import staged_dir

log = logging.getLogger(__name__)


Row = str | FaceRow | BadSample  # a TSV line, a RecordIO record, or a record that could not be read


def _iter_celeb(path: Path, ncols: int = 7) -> Iterator[tuple[str, str, Row]]:
    """(identity or "", source, row) for TSV lines or RecordIO records."""
    if path.suffix == ".rec":
        for key, item in read_recordio(path):
            src = f"{path.name}#{key}"
            yield ("", src, item) if isinstance(item, BadSample) else (item.mid, src, item)
    else:
        for i, line in iter_tsv(path):
            yield row_mid(line, ncols) or "", f"{path.name}:{i}", line


def _celeb_face(source: str, row: Row, ncols: int) -> tuple[FaceRow | None, np.ndarray | str]:
    """(row, RGB image) of a good face, or (None, why it is bad)."""
    if isinstance(row, BadSample):
        return None, str(row)  # a RecordIO read error, already worded
    try:
        face = row if isinstance(row, FaceRow) else decode_row(row, source, ncols)
        return face, decode_jpg(face.jpeg)
    except BadSample as e:
        return None, str(e)
    except ValueError:
        return None, "undecodable JPEG in FaceData"


def _celeb_probe(args: tuple[str, Row, int]) -> tuple[str, str, str | None]:
    """Pass 1: (source, identity, None) for a good face, (source, identity or "", reason) for a bad one."""
    source, row, ncols = args
    face, img = _celeb_face(source, row, ncols)
    if face is None:
        return source, "", img
    if not face.mid:
        return source, "", "row has no identity"
    return source, face.mid, None


@dataclass(frozen=True)
class _CelebJob:
    """One face for a pass-2 worker: where it is, what it becomes."""

    source: str
    row: Row
    key: str
    label: int
    split: str
    ncols: int
    cfg: CelebIngestConfig


def _celeb_sample(job: _CelebJob) -> tuple[str, dict | str]:
    face, img = _celeb_face(job.source, job.row, job.ncols)
    if face is None:
        return job.source, img
    img = cv2.resize(img, (job.cfg.image_size, job.cfg.image_size), interpolation=cv2.INTER_AREA)
    meta = {"mid": face.mid, "label": job.label, "split": job.split, "source": job.source,
            "rect": list(face.rect) if face.rect else None}
    return job.source, {"__key__": job.key, "jpg": encode_jpg(img, job.cfg.jpeg_quality), "json": json_bytes(meta)}


def _celeb_split(k: int, cfg: CelebIngestConfig) -> str:
    """The split of an identity's k-th good face: the first ``msceleb_test_per_identity`` test, then val, then train."""
    t, v = cfg.msceleb_test_per_identity, cfg.msceleb_val_per_identity
    return "test" if k < t else "val" if k < t + v else "train"


def ingest_msceleb(path: str | os.PathLike, out: str | os.PathLike, report: str | os.PathLike,
                   cfg: CelebIngestConfig) -> dict:
    """Shard an MS-Celeb TSV (or MS1M RecordIO) into ``out/{train,val,test}-NNNNNN.tar``.

    Pass 1 decodes every row (base64 and JPEG) and counts the *good* faces per identity; bad rows are
    reported and never take a place. Identities with fewer than ``msceleb_min_per_identity`` good faces are
    dropped (counted and listed in the summary), at most ``msceleb_max_per_identity`` are kept. Per identity the
    first ``msceleb_test_per_identity`` kept faces go to test, the next ``msceleb_val_per_identity`` to val, the rest to
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
    kept = sorted(m for m, c in good.items() if c >= cfg.msceleb_min_per_identity)
    dropped = sorted(m for m, c in good.items() if c < cfg.msceleb_min_per_identity)
    if dropped:
        log.warning("MS-Celeb: %d identities have fewer than %d good faces and are dropped: %s",
                    len(dropped), cfg.msceleb_min_per_identity, dropped[:10] + (["..."] if len(dropped) > 10 else []))
    labels = {m: i for i, m in enumerate(kept)}
    expected = Counter()
    for m in kept:
        for k in range(min(good[m], cfg.msceleb_max_per_identity)):
            expected[_celeb_split(k, cfg)] += 1
    seen: Counter[str] = Counter()

    def jobs() -> Iterator:
        for mid, src, row in _iter_celeb(path, ncols):
            if src in bad_sources or mid not in labels or seen[mid] >= cfg.msceleb_max_per_identity:
                continue
            k = seen[mid]
            seen[mid] += 1
            key = f"{mid.replace('.', '-').replace(':', '-')}_{k:06d}"
            yield _CelebJob(src, row, key, labels[mid], _celeb_split(k, cfg), ncols, cfg)

    rows = []
    with staged_dir(out) as stage:
        if kept:
            (stage / "identities.json").write_text(json.dumps({"mids": kept}, indent=1) + "\n")
        writers = {s: AtomicShardWriter(str(stage / f"{s}-%06d.tar"),
                                        per_shard(max(1, expected[s]), cfg.msceleb_shard_max_samples, cfg.min_shards))
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
        quality.extra["dropped_identities"] = {"min_good_faces": cfg.msceleb_min_per_identity, "count": len(dropped),
                                               "identities": dropped[:1000]}
        refusal = None if kept else (f"msceleb: no identity in {path} has {cfg.msceleb_min_per_identity}+ good faces; "
                                     "nothing published")
        publish(stage, summary, rows, quality, report, cfg.max_bad_fraction, path, refusal)
    return finished("MS-Celeb", summary, t0, workers, mem)
