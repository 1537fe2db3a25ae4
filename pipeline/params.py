"""``params.yaml``: one section per stage, validated on load; the library's configs built from it.

Every tunable of the project lives in ``params.yaml``, and each is a field of the library config that uses
it (``gen.l1_weight`` is :class:`davs.config.GenHParams`'s ``l1_weight``): its type, bounds and
comment are written there once (:mod:`davs.config`), its value in ``params.yaml``, nowhere else. The schema
of each section is read from those dataclasses (:func:`settings_of`), and :func:`config` builds them by
name, so adding a setting is a field and a line of ``params.yaml``; the pipeline's own keys (paths, the
judges' clip budget, the evaluation's) are declared in :func:`_schema`. :func:`load_params` validates the whole file: an
unknown key, a missing key or a value of the wrong type raises :class:`ParamsError` naming the key
(``gen.l1_weight: Input should be a valid number``). Only ``pipeline/`` reads this file; ``davs/`` receives
plain values and dataclasses.
"""

from __future__ import annotations

from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any, get_type_hints

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from davs.config import (
    CelebIngestConfig,
    CorpusSpec,
    DataSpec,
    DAVSConfig,
    DisentHParams,
    GenHParams,
    JointHParams,
    JudgeConfig,
    LipHeadConfig,
    LoopConfig,
    LRWIngestConfig,
)
from davs.config.types import NonNeg, Pos, PosF

PARAMS_FILE = Path("params.yaml")
LRW_CLIP_FRAMES = 29  # every LRW clip (1.16 s at 25 fps); tests/test_params.py checks it against davs
LRW_FRAME_SIZE = 256  # LRW frames are 256 x 256

# The settings several stages share; they live in data.*, every other setting in its stage's section.
DATA_KEYS = ("image_size", "crop_box", "face_align", "mouth_box", "num_frames", "frame_offset", "mfcc_frames",
             "mfcc_coeffs", "mfcc_recipe")
# fields of the library's configs that are not settings: DAVSConfig's class counts (from the shards) and
# DataSpec's shard directories (the pipeline's paths)
FROM_SHARDS = ("num_words", "num_ids")
SHARD_DIRS = ("lrw_dir", "celeb_dir")


class ParamsError(ValueError):
    """params.yaml does not validate; the message names each offending key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def settings_of(cls: type, only: tuple[str, ...] | None = None, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The settings of a library config dataclass: its fields without a default (a field with one is
    plumbing), with their annotated types, as pydantic field definitions."""
    hints = get_type_hints(cls, include_extras=True)
    out = {}
    for f in fields(cls):
        plumbing = f.default is not MISSING or f.default_factory is not MISSING or is_dataclass(hints[f.name])
        chosen = f.name in only if only is not None else f.name not in (*DATA_KEYS, *skip)
        if not plumbing and chosen:
            out[f.name] = (hints[f.name], ...)
    return out


def section(name: str, *sources: dict[str, Any]) -> type[_Section]:
    """A section's schema: the union of its sources' settings (a key two sources share must have one type)."""
    merged: dict[str, Any] = {}
    for src in sources:
        for key, spec in src.items():
            if key in merged and merged[key] != spec:
                raise TypeError(f"{name}.{key}: two library configs give it different types "
                                f"({merged[key][0]} and {spec[0]})")
            merged[key] = spec
    return create_model(name, __base__=_Section, **merged)


def _schema() -> dict[str, type[_Section]]:
    return {
        "data": section("DataParams", {  # the pipeline's paths
            "corpus_dir": (str, ...),  # where `davs synth` writes the embedded corpus
            "lrw_root": (str, ...),  # a real `lipread_mp4/`; "" = the embedded corpus
            "msceleb_tsv": (str, ...),  # a real MS-Celeb TSV (or MS1M `train.rec`); "" = the embedded corpus
            "shards_dir": (str, ...),
        }, *(settings_of(c, only=DATA_KEYS) for c in (LRWIngestConfig, DAVSConfig, DataSpec, JudgeConfig))),
        "synth": section("SynthParams", settings_of(CorpusSpec)),
        "ingest": section("IngestParams", settings_of(LRWIngestConfig), settings_of(CelebIngestConfig)),
        "model": section("ModelParams", settings_of(DAVSConfig, skip=FROM_SHARDS)),
        "joint": section("JointParams", settings_of(LoopConfig), settings_of(JointHParams),
                         settings_of(DataSpec, skip=(*SHARD_DIRS, "rest_ref_prob"))),
        "disent": section("DisentParams", settings_of(LoopConfig), settings_of(DisentHParams),
                          settings_of(DataSpec, skip=(*SHARD_DIRS, "rest_ref_prob"))),
        "gen": section("GenParams", settings_of(LoopConfig), settings_of(GenHParams),
                       settings_of(DataSpec, skip=(*SHARD_DIRS, "id_batch_size"))),  # gen reads no faces
        "judges": section("JudgesParams", settings_of(JudgeConfig), {
            "max_clips": (NonNeg, ...),  # train clips the judges learn from; 0 = all
        }),
        "lips": section("LipsParams", settings_of(LipHeadConfig), {
            "batch_size": (Pos, ...),  # clips per batch while extracting word features
        }),
        "eval": section("EvalParams", {
            "batch_size": (Pos, ...),
            "probe_c": (PosF, ...),  # inverse regularisation of the logistic-regression probes
            "num_samples": (NonNeg, ...),  # mp4 samples written to reports/samples
            "grid_rows": (Pos, ...),
        }),
    }


SECTIONS = _schema()
Params = create_model("Params", __base__=_Section, seed=(int, ...), **{k: (v, ...) for k, v in SECTIONS.items()})


def config(cls: type, *sections: BaseModel, **given: Any) -> Any:
    """A library config from params: each field from ``given``, else from the first section with a key of
    its name; a field none has keeps its default (plumbing), a setting none has is a missing-argument error."""
    values = {}
    for f in fields(cls):
        if f.name in given:
            values[f.name] = given.pop(f.name)
            continue
        for s in sections:
            if f.name in type(s).model_fields:
                values[f.name] = getattr(s, f.name)
                break
    if given:
        raise TypeError(f"{cls.__name__} has no field {sorted(given)}")
    return cls(**values)


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
    if p.gen.clip_id_weight > 0 and not p.gen.train_encoders:
        errs.append(f"gen.clip_id_weight: {p.gen.clip_id_weight}, but gen.train_encoders is false (the encoders are "
                    "frozen in gen: set it 0, or train them end to end)")
    if p.model.variant == "paper":
        if p.model.dis_frames > d.num_frames:
            errs.append(f"model.dis_frames: {p.model.dis_frames} frames, more than data.num_frames ({d.num_frames})")
        if d.image_size not in (32, 64, 128, 256):
            errs.append(f"data.image_size: {d.image_size}; the paper variant's generator decodes 4x4 by doublings "
                        "to 32, 64, 128 or 256")
        if p.model.gen_conceal:
            errs.append("model.gen_conceal: true, but the paper variant's generator reads the whole reference "
                        "(set it false, or model.variant: davs)")
        if p.model.gen_context:
            errs.append(f"model.gen_context: {p.model.gen_context}, but the paper variant's generator reads each "
                        "frame's word alone (set it 0, or model.variant: davs)")
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
