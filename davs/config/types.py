"""The value types of the library's settings (:mod:`davs.config`).

A config dataclass of the library (:class:`~davs.models.DAVSConfig`, the stages' hyper-parameters, the loop,
the ingestion and corpus specs, the judges) annotates each setting with one of these; a field without a
default is a setting whose value the caller gives (the pipeline: from its settings file, whose schema
it reads from these annotations), a field with a default is plumbing (paths, seeds,
derived flags). So a setting's name, type, bounds and comment are written once, where it is used.
"""

from __future__ import annotations

from typing import Annotated

from annotated_types import Ge, Gt, Le

Pos = Annotated[int, Gt(0)]
NonNeg = Annotated[int, Ge(0)]
PosF = Annotated[float, Gt(0)]
NonNegF = Annotated[float, Ge(0)]
Frac = Annotated[float, Ge(0), Le(1)]
Box = tuple[Frac, Frac, Frac, Frac]  # (y0, x0, y1, x1) relative to the crop
