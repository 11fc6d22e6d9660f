"""Which videos a resumed scan still has to do, and the key that says a video was done.

A video's key is written into its record (`key`) so a later `--resume` can read it back:

- `stat:SIZE:MTIME_NS:ABSOLUTE_PATH` by default: cheap; a file that is modified or moved is a new video.
- `blake2b:HEX` with `--hash`: the file's content (streamed, 1 MiB at a time), so a renamed, moved or
  copied file is recognised; it costs one extra read of every file when the scan starts.

Example:
    >>> plan([Path("a.mp4")], ["stat:1:2:/v/a.mp4"], {"stat:1:2:/v/a.mp4": {"error": None}}).todo
    []
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

HASH_CHUNK = 1 << 20


def file_key(path: str | Path, content_hash: bool = False) -> str:
    """The resume key of one file (see the module docstring); `path:ABSOLUTE_PATH` when it cannot be read
    (its record will carry the error)."""
    try:
        if content_hash:
            h = hashlib.blake2b(digest_size=20)
            with open(path, "rb") as f:
                while chunk := f.read(HASH_CHUNK):
                    h.update(chunk)
            return f"blake2b:{h.hexdigest()}"
        st = os.stat(path)
        return f"stat:{st.st_size}:{st.st_mtime_ns}:{os.path.abspath(path)}"
    except OSError:
        return f"path:{os.path.abspath(path)}"


@dataclass
class ResumePlan:
    """The videos to scan now (with their keys), and what was left out and why."""

    todo: list[Path] = field(default_factory=list)
    keys: dict[Path, str] = field(default_factory=dict)
    done: int = 0          # already recorded (results or, without --retry-errors, errors)
    errors_kept: int = 0   # of those, recorded with an error
    retried: int = 0       # recorded with an error and scanned again (--retry-errors)
    duplicates: int = 0    # same key as another file of this scan (same content, with --hash)


def plan(files: list[Path], keys: list[str], latest: dict[str, dict], retry_errors: bool = False) -> ResumePlan:
    """Keep the files whose key has no record in `latest` (the latest record per key of the results file).

    An errored record counts as done unless `retry_errors`. Files sharing a key are scanned once.
    """
    p = ResumePlan()
    taken: set[str] = set()
    for path, key in zip(files, keys):
        rec = latest.get(key)
        if key in taken:
            p.duplicates += 1
        elif rec is not None and not (retry_errors and rec.get("error")):
            p.done += 1
            p.errors_kept += bool(rec.get("error"))
        else:
            p.retried += rec is not None
            p.todo.append(path)
            p.keys[path] = key
            taken.add(key)
    return p
