"""The library's configs with the committed params.yaml's settings, changed by what a test names.

The settings have one home, params.yaml (their types: ``davs.config``); a test that needs a config states only
what it changes. Plain module (no pytest): the DDP scripts import it too.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from davs.config import (
    CelebIngestConfig,
    CorpusSpec,
    DataSpec,
    DAVSConfig,
    DisentHParams,
    GenHParams,
    JointHParams,
    JudgeConfig,
    LoopConfig,
    LRWIngestConfig,
)
from pipeline import stages as st
from pipeline.params import config, load_params

PARAMS = load_params(Path(__file__).resolve().parents[1] / "params.yaml")


def sizes(**changes: Any) -> dict[str, Any]:
    """The pipeline's model sizes (:func:`davs.data.spec.model_config_for` adds the data's class counts)."""
    return {**st.model_sizes(PARAMS), **changes}


def model(**changes: Any) -> DAVSConfig:
    """The pipeline's model (``num_words`` and ``num_ids`` come from data: give them)."""
    return DAVSConfig(**sizes(**changes))


def loop(**changes: Any) -> LoopConfig:
    """joint's loop settings, no resume file, fp32 on the CPU (deterministic on every CPU)."""
    return config(LoopConfig, PARAMS.joint, **changes)


def data(lrw_dir: str | Path, celeb_dir: str | Path, **changes: Any) -> DataSpec:
    """What joint reads, from these shard directories."""
    return config(DataSpec, PARAMS.data, PARAMS.joint, lrw_dir=str(lrw_dir), celeb_dir=str(celeb_dir),
                  rest_ref_prob=0.0, **changes)


def joint(**changes: Any) -> JointHParams:
    return replace(st.joint_hparams(PARAMS), **changes)


def disent(**changes: Any) -> DisentHParams:
    return replace(st.disent_hparams(PARAMS), **changes)


def gen(**changes: Any) -> GenHParams:
    return replace(st.gen_hparams(PARAMS), **changes)


def judges(**changes: Any) -> JudgeConfig:
    return replace(st.judges_config(PARAMS), **changes)


def corpus(**changes: Any) -> CorpusSpec:
    return replace(st.corpus_spec(PARAMS), **changes)


def lrw_ingest(**changes: Any) -> LRWIngestConfig:
    return replace(st.lrw_ingest_config(PARAMS), **changes)


def celeb_ingest(**changes: Any) -> CelebIngestConfig:
    return replace(st.celeb_ingest_config(PARAMS), **changes)
