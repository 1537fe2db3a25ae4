"""Listings of a real dataset's files (path, size, modification time), so that DVC can tell when the data
under ``lipread_mp4/`` or an MS-Celeb TSV changed without hashing a 70 GB tree: the ingestion stages depend
on the listing, which a cheap always-run stage rewrites (identical bytes when nothing changed)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from davs.errors import DavsError
from davs.files import atomic_path

log = logging.getLogger(__name__)


class SourceError(DavsError):
    """A configured dataset path does not exist or cannot be read."""


def _walk(root: Path) -> Iterator[os.DirEntry]:
    """Files under ``root`` in sorted order, one directory listing in memory at a time."""
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as e:
        raise SourceError(f"cannot list {root}: {e.strerror}") from None
    for e in entries:
        if e.is_dir(follow_symlinks=True):
            yield from _walk(Path(e.path))
        elif e.is_file(follow_symlinks=True) and not e.name.startswith("."):
            yield e


def _files(path: Path) -> Iterator[tuple[str, os.stat_result]]:
    if path.is_dir():
        for e in _walk(path):
            yield os.path.relpath(e.path, path), e.stat()
    elif path.is_file():
        yield path.name, path.stat()
        idx = path.with_suffix(".idx")  # a RecordIO file's index travels with it
        if path.suffix == ".rec" and idx.is_file():
            yield idx.name, idx.stat()
    else:
        raise SourceError(f"dataset path {path} does not exist")


def write_listing(path: str | os.PathLike, out: str | os.PathLike) -> dict[str, int]:
    """Write ``relative path<TAB>size<TAB>mtime_ns`` for every file under ``path`` (a directory or one file),
    sorted, to ``out`` atomically; returns the file count and total size. Memory is bounded by the largest
    directory's entry list, not by the dataset."""
    path, out = Path(path), Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_path(out)
    n = size = 0
    try:
        with open(tmp, "w") as f:
            f.write(f"# files of {path}: relative path, bytes, mtime (ns)\n")
            for rel, st in tqdm(_files(path), desc=f"list {path.name}", unit="file", mininterval=2.0):
                f.write(f"{rel}\t{st.st_size}\t{st.st_mtime_ns}\n")
                n, size = n + 1, size + st.st_size
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("listed %d files (%.1f GB) under %s", n, size / 1e9, path)
    return {"files": n, "bytes": size}
