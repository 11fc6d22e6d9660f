"""Wiring the stages for one source: decode → detect → track → crop → X-ray → aggregate.

Decoding runs in its own thread and hands frames over through a bounded queue,
so the next frames decode while the networks work (PyAV releases the GIL), and
memory stays bounded however long the video. Frames are detected in batches of
`detect_batch`; crops are scored in batches of `xray_batch`, across frames.

Example (needs the detector weights and a video):
    >>> pipe = Pipeline(RetinaFaceDetector(), load_xray("random"))       # doctest: +SKIP
    >>> pipe.run("clip.mp4").verdict                                      # doctest: +SKIP
    'real'
"""

from __future__ import annotations

import queue
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .aggregate import AggregateConfig, aggregate_scores
from .contracts import Face, FaceScore, Frame, VideoResult
from .decode import DEFAULT_SAMPLE, SampleSpec, open_video
from .engines import default_batch
from .engines.xray import XrayRunner
from .errors import DecodeError
from .faces.crop import CropSpec, crop_face
from .faces.detect import RetinaFaceDetector
from .faces.track import IoUTracker

_END = object()


@dataclass(frozen=True)
class PipelineConfig:
    """Batching and sampling knobs of the pipeline (detector and verdict knobs live with their stages).

    `detect_batch` frames are handed to the detector at once (it splits them into its own
    forward batches); `xray_batch` None means the engine's best for its device.
    """

    sample: str = DEFAULT_SAMPLE
    detect_batch: int = 16
    xray_batch: int | None = None
    max_faces_per_frame: int = 4
    queue_frames: int = 32
    decode_threads: int = 0
    crop: CropSpec = field(default_factory=CropSpec)
    aggregate: AggregateConfig = field(default_factory=AggregateConfig)


@dataclass
class PipelineOutput:
    """What one run produced: the record, and the scored faces a report or annotator can draw."""

    result: VideoResult
    scores: list[FaceScore]


class _Timer(defaultdict):
    def __init__(self):
        super().__init__(float)

    def add(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self[stage] += now - since
        return now


def _put(q: "queue.Queue", item: object, stop: threading.Event) -> bool:
    """Put `item` on `q`, waiting while it is full, unless `stop` is set first. True if it was put."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _decode_into(source: str, sample: SampleSpec, threads: int, q: "queue.Queue", stop: threading.Event,
                 info: dict) -> None:
    t0 = time.perf_counter()
    try:
        with open_video(source, sample, threads=threads) as reader:
            info["video"] = reader.info
            for frame in reader:
                if not _put(q, frame, stop):
                    break
            info["stats"] = dict(reader.stats)
    except BaseException as e:  # handed to the consumer, which decides what is fatal
        info["error"] = e
    finally:
        info["decode_s"] = time.perf_counter() - t0
        _put(q, _END, stop)


class Pipeline:
    """Runs one source at a time through the detector and the X-ray engine.

    Raises `CropSpecMismatch` when the model was trained on another crop than `config.crop`.
    """

    def __init__(self, detector: RetinaFaceDetector, xray: XrayRunner, config: PipelineConfig = PipelineConfig()):
        config.crop.check(xray.metadata["crop"])
        self.detector = detector
        self.xray = xray
        self.config = config
        self.crop_spec = config.crop
        self.xray_batch = config.xray_batch or default_batch("xray", xray.engine.device)

    def frames(self, source: str | Path, info: dict):
        """Frames of `source` decoded in a background thread; fills `info` with video info, stats, errors."""
        q: queue.Queue = queue.Queue(maxsize=self.config.queue_frames)
        stop = threading.Event()
        worker = threading.Thread(target=_decode_into, daemon=True, name="facexray-decode",
                                  args=(str(source), SampleSpec.parse(self.config.sample),
                                        self.config.decode_threads, q, stop, info))
        worker.start()
        try:
            while (item := q.get()) is not _END:
                yield item
        finally:
            stop.set()
            worker.join()

    def run(self, source: str | Path) -> PipelineOutput:
        """Score one video; decoding and scoring failures become the record's `error`, never an exception."""
        cfg = self.config
        timer = _Timer()
        t_start = time.perf_counter()
        info: dict = {}
        tracker = IoUTracker()
        scores: list[FaceScore] = []
        pending: list[tuple[Face, np.ndarray]] = []
        frames_scored = frames_with_faces = 0
        batch: list[Frame] = []

        def flush_xray(keep_partial: bool) -> None:
            """Score pending crops in batches of `xray_batch`; a last partial batch waits unless asked."""
            t = time.perf_counter()
            while len(pending) >= self.xray_batch or (pending and not keep_partial):
                chunk = pending[:self.xray_batch]
                del pending[:self.xray_batch]
                probs, maps = self.xray(np.stack([c for _, c in chunk]))
                scores.extend(FaceScore(f, float(p), m) for (f, _), p, m in zip(chunk, probs, maps))
            timer.add("xray_s", t)

        def flush_detect() -> None:
            nonlocal frames_scored, frames_with_faces
            t = time.perf_counter()
            dets = self.detector.detect([f.image for f in batch])
            t = timer.add("detect_s", t)
            for frame, det in zip(batch, dets):
                order = np.argsort(-det.scores)[:cfg.max_faces_per_frame]
                ids = tracker.update(det.boxes[order])
                frames_scored += 1
                frames_with_faces += bool(len(order))
                for k, tid in zip(order, ids):
                    face = Face(frame.index, frame.pts, det.boxes[k], float(det.scores[k]), det.landmarks[k], tid)
                    pending.append((face, crop_face(frame.image, face.landmarks, self.crop_spec)[0]))
            batch.clear()
            timer.add("crop_s", t)
            flush_xray(keep_partial=True)

        error = None
        try:
            for frame in self.frames(source, info):
                batch.append(frame)
                if len(batch) >= cfg.detect_batch:
                    flush_detect()
            if batch:
                flush_detect()
            flush_xray(keep_partial=False)
            if "error" in info:
                raise info["error"]
        except DecodeError as e:
            error = e.reason
        except Exception as e:  # one bad input is one error record, never a crashed scan
            error = f"{type(e).__name__}: {e}"
        timer["decode_s"] = info.get("decode_s", 0.0)
        timer["total_s"] = time.perf_counter() - t_start
        return PipelineOutput(self._result(str(source), scores, frames_scored, frames_with_faces, info, timer, error),
                              scores)

    def _result(self, path: str, scores: list[FaceScore], frames_scored: int, frames_with_faces: int,
                info: dict, timer: _Timer, error: str | None) -> VideoResult:
        agg = aggregate_scores(scores, self.config.aggregate)
        video = info.get("video")
        stats = info.get("stats", {})
        return VideoResult(
            path=path,
            verdict="error" if error else agg.verdict,
            score=None if error else agg.score,
            frames_scored=frames_scored,
            frames_with_faces=frames_with_faces,
            faces_scored=len(scores),
            tracks=len(agg.track_scores),
            top_frames=[{"frame": s.face.frame_index, "pts": round(s.face.pts, 3), "track": s.face.track_id,
                         "score": round(s.prob, 5), "box": [round(float(v), 1) for v in s.face.box]}
                        for s in agg.top],
            timings={k: round(v, 4) for k, v in timer.items()},
            decode_errors=int(stats.get("corrupt_packets", 0)),
            error=error,
            model=self.xray.name,
            warning=("scored with RANDOM weights (--model random): a plumbing check, the scores mean nothing"
                     if self.xray.is_random else None),
            meta={"video": None if video is None else {
                      "width": video.width, "height": video.height, "fps": round(video.fps or 0.0, 3),
                      "duration": None if video.duration is None else round(video.duration, 3),
                      "codec": video.codec},
                  "track_scores": {str(k): round(v, 5) for k, v in agg.track_scores.items()},
                  "worst_track": agg.worst_track,
                  "frames_decoded": stats.get("decoded")},
        )
