"""MS-Celeb-1M readers: the aligned-face TSV (7 or 5 columns) and MXNet RecordIO (MS1MV2/V3).

The TSV is streamed line by line (the real file is 89 GB): :func:`iter_tsv` yields raw rows with
their line number; :func:`decode_row` turns one into (MID, JPEG bytes, face rectangle), raising
:class:`~davs.data.lrw.BadSample` for a wrong column count, bad base64 or a non-JPEG payload.
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from davs.data.lrw import BadSample

_JPEG_MAGIC = b"\xff\xd8\xff"
_REC_MAGIC = 0xCED7230A


@dataclass(frozen=True)
class FaceRow:
    mid: str
    jpeg: bytes
    rect: tuple[float, float, float, float] | None  # left, top, right, bottom (relative); None if absent
    source: str  # "file:line" or "file#record"


def iter_tsv(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) for every non-empty line; never holds the file in memory."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for i, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if line:
                yield i, line


def tsv_columns(path: str | os.PathLike) -> int:
    """The file's layout from its first row: 7 (aligned faces) or 5 (low-shot ``TrainData_Base.tsv``)."""
    for _, line in iter_tsv(path):
        n = len(line.split("\t"))
        return 5 if n == 5 else 7
    return 7


def row_mid(line: str, ncols: int = 7) -> str | None:
    """The identity of a raw row without decoding it (cheap, for counting); None if malformed."""
    cols = line.split("\t")
    if len(cols) != ncols:
        return None
    return cols[0] if ncols == 7 else cols[2]  # TrainData_Base: ImageID, FaceData, MID, rank, URL


def decode_row(line: str, source: str, ncols: int = 7) -> FaceRow:
    cols = line.split("\t")
    if len(cols) != ncols:
        raise BadSample(f"wrong column count {len(cols)} (expected {ncols})")
    if ncols == 7:
        mid, rect_b64, face_b64 = cols[0], cols[5], cols[6]
    else:
        mid, rect_b64, face_b64 = cols[2], None, cols[1]
    if not mid:
        raise BadSample("empty MID")
    rect = None
    if rect_b64 is not None:
        try:
            raw = base64.b64decode(rect_b64, validate=True)
        except (binascii.Error, ValueError):
            raise BadSample("bad base64 in FaceRectangle") from None
        if len(raw) != 16:
            raise BadSample(f"FaceRectangle is {len(raw)} bytes (expected 16: four float32)")
        rect = struct.unpack("<4f", raw)
    try:
        jpeg = base64.b64decode(face_b64, validate=True)
    except (binascii.Error, ValueError):
        raise BadSample("bad base64 in FaceData") from None
    if not jpeg.startswith(_JPEG_MAGIC):
        raise BadSample("FaceData is not a JPEG")
    return FaceRow(mid, jpeg, rect, source)


def read_recordio(rec_path: str | os.PathLike) -> Iterator[tuple[int, FaceRow | BadSample]]:
    """Records of an MXNet RecordIO ``train.rec`` (with ``train.idx`` beside it): label -> JPEG.

    Record 0 is the meta header and is skipped. Labels become MIDs ``rec:<label>``.
    """
    rec_path = Path(rec_path)
    idx_path = rec_path.with_suffix(".idx")
    if not idx_path.exists():
        raise FileNotFoundError(f"{idx_path} not found beside {rec_path}")
    offsets = []
    for line in idx_path.read_text().splitlines():
        if line.strip():
            key, off = line.split("\t")
            offsets.append((int(key), int(off)))
    with open(rec_path, "rb") as f:
        for key, off in offsets:
            f.seek(off)
            head = f.read(8)
            if len(head) < 8:
                yield key, BadSample(f"record {key}: truncated header")
                continue
            magic, lrec = struct.unpack("<II", head)
            length = lrec & ((1 << 29) - 1)
            if magic != _REC_MAGIC:
                yield key, BadSample(f"record {key}: bad magic {magic:#x}")
                continue
            payload = f.read(length)
            if len(payload) < length or length < 24:
                yield key, BadSample(f"record {key}: truncated payload")
                continue
            flag, label, _, _ = struct.unpack("<IfQQ", payload[:24])
            body = payload[24:]
            if flag > 0:
                labels = struct.unpack(f"<{flag}f", body[: 4 * flag])
                label, body = labels[0], body[4 * flag :]
            if key == 0 or (flag > 0 and not body):  # meta header record
                continue
            if not body.startswith(_JPEG_MAGIC):
                yield key, BadSample(f"record {key}: payload is not a JPEG")
                continue
            yield key, FaceRow(f"rec:{int(label)}", body, None, f"{rec_path.name}#{key}")


def write_recordio(rec_path: str | os.PathLike, items: list[tuple[int, bytes]]) -> None:
    """Write (label, jpeg) items as MXNet RecordIO + .idx (record 0 = meta header). For tests and tools."""
    rec_path = Path(rec_path)
    offsets = []
    with open(rec_path, "wb") as f:
        records = [(0, struct.pack("<IfQQ", 0, float(len(items)), 0, 0))]
        records += [(i + 1, struct.pack("<IfQQ", 0, float(lab), i + 1, 0) + jpg) for i, (lab, jpg) in enumerate(items)]
        for key, payload in records:
            offsets.append((key, f.tell()))
            f.write(struct.pack("<II", _REC_MAGIC, len(payload)))
            f.write(payload + b"\0" * (-len(payload) % 4))
    rec_path.with_suffix(".idx").write_text("".join(f"{k}\t{o}\n" for k, o in offsets))
