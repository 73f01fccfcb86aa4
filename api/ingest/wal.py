"""The ingest write-ahead log's file format: append-only segments of Arrow batches.

A segment is a file of records, each the rows of one accepted OTLP request for one table:

    "IWL1" | payload length (u32 LE) | CRC-32 of the payload (u32 LE) | 4 zero bytes | payload
    payload = dedup token (64 hex characters) | Arrow IPC stream of the rows

The zero bytes keep the Arrow stream 8-byte aligned in the file (16 + 64 header bytes, and
IPC streams are padded to 8), so replayed columns are read in place.

A record is written with one `writev` on a file opened with O_APPEND, so a process killed
mid-write leaves at most one torn record at the tail; `read_segment` stops there and says
so. Nothing here knows about tables, the store or threads: `api.ingest.writer` does.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

MAGIC = b"IWL1"
TOKEN_BYTES = 64
_HEADER = struct.Struct("<4sIII")
SUFFIX = ".wal"


@dataclass(frozen=True, slots=True)
class Record:
    token: str
    rows: pa.Table


def encode(token: str, rows: pa.Table) -> list[bytes | pa.Buffer]:
    """The record's pieces, to be written in order with one `os.writev`."""
    key = token.encode("ascii")
    if len(key) != TOKEN_BYTES:
        raise ValueError(f"a dedup token is {TOKEN_BYTES} hex characters")
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, rows.schema) as stream:
        stream.write_table(rows)
    body = sink.getvalue()
    crc = zlib.crc32(body, zlib.crc32(key))
    return [_HEADER.pack(MAGIC, TOKEN_BYTES + body.size, crc, 0), key, body]


def append(fd: int, pieces: list[bytes | pa.Buffer]) -> int:
    """Write one record; returns its size. On a short write (a full disk) the file is cut
    back to where it was, so the segment never holds half a record, and OSError raised."""
    size = sum(len(p) if isinstance(p, bytes) else p.size for p in pieces)
    before = os.lseek(fd, 0, os.SEEK_END)
    try:
        written = os.writev(fd, pieces)
        if written != size:
            raise OSError(28, f"short write to the write-ahead log ({written} of {size} bytes)")
    except OSError:
        os.ftruncate(fd, before)
        raise
    return size


@dataclass(frozen=True, slots=True)
class Replayed:
    records: list[Record]
    torn_bytes: int
    """Bytes after the last whole record: a write cut short by a crash, or damage."""


def read_segment(path: Path) -> Replayed:
    data = path.read_bytes()
    records: list[Record] = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        magic, length, crc, _ = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        end = start + length
        if magic != MAGIC or length < TOKEN_BYTES or end > len(data):
            break
        payload = memoryview(data)[start:end]
        if zlib.crc32(payload) != crc:
            break
        token = bytes(payload[:TOKEN_BYTES]).decode("ascii", "replace")
        rows = pa.ipc.open_stream(pa.py_buffer(payload[TOKEN_BYTES:])).read_all()
        records.append(Record(token, rows))
        offset = end
    return Replayed(records, len(data) - offset)


def segment_name(sequence: int) -> str:
    return f"{sequence:012d}{SUFFIX}"


def segments(directory: Path) -> list[Path]:
    """The directory's segments, oldest first (names are zero-padded sequence numbers)."""
    return sorted(p for p in directory.glob(f"*{SUFFIX}") if p.stem.isdigit())
