"""Annotated videos and images: every frame of the input, with its scored faces drawn on it.

A scan scores sampled frames only (`uniform=32` by default), but an annotated video keeps
every input frame, at the input's frame rate, so it plays like the original. What a frame
that was not scored shows:

- each track is drawn for its whole life — from its first scored face to its last, and
  `hold_s` seconds (default 0.5 s) before and after — with its scored face nearest in time,
  in a thin box, since it was scored on another frame; faces scored on that very frame get a
  thick box. (Drawing a track only within `hold_s` of a scored face made the default sampling
  blink: boxes for 11 frames, none for the next 10.)
- outside its life a track shows nothing (a face that left, or before it came).

Outside `draw.drawn_region` of the faces drawn on it, a frame is the input frame
(re-encoded: H.264 at CRF 18 by default, yuv420p, visually lossless but not bit-exact).
Frames are written at a constant rate, the input's average fps, one output frame per
decoded input frame. yuv420p needs even sizes: an odd width or height gets one
replicated column or row.

Example:
    >>> annotate("clip.mp4", output.scores, "clip.xray.mp4", CropSpec())  # doctest: +SKIP
    AnnotateStats(frames=221, fps=25.0, faces_drawn=221)
"""

from __future__ import annotations

import bisect
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from tqdm import tqdm

from ..contracts import FaceScore, Frame
from ..decode import is_still_image, open_video
from ..faces.crop import CropSpec, crop_matrix
from .draw import ALPHA, DrawnFace, draw_faces


@dataclass(frozen=True)
class AnnotateConfig:
    """How annotated videos are made; these defaults are the tool's defaults."""

    hold_s: float = 0.5
    crf: int = 18
    preset: str = "veryfast"
    alpha: float = ALPHA


@dataclass
class AnnotateStats:
    """What was written: frames, their rate, and how many faces were drawn in all."""

    frames: int
    fps: float
    faces_drawn: int


class FaceTimeline:
    """Which scored faces to draw on a frame at any time of the video (the rule in the module docstring).

    `fps` decides which faces count as scored on the frame itself (within half a frame).
    """

    def __init__(self, scores: list[FaceScore], crop_spec: CropSpec, hold_s: float = AnnotateConfig.hold_s,
                 fps: float = 25.0):
        by_track: dict[int, list[FaceScore]] = defaultdict(list)
        for s in scores:
            by_track[s.face.track_id].append(s)
        self._tracks = {t: sorted(v, key=lambda s: s.face.pts) for t, v in by_track.items()}
        self._pts = {t: [s.face.pts for s in v] for t, v in self._tracks.items()}
        self._matrices = {id(s): crop_matrix(s.face.landmarks, crop_spec) for s in scores}
        self.crop_size = crop_spec.size
        self.hold_s = hold_s
        self.half_frame = 0.5 / (fps or 25.0)

    def at(self, pts: float) -> list[DrawnFace]:
        """The faces to draw on the frame shown at `pts` seconds: at most one per track living then."""
        out = []
        for track, times in self._pts.items():
            if not times[0] - self.hold_s - 1e-9 <= pts <= times[-1] + self.hold_s + 1e-9:
                continue
            i = bisect.bisect_left(times, pts)
            near = [j for j in (i - 1, i) if 0 <= j < len(times)]
            j = min(near, key=lambda j: abs(times[j] - pts))
            gap = abs(times[j] - pts)
            s = self._tracks[track][j]
            out.append(DrawnFace(s.face.box, track, s.prob, s.xray, self._matrices[id(s)], self.crop_size,
                                 exact=gap < self.half_frame))
        return out


def is_image(path: str | Path) -> bool:
    """True when `path` is annotated as a still image (PNG out): a photo; animations and videos become MP4s."""
    return is_still_image(path)


def output_name(path: str | Path) -> str:
    """The annotated file's name for an input: `clip.mp4` → `clip.xray.mp4`, `face.jpg` → `face.xray.png`."""
    return Path(path).stem + (".xray.png" if is_image(path) else ".xray.mp4")


class Mp4Writer:
    """H.264 (libx264, yuv420p) MP4 at a constant frame rate; written to a temporary name and renamed on close.

    A writer that is not closed (an error midway) leaves no file behind under the final name.
    """

    def __init__(self, path: str | Path, width: int, height: int, fps: float,
                 crf: int = AnnotateConfig.crf, preset: str = AnnotateConfig.preset):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.part")
        self._size = (width + width % 2, height + height % 2)
        self._container = av.open(str(self._tmp), mode="w", format="mp4")
        rate = Fraction(fps).limit_denominator(10_000)
        self._stream = self._container.add_stream("libx264", rate=rate)
        self._stream.width, self._stream.height = self._size
        self._stream.pix_fmt = "yuv420p"
        self._stream.codec_context.time_base = 1 / rate
        self._stream.options = {"crf": str(crf), "preset": preset}
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        """Append one RGB uint8 frame of the size given at open."""
        w, h = self._size
        if image.shape[1] != w or image.shape[0] != h:
            image = cv2.copyMakeBorder(image, 0, h - image.shape[0], 0, w - image.shape[1], cv2.BORDER_REPLICATE)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = self.frames
        self._container.mux(self._stream.encode(frame))
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and put the file in place."""
        self._container.mux(self._stream.encode(None))
        self._container.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Drop what was written."""
        self._container.close()
        self._tmp.unlink(missing_ok=True)


def annotate(source: str | Path, scores: list[FaceScore], out: str | Path, crop_spec: CropSpec,
             cfg: AnnotateConfig = AnnotateConfig(), on_frame: Callable[[Frame], None] | None = None,
             progress: bool = False) -> AnnotateStats:
    """Draw `scores` (one source's, from `Pipeline.run`) on every frame of `source` and write `out`.

    A video becomes an MP4, an image (see `is_image`) a PNG. Each decoded frame is also
    handed to `on_frame` (the report re-cuts its face crops there, saving a second decode).
    Raises `DecodeError` when the source cannot be read.
    """
    with open_video(source, "all") as video:
        fps = video.info.fps or 25.0
        timeline = FaceTimeline(scores, crop_spec, cfg.hold_s, fps)
        drawn = 0
        if is_image(source):
            frame = next(iter(video))
            if on_frame:
                on_frame(frame)
            faces = timeline.at(frame.pts)
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            bgr = cv2.cvtColor(draw_faces(frame.image, faces, cfg.alpha), cv2.COLOR_RGB2BGR)
            if not cv2.imwrite(str(out), bgr):
                raise OSError(f"could not write {out}")
            return AnnotateStats(frames=1, fps=fps, faces_drawn=len(faces))
        writer = Mp4Writer(out, video.info.width, video.info.height, fps, cfg.crf, cfg.preset)
        try:
            for frame in tqdm(video, total=video.info.frame_count, unit="frame", leave=False, disable=not progress,
                              desc=Path(source).name[-30:], dynamic_ncols=True):
                if on_frame:
                    on_frame(frame)
                faces = timeline.at(frame.pts)
                drawn += len(faces)
                writer.write(draw_faces(frame.image, faces, cfg.alpha) if faces else frame.image)
        except BaseException:
            writer.abort()
            raise
        writer.close()
        return AnnotateStats(frames=writer.frames, fps=fps, faces_drawn=drawn)
