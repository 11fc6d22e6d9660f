"""Finding the files to scan."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".wmv", ".mpg", ".mpeg", ".ts", ".m2ts",
    ".3gp", ".ogv", ".mts", ".gif",
})


def discover(paths: Iterable[str | Path], extensions: frozenset[str] = VIDEO_EXTENSIONS) -> list[Path]:
    """Expand files and folders (recursively) into a sorted, de-duplicated list of video files.

    A file named explicitly is always kept, whatever its extension (the user asked
    for it; if it is not a video, its record will say so). Files inside folders are
    kept by extension, case-insensitively; hidden files and folders are skipped.
    Raises FileNotFoundError for a path that does not exist.
    """
    found: dict[Path, None] = {}
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                rel = f.relative_to(p).parts
                if f.is_file() and f.suffix.lower() in extensions and not any(x.startswith(".") for x in rel):
                    found.setdefault(f, None)
        elif p.exists():
            found.setdefault(p, None)
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")
    return list(found)
