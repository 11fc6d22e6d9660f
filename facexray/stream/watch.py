"""`facexray watch`: the wiring of live monitoring, from sources to alerts and metrics, and a clean shutdown.

    sources (one reader thread each) ──newest frames──▶ analysers (one thread per stream)
        ──▶ ONE shared `Pipeline` (its micro-batchers put frames of all streams into one detection
            batch, then crops of all streams into one X-ray batch; faces tracked per stream)
        ──▶ rolling scores + alert rule ──▶ events (JSONL, images, webhook), metrics

Each stream's analyser takes the oldest of the few newest frames waiting, and waits for its
faces to be scored (`Pipeline.score_frames` on that one frame, with the stream's tracker: a
blocked caller cuts a partial batch at once, so a frame never waits for company it does not
need, while frames that other streams queued meanwhile share the next batch). It then
updates the rolling scores and emits alerts. While it waits, its source keeps only the newest frames
(older ones are dropped and counted), so a slow machine analyses fewer frames, never older ones.

SIGTERM and SIGINT stop the sources, let each analyser finish the frame in hand, write the
events still pending (and the clears of alerts still open: the watch stopped watching them),
and close the port. A watch of local files only ends by itself when every file has been played.

Exit codes (README, "Exit codes"): 0 every source finished cleanly, or `stop()` was called while no
stream was failing; 1 a source failed (ended with an error, or was failing when the watch stopped);
2 bad configuration; 3 the models could not be loaded; 130/143 stopped by SIGINT/SIGTERM.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from .. import __version__
from ..contracts import Face
from ..errors import FacexrayError
from ..faces.crop import crop_face
from ..faces.track import FaceTracker
from ..pipeline import Pipeline
from .alerts import AlertSink, iso_time
from .config import StreamConfig, WatchConfig
from .metrics import WatchMetrics
from .rolling import AlertEvent, RollingScores
from .server import HealthServer
from .source import State, StreamSource

log = logging.getLogger("facexray.stream")
EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_MODEL = 0, 1, 2, 3
_POLL_S = 0.2
_CLEAR_REASONS = {"below": "fell below the clear level", "track_lost": "the face left",
                  "shutdown": "the watch stopped"}


@dataclass
class _Evidence:
    """What an alert needs to show its face: the frame it was in and the face's scores."""

    image: np.ndarray
    face: Face
    prob: float
    xray: np.ndarray | None


@dataclass
class _StreamState:
    cfg: StreamConfig
    source: StreamSource
    rolling: RollingScores
    tracker: FaceTracker = field(default_factory=FaceTracker)
    thread: threading.Thread | None = None
    frames: int = 0          # analysed, since the start
    faces: int = 0
    alerts: int = 0
    reported: tuple[float, int, int] = (0.0, 0, 0)   # (time, frames, faces) at the last status line

    def status_line(self, now: float) -> str:
        """One line for the console: state (with the last error), analysed fps and faces since the last line,
        rolling score and alerts; and remembers `now` as the last line's time."""
        t0, frames0, faces0 = self.reported
        self.reported = (now, self.frames, self.faces)
        state = self.source.state.value + (f" ({self.source.error})" if self.source.error else "")
        score = "-" if self.rolling.score is None else f"{self.rolling.score:.3f}"
        return (f"stream {self.cfg.name}: {state}; {(self.frames - frames0) / max(now - t0, 1e-9):.1f} fps analysed, "
                f"{self.faces - faces0} face(s) in {now - t0:.0f} s; rolling score {score}; {self.alerts} alert(s)")

    def summary_line(self) -> str:
        """The stream's line of the shutdown summary: totals since the start."""
        last = f" (last: {self.source.error})" if self.source.error else ""
        return (f"stream {self.cfg.name}: {self.frames} frame(s) analysed, {self.faces} face(s), {self.alerts} "
                f"alert(s), {self.source.failures} error(s){last}, {self.source.reconnects} reconnect(s)")


class Watch:
    """A running watch (see module docstring). `start()`, then `wait()` or `run()`; `stop()` from anywhere."""

    def __init__(self, cfg: WatchConfig):
        if not cfg.streams:
            raise ValueError("no stream to watch: give URLs or a --config file with `streams:`")
        self.cfg = cfg
        self.metrics = WatchMetrics()
        self.server: HealthServer | None = None
        self.sink: AlertSink | None = None
        self.pipeline: Pipeline | None = None
        self.model_name: str | None = None
        self.warning: str | None = None
        self._stop = threading.Event()
        self._signal: int | None = None
        self._streams: dict[str, _StreamState] = {}

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Open the HTTP port, load the engines, start every stream.

        Raises `OSError` when the port cannot be opened, `FacexrayError` when the models cannot be loaded.
        """
        cfg = self.cfg
        for s in cfg.streams:
            self.metrics.register_stream(s.name)
        self.metrics.queue_depth.labels(stage="frames").set_function(
            lambda: sum(len(st.source.frames) for st in self._streams.values()))
        for stage in ("detect", "xray"):
            self.metrics.queue_depth.labels(stage=stage).set_function(
                lambda stage=stage: self.pipeline.queue_depth()[stage] if self.pipeline else 0)
        self.server = HealthServer(self.metrics.registry, self.readiness, cfg.host, cfg.port)
        self.server.start()
        log.info("metrics and health on %s (/metrics, /healthz, /readyz)", self.server.url)
        self.pipeline = self._load_engines()
        self.sink = AlertSink(cfg.events, cfg.images, cfg.webhook, cfg.webhook_retries, cfg.webhook_timeout_s)
        self._streams = {s.name: _StreamState(s, StreamSource(s, cfg.analysis_fps_of(s), cfg.reconnect,
                                                              cfg.queue_frames, self.metrics),
                                              RollingScores(s.name, cfg.alert_of(s).resolved(self.pipeline.threshold)))
                         for s in cfg.streams}
        for st in self._streams.values():
            st.reported = (time.monotonic(), 0, 0)
            st.source.start()
            st.thread = threading.Thread(target=self._analyse, args=(st,), name=f"facexray-analyse-{st.cfg.name}",
                                         daemon=True)
            st.thread.start()

    def _load_engines(self) -> Pipeline:
        cfg = self.cfg
        pipeline = Pipeline.load(cfg.model, cfg.engine, cfg.device, cfg.detector, cfg.pipeline, self._observe_batch,
                                 flip=cfg.flip)
        self.model_name = pipeline.xray.name
        self.warning = pipeline.xray.warning
        log.info("X-ray model %s; alert threshold %s unless a stream sets its own (%s)", self.model_name,
                 f"{pipeline.threshold:.3f}" if cfg.alert.threshold is None else cfg.alert.threshold,
                 pipeline.xray.threshold_note if cfg.alert.threshold is None else "--threshold")
        if self.warning:
            log.warning(self.warning)
        return pipeline

    def _observe_batch(self, stage: str, size: int, seconds: float) -> None:
        self.metrics.stage_seconds.labels(stage=stage).observe(seconds)
        self.metrics.batch_size.labels(stage=stage).observe(size)

    def stop(self, signum: int | None = None) -> None:
        """Ask everything to stop (safe from a signal handler or another thread); `signum`: the signal that asked."""
        self._signal = signum
        self._stop.set()

    def wait(self) -> int:
        """Block until stopped or every source has finished; shut down cleanly; return the exit code."""
        interval = self.cfg.status_interval_s
        next_status = time.monotonic() + interval
        try:
            while not self._stop.wait(_POLL_S):
                if all(st.source.finished and not st.thread.is_alive() for st in self._streams.values()):
                    break
                if interval > 0 and time.monotonic() >= next_status:
                    next_status += interval
                    for st in self._streams.values():
                        log.info("%s", st.status_line(time.monotonic()))
        finally:
            self.shutdown()
            for st in self._streams.values():
                log.info("summary: %s", st.summary_line())
        if self._signal is not None:
            return 128 + self._signal
        return EXIT_SOME_FAILED if any(st.source.error for st in self._streams.values()) else EXIT_OK

    def run(self) -> int:
        """start() and wait(), stopping on SIGTERM/SIGINT (when called from the main thread)."""
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, lambda signum, _: self.stop(signum))
        try:
            try:
                self.start()
            except OSError as e:
                log.error("cannot listen on %s:%d: %s", self.cfg.host, self.cfg.port, e.strerror or e)
                self.shutdown()
                return EXIT_USAGE
            except (FacexrayError, RuntimeError, ValueError) as e:
                log.error("cannot start: %s", e)
                self.shutdown()
                return EXIT_MODEL
            return self.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def shutdown(self) -> None:
        """Stop sources and analysers, flush events, close the batcher and the port (idempotent)."""
        self._stop.set()
        for st in self._streams.values():
            st.source.stop()
        for st in self._streams.values():
            if not st.source.join(self.cfg.reconnect.open_timeout_s + self.cfg.reconnect.stall_s):
                log.warning("stream %s: reader still blocked in a read at shutdown", st.cfg.name)
            if st.thread is not None:
                st.thread.join()
        if self.sink is not None:
            for st in self._streams.values():
                for e in st.rolling.close(time.monotonic()):
                    self._emit(e, st)
            self.sink.close()
            self.sink = None
        if self.pipeline is not None:
            self.pipeline.close()
            self.pipeline = None
        if self.server is not None:
            self.server.stop()
            self.server = None

    # -- health ----------------------------------------------------------------------------

    def readiness(self) -> tuple[bool, dict]:
        """Ready when the engines are loaded and at least one stream is up; with every stream's state."""
        streams = {name: {"state": st.source.state.value, "error": st.source.error,
                          "reconnects": st.source.reconnects} for name, st in self._streams.items()}
        engines = self.pipeline is not None
        up = any(st.source.state is State.UP for st in self._streams.values())
        return engines and up, {"engines_loaded": engines, "streams": streams}

    # -- analysis --------------------------------------------------------------------------

    def _analyse(self, st: _StreamState) -> None:
        """One stream's loop: newest frame → faces → tracks → rolling scores → alerts and metrics."""
        name, m = st.cfg.name, self.metrics
        timer: dict[str, float] = defaultdict(float)
        while not self._stop.is_set():
            item = st.source.frames.get(timeout=_POLL_S)
            if item is None:
                if st.source.finished:
                    break
                self._events(st, st.rolling.update(time.monotonic(), []))
                continue
            crop_s = timer["crop_s"]
            try:
                [result] = self.pipeline.score_frames([item.frame], tracker=st.tracker, timer=timer, inflight=1)
            except Exception:  # one bad frame is logged and skipped, never the end of the stream
                log.exception("stream %s: scoring a frame failed", name)
                continue
            m.stage_seconds.labels(stage="crop").observe(timer["crop_s"] - crop_s)
            samples = [(s.face.track_id, s.prob, _Evidence(item.frame.image, s.face, s.prob, s.xray))
                       for s in result.scores]
            self._events(st, st.rolling.update(item.captured, samples))
            m.frames_analyzed.labels(stream=name).inc()
            m.faces.labels(stream=name).inc(len(samples))
            st.frames += 1
            st.faces += len(samples)
            m.fake_score.labels(stream=name).set(st.rolling.score or 0.0)
            m.latency.labels(stream=name).observe(time.monotonic() - item.captured)

    def _events(self, st: _StreamState, events: list[AlertEvent]) -> None:
        for e in events:
            if e.kind == "alert":
                self.metrics.alerts.labels(stream=e.stream).inc()
                st.alerts += 1
            self._emit(e, st)

    def _emit(self, e: AlertEvent, st: _StreamState) -> None:
        rule = st.rolling.cfg
        wall = time.time() - time.monotonic()  # event times are monotonic; the clock may have been set since start
        record = {"event": e.kind, "stream": e.stream, "url": st.cfg.url, "track": e.track,
                  "start": iso_time(e.start + wall), "end": iso_time(e.end + wall),
                  "start_ts": round(e.start + wall, 3), "end_ts": round(e.end + wall, 3),
                  "duration_s": round(e.end - e.start, 3), "score": round(e.score, 5), "peak": round(e.peak, 5),
                  "threshold": rule.threshold, "clear_below": round(rule.clear_below, 5), "reason": e.reason}
        crop = xray = None
        ev: _Evidence | None = e.evidence
        if ev is not None and e.kind == "alert":
            record.update(frame_pts=round(ev.face.pts, 3), frame_index=ev.face.frame_index,
                          face_score=round(ev.prob, 5), box=[round(float(v), 1) for v in ev.face.box])
            crop = crop_face(ev.image, ev.face.landmarks, self.pipeline.crop_spec)[0]
            xray = ev.xray
        record.update(model=self.model_name, warning=self.warning, facexray_version=__version__)
        record = self.sink.emit(record, crop, xray)
        if e.kind == "alert":
            log.warning("ALERT stream %s track %d: rolling score %.3f >= %g for %.1f s (peak %.3f); face %s",
                        e.stream, e.track, e.score, rule.threshold, e.end - e.start, e.peak,
                        record.get("crop") or "not saved")
        else:
            log.warning("CLEAR stream %s track %d after %.1f s: rolling score %.3f (%s)", e.stream, e.track,
                        e.end - e.start, e.score, _CLEAR_REASONS.get(e.reason, e.reason))


def run_watch(cfg: WatchConfig) -> int:
    """Run a watch until SIGTERM/SIGINT (or every file source has ended); returns the exit code."""
    try:
        watch = Watch(cfg)
    except ValueError as e:
        log.error("%s", e)
        return EXIT_USAGE
    return watch.run()


__all__ = ["Watch", "run_watch"]
