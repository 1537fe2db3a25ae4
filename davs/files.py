"""Publishing files atomically: write a temporary sibling, then ``os.replace`` it onto the final name, so a
reader (or DVC) never sees a partial file, whatever kills the writer."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def atomic_path(path: str | os.PathLike) -> Path:
    """A temporary sibling of ``path`` to write to before ``os.replace`` publishes it."""
    p = Path(path)
    return p.with_name(f".{p.name}.tmp{os.getpid()}")


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` (its directory created) to write; it replaces ``path`` when
    the block ends without error and is removed otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` (creating its directory) so that it appears whole or not at all."""
    with atomic_output(path) as tmp:
        tmp.write_text(text)


@contextmanager
def staged_dir(out: str | os.PathLike) -> Iterator[Path]:
    """Build a directory's new content in a hidden sibling and swap it in whole when the block ends.

    On an error inside the block the staging directory is removed and ``out`` keeps its previous content:
    nothing of the failed run is published and nothing of an older run sits beside new files. A killed
    writer leaves only the hidden staging directory, which the next call removes.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in [*out.parent.glob(f".{out.name}.staging-*"), *out.parent.glob(f".{out.name}.old-*")]:
        shutil.rmtree(stale, ignore_errors=True)
    stage = out.parent / f".{out.name}.staging-{os.getpid()}"
    stage.mkdir()
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    os.replace(stage, out)
    shutil.rmtree(old, ignore_errors=True)
