"""``params.yaml``: one section per stage, validated on load into typed config objects.

Every tunable of the project lives in ``params.yaml``. :func:`load_params` validates the whole file:
an unknown key, a missing key or a value of the wrong type raises :class:`ParamsError` naming the key
(``gen.l1_weight: Input should be a valid number``). Only ``pipeline/`` reads this file; ``davs/``
receives plain values and dataclasses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

PARAMS_FILE = Path("params.yaml")
LRW_CLIP_FRAMES = 29  # every LRW clip (1.16 s at 25 fps); tests/test_params.py checks it against davs
LRW_FRAME_SIZE = 256  # LRW frames are 256 x 256

Pos = Annotated[int, Field(gt=0)]
NonNeg = Annotated[int, Field(ge=0)]
PosF = Annotated[float, Field(gt=0)]
NonNegF = Annotated[float, Field(ge=0)]
Frac = Annotated[float, Field(ge=0, le=1)]


class ParamsError(ValueError):
    """params.yaml does not validate; the message names each offending key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DataParams(_Section):
    corpus_dir: str  # where `davs synth` writes the embedded corpus
    lrw_root: str  # a real `lipread_mp4/`; "" = the embedded corpus
    msceleb_tsv: str  # a real MS-Celeb TSV (or MS1M `train.rec`); "" = the embedded corpus
    shards_dir: str
    image_size: Pos
    crop_box: tuple[NonNeg, NonNeg, Pos]  # (top, left, size) on the source frame
    face_align: Literal["fixed", "landmarks"]  # LRW ingestion: crop_box on every frame, or dlib landmarks
    mouth_box: tuple[Frac, Frac, Frac, Frac]  # (y0, x0, y1, x1) relative to the crop
    num_frames: Pos  # frames per clip used for training (DAVS: 25)
    frame_offset: NonNeg  # first frame used (DAVS: 2)
    mfcc_frames: Pos
    mfcc_coeffs: Pos
    mfcc_recipe: Literal["torchaudio", "syncnet"]  # davs.data.features: ours, or the official DAVS / SyncNet one


class SynthParams(_Section):
    seed: int
    num_words: Pos
    speakers: Pos
    test_only_speakers: NonNeg
    train_per_word: Pos
    val_per_word: Pos
    test_per_word: Pos
    msceleb_identities: Pos
    msceleb_images: Pos
    jitter: NonNegF
    snr_db: tuple[float, float]
    workers: NonNeg


class IngestParams(_Section):
    workers: NonNeg  # 0 = all cores
    max_bad_fraction: Frac  # fail the stage when more than this fraction of inputs is bad
    frame_format: Literal["jpg", "npy"]
    jpeg_quality: Annotated[int, Field(ge=1, le=100)]
    shard_max_samples: Pos
    msceleb_shard_max_samples: Pos  # a face is about 1/25 of a clip's bytes: fuller shards
    min_shards: Pos  # per split: at least dataloader workers x ranks
    max_clips_per_word: NonNeg  # 0 = all
    msceleb_min_per_identity: Pos
    msceleb_max_per_identity: Pos
    msceleb_val_per_identity: NonNeg
    msceleb_test_per_identity: NonNeg


class ModelParams(_Section):
    feat_dim: Pos  # word and identity feature size (DAVS: 256)
    width: Pos  # base channel width of the encoders
    gen_width: Pos  # base channel width of the generator
    disc_width: Pos  # base channel width of the discriminators
    window: Pos  # consecutive frames seen by the temporal discriminator
    audio_conditioned_disc: bool
    variant: Literal["davs", "paper"]  # ours, or the official DAVS's networks (davs.models.build)
    dis_frames: Pos  # paper variant: consecutive frames its Cw_p reads (official: 20)
    gen_conceal: bool  # G's reference has its mouth concealed, so G draws every mouth (davs.models.generator)
    identity_rank: NonNeg  # identity directions the word encoders' last layer removes (davs.models.identity_nuisance)


class _TrainCommon(_Section):
    steps: Pos
    batch_size: Pos
    lr: PosF
    weight_decay: NonNegF
    optimizer: Literal["adamw", "adam"]
    grad_clip: NonNegF  # 0 = off
    num_workers: NonNeg
    log_every: Pos
    val_every: Pos
    ckpt_every: Pos
    amp: bool  # bf16 autocast on CUDA and on a CPU with AMX (fp32 on other CPUs)
    compile: bool  # torch.compile the modules


class JointParams(_TrainCommon):
    id_batch_size: Pos
    contrastive_weight: NonNegF  # clip-level contrastive loss (margin) on pooled audio / video word features
    frame_sync_weight: NonNegF  # frame-level audio-visual synchronisation (InfoNCE) of per-frame word features
    margin: PosF
    contrastive_form: Literal["davs", "paper"]  # ours (pooled, negatives across words) or the official L2 contrastive
    domain_weight: NonNegF
    domain_loss: Literal["confusion", "flip"]  # ours (probability to 1/2) or the official DAVS (flipped-label BCE)
    identity_weight: NonNegF
    warmup_steps: NonNeg  # contrastive and domain terms ramp in over these steps


class DisentParams(_TrainCommon):
    id_batch_size: Pos
    dis_lr: PosF
    uniform_weight: NonNegF
    uniform_form: Literal["davs", "paper"]  # ours (summed over classes, x C) or the official (mean per element)
    keep_weight: NonNegF  # weight of the stage-1 losses that keep the embedding
    dis_steps: Pos  # dis-classifier updates per encoder update
    dis_memory: Pos  # the dis-classifiers train on the features of the last dis_memory steps
    identity_ridge: PosF  # model.identity_rank's subspace: ridge of its reduced-rank regression from identity vectors
    identity_clips: Pos  # ... fitted on this many training clips after the last step
    head_steps: NonNeg  # then Cw refitted for this many steps on the features with the subspace removed
    head_lr: PosF
    clip_id_weight: NonNegF  # the label-free adversary: the clip's own identity read from its word features (0 = off)
    clip_id_memory: Pos  # ... by a ridge regression on the pooled features of the last clip_id_memory steps
    clip_id_ridge: PosF  # ... its ridge, relative to the standardised features' unit variance
    clip_id_clusters: NonNeg  # ... its target: k-means pseudo-speakers of the identity vectors (0: the vectors)


class GenParams(_TrainCommon):
    d_lr: PosF
    rest_ref_prob: Frac  # chance a training reference frame is drawn from outside the word (a mouth at rest)
    l1_weight: NonNegF
    mouth_weight: NonNegF
    gan_weight: NonNegF
    lip_weight: NonNegF  # lip-feature loss through the frozen video word encoder (0 = off)
    mask_weight: NonNegF  # attention-mask penalty on the mouth box (0 = off)
    sync_gan_weight: NonNegF  # the discriminator's audio-conditioned mouth head (0 = off)
    smooth_weight: NonNegF  # official DAVS: L1 between consecutive audio-driven frames outside the mouth (0 = off)
    soft_labels: Frac  # official DAVS: the discriminator's labels softened by up to this much (0 = hard)
    train_encoders: bool  # official DAVS: train the encoders and Cw end to end with G (joint's and disent's losses)
    embed_weight: NonNegF  # end to end: weight of the word cross-entropies and contrastive loss


class JudgesParams(_Section):
    seed: int  # the judges' own seed, not the pipeline's
    width: Pos
    embed_dim: Pos  # SyncNet embedding size
    stack: Pos  # SyncNet: consecutive mouth frames per video input
    max_shift: Pos  # SyncNet: audio offsets searched, +/- frames (Wav2Lip: 15 at 25 fps; 7 fits LRW's 29 frames)
    margin: NonNeg  # ROI shift augmentation, pixels
    mouth_steps: Pos
    mouth_batch: Pos
    sync_steps: Pos
    sync_batch: Pos
    lr: PosF
    temperature: PosF
    max_clips: NonNeg  # train clips the judges learn from; 0 = all


class LipsParams(_Section):
    context: NonNeg  # word-feature frames either side the lip head reads
    ridge: PosF  # the ridge fit's L2 penalty, relative to the features' mean variance
    batch_size: Pos  # clips per batch while extracting word features


class EvalParams(_Section):
    batch_size: Pos
    probe_c: PosF  # inverse regularisation of the logistic-regression probes
    num_samples: NonNeg  # mp4 samples written to reports/samples
    grid_rows: Pos


class Params(_Section):
    seed: int
    data: DataParams
    synth: SynthParams
    ingest: IngestParams
    model: ModelParams
    joint: JointParams
    disent: DisentParams
    gen: GenParams
    judges: JudgesParams
    lips: LipsParams
    eval: EvalParams


def _fmt(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"  {key}: {msg}" + ("" if e["type"] in ("extra_forbidden", "missing") else f" (got {e.get('input')!r})"))
    return "\n".join(lines)


def cross_check(p: Params) -> list[str]:
    """Constraints between keys that a per-key type cannot express; each failure names its keys. A run with
    any of these would hang (no clip long enough), index outside the clip, or train on an empty split."""
    d, j, errs = p.data, p.judges, []
    if d.frame_offset + d.num_frames > LRW_CLIP_FRAMES:
        errs.append(f"data.frame_offset + data.num_frames = {d.frame_offset} + {d.num_frames}: more than the "
                    f"{LRW_CLIP_FRAMES} frames of an LRW clip")
    if p.model.window > d.num_frames:
        errs.append(f"model.window: {p.model.window} frames, more than data.num_frames ({d.num_frames})")
    if j.stack > d.num_frames:
        errs.append(f"judges.stack: {j.stack} frames, more than data.num_frames ({d.num_frames})")
    first, last = d.frame_offset + j.stack // 2, d.frame_offset + d.num_frames - 1 - j.stack // 2
    if first + j.max_shift >= LRW_CLIP_FRAMES or last - j.max_shift < 0:
        errs.append(f"judges.max_shift: {j.max_shift} frames leaves no audio window for the extreme offsets of "
                    f"a {LRW_CLIP_FRAMES}-frame clip (stack centres {first}..{last})")
    top, left, size = d.crop_box
    if top + size > LRW_FRAME_SIZE or left + size > LRW_FRAME_SIZE:
        errs.append(f"data.crop_box: {d.crop_box} reaches outside the {LRW_FRAME_SIZE}x{LRW_FRAME_SIZE} LRW frame")
    y0, x0, y1, x1 = d.mouth_box
    if not (y0 < y1 and x0 < x1):
        errs.append(f"data.mouth_box: {d.mouth_box} is empty (need y0 < y1 and x0 < x1)")
    g = p.ingest
    if g.msceleb_min_per_identity <= g.msceleb_val_per_identity + g.msceleb_test_per_identity:
        errs.append(f"ingest.msceleb_min_per_identity: {g.msceleb_min_per_identity} leaves no training face after "
                    f"msceleb_test_per_identity + msceleb_val_per_identity = "
                    f"{g.msceleb_test_per_identity + g.msceleb_val_per_identity}")
    if g.msceleb_max_per_identity < g.msceleb_min_per_identity:
        errs.append(f"ingest.msceleb_max_per_identity: {g.msceleb_max_per_identity} < msceleb_min_per_identity "
                    f"({g.msceleb_min_per_identity})")
    for name in ("joint", "disent", "gen"):
        w = getattr(p, name).num_workers
        if w > g.min_shards:
            errs.append(f"{name}.num_workers: {w} loader workers but ingest.min_shards is {g.min_shards} "
                        "(each worker needs a shard)")
    if p.model.identity_rank > p.model.feat_dim:
        errs.append(f"model.identity_rank: {p.model.identity_rank} directions, more than model.feat_dim "
                    f"({p.model.feat_dim})")
    if p.model.variant == "paper":
        if p.model.dis_frames > d.num_frames:
            errs.append(f"model.dis_frames: {p.model.dis_frames} frames, more than data.num_frames ({d.num_frames})")
        if d.image_size not in (32, 64, 128, 256):
            errs.append(f"data.image_size: {d.image_size}; the paper variant's generator decodes 4x4 by doublings "
                        "to 32, 64, 128 or 256")
        if p.model.gen_conceal:
            errs.append("model.gen_conceal: true, but the paper variant's generator reads the whole reference "
                        "(set it false, or model.variant: davs)")
    if p.synth.test_only_speakers >= p.synth.speakers:
        errs.append(f"synth.test_only_speakers: {p.synth.test_only_speakers}, not fewer than synth.speakers "
                    f"({p.synth.speakers}): no speaker left for training")
    if p.synth.snr_db[0] > p.synth.snr_db[1]:
        errs.append(f"synth.snr_db: {p.synth.snr_db} is not (low, high)")
    return errs


def validate(raw: Any, source: str = "params.yaml") -> Params:
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping at the top level")
    try:
        p = Params.model_validate(_lists_to_tuples(raw))
    except ValidationError as e:
        raise ParamsError(f"{source} is invalid:\n{_fmt(e)}") from None
    errs = cross_check(p)
    if errs:
        raise ParamsError(f"{source} is invalid:\n" + "\n".join(f"  {e}" for e in errs))
    return p


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ParamsError(f"{path} is not valid YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise ParamsError(f"{path} is not a text file") from None


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """Read and validate ``params.yaml``."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path} not found (run from the repository root)")
    return validate(_read_yaml(path), str(path))


def _lists_to_tuples(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _lists_to_tuples(v) for k, v in x.items()}
    if isinstance(x, list):
        return tuple(_lists_to_tuples(v) for v in x)
    return x


def set_params(path: str | Path, overrides: dict[str, Any]) -> None:
    """Apply ``{"gen.l1_weight": 10}`` overrides to a params file (validated before writing)."""
    path = Path(path)
    raw = _read_yaml(path)
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    for dotted, value in overrides.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for p in parents:
            if not isinstance(node.get(p), dict):
                raise ParamsError(f"{dotted}: unknown section {p!r}")
            node = node[p]
        if leaf not in node:
            raise ParamsError(f"{dotted}: unknown key")
        node[leaf] = value
    validate(raw, str(path))
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
