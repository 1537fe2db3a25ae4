"""Publishing files atomically: write a temporary sibling, then ``os.replace`` it onto the final name, so a
reader (or DVC) never sees a partial file, whatever kills the writer."""

from __future__ import annotations

import os
from pathlib import Path


def atomic_path(path: str | os.PathLike) -> Path:
    """A temporary sibling of ``path`` to write to before ``os.replace`` publishes it."""
    p = Path(path)
    return p.with_name(f".{p.name}.tmp{os.getpid()}")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` (creating its directory) so that it appears whole or not at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_path(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
