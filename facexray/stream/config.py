"""`facexray watch` settings: the one place their defaults live (the CLI reads them from here).

A watch is a list of streams plus how to read them (reconnect, watchdog, drop policy), how to
judge them (rolling window, alert rule) and where to report (events, images, webhook, HTTP port).
The same settings come from command-line flags or a YAML file; per-stream entries may override
the analysis rate and the alert rule:

```yaml
http: 127.0.0.1:9108
analysis_fps: 2
alert: {threshold: 0.6, min_duration_s: 3, hysteresis: 0.1, window_s: 10}
events: alerts.jsonl
webhook: http://127.0.0.1:8080/hook
streams:
  - {name: lobby, url: "rtsp://10.0.0.5:554/stream1"}
  - {name: gate, url: "rtsp://10.0.0.6:554/stream1", analysis_fps: 5, alert: {threshold: 0.8}}
```

Example:
    >>> cfg = WatchConfig.from_dict({"streams": ["rtsp://cam/a", {"name": "b", "url": "rtsp://cam/b"}]})
    >>> [(s.name, s.url) for s in cfg.streams]
    [('a', 'rtsp://cam/a'), ('b', 'rtsp://cam/b')]
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..aggregate import AggregateConfig
from ..decode.pyav import NETWORK_TIMEOUT_S
from ..faces.config import DetectorConfig
from ..pipeline import PipelineConfig

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 9108


@dataclass(frozen=True)
class ReconnectConfig:
    """How a source is (re)connected and when it is declared stalled.

    After a failure the wait is `initial_s`, multiplied by `factor` after each further failure
    up to `max_s`, each wait shifted by a random ±`jitter` fraction (so many cameras that
    dropped together do not reconnect in lockstep). A connection that stayed up for
    `reset_after_s` starts the next series at `initial_s` again. `stall_s` is the watchdog:
    a read that brings no frame for that long ends the connection and reconnects.
    """

    initial_s: float = 1.0
    max_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2
    reset_after_s: float = 30.0
    open_timeout_s: float = NETWORK_TIMEOUT_S
    stall_s: float = NETWORK_TIMEOUT_S

    def __post_init__(self) -> None:
        for name in ("initial_s", "reset_after_s", "open_timeout_s", "stall_s"):
            _number("reconnect", name, getattr(self, name), 0, open_low=True)
        _number("reconnect", "max_s", self.max_s, self.initial_s)
        _number("reconnect", "factor", self.factor, 1)
        _number("reconnect", "jitter", self.jitter, 0, 1, open_high=True)


@dataclass(frozen=True)
class AlertConfig:
    """The alert rule for one stream's tracks (see `stream/rolling.py`).

    A track's rolling score is the mean of its face scores over the last `window_s` seconds.
    An alert fires when it stays at or above `threshold` for `min_duration_s`, and clears when
    it falls below `threshold - hysteresis` (or the track is gone for `window_s`). `threshold`
    None: the model's calibrated video threshold (`XrayRunner.threshold`), set when the watch loads it.
    """

    threshold: float | None = AggregateConfig().threshold
    min_duration_s: float = 3.0
    hysteresis: float = 0.1
    window_s: float = 10.0

    def __post_init__(self) -> None:
        if self.threshold is not None:
            _number("alert", "threshold", self.threshold, 0, 1)
        _number("alert", "min_duration_s", self.min_duration_s, 0)
        _number("alert", "hysteresis", self.hysteresis, 0, 1, open_high=True)
        _number("alert", "window_s", self.window_s, 0, open_low=True)

    @property
    def clear_below(self) -> float:
        if self.threshold is None:
            raise ValueError("the alert threshold is not resolved yet (None: the model's own)")
        return self.threshold - self.hysteresis

    def resolved(self, model_threshold: float) -> AlertConfig:
        """This rule with a threshold left to the model (None) set to `model_threshold`."""
        return self if self.threshold is not None else replace(self, threshold=model_threshold)


@dataclass(frozen=True)
class StreamConfig:
    """One stream to watch. `analysis_fps` / `alert` None: the watch's own settings."""

    name: str
    url: str
    analysis_fps: float | None = None
    alert: AlertConfig | None = None

    def __post_init__(self) -> None:
        if self.analysis_fps is not None:
            _number(f"stream {self.name}", "analysis_fps", self.analysis_fps, 0)


@dataclass(frozen=True)
class WatchConfig:
    """Everything `facexray watch` needs; every default here is the tool's default.

    `analysis_fps` 0 analyses as many frames as the engines keep up with (always the newest).
    `queue_frames` is each stream's frame queue: when full the oldest frame is dropped, so a
    slow consumer never makes a stream lag behind live. `events` "-" writes alert events to
    stdout. `pipeline.detect_batch` / `pipeline.batch_wait_ms` bound the cross-stream detection
    batches (YAML `pipeline: {detect_batch: 8, batch_wait_ms: 20}`). Every `status_interval_s` seconds (0: never)
    the console gets a status line per stream (state, analysed fps, faces, rolling score, alerts).
    """

    streams: tuple[StreamConfig, ...] = ()
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    analysis_fps: float = 2.0
    queue_frames: int = 1
    reconnect: ReconnectConfig = field(default_factory=ReconnectConfig)
    alert: AlertConfig = field(default_factory=AlertConfig)
    events: str = "-"
    images: str = "facexray-alerts"
    webhook: str | None = None
    webhook_retries: int = 3
    webhook_timeout_s: float = 5.0
    model: str | None = None
    flip: bool | None = None          # score faces with their mirror images: None = as the model is calibrated
    engine: str = "auto"
    device: str = "cpu"
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    status_interval_s: float = 30.0

    def __post_init__(self) -> None:
        _number("watch", "port", self.port, 0, 65535, integer=True)
        _number("watch", "analysis_fps", self.analysis_fps, 0)
        _number("watch", "queue_frames", self.queue_frames, 1, integer=True)
        _number("watch", "webhook_retries", self.webhook_retries, 0, integer=True)
        _number("watch", "webhook_timeout_s", self.webhook_timeout_s, 0, open_low=True)
        _number("watch", "status_interval_s", self.status_interval_s, 0)

    def analysis_fps_of(self, stream: StreamConfig) -> float:
        return self.analysis_fps if stream.analysis_fps is None else stream.analysis_fps

    def alert_of(self, stream: StreamConfig) -> AlertConfig:
        return stream.alert or self.alert

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WatchConfig:
        """Build from plain data (YAML): `http: HOST:PORT`, nested `reconnect`, `alert`, `detector`, `pipeline`.

        `streams` entries are URLs or mappings with `url` and optionally `name`, `analysis_fps`,
        `alert` (a partial mapping over the watch's alert rule). Unknown keys raise `ValueError`.
        """
        d = dict(d)
        if "http" in d:
            host, port = parse_hostport(str(d.pop("http")))
            d.setdefault("host", host)
            d.setdefault("port", port)
        _check_keys(cls, d, "watch")
        for key, sub in (("reconnect", ReconnectConfig), ("detector", DetectorConfig), ("pipeline", PipelineConfig)):
            if isinstance(d.get(key), dict):
                _check_keys(sub, d[key], key)
                d[key] = sub(**d[key])
        if isinstance(d.get("alert"), dict):
            d["alert"] = _alert(AlertConfig(), d["alert"])
        base_alert = d.get("alert", AlertConfig())
        d["streams"] = tuple(_stream(s, base_alert) for s in d.get("streams") or ())
        names = [s.name for s in d["streams"]]
        if len(set(names)) != len(names):
            raise ValueError(f"stream names must be unique: {', '.join(names)}")
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: Any) -> WatchConfig:
        """Settings from a YAML file (or none), with `overrides` (the command-line flags) winning.

        Overrides that are None are ignored; mapping overrides (`alert`, `reconnect`, `detector`, `pipeline`)
        are merged key by key into the file's; `streams` given here are added to the file's.
        """
        d: dict[str, Any] = {}
        if path is not None:
            import yaml

            d = yaml.safe_load(Path(path).read_text()) or {}
            if not isinstance(d, dict):
                raise ValueError(f"{path}: expected a mapping of watch settings")
        for key, value in overrides.items():
            if isinstance(value, dict):
                value = {k: v for k, v in value.items() if v is not None}
                d[key] = {**(d.get(key) or {}), **value}
            elif key == "streams":
                d["streams"] = list(d.get("streams") or []) + list(value or [])
            elif value is not None:
                d[key] = value
        return cls.from_dict(d)


def parse_hostport(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `:PORT` or `PORT` → (host, port); the host defaults to 127.0.0.1."""
    host, _, port = text.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host or DEFAULT_HOST, int(port)


def stream_name(url: str) -> str:
    """A short label for a URL given without a name: its last path part, or host and port."""
    tail = re.sub(r"^[A-Za-z][A-Za-z0-9+.-]*://", "", url).rstrip("/")
    name = tail.rsplit("/", 1)[-1] if "/" in tail else tail
    name = re.sub(r"\.[A-Za-z0-9]{2,4}$", "", name)
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", name) or "stream"


def streams_from_urls(urls: list[str]) -> tuple[StreamConfig, ...]:
    """Streams for URLs given on the command line; names made unique by a suffix where two would clash."""
    return tuple(_stream(u, AlertConfig()) for u in _unique_names([(None, u) for u in urls]))


def _unique_names(entries: list[tuple[str | None, str]]) -> list[dict]:
    seen: dict[str, int] = {}
    out = []
    for name, url in entries:
        base = name or stream_name(url)
        seen[base] = seen.get(base, 0) + 1
        out.append({"name": base if seen[base] == 1 else f"{base}-{seen[base]}", "url": url})
    return out


def _stream(entry: str | dict | StreamConfig, base_alert: AlertConfig) -> StreamConfig:
    if isinstance(entry, StreamConfig):
        return entry
    if isinstance(entry, str):
        entry = {"url": entry}
    entry = dict(entry)
    if "url" not in entry:
        raise ValueError(f"a stream needs a url: {entry}")
    entry.setdefault("name", stream_name(entry["url"]))
    _check_keys(StreamConfig, entry, f"stream {entry['name']}")
    if isinstance(entry.get("alert"), dict):
        entry["alert"] = _alert(base_alert, entry["alert"])
    return StreamConfig(**entry)


def _alert(base: AlertConfig, d: dict) -> AlertConfig:
    _check_keys(AlertConfig, d, "alert")
    return replace(base, **d)


def _number(what: str, name: str, value: Any, low: float, high: float = math.inf, *, open_low: bool = False,
            open_high: bool = False, integer: bool = False) -> None:
    """Raise `ValueError` naming the setting unless `value` is a number (an integer if `integer`)
    within [`low`, `high`] (ends excluded where `open_low` / `open_high`)."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or math.isnan(value):
        raise ValueError(f"{what} {name} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if value < low or (open_low and value == low) or value > high or (open_high and value == high):
        lo = f"{'>' if open_low else '≥'} {low:g}"
        hi = "" if high == math.inf else f" and {'<' if open_high else '≤'} {high:g}"
        raise ValueError(f"{what} {name} must be {lo}{hi}, got {value!r}")


def _check_keys(cls: type, d: dict, what: str) -> None:
    unknown = set(d) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what} option(s): {', '.join(sorted(unknown))}")


__all__ = ["AlertConfig", "ReconnectConfig", "StreamConfig", "WatchConfig", "parse_hostport", "stream_name",
           "streams_from_urls"]
