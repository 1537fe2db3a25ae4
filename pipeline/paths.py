"""Where each stage reads and writes (relative to the repository root); dvc.yaml uses the same paths."""

from __future__ import annotations

from pathlib import Path

from pipeline.params import Params

MODELS = Path("models")
CHECKPOINTS = Path("checkpoints")  # resume files; not DVC outputs, so a killed stage resumes under dvc repro
REPORTS = Path("reports")
DVCLIVE = Path("dvclive")
SOURCES = Path("data/sources")  # listings of the real datasets' files (stage sources)


def lrw_root(p: Params) -> Path:
    return Path(p.data.lrw_root) if p.data.lrw_root else Path(p.data.corpus_dir) / "lipread_mp4"


def mouth_states(p: Params) -> Path:
    """The corpus's mouth-state sidecar (absent from real LRW: the mouth judge is then skipped)."""
    return lrw_root(p) / "mouth_states.csv"


def msceleb_path(p: Params) -> Path:
    if p.data.msceleb_tsv:
        return Path(p.data.msceleb_tsv)
    return Path(p.data.corpus_dir) / "msceleb" / "FaceImageCroppedWithAlignment.tsv"


def lrw_shards(p: Params) -> Path:
    return Path(p.data.shards_dir) / "lrw"


def celeb_shards(p: Params) -> Path:
    return Path(p.data.shards_dir) / "msceleb"


def model_file(stage: str) -> Path:
    return MODELS / f"{stage}.pt"
