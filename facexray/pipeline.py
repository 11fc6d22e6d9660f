"""Wiring the stages: decode → detect → track → crop → X-ray → aggregate.

Decoding runs in its own thread and hands frames over through a bounded queue,
so the next frames decode while the networks work (PyAV releases the GIL), and
memory stays bounded however long the video. Detection and X-ray each run in a
`MicroBatcher` owned by the pipeline, so any number of sources scored at once from
different threads (several videos in `scan`, live streams in `watch`) share their
batches: up to `detect_batch` frames and `xray_batch` crops, drawn from all sources.

Example (needs the detector weights and a video):
    >>> pipe = Pipeline(RetinaFaceDetector(), load_xray("random"))       # doctest: +SKIP
    >>> pipe.run("clip.mp4").result.verdict                               # doctest: +SKIP
    'real'
    >>> for r in pipe.score_frames(frames):    # any iterable of Frames of ONE source  # doctest: +SKIP
    ...     r.frame.pts, [s.prob for s in r.scores]
"""

from __future__ import annotations

import queue
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .aggregate import AggregateConfig, aggregate_scores
from .batcher import BatchObserver, MicroBatcher
from .contracts import Face, FaceScore, Frame, VideoResult
from .decode.sampling import DEFAULT_SAMPLE, SampleSpec
from .engines import default_batch
from .errors import DecodeError
from .faces.config import DetectorConfig
from .faces.crop import CropSpec, crop_face, crop_faces_torch
from .faces.track import FaceTracker

if TYPE_CHECKING:   # the networks are imported where they load: PipelineConfig (the CLI's --help) stays light
    from .engines.xray import XrayRunner
    from .faces.detect import Detections, RetinaFaceDetector

_END = object()


@dataclass(frozen=True)
class PipelineConfig:
    """Batching and sampling knobs of the pipeline (detector and verdict knobs live with their stages).

    `detect_batch` frames and `xray_batch` crops (None: the engine's best for its device)
    at most go to a network at once, from any number of sources. A batch that is not full
    is cut after `batch_wait_ms` (what a live frame may wait for company), or at once when
    a source is blocked on it. Each source keeps at most `inflight_frames` (None:
    `detect_batch`) frames in each of the two stages. `decoder` auto | pyav | dali
    (`decode.select_decoder`: auto takes DALI on a CUDA detector where it can).

    `detect_interval_s`: a frame less than this much video time after the last frame the
    detector saw takes that frame's faces (boxes, landmarks, tracks) instead of a detection
    of its own, as DeepStream's `interval` does; every frame is still cropped and scored.
    In time rather than frames, so that it means the same face motion at any frame rate and
    never applies to sparse sampling (`uniform=N`, a 2 fps stream): with 0.05 s, a 25 or 30 fps
    `--sample all` scan detects every other frame (README, "Benchmarks", has what it saves and changes).
    """

    sample: str = DEFAULT_SAMPLE
    detect_interval_s: float = 0.05
    detect_batch: int = 16
    xray_batch: int | None = None
    batch_wait_ms: float = 50.0
    inflight_frames: int | None = None
    max_faces_per_frame: int = 4
    queue_frames: int = 32
    decode_threads: int = 0
    decoder: str = "auto"
    crop: CropSpec = field(default_factory=CropSpec)
    aggregate: AggregateConfig = field(default_factory=AggregateConfig)


@dataclass
class FrameResult:
    """One scored frame of a source: the frame and the score of each face found in it (best first)."""

    frame: Frame
    scores: list[FaceScore]


@dataclass
class PipelineOutput:
    """What one run produced: the record, and the scored faces a report or annotator can draw."""

    result: VideoResult
    scores: list[FaceScore]


def _put(q: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put `item` on `q`, waiting while it is full, unless `stop` is set first. True if it was put."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _decode_into(source: str, sample: SampleSpec, threads: int, q: queue.Queue, stop: threading.Event,
                 info: dict, decoder: str = "pyav", device: str = "cpu") -> None:
    from .decode.select import open_decoder

    t0 = time.perf_counter()
    try:
        with open_decoder(source, sample, decoder, device, threads=threads) as reader:
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


@dataclass
class _Pending:
    """A frame of `score_frames` before cropping: its detector call (None: the detector skips it), then its faces."""

    frame: Frame
    future: Future | None
    faces: list[Face] | None = None


def _between(before: list[Face], after: list[Face], frame: Frame) -> list[Face]:
    """The faces of a frame the detector skipped: the last detected frame's, each moved linearly (box and
    landmarks, by time) towards its track's face in the next detected frame, or held where that has none."""
    later = {f.track_id: f for f in after}
    out = []
    for f in before:
        g = later.get(f.track_id)
        box, lm = f.box, f.landmarks
        if g is not None and g.pts > f.pts:
            w = (frame.pts - f.pts) / (g.pts - f.pts)
            box, lm = box + w * (g.box - box), lm + w * (g.landmarks - lm)
        out.append(Face(frame.index, frame.pts, box.astype(np.float32), f.score, lm.astype(np.float32), f.track_id))
    return out


class Pipeline:
    """Scores sources through one detector and one X-ray engine, shared by every thread that calls it.

    `run` scores one video to a verdict; `score_frames` scores any stream of frames
    of one source, frame by frame. Both may be called from many threads at once.
    `observer(stage, batch_size, seconds)` hears about every network batch.
    Raises `CropSpecMismatch` when the model was trained on another crop than `config.crop`,
    `BackendUnavailable` when `config.decoder` is dali and DALI cannot run here.
    """

    def __init__(self, detector: RetinaFaceDetector, xray: XrayRunner, config: PipelineConfig = PipelineConfig(),
                 observer: BatchObserver | None = None):
        from .decode.select import check_decoder

        config.crop.check(xray.metadata["crop"])
        check_decoder(config.decoder, detector.device)
        if config.aggregate.threshold is None:
            config = replace(config, aggregate=replace(config.aggregate, threshold=xray.threshold))
        self.detector = detector
        self.xray = xray
        self.config = config
        self.threshold: float = config.aggregate.threshold
        self.crop_spec = config.crop
        self.xray_batch = config.xray_batch or default_batch("xray", xray.engine.device)
        self.inflight_frames = config.inflight_frames or config.detect_batch
        wait = config.batch_wait_ms / 1000
        self._detect = MicroBatcher(self._detect_batch, config.detect_batch, wait, "detect", observer)
        self._xray = MicroBatcher(self._xray_batch, self.xray_batch, wait, "xray", observer)

    @classmethod
    def load(cls, model: str | None, engine: str, device: str, detector: DetectorConfig,
             config: PipelineConfig = PipelineConfig(), observer: BatchObserver | None = None,
             flip: bool | None = None) -> Pipeline:
        """Load the X-ray model (`engines.xray.load_xray`: None is the shipped one; `flip` as there) and the
        detector, and wire them.

        Raises what loading raises (`FacexrayError`, `RuntimeError`, `ValueError`) with what is missing.
        """
        from .engines.xray import load_xray
        from .faces.detect import RetinaFaceDetector

        xray = load_xray(model, engine=engine, device=device, flip=flip)
        return cls(RetinaFaceDetector(config=detector, engine=engine, device=device), xray, config, observer)

    def _detect_batch(self, images: list[np.ndarray]) -> list[tuple[Detections, float]]:
        t = time.perf_counter()
        dets = self.detector.detect(images)
        share = (time.perf_counter() - t) / len(images)
        return [(d, share) for d in dets]

    def _xray_batch(self, crops: list) -> list[tuple[float, np.ndarray, float]]:
        import torch

        t = time.perf_counter()
        probs, maps = self.xray(torch.stack(crops) if isinstance(crops[0], torch.Tensor) else np.stack(crops))
        share = (time.perf_counter() - t) / len(crops)
        return [(float(p), m, share) for p, m in zip(probs, maps)]

    def queue_depth(self) -> dict[str, int]:
        """Items waiting for a batch, per stage ("detect" frames, "xray" crops)."""
        return {"detect": self._detect.depth, "xray": self._xray.depth}

    def close(self) -> None:
        """Finish what is queued and stop the batchers' threads."""
        self._detect.close()
        self._xray.close()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def frames(self, source: str | Path, info: dict):
        """Frames of `source` decoded in a background thread; fills `info` with video info, stats, errors."""
        q: queue.Queue = queue.Queue(maxsize=self.config.queue_frames)
        stop = threading.Event()
        worker = threading.Thread(target=_decode_into, daemon=True, name="facexray-decode",
                                  args=(str(source), SampleSpec.parse(self.config.sample),
                                        self.config.decode_threads, q, stop, info, self.config.decoder,
                                        str(self.detector.device)))
        worker.start()
        try:
            while (item := q.get()) is not _END:
                yield item
        finally:
            stop.set()
            worker.join()

    def score_frames(self, frames: Iterable[Frame], tracker: FaceTracker | None = None,
                     timer: dict[str, float] | None = None, inflight: int | None = None) -> Iterator[FrameResult]:
        """Score the frames of ONE source, yielding a `FrameResult` per frame in order.

        Up to `inflight` frames (default `config.inflight_frames`; 1 for the lowest latency)
        wait in each stage, so batches fill from this source and from any others scored at
        the same time. Faces are linked into tracks by `tracker` (a fresh one by default);
        `timer` accumulates this source's share of "detect_s", "crop_s" and "xray_s".
        Raises what a stage raised, for the frames of its batch.
        """
        import torch

        tracker = tracker or FaceTracker()
        timer = timer if timer is not None else defaultdict(float)
        window = max(1, inflight or self.inflight_frames)
        detecting: deque[_Pending] = deque()
        scoring: deque[tuple[Frame, list[Face], list[Future]]] = deque()
        last: list[Face] = []

        def detected(p: _Pending) -> list[Face]:
            if p.faces is None:
                det, share = self._detect.result(p.future)
                timer["detect_s"] += share
                order = np.argsort(-det.scores)[:self.config.max_faces_per_frame]
                p.faces = [Face(p.frame.index, p.frame.pts, det.boxes[k], float(det.scores[k]), det.landmarks[k], tid)
                           for k, tid in zip(order, tracker.update(det.boxes[order], det.landmarks[order]))]
            return p.faces

        def ready(p: _Pending, block: bool) -> bool:
            return block or p.faces is not None or p.future.done()

        def to_xray(block: bool) -> None:
            nonlocal last
            while detecting:
                head = detecting[0]
                if head.future is not None:
                    if not ready(head, block):
                        return
                    faces = last = detected(head)
                else:   # carried: between the last detected frame and the next one, where that one is known
                    following = next((p for p in detecting if p.future is not None), None)
                    if (following is None and not block) or (following is not None and not ready(following, block)):
                        return
                    faces = _between(last, detected(following) if following else [], head.frame)
                detecting.popleft()
                t = time.perf_counter()
                frame = head.frame
                if isinstance(frame.image, torch.Tensor):   # GPU path: the pixels stay on the device
                    crops = list(crop_faces_torch(frame.image[None], [f.landmarks for f in faces], [0] * len(faces),
                                                  self.crop_spec)[0])
                else:
                    crops = [crop_face(frame.image, f.landmarks, self.crop_spec)[0] for f in faces]
                timer["crop_s"] += time.perf_counter() - t
                scoring.append((frame, faces, self._xray.submit_many(crops)))
                block = False

        def finished(block: bool) -> Iterator[FrameResult]:
            while scoring and (block or all(f.done() for f in scoring[0][2])):
                frame, faces, futs = scoring.popleft()
                out = []
                for face, fut in zip(faces, futs):
                    prob, xray, share = self._xray.result(fut)
                    timer["xray_s"] += share
                    out.append(FaceScore(face, prob, xray))
                yield FrameResult(frame, out)
                block = False

        detected_pts = None
        for frame in frames:
            if detected_pts is not None and 0 <= frame.pts - detected_pts < self.config.detect_interval_s:
                detecting.append(_Pending(frame, None))
            else:
                detecting.append(_Pending(frame, self._detect.submit(frame.image)))
                detected_pts = frame.pts
            to_xray(block=len(detecting) >= window)
            yield from finished(block=len(scoring) >= window)
        while detecting:
            to_xray(block=True)
        while scoring:
            yield from finished(block=True)

    def run(self, source: str | Path) -> PipelineOutput:
        """Score one video; decoding and scoring failures become the record's `error`, never an exception."""
        timer: dict[str, float] = defaultdict(float)
        t_start = time.perf_counter()
        info: dict = {}
        scores: list[FaceScore] = []
        frames_scored = frames_with_faces = 0
        error = None
        try:
            for r in self.score_frames(self.frames(source, info), timer=timer):
                frames_scored += 1
                frames_with_faces += bool(r.scores)
                scores.extend(r.scores)
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
                info: dict, timer: dict[str, float], error: str | None) -> VideoResult:
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
            warning=self.xray.warning,
            meta={"video": None if video is None else {
                      "width": video.width, "height": video.height, "fps": round(video.fps or 0.0, 3),
                      "duration": None if video.duration is None else round(video.duration, 3),
                      "codec": video.codec},
                  "track_scores": {str(k): round(v, 5) for k, v in agg.track_scores.items()},
                  "worst_track": agg.worst_track,
                  "frames_decoded": stats.get("decoded"),
                  "decoder": stats.get("decoder")},
        )
