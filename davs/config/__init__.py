"""The library's configs: every setting the pipeline gives the library, as typed dataclass fields.

Each setting is a field without a default of one of these dataclasses, typed with :mod:`davs.config.types`
and commented where it is declared; its value comes from the caller (the pipeline's settings file, whose
schema the pipeline reads from these fields). A field with a default is plumbing: a path, a seed,
a flag the caller derives. The package imports nothing heavy, so reading it costs no torch import.
"""

from davs.config.data import CelebIngestConfig, CorpusSpec, DataSpec, LRWIngestConfig
from davs.config.judges import JudgeConfig
from davs.config.model import DAVSConfig
from davs.config.training import (
    DisentHParams,
    GenHParams,
    JointHParams,
    LipHeadConfig,
    LoopConfig,
    WordHeadHParams,
)

__all__ = ["CelebIngestConfig", "CorpusSpec", "DAVSConfig", "DataSpec", "DisentHParams", "GenHParams",
           "JointHParams", "JudgeConfig", "LRWIngestConfig", "LipHeadConfig", "LoopConfig", "WordHeadHParams"]
