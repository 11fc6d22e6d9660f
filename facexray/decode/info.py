"""What a reader knows about a video before handing out frames (backend-neutral)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class VideoInfo:
    """Properties of the video stream being read, as the frames will come out.

    - `width`, `height`: of the frames handed out, i.e. after rotation to upright.
    - `fps`: average frame rate (FFmpeg's avg_frame_rate), None if the container has none.
      For variable-frame-rate video use each frame's pts, never index / fps.
    - `duration`: seconds, None when unknown (raw streams, live sources).
    - `frame_count`: an estimate, round(duration * fps) when both are known, else the
      container's own count, else None. Containers' counts can be wrong (an MP4 edit list
      can hide most of a track), so nothing should rely on this for correctness.
    - `codec`, `pix_fmt`: the decoder and the decoded pixel format (before conversion to RGB).
    - `rotation`: clockwise degrees (0, 90, 180, 270) the stored pictures are turned to be
      shown upright, the convention of the old `rotate` tag: a portrait phone clip reports 90.
      Frames are already rotated; this is for information.
    """

    width: int
    height: int
    fps: float | None
    duration: float | None
    frame_count: int | None
    codec: str
    pix_fmt: str
    rotation: int


def new_stats() -> dict[str, Any]:
    """A reader's counters, zeroed; every backend keeps the same keys (see `VideoReader.stats`)."""
    return {"decoded": 0, "yielded": 0, "corrupt_packets": 0, "corrupt_frames": 0, "read_errors": 0, "seeks": 0,
            "last_error": None}
