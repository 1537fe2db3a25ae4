"""What the data stages take: the embedded corpus's spec, the two ingestions' configs, and what a training or
evaluation run reads (:class:`DataSpec`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from annotated_types import Ge, Le

from davs.config.types import Frac, NonNeg, NonNegF, Pos

JpegQuality = Annotated[int, Ge(1), Le(100)]


@dataclass(frozen=True, kw_only=True)
class CorpusSpec:
    """What to generate (the pipeline's: ``synth.*``, sized for 2 CPU cores)."""

    seed: int
    num_words: Pos
    speakers: Pos  # identities speaking in train, val and test
    test_only_speakers: NonNeg  # identities that appear only in test
    train_per_word: Pos
    val_per_word: Pos
    test_per_word: Pos
    msceleb_identities: Pos
    msceleb_images: Pos
    msceleb_crop: tuple[int, int, int] = (40, 48, 160)  # (top, left, size) on the 256 canvas: LRW's face crop
    jitter: NonNegF  # scale of per-clip pose / lighting variation
    snr_db: tuple[float, float]  # background noise range, dB
    workers: NonNeg  # processes; 0 = all cores
    words: tuple[str, ...] = field(default_factory=tuple)  # explicit word list; empty = drawn from vocab


@dataclass(frozen=True)
class LRWIngestConfig:
    crop_box: tuple[NonNeg, NonNeg, Pos]  # face_align "fixed": (top, left, side) of every frame
    face_align: Literal["fixed", "landmarks"]  # crop_box on every frame, or dlib's eyes and mouth (davs.data.lrw)
    image_size: Pos  # square face crops
    mfcc_frames: Pos  # MFCC window per video frame: frames x coefficients
    mfcc_coeffs: Pos
    mfcc_recipe: Literal["torchaudio", "syncnet"]  # ours, or the official DAVS / SyncNet one (davs.data.features)
    frame_format: Literal["jpg", "npy"]
    jpeg_quality: JpegQuality
    shard_max_samples: Pos
    min_shards: Pos  # per split: at least dataloader workers x ranks
    max_clips_per_word: NonNeg  # 0 = all
    max_bad_fraction: Frac  # fail the stage when more than this fraction of inputs is bad
    workers: NonNeg  # 0 = all cores


@dataclass(frozen=True)
class CelebIngestConfig:
    image_size: Pos
    jpeg_quality: JpegQuality
    msceleb_min_per_identity: Pos  # identities with fewer good faces are dropped (> test + val)
    msceleb_max_per_identity: Pos
    msceleb_val_per_identity: NonNeg
    msceleb_test_per_identity: NonNeg
    msceleb_shard_max_samples: Pos  # a face is about 1/25 of a clip's bytes: fuller shards than LRW's
    min_shards: Pos
    max_bad_fraction: Frac
    workers: NonNeg


@dataclass(frozen=True)
class DataSpec:
    lrw_dir: str  # LRW shards (train-*.tar, val-*.tar, summary.json, vocab.json)
    celeb_dir: str  # MS-Celeb shards
    num_frames: Pos  # frames per clip used for training (DAVS: 25)
    frame_offset: NonNeg  # first frame used (DAVS: 2)
    batch_size: Pos
    id_batch_size: Pos  # MS-Celeb faces per batch (the stages that read faces)
    num_workers: NonNeg  # loader processes
    rest_ref_prob: Frac  # chance a training reference frame is drawn from outside the word: a mouth at rest (gen)
    seed: int = 0
