"""Prometheus metrics of a running scan (`facexray scan --metrics-port`).

Served as Prometheus text at http://HOST:PORT/metrics from a registry of the scan's own
(no process or platform collectors), bound to 127.0.0.1 unless told otherwise. Every value
is updated right after the video's record is written, so a scrape never counts a video the
results file does not hold yet.

    facexray_scan_videos_total{status="ok"|"error"}   videos scanned in this run, by outcome
    facexray_scan_videos_skipped                      videos left out because already recorded (--resume)
    facexray_scan_videos_pending                      videos of this run not yet recorded
    facexray_scan_frames_total                        frames scored
    facexray_scan_faces_total                         faces scored
    facexray_scan_stage_seconds_total{stage}          time spent per stage (decode, detect, crop, xray, total),
                                                      summed over videos (concurrent videos overlap)
    facexray_scan_video_seconds                       histogram of the wall time per video
    facexray_scan_batch_size{stage}                   histogram of network batch sizes (detect, xray; local mode:
                                                      on Ray the batches run inside the workers)
    facexray_scan_frames_per_second                   frames scored / wall time since the scan started
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, start_http_server

from ..contracts import VideoResult

disable_created_metrics()   # no `_created` series beside every counter and histogram: no dashboard reads them

STAGES = ("decode", "detect", "crop", "xray", "total")


class ScanMetrics:
    """The metrics of one scan, served over HTTP while it lives (`close` stops the server)."""

    def __init__(self, port: int, host: str = "127.0.0.1"):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.videos = Counter("facexray_scan_videos", "Videos scanned in this run, by outcome", ["status"], registry=r)
        self.skipped = Gauge("facexray_scan_videos_skipped", "Videos already recorded, left out (--resume)",
                             registry=r)
        self.pending = Gauge("facexray_scan_videos_pending", "Videos of this run not yet recorded", registry=r)
        self.frames = Counter("facexray_scan_frames", "Frames scored", registry=r)
        self.faces = Counter("facexray_scan_faces", "Faces scored", registry=r)
        self.stage = Counter("facexray_scan_stage_seconds", "Seconds spent per pipeline stage, summed over videos",
                             ["stage"], registry=r)
        self.video_seconds = Histogram("facexray_scan_video_seconds", "Wall time per video",
                                       buckets=(0.5, 1, 2, 5, 10, 30, 60, 300, 1800), registry=r)
        self.batch_size = Histogram("facexray_scan_batch_size", "Items per network batch", ["stage"],
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r)
        self.fps = Gauge("facexray_scan_frames_per_second", "Frames scored per second since the scan started",
                         registry=r)
        for status in ("ok", "error"):
            self.videos.labels(status)
        for stage in STAGES:
            self.stage.labels(stage)
        self._t0 = time.perf_counter()
        self._frames = 0
        self._server, self._thread = start_http_server(port, addr=host, registry=r)

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        return self._server.server_port

    def start(self, pending: int, skipped: int) -> None:
        """The scan begins: `pending` videos to do, `skipped` already recorded."""
        self.pending.set(pending)
        self.skipped.set(skipped)
        self._t0 = time.perf_counter()

    def video_done(self, result: VideoResult) -> None:
        """Count one recorded video."""
        self.videos.labels("error" if result.error else "ok").inc()
        self.pending.dec()
        self.frames.inc(result.frames_scored)
        self.faces.inc(result.faces_scored)
        self._frames += result.frames_scored
        for stage in STAGES:
            self.stage.labels(stage).inc(result.timings.get(f"{stage}_s", 0.0))
        self.video_seconds.observe(result.timings.get("total_s", 0.0))
        self.fps.set(self._frames / max(time.perf_counter() - self._t0, 1e-9))

    def batch_done(self, stage: str, size: int, seconds: float) -> None:
        """The pipeline's batch observer: one network batch of `size` items ran."""
        self.batch_size.labels(stage).observe(size)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
