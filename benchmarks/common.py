"""What several benchmarks share: the repository root, the committed params, a device's name, and shards at a
given face size.

Imported by its siblings as ``from common import ...`` (a script's own folder is first on ``sys.path``).
"""

from __future__ import annotations

import os
import platform
from dataclasses import replace
from pathlib import Path

import torch

from davs.data.ingest_lrw import ingest_lrw
from davs.data.ingest_msceleb import ingest_msceleb
from davs.resources import lrw_words
from pipeline import stages as st
from pipeline.params import load_params

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load_params(ROOT / "params.yaml")  # the pipeline's settings; a benchmark names what it changes


def device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def shards_for(size: int, corpus: Path, cache: Path) -> tuple[Path, Path]:
    """LRW and MS-Celeb shards at ``size`` px: the pipeline's at its own size, else ingested once into cache."""
    if size == 64 and (ROOT / "data/shards/lrw/summary.json").exists():
        return ROOT / "data/shards/lrw", ROOT / "data/shards/msceleb"
    lrw, celeb = cache / f"lrw-{size}", cache / f"msceleb-{size}"
    if not (lrw / "summary.json").exists():
        ingest_lrw(corpus / "lipread_mp4", lrw, cache / f"lrw-{size}.quality.json", replace(st.lrw_ingest_config(PARAMS), image_size=size),
                   lrw_words())
    if not (celeb / "summary.json").exists():
        ingest_msceleb(corpus / "msceleb" / "FaceImageCroppedWithAlignment.tsv", celeb,
                       cache / f"msceleb-{size}.quality.json", replace(st.celeb_ingest_config(PARAMS), image_size=size))
    return lrw, celeb
