"""Finding the files to scan."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..decode import IMAGE_EXTENSIONS

VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".wmv", ".mpg", ".mpeg", ".ts", ".m2ts",
    ".3gp", ".ogv", ".mts", ".gif",
})
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS
"""What a folder scan picks up: videos, and pictures (photos, animated WebP), each scored as a video of its frames."""


def discover(paths: Iterable[str | Path], extensions: frozenset[str] = MEDIA_EXTENSIONS) -> list[Path]:
    """Expand files and folders (recursively) into a sorted, de-duplicated list of videos and pictures.

    A file named explicitly is always kept, whatever its extension (the user asked
    for it; if it is not a video, its record will say so). Files inside folders are
    kept by extension, case-insensitively (also a symbolic link whose target is gone, so that it gets an error
    record instead of vanishing from the results); hidden files and folders are skipped.
    Raises FileNotFoundError for a path that does not exist.
    """
    found: dict[Path, None] = {}
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                rel = f.relative_to(p).parts
                kept = f.is_file() or (f.is_symlink() and not f.exists())   # a broken link gets an error record
                if kept and f.suffix.lower() in extensions and not any(x.startswith(".") for x in rel):
                    found.setdefault(f, None)
        elif p.exists() or p.is_symlink():
            found.setdefault(p, None)
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")
    return list(found)
