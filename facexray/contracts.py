"""The small dataclasses that stages pass to each other (see DESIGN.md, "Contracts").

Every stage talks through these and nothing else: decode yields `Frame`s, faces/
yields `Face`s, engines give `FaceScore`s, aggregate gives a `VideoResult`.

Example:
    >>> import numpy as np
    >>> f = Frame(source_id="a.mp4", index=0, pts=0.0, image=np.zeros((4, 6, 3), np.uint8))
    >>> f.height, f.width
    (4, 6)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Frame:
    """One decoded picture. `image` is RGB uint8 HWC (numpy on CPU, a CUDA tensor on the GPU path)."""

    source_id: str
    index: int
    pts: float
    image: Any

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass
class Face:
    """One detected face in one frame: box (x1, y1, x2, y2) in pixels, 5 landmarks (eyes, nose, mouth corners)."""

    frame_index: int
    pts: float
    box: np.ndarray
    score: float
    landmarks: np.ndarray
    track_id: int = -1

    @property
    def size(self) -> float:
        """The shorter side of the box, in pixels."""
        return float(min(self.box[2] - self.box[0], self.box[3] - self.box[1]))


@dataclass
class FaceScore:
    """The X-ray engine's output for one face: fake probability and the 64×64 boundary map in [0, 1]."""

    face: Face
    prob: float
    xray: np.ndarray | None = None


@dataclass
class VideoResult:
    """The verdict for one input, and everything a report needs to explain it."""

    path: str
    verdict: str
    score: float | None
    frames_scored: int = 0
    frames_with_faces: int = 0
    faces_scored: int = 0
    tracks: int = 0
    top_frames: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    decode_errors: int = 0
    error: str | None = None
    model: str | None = None
    warning: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
