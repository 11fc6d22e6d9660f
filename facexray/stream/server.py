"""The watch's one HTTP port: `/metrics` (Prometheus text), `/healthz` (alive), `/readyz` (ready to judge).

`/readyz` answers 200 when the engines are loaded and at least one stream is up, 503
otherwise; both carry a small JSON body with every stream's state and last error, so an
operator sees at once why a watch is not ready. Binds to 127.0.0.1 unless told otherwise;
port 0 picks a free port (`HealthServer.port` says which).

Example:
    >>> srv = HealthServer(WatchMetrics().registry, lambda: (True, {}), port=0)  # doctest: +SKIP
    >>> srv.start(); srv.url                                                      # doctest: +SKIP
    'http://127.0.0.1:40123'
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from .config import DEFAULT_HOST, DEFAULT_PORT

ReadyCheck = Callable[[], tuple[bool, dict]]


class HealthServer:
    """Serves metrics and health on (host, port) from a daemon thread named facexray-http."""

    def __init__(self, registry: CollectorRegistry, ready: ReadyCheck, host: str = DEFAULT_HOST,
                 port: int = DEFAULT_PORT):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(server.registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    self._send(200, b"ok\n", "text/plain; charset=utf-8")
                elif path == "/readyz":
                    ok, detail = server.ready()
                    body = json.dumps({"ready": ok, **detail}, indent=1).encode() + b"\n"
                    self._send(200 if ok else 503, body, "application/json")
                else:
                    self._send(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain; charset=utf-8")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # scrapes every second would flood the log
                pass

        self.registry, self.ready = registry, ready
        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return self._httpd.server_address[0]

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="facexray-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()
