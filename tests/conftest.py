"""Shared fixtures: a tiny corpus in the real LRW / MS-Celeb formats, and shards made from it."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch

from davs.data.ingest import CelebIngestConfig, LRWIngestConfig, ingest_lrw, ingest_msceleb
from davs.resources import lrw_words
from davs.synth.corpus import CorpusSpec, generate

ROOT = Path(__file__).resolve().parents[1]
TINY = CorpusSpec(seed=3, num_words=3, speakers=3, test_only_speakers=1, train_per_word=6, val_per_word=2,
                  test_per_word=3, msceleb_identities=4, msceleb_images=8, workers=2,
                  words=("ABOUT", "MONEY", "SCHOOL"))

torch.set_num_threads(2)
logging.getLogger("davs").setLevel(logging.INFO)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    generate(out, lrw_words(), TINY)
    return out


LRW_CFG = LRWIngestConfig(image_size=32, shard_max_samples=8, min_shards=2, workers=2)
CELEB_CFG = CelebIngestConfig(image_size=32, min_per_identity=4, val_per_identity=2, test_per_identity=2,
                              shard_max_samples=8, min_shards=2, workers=2)


@pytest.fixture(scope="session")
def shards(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shards")
    ingest_lrw(corpus / "lipread_mp4", out / "lrw", out / "dq" / "lrw.json", LRW_CFG, lrw_words())
    ingest_msceleb(corpus / "msceleb" / "FaceImageCroppedWithAlignment.tsv", out / "msceleb", out / "dq" / "msceleb.json",
                   CELEB_CFG)
    return out


@pytest.fixture
def venv_env() -> dict[str, str]:
    """Environment whose PATH finds this interpreter's console scripts (davs, dvc, prefect)."""
    import sys

    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env
