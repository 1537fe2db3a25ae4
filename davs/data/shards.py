"""WebDataset shard writing (atomic) and the compact frame encodings stored in shards.

Frames of a clip are stored either as ``frames.jpgs`` (a JPEG per frame in one small container:
``b"JSEQ"``, uint32 count, uint32 lengths, then the JPEGs) or as ``frames.npy`` (raw uint8). The
choice is ``ingest.frame_format``; ``benchmarks/shard_format.py`` measures size and decode speed.
"""

from __future__ import annotations

import io
import json
import os
import struct
from pathlib import Path

import cv2
import numpy as np
import webdataset as wds

_JSEQ = b"JSEQ"


def _jpeg_params(quality: int) -> list[int]:
    # 4:4:4 chroma: small faces lose the lips' colour under the default 4:2:0 subsampling
    return [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]


def encode_jpgs(frames: np.ndarray, quality: int = 92) -> bytes:
    """(T, H, W, 3) uint8 RGB -> one ``frames.jpgs`` payload."""
    blobs = []
    for f in frames:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR), _jpeg_params(quality))
        if not ok:
            raise ValueError("JPEG encoding failed")
        blobs.append(buf.tobytes())
    head = _JSEQ + struct.pack(f"<I{len(blobs)}I", len(blobs), *(len(b) for b in blobs))
    return head + b"".join(blobs)


def decode_jpgs(data: bytes) -> np.ndarray:
    """``frames.jpgs`` payload -> (T, H, W, 3) uint8 RGB."""
    if data[:4] != _JSEQ:
        raise ValueError("not a JSEQ payload")
    (n,) = struct.unpack_from("<I", data, 4)
    lengths = struct.unpack_from(f"<{n}I", data, 8)
    pos = 8 + 4 * n
    out = []
    for ln in lengths:
        img = cv2.imdecode(np.frombuffer(data, np.uint8, ln, pos), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError("undecodable JPEG in frames.jpgs")
        out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        pos += ln
    return np.stack(out)


def encode_jpg(img: np.ndarray, quality: int = 92) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), _jpeg_params(quality))
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def decode_jpg(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError("undecodable JPEG")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def npy_bytes(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, x, allow_pickle=False)
    return buf.getvalue()


def npy_load(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def json_bytes(x: dict) -> bytes:
    return json.dumps(x, sort_keys=True).encode()


class AtomicShardWriter:
    """Like ``webdataset.ShardWriter``, but a shard appears under its final name only when complete.

    Each shard is written to ``.<name>.tmp`` and renamed on rollover / close. Tar headers carry a fixed
    mtime, so the same samples give byte-identical shards. Samples must be fully encoded (bytes).
    """

    def __init__(self, pattern: str, maxcount: int) -> None:
        self.pattern = pattern
        self.maxcount = maxcount
        self.shard = 0
        self.count = 0
        self.total = 0
        self.written: list[str] = []
        self._tw: wds.TarWriter | None = None
        self._stream = None
        self._tmp: Path | None = None

    def _open(self) -> None:
        final = Path(self.pattern % self.shard)
        final.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = final.with_name(f".{final.name}.tmp")
        self._stream = open(self._tmp, "wb")
        self._tw = wds.TarWriter(self._stream, encoder=False, mtime=0.0, user="davs", group="davs")

    def _finish(self) -> None:
        if self._tw is None:
            return
        self._tw.close()
        self._stream.close()
        final = Path(self.pattern % self.shard)
        os.replace(self._tmp, final)
        self.written.append(str(final))
        self._tw = self._stream = self._tmp = None
        self.shard += 1
        self.count = 0

    def write(self, sample: dict[str, bytes | str]) -> None:
        if "." in sample["__key__"]:
            raise ValueError(f"sample key {sample['__key__']!r} contains a dot (WebDataset splits on dots)")
        if self._tw is None:
            self._open()
        self._tw.write(sample)
        self.count += 1
        self.total += 1
        if self.count >= self.maxcount:
            self._finish()

    def close(self) -> None:
        self._finish()

    def abort(self) -> None:
        """Drop the shard in progress (its temp file), keeping completed ones."""
        if self._tw is not None:
            try:
                self._tw.close()  # marks the tar stream closed, so it never flushes into a closed file later
            except (OSError, ValueError):
                pass  # the failure that made us abort (a full disk) may repeat here
            self._stream.close()
            self._tmp.unlink(missing_ok=True)
            self._tw = self._stream = self._tmp = None

    def __enter__(self) -> AtomicShardWriter:
        return self

    def __exit__(self, exc_type, *_) -> None:
        self.abort() if exc_type else self.close()
