"""Where facexray looks for models and keeps its caches (the one place that knows)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def models_dir() -> Path | None:
    """The folder named by `FACEXRAY_MODELS`, or None when unset."""
    v = os.environ.get("FACEXRAY_MODELS")
    return Path(v) if v else None


def cache_dir() -> Path:
    """`FACEXRAY_CACHE`, else `$XDG_CACHE_HOME/facexray`, else `~/.cache/facexray`."""
    v = os.environ.get("FACEXRAY_CACHE")
    if v:
        return Path(v)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "facexray"


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks (weights checks and engine cache keys)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
