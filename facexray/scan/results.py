"""Append-only JSONL results: one line per input, each written whole.

Each record is serialised first and written with a single `write` call on a
file opened in append mode, then flushed and fsync'ed, so a crash or a kill
leaves every earlier line intact and at worst no trace of the record in flight
(fsync policy: after every record; a video takes far longer than an fsync).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__}")


class ResultWriter:
    """Appends records to a JSONL file (or nowhere, when `path` is None; to stdout, unsynced, when it is "-")."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path and str(path) != "-" else None
        self._fd = 1 if str(path) == "-" else None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

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

    def __enter__(self) -> "ResultWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
