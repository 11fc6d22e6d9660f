"""Live sources: one reader thread per URL that connects, reads, and reconnects by itself, forever.

Each `StreamSource` owns one thread (`facexray-source-NAME`) and walks through the states
connecting → up → backoff → connecting …, or ends in stopped:

- Opening and reading go through `decode.open_video` (RTSP over TCP, socket timeouts) with a
  read timeout equal to the stall watchdog (`ReconnectConfig.stall_s`): a read that blocks
  that long — a camera that froze without closing the connection — ends the connection
  ("stall") and the source reconnects.
- Failures wait an exponentially growing, jittered delay (`Backoff`); a connection that
  stayed up `reset_after_s` starts the series again from the initial delay.
- A network stream that ends is retried like a failure ("ended"). A local file is played at
  its native rate, as a camera would deliver it, and when it ends the source is finished
  (stopped, no error); so is a source whose URL cannot work at all (unknown protocol, missing
  file, a host name that does not exist: see `_resolve`), which stops with its error instead of
  retrying in vain.

Frames go into a `LatestQueue` of a few frames: when the consumer is slower than the stream,
the oldest waiting frame is dropped, so what is analysed is always close to live. An optional
analysis rate F is the reader's own `fps=F` sampling (the first frame of each 1/F slot of
stream time): frames in between are decoded (as the next frames need them) but never
converted to RGB, and non-reference frames among them are not even decoded. Every decoded
frame is either handed out or counted as dropped with its reason: `rate`, `queue_full`
(displaced by a newer frame), `corrupt` (error-concealed by the decoder).

Example (needs a reachable stream):
    >>> src = StreamSource(StreamConfig("cam", "rtsp://127.0.0.1:8554/test"), 2.0)  # doctest: +SKIP
    >>> src.start(); item = src.frames.get(timeout=5.0); src.stop()                 # doctest: +SKIP
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Generic, Protocol, TypeVar

from ..contracts import Frame
from ..decode.pyav import VideoReader, _url_scheme, open_video
from ..errors import DecodeError
from .config import ReconnectConfig, StreamConfig, WatchConfig

log = logging.getLogger("facexray.stream")
T = TypeVar("T")


class State(str, Enum):
    CONNECTING = "connecting"
    UP = "up"
    BACKOFF = "backoff"
    STOPPED = "stopped"


# (what FFmpeg or open_video says, the error kind reported in logs and metrics); first match wins.
_ERROR_KINDS = (
    ("protocol not found", "invalid_url"),
    ("file not found", "not_found"),
    ("is a directory", "not_found"),
    ("connection refused", "refused"),
    ("not a video file", "not_video"),
    ("no video stream", "not_video"),
    ("unsupported video codec", "not_video"),
    ("server returned", "http_error"),
    ("immediate exit requested", "timeout"),
    ("timed out", "timeout"),
    ("no frame could be decoded", "no_frames"),
    ("cannot resolve host", "unresolved"),
)
ERROR_KINDS = tuple(sorted({k for _, k in _ERROR_KINDS} | {"stall", "ended", "read_error", "error"}))
"""Every error kind a source reports (the `reason` label of `facexray_stream_errors_total`)."""
_PERMANENT = {"invalid_url", "not_found"}
_NO_SUCH_HOST = (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME))
_NO_SUCH_HOST_TEXT = "no such host"


def _resolve(url: str) -> None:
    """Look up the host name of a network URL, so that a name that does not resolve gets its own error kind
    ("unresolved"; FFmpeg says only "Input/output error", as for many other failures).

    A name that does not exist ("no such host": EAI_NONAME) on a stream never up is a configuration error
    (a typo): the source stops with it, like an invalid URL, instead of retrying forever. A resolver that
    does not answer (EAI_AGAIN), or a name lost after the stream was up, is retried with backoff.
    Raises `DecodeError` with "cannot resolve host ...".
    """
    host = urllib.parse.urlsplit(url).hostname
    if _url_scheme(url) in (None, "file") or not host:
        return
    try:
        socket.getaddrinfo(host, None)
    except socket.gaierror as e:
        what = _NO_SUCH_HOST_TEXT if e.errno in _NO_SUCH_HOST else "the resolver did not answer"
        raise DecodeError(url, f"cannot resolve host {host} ({what}: {e.strerror})") from None


def classify_error(message: str) -> str:
    """The error kind of an FFmpeg/open_video message, e.g. 'cannot open (Connection refused)' → 'refused'."""
    low = message.lower()
    return next((kind for text, kind in _ERROR_KINDS if text in low), "error")


class Backoff:
    """Exponential backoff with jitter: initial_s, ×factor per failure, each ±jitter, never above max_s.

    The jitter stays inside the cap: once the series reaches it, waits spread over
    [max_s·(1−jitter)/(1+jitter), max_s], so cameras that dropped together still do not reconnect in lockstep.

    >>> b = Backoff(ReconnectConfig(initial_s=1, max_s=5, factor=2, jitter=0), random.Random(0))
    >>> [b.next_delay() for _ in range(5)]
    [1.0, 2.0, 4.0, 5.0, 5.0]
    """

    def __init__(self, cfg: ReconnectConfig, rng: random.Random | None = None):
        self.cfg = cfg
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        cfg = self.cfg
        base = min(cfg.max_s / (1.0 + cfg.jitter), cfg.initial_s * cfg.factor ** min(self.failures, 64))
        self.failures += 1
        return min(cfg.max_s, base * (1.0 + self._rng.uniform(-cfg.jitter, cfg.jitter)))

    def reset(self) -> None:
        self.failures = 0


class LatestQueue(Generic[T]):
    """A bounded queue whose `put` never blocks: when full, the oldest item is dropped (and returned)."""

    def __init__(self, maxsize: int):
        if maxsize < 1:
            raise ValueError("queue size must be at least 1")
        self._items: deque[T] = deque()
        self._maxsize = maxsize
        self._cond = threading.Condition()
        self._closed = False

    def put(self, item: T) -> T | None:
        with self._cond:
            dropped = self._items.popleft() if len(self._items) >= self._maxsize else None
            self._items.append(item)
            self._cond.notify()
            return dropped

    def get(self, timeout: float | None = None) -> T | None:
        """The oldest waiting item, waiting up to `timeout`; None on timeout or once closed and empty."""
        with self._cond:
            self._cond.wait_for(lambda: self._items or self._closed, timeout)
            return self._items.popleft() if self._items else None

    def close(self) -> None:
        """Wake waiting consumers; items still queued can be taken."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class LiveFrame:
    """A frame of a live source and when it was captured (decoded here; `time.monotonic()`)."""

    stream: str
    frame: Frame
    captured: float


class SourceListener(Protocol):
    """What a source reports as it goes (the metrics implement it)."""

    def state_changed(self, stream: str, state: State, error: str | None) -> None: ...
    def decoded(self, stream: str, n: int) -> None: ...
    def dropped(self, stream: str, reason: str, n: int) -> None: ...
    def reconnected(self, stream: str) -> None: ...
    def failed(self, stream: str, kind: str) -> None: ...


class StreamSource:
    """One live source, read by its own thread into `frames` (see module docstring)."""

    def __init__(self, cfg: StreamConfig, analysis_fps: float, reconnect: ReconnectConfig = ReconnectConfig(),
                 queue_frames: int = WatchConfig.queue_frames, listener: SourceListener | None = None):
        self.cfg = cfg
        self.name = cfg.name
        self.reconnect_cfg = reconnect
        self.frames: LatestQueue[LiveFrame] = LatestQueue(queue_frames)
        self.listener = listener
        self.state = State.STOPPED
        self.error: str | None = None  # the last failure, "kind: message"; None once a connection is up
        self.reconnects = 0
        self.failures = 0  # failed connections and reads, since the start
        self.is_file = _url_scheme(cfg.url) in (None, "file")
        self._sample = f"fps={analysis_fps}" if analysis_fps > 0 else "all"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- control --------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"facexray-source-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end; it does within one frame, backoff wait, or read timeout."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread; True when it has ended."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    @property
    def finished(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    # -- the thread -----------------------------------------------------------------------

    def _set_state(self, state: State) -> None:
        self.state = state
        if self.listener:
            self.listener.state_changed(self.name, state, self.error)

    def _fail(self, kind: str, message: str) -> None:
        self.error = f"{kind}: {message}"
        self.failures += 1
        if self.listener:
            self.listener.failed(self.name, kind)

    def _run(self) -> None:
        backoff = Backoff(self.reconnect_cfg)
        connected_before = False
        try:
            while not self._stop.is_set():
                self._set_state(State.CONNECTING)
                try:
                    _resolve(self.cfg.url)
                    reader = open_video(self.cfg.url, self._sample,
                                        timeout=(self.reconnect_cfg.open_timeout_s, self.reconnect_cfg.stall_s))
                except DecodeError as e:
                    kind = classify_error(e.reason)
                    self._fail(kind, e.reason)
                    if kind in _PERMANENT or self.is_file or (kind == "unresolved" and _NO_SUCH_HOST_TEXT in e.reason
                                                              and not connected_before):
                        log.error("stream %s: %s (%s); not retrying", self.name, e.reason, kind)
                        return
                    self._wait(backoff, e.reason)
                    continue
                with reader:
                    up_since = time.monotonic()
                    self.error = None
                    if connected_before:
                        self.reconnects += 1
                        if self.listener:
                            self.listener.reconnected(self.name)
                    connected_before = True
                    log.info("stream %s: up (%dx%d, %s fps)", self.name, reader.info.width, reader.info.height,
                             reader.info.fps)
                    self._set_state(State.UP)
                    kind, message = self._read(reader)
                if time.monotonic() - up_since >= self.reconnect_cfg.reset_after_s:
                    backoff.reset()
                if kind == "stopped":
                    return
                if self.is_file and kind == "ended":
                    log.info("stream %s: file finished", self.name)
                    return
                self._fail(kind, message)
                self._wait(backoff, message)
        except Exception as e:  # a bug must not take the other streams down; it is reported like a failure
            log.exception("stream %s: reader crashed", self.name)
            self._fail("error", f"{type(e).__name__}: {e}")
        finally:
            self.frames.close()
            self._set_state(State.STOPPED)

    def _wait(self, backoff: Backoff, message: str) -> None:
        delay = backoff.next_delay()
        log.warning("stream %s: %s; reconnecting in %.1f s", self.name, self.error or message, delay)
        self._set_state(State.BACKOFF)
        self._stop.wait(delay)

    def _read(self, reader: VideoReader) -> tuple[str, str]:
        """Hand frames out until the stream ends, fails or we are stopped; returns (kind, message)."""
        stats = reader.stats
        seen = {"decoded": 0, "corrupt_frames": 0, "yielded": 0}
        start = time.monotonic()
        for frame in reader:
            if self._stop.is_set():
                return "stopped", "stopped"
            if self.is_file and self._stop.wait(max(0.0, start + frame.pts - time.monotonic())):
                return "stopped", "stopped"
            captured = time.monotonic()
            self._count(stats, seen)
            if self.frames.put(LiveFrame(self.name, frame, captured)) is not None:
                self._dropped("queue_full")
        self._count(stats, seen)
        if stats["read_errors"]:
            message = stats["last_error"] or "read error"
            kind = classify_error(message)
            return ("stall" if kind == "timeout" else "read_error"), message
        return "ended", "the stream ended"

    def _count(self, stats: dict, seen: dict) -> None:
        """Report what the reader decoded since last time: handed out, dropped as corrupt, or passed over by the rate."""
        delta = {k: stats[k] - seen[k] for k in seen}
        seen.update({k: stats[k] for k in seen})
        if self.listener and delta["decoded"]:
            self.listener.decoded(self.name, delta["decoded"])
        if delta["corrupt_frames"]:
            self._dropped("corrupt", delta["corrupt_frames"])
        rate = delta["decoded"] - delta["corrupt_frames"] - delta["yielded"]
        if rate > 0:
            self._dropped("rate", rate)

    def _dropped(self, reason: str, n: int = 1) -> None:
        if self.listener:
            self.listener.dropped(self.name, reason, n)
