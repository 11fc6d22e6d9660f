"""Prometheus metrics of a watch (prometheus-client), in a registry of their own.

Every per-stream series is created when the stream is registered, at zero, so a dashboard
sees every configured stream from the first scrape, also one that never came up.

| metric | type | labels | meaning |
|---|---|---|---|
| `facexray_stream_up` | gauge | stream | 1 while connected and reading |
| `facexray_stream_state` | gauge | stream, state | 1 for the current state (connecting, up, backoff, stopped) |
| `facexray_stream_reconnects_total` | counter | stream | connections re-established after a loss |
| `facexray_stream_errors_total` | counter | stream, reason | failures by kind (refused, timeout, stall, not_video, ...) |
| `facexray_frames_decoded_total` | counter | stream | frames decoded (= analysed + dropped + queued) |
| `facexray_frames_analyzed_total` | counter | stream | frames run through detection (and X-ray for their faces) |
| `facexray_frames_dropped_total` | counter | stream, reason | frames not analysed: rate, queue_full, corrupt |
| `facexray_faces_detected_total` | counter | stream | faces found in analysed frames |
| `facexray_fake_score` | gauge | stream | rolling score of the most suspicious track (0 with no face in the window) |
| `facexray_alerts_total` | counter | stream | alerts fired |
| `facexray_stage_seconds` | histogram | stage | time per batch of a stage (detect, crop, xray) |
| `facexray_batch_size` | histogram | stage | items per batch of a stage |
| `facexray_queue_depth` | gauge | stage | items waiting before a stage (frames: all streams' queues) |
| `facexray_frame_latency_seconds` | histogram | stream | capture (decoded here) to verdict |
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from .source import ERROR_KINDS, State

disable_created_metrics()   # no `_created` series beside every counter and histogram: no dashboard reads them

DROP_REASONS = ("rate", "queue_full", "corrupt")
LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class WatchMetrics:
    """The metrics of one watch; also the `SourceListener` its sources report to."""

    def __init__(self, registry: CollectorRegistry | None = None):
        r = self.registry = registry or CollectorRegistry()
        self.stream_up = Gauge("facexray_stream_up", "1 while the stream is connected and reading", ["stream"],
                               registry=r)
        self.stream_state = Gauge("facexray_stream_state", "1 for the stream's current state", ["stream", "state"],
                                  registry=r)
        self.reconnects = Counter("facexray_stream_reconnects", "connections re-established after a loss",
                                  ["stream"], registry=r)
        self.errors = Counter("facexray_stream_errors", "stream failures by kind", ["stream", "reason"], registry=r)
        self.frames_decoded = Counter("facexray_frames_decoded", "frames decoded", ["stream"], registry=r)
        self.frames_analyzed = Counter("facexray_frames_analyzed", "frames analysed (detection, X-ray)", ["stream"],
                                registry=r)
        self.frames_dropped = Counter("facexray_frames_dropped", "frames not analysed, by reason", ["stream", "reason"],
                               registry=r)
        self.faces = Counter("facexray_faces_detected", "faces found in analysed frames", ["stream"], registry=r)
        self.fake_score = Gauge("facexray_fake_score", "rolling fake score of the stream's most suspicious track",
                                ["stream"], registry=r)
        self.alerts = Counter("facexray_alerts", "alerts fired", ["stream"], registry=r)
        self.stage_seconds = Histogram("facexray_stage_seconds", "seconds per batch of a stage", ["stage"],
                                       buckets=STAGE_BUCKETS, registry=r)
        self.batch_size = Histogram("facexray_batch_size", "items per batch of a stage", ["stage"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.queue_depth = Gauge("facexray_queue_depth", "items waiting before a stage", ["stage"], registry=r)
        self.latency = Histogram("facexray_frame_latency_seconds", "capture to verdict, seconds", ["stream"],
                                 buckets=LATENCY_BUCKETS, registry=r)

    def register_stream(self, stream: str) -> None:
        """Create the stream's series at zero."""
        for m in (self.stream_up, self.reconnects, self.frames_decoded, self.frames_analyzed, self.faces, self.fake_score,
                  self.alerts, self.latency):
            m.labels(stream=stream)
        for reason in DROP_REASONS:
            self.frames_dropped.labels(stream=stream, reason=reason)
        for kind in ERROR_KINDS:
            self.errors.labels(stream=stream, reason=kind)
        self.state_changed(stream, State.STOPPED, None)

    # -- SourceListener -------------------------------------------------------------------

    def state_changed(self, stream: str, state: State, error: str | None) -> None:
        for s in State:
            self.stream_state.labels(stream=stream, state=s.value).set(1.0 if s is state else 0.0)
        self.stream_up.labels(stream=stream).set(1.0 if state is State.UP else 0.0)

    def decoded(self, stream: str, n: int) -> None:
        self.frames_decoded.labels(stream=stream).inc(n)

    def dropped(self, stream: str, reason: str, n: int) -> None:
        self.frames_dropped.labels(stream=stream, reason=reason).inc(n)

    def reconnected(self, stream: str) -> None:
        self.reconnects.labels(stream=stream).inc()

    def failed(self, stream: str, kind: str) -> None:
        self.errors.labels(stream=stream, reason=kind).inc()
