"""Pictures as sources: photos (one frame) and animated images (WebP, APNG), read with Pillow.

FFmpeg (PyAV) cannot decode animated WebP, a common way face-swap demos are shared,
and a photo is a one-frame video to the rest of the pipeline. `ImageReader` has the
`VideoReader` interface (`info`, `stats`, iterate once for `Frame`s, context manager),
so `open_video` hands image files to it and nothing downstream knows the difference.
EXIF orientation is applied, so frames are upright like decoded video. Animated
images are timed by their per-frame durations and sampled by the same rules as video
(`sampling.pick_frames`).

Example:
    >>> with ImageReader("face.jpg") as r:  # doctest: +SKIP
    ...     [f.image.shape for f in r]
    [(1024, 1024, 3)]
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from ..contracts import Frame
from ..errors import DecodeError
from .info import VideoInfo, new_stats
from .sampling import DEFAULT_SAMPLE, SampleSpec, pick_frames

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
"""Files with these extensions (any case) are read as pictures, everything else as video."""

_DEFAULT_DURATION_S = 0.1  # an animation frame that states no duration (Pillow's and browsers' habit)


def is_image_path(source: str | Path) -> bool:
    """True for a local path whose extension is a picture format (see `IMAGE_EXTENSIONS`)."""
    return "://" not in str(source) and Path(source).suffix.lower() in IMAGE_EXTENSIONS


def is_still_image(source: str | Path) -> bool:
    """True for a local picture of one frame (a photo), False for animations, videos and unreadable files."""
    if not is_image_path(source):
        return False
    try:
        with Image.open(source) as im:
            return getattr(im, "n_frames", 1) == 1
    except (UnidentifiedImageError, OSError, SyntaxError):
        return False


def missing_reason(path: Path) -> str:
    """What to say about a local path that does not exist: a broken symbolic link names its missing target."""
    if path.is_symlink():
        return f"broken symbolic link (its target {os.readlink(path)} does not exist)"
    return "file not found"


class ImageReader:
    """A picture opened as a video: one frame for a photo, the sampled frames of an animation."""

    def __init__(self, source: str | Path, sample: SampleSpec | str = DEFAULT_SAMPLE):
        self.source_id = str(source)
        self.spec = SampleSpec.coerce(sample)
        self.stats: dict[str, Any] = new_stats()
        path = Path(source)
        if not path.is_file():
            raise DecodeError(self.source_id, missing_reason(path))
        if path.stat().st_size == 0:
            raise DecodeError(self.source_id, "file is empty (0 bytes)")
        try:
            self._image = Image.open(path)
            self._image.load()
        except (UnidentifiedImageError, OSError, SyntaxError) as e:
            raise DecodeError(self.source_id, f"not a readable image ({e})") from None
        durations = [f.info.get("duration") or _DEFAULT_DURATION_S * 1000
                     for f in ImageSequence.Iterator(self._image)]
        self._pts = list(np.cumsum([0.0] + [d / 1000 for d in durations[:-1]]))
        animated = len(durations) > 1
        upright = ImageOps.exif_transpose(self._image.copy())
        self.info = VideoInfo(
            width=upright.width, height=upright.height,
            fps=len(durations) / (sum(durations) / 1000) if animated else None,
            duration=sum(durations) / 1000 if animated else None,
            frame_count=len(durations), codec=(self._image.format or "image").lower(),
            pix_fmt=self._image.mode, rotation=0)
        self._started = False

    def __enter__(self) -> ImageReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the file (safe to call twice)."""
        self._image.close()

    def __iter__(self) -> Iterator[Frame]:
        if self._started:
            raise RuntimeError("an ImageReader can be iterated only once; open the image again")
        self._started = True
        return self._frames()

    def _frames(self) -> Iterator[Frame]:
        for i in pick_frames(self._pts, self.spec):
            self._image.seek(i)
            rgb = ImageOps.exif_transpose(self._image.convert("RGB"))
            self.stats["decoded"] += 1
            self.stats["yielded"] += 1
            yield Frame(source_id=self.source_id, index=i, pts=float(self._pts[i]),
                        image=np.ascontiguousarray(np.asarray(rgb, np.uint8)))
