"""The library's configs with the committed params.yaml's settings, changed by what a test names.

The settings have one home, params.yaml (their types: ``davs.config``); a test that needs a config states only
what it changes. Plain module (no pytest): the DDP scripts import it too.
"""

from __future__ import annotations

from collections.abc import Callable
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
    return replace(st.data_spec(PARAMS, "joint"), lrw_dir=str(lrw_dir), celeb_dir=str(celeb_dir), **changes)


def _changed(build: Callable[[Any], Any]) -> Callable[..., Any]:
    """``build(params)``, the stage's own builder, with a test's changes."""
    return lambda **changes: replace(build(PARAMS), **changes)


joint: Callable[..., JointHParams] = _changed(st.joint_hparams)
disent: Callable[..., DisentHParams] = _changed(st.disent_hparams)
gen: Callable[..., GenHParams] = _changed(st.gen_hparams)
judges: Callable[..., JudgeConfig] = _changed(st.judges_config)
corpus: Callable[..., CorpusSpec] = _changed(st.corpus_spec)
lrw_ingest: Callable[..., LRWIngestConfig] = _changed(st.lrw_ingest_config)
celeb_ingest: Callable[..., CelebIngestConfig] = _changed(st.celeb_ingest_config)
