"""Real live servers for the stream tests and the watch benchmark: GStreamer RTSP, a local HTTP server, Prometheus."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from facexray.stream.config import ReconnectConfig

SYSTEM_PYTHON = "/usr/bin/python3"
PROMETHEUS = "/usr/bin/prometheus"
FAST_RECONNECT = ReconnectConfig(initial_s=0.3, max_s=1.0, jitter=0.1, reset_after_s=2.0, open_timeout_s=5.0,
                                 stall_s=2.0)
"""Reconnect settings that keep tests short: sub-second backoff, a 2-s stall watchdog."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout_s: float = 15.0, proc: subprocess.Popen | None = None) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


def gst_rtsp_missing() -> str | None:
    """Why the GStreamer RTSP server cannot run here, or None when it can."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} not found (the RTSP server runs under Debian's python3-gi)"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                            "from gi.repository import GstRtspServer"], capture_output=True, text=True)
    if probe.returncode:
        return ("GStreamer RTSP server not available to /usr/bin/python3 (apt: gir1.2-gst-rtsp-server-1.0 "
                f"gstreamer1.0-rtsp gstreamer1.0-plugins-good python3-gi): {probe.stderr.strip()[-200:]}")
    return None


class RtspServer:
    """`shared/tools/rtsp_server_gst.py FILE PORT` in a subprocess: each client session gets the file once, live."""

    def __init__(self, tool: Path, video: Path, port: int | None = None):
        self.tool, self.video = tool, video
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/test"

    def start(self) -> RtspServer:
        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(self.tool), str(self.video), str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_port(self.port, proc=self.proc)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


class TextServer:
    """A plain local HTTP server for a folder, in a thread (for a URL that answers, but not with video)."""

    def __init__(self, folder: Path):
        handler = partial(_QuietHandler, directory=str(folder))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True, name="test-http")
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def wait_for(cond, timeout_s: float, what: str) -> None:
    """Poll `cond()` until true; fail the test saying what did not happen in time."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def facexray_threads() -> list[str]:
    """Names of the live threads facexray started (they are all named facexray-*)."""
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("facexray-"))
