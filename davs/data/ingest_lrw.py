"""LRW ingestion: a ``lipread_mp4/`` tree -> WebDataset shards of face-crop frames, MFCC windows and the
word mask, with ``vocab.json``, a manifest, a summary and a data-quality report (:mod:`davs.data.ingest`)."""

from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict

from tqdm import tqdm

from davs.config.data import LRWIngestConfig
from davs.data.ingest import IngestError, PeakMemory, QualityReport, finished, ordered_map, per_shard, publish
from davs.data.lrw import SPLITS, BadSample, ClipRef, list_clips, read_clip
from davs.data.shards import AtomicShardWriter, encode_jpgs, json_bytes, npy_bytes
from davs.files import staged_dir

log = logging.getLogger(__name__)


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
            per = per_shard(len(items), cfg.shard_max_samples, cfg.min_shards)
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
        publish(stage, summary, rows, quality, report, cfg.max_bad_fraction, root)
    return finished("LRW", summary, t0, workers, mem)
