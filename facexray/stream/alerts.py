"""Alert events out of the watch: a JSONL line each, the evidence as images, and an optional webhook.

An "alert" event is written when a track's rolling score has stayed above the threshold for
the configured time; a "clear" event when it falls back (see `stream/rolling.py`). Lines go to
a file (appended and fsync'ed, through `scan.results.ResultWriter`) or stdout, one whole JSON
object per line:

    {"event": "alert", "stream": "lobby", "track": 3, "start": "2025-01-01T12:00:00.120Z",
     "end": "2025-01-01T12:00:03.180Z", "duration_s": 3.06, "score": 0.71, "peak": 0.74,
     "threshold": 0.5, "frame_pts": 812.4, "box": [x1, y1, x2, y2],
     "crop": "facexray-alerts/lobby-t3-20250101T120003.180Z-crop.png",
     "heatmap": "facexray-alerts/lobby-t3-20250101T120003.180Z-xray.png", "model": "..", "warning": null}

The crop is the model's own input (THE crop function) of the track's most suspicious face in
the window; the heatmap its 64×64 X-ray map, colour-mapped and scaled to the crop's size.
With a webhook, every event is also POSTed as JSON from a background thread, retried with
exponential backoff; `close()` waits (bounded) for those still in flight.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np

from ..report.draw import heatmap
from ..scan.results import ResultWriter

log = logging.getLogger("facexray.stream")
_WEBHOOK_FIRST_WAIT_S = 0.5


def iso_time(unix_s: float) -> str:
    """UTC time with milliseconds, e.g. 2025-01-01T12:00:00.120Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(unix_s)) + f".{int(unix_s % 1 * 1000):03d}Z"


def save_evidence(folder: str | Path, stem: str, crop: np.ndarray, xray: np.ndarray | None) -> tuple[Path, Path | None]:
    """Write an RGB face crop and its X-ray map (values in [0, 1]) as `STEM-crop.png` and `STEM-xray.png`.

    The map is coloured by `report.draw.heatmap` (blue = no blending boundary, red = boundary) at the crop's size.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    crop_path = folder / f"{stem}-crop.png"
    cv2.imwrite(str(crop_path), cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2BGR))
    if xray is None:
        return crop_path, None
    resized = cv2.resize(np.asarray(xray, np.float32), (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_LINEAR)
    xray_path = folder / f"{stem}-xray.png"
    cv2.imwrite(str(xray_path), cv2.cvtColor(heatmap(np.clip(resized, 0.0, 1.0)), cv2.COLOR_RGB2BGR))
    return crop_path, xray_path


class AlertSink:
    """Writes alert events (JSONL to `events`, a path or "-" for stdout), their images, and webhook POSTs."""

    def __init__(self, events: str = "-", images: str | Path = "facexray-alerts", webhook: str | None = None,
                 retries: int = 3, timeout_s: float = 5.0):
        self.images = Path(images)
        self.webhook, self.retries, self.timeout_s = webhook, retries, timeout_s
        self.delivered = self.failed = 0
        self._writer = ResultWriter(events)
        self._lock = threading.Lock()
        self._posts: queue.Queue[dict | None] = queue.Queue()
        self._poster: threading.Thread | None = None
        if webhook:
            self._poster = threading.Thread(target=self._post_loop, name="facexray-webhook", daemon=True)
            self._poster.start()

    def emit(self, record: dict, crop: np.ndarray | None = None, xray: np.ndarray | None = None) -> dict:
        """Save the evidence images (paths go into the record), write the line, queue the webhook POST."""
        record = dict(record)
        if crop is not None:
            stamp = iso_time(record.get("end_ts", time.time())).replace("-", "").replace(":", "")
            stem = f"{record.get('stream', 'stream')}-t{record.get('track', 0)}-{stamp}"
            crop_path, xray_path = save_evidence(self.images, stem, crop, xray)
            record["crop"], record["heatmap"] = str(crop_path), None if xray_path is None else str(xray_path)
        with self._lock:
            self._writer.write(record)
        if self._poster is not None:
            self._posts.put(record)
        return record

    def _post_loop(self) -> None:
        while (record := self._posts.get()) is not None:
            if self._post(record):
                self.delivered += 1
            else:
                self.failed += 1

    def _post(self, record: dict) -> bool:
        body = json.dumps(record).encode()
        wait = _WEBHOOK_FIRST_WAIT_S
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(self.webhook, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    if resp.status < 300:
                        return True
                    error = f"HTTP {resp.status}"
            except (urllib.error.URLError, OSError) as e:
                error = str(getattr(e, "reason", e))
            if attempt < self.retries:
                log.warning("webhook %s: %s; retry %d/%d in %.1f s", self.webhook, error, attempt + 1, self.retries,
                            wait)
                time.sleep(wait)
                wait *= 2
        log.error("webhook %s: giving up on a %s event of %s after %d attempts (%s)", self.webhook,
                  record.get("event"), record.get("stream"), self.retries + 1, error)
        return False

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (waiting at most `timeout_s` for the webhook), then close the file."""
        if self._poster is not None:
            self._posts.put(None)
            self._poster.join(timeout_s)
            if self._poster.is_alive():
                log.error("webhook: %d event(s) not delivered at shutdown", self._posts.qsize())
            self._poster = None
        with self._lock:
            self._writer.close()
