"""Append-only JSONL results: one line per input, each written whole, and the resume rules.

Durability (the fsync policy): each record is serialised first and written with a single
`write` call on a file opened in append mode, then fsync'ed before the next video's record,
so a crash, a kill or a power cut loses at most the record in flight and never an earlier
line (a video takes far longer than an fsync). A line torn by a crash is what a reader
must tolerate: `train/index.read_jsonl` skips it, and `ResultWriter` repairs the tail
before appending, so a torn line never glues itself to the next record.

Resume rules: every record carries `key` (see `scan/resume.py`). When a file holds more
than one record for a key (an error retried with `--retry-errors`, or an earlier run
without `--resume`), the latest one is the video's result; `compact` rewrites the file
with only those, atomically (temporary file, fsync, rename), so a finished resumable scan
holds exactly one line per video.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from ..train.index import read_jsonl


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def _repair_tail(fd: int, path: Path) -> None:
    """Make the file end with a newline: a complete last record gets one, a torn one is cut off."""
    size = os.fstat(fd).st_size
    if size == 0:
        return
    with open(path, "rb") as f:
        f.seek(max(0, size - (1 << 20)))
        tail = f.read()
    if tail.endswith(b"\n"):
        return
    cut = tail.rfind(b"\n")
    last = tail[cut + 1:]
    try:
        json.loads(last)
    except ValueError:
        os.ftruncate(fd, size - len(last))
    else:
        os.write(fd, b"\n")


class ResultWriter:
    """Appends records to a JSONL file (or nowhere, when `path` is None; to stdout, unsynced, when it is "-")."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path and str(path) != "-" else None
        self._fd = 1 if str(path) == "-" else None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            _repair_tail(self._fd, self.path)

    def write(self, record: dict) -> None:
        if self._fd is None:
            return
        line = (json.dumps(record, default=_jsonable, ensure_ascii=False) + "\n").encode()
        view = memoryview(line)
        while view:
            view = view[os.write(self._fd, view):]
        if self.path:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None and self.path:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def latest_by_key(records: list[dict]) -> dict[str, dict]:
    """The latest record of each key, in the order keys first appear (records without a key are left out)."""
    latest: dict[str, dict] = {}
    for rec in records:
        if rec.get("key"):
            latest[rec["key"]] = rec
    return latest


def compact(path: str | Path) -> int:
    """Rewrite `path` keeping only the latest record per key (records without a key stay); atomic.

    Each video keeps the place of its first record. Returns how many lines were dropped; a file
    without duplicate keys is left untouched.
    """
    path = Path(path)
    records = read_jsonl(path)
    latest = latest_by_key(records)
    kept, seen = [], set()
    for rec in records:
        key = rec.get("key")
        if not key:
            kept.append(rec)
        elif key not in seen:
            seen.add(key)
            kept.append(latest[key])
    if len(kept) == len(records):
        return 0
    tmp = path.with_name(f".{path.name}.compact.tmp")
    with open(tmp, "wb") as f:
        f.write(b"".join((json.dumps(r, ensure_ascii=False) + "\n").encode() for r in kept))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return len(records) - len(kept)
