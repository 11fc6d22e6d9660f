"""`facexray scan --ray`: the videos spread over a Ray cluster, the records written by the driver.

An actor pool: each worker (`VideoScanner`, one CPU, or one GPU with `--device cuda`) loads the
detector and the X-ray engine once and scans one video per call, `per_worker` calls at once on
its shared pipeline (`--concurrency`; default 1 on a CPU worker, `auto_concurrency` on a GPU one).
The driver keeps every worker busy and writes results as they come back, with the same `record_of` and
`ResultWriter` as a local scan, so the records are the same. A worker that dies (its process
killed, its node lost) takes no video with it: the driver replaces it with a new one and
gives the video to the next idle worker, up to `ScanConfig.ray_max_attempts` times in all;
after that the video gets an error record.

The driver ships its own `facexray` package to the workers (`py_modules`) and passes the
`FACEXRAY_*` environment (model and cache folders), so every worker runs the driver's code;
the video paths must be readable at the same absolute path on every node.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from ..contracts import VideoResult
from ..errors import FacexrayError
from ..pipeline import PipelineOutput


class VideoScanner:
    """A Ray worker: one pipeline, loaded once, scanning one video per call (its scored faces are sent
    back only when the driver makes evidence of them: `--annotate`, `--report`)."""

    def __init__(self, cfg):
        from .runner import build_pipeline

        self.pipeline = build_pipeline(cfg)
        self.with_scores = cfg.evidence.wanted

    def describe(self) -> dict:
        return self.pipeline.xray.describe()

    def scan(self, path: str) -> PipelineOutput:
        out = self.pipeline.run(path)
        return out if self.with_scores else PipelineOutput(out.result, [])


def _ray():
    try:
        import ray
    except ImportError as e:
        raise FacexrayError("--ray needs Ray: pip install 'facexray[ray]'") from e
    return ray


def connect(address: str) -> None:
    """Join the cluster at `address`; "auto" joins a running one (RAY_ADDRESS, or one on this machine) or,
    when there is none, starts a local one; "local" always starts a new local one."""
    ray = _ray()
    pkg = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k.startswith("FACEXRAY_")}
    kw = dict(runtime_env={"py_modules": [str(pkg)], "env_vars": env}, log_to_driver=False,
              logging_level=logging.WARNING)
    local = dict(include_dashboard=False, object_store_memory=256 << 20)
    if address == "local":
        ray.init(**kw, **local)
        return
    try:
        ray.init(address=address, **kw)
    except ConnectionError:
        if address != "auto":
            raise
        ray.init(**kw, **local)


class RayBackend:
    """Videos scanned by a pool of `VideoScanner` actors (see the module docstring)."""

    def __init__(self, cfg):
        from .runner import auto_concurrency

        self.cfg = cfg
        self.gpu = cfg.device.startswith("cuda")
        self.per_worker = cfg.concurrency or (auto_concurrency(cfg.device) if self.gpu else 1)
        self.ray = None
        self.actors: list = []
        self._replaced: dict = {}
        self._info: dict = {}

    def _new_actor(self):
        return self.ray.remote(VideoScanner).options(num_cpus=1, num_gpus=1 if self.gpu else 0, max_restarts=0,
                                                     max_concurrency=self.per_worker).remote(self.cfg)

    def _live(self, actor):
        """`actor`, or the worker that replaced it after it died."""
        while actor in self._replaced:
            actor = self._replaced[actor]
        return actor

    def _replace(self, dead):
        """The worker in place of `dead`: a new one, made once per dead worker (its other calls fail too)."""
        if dead not in self._replaced:
            self.ray.kill(dead, no_restart=True)
            self._replaced[dead] = self._new_actor()
            self.actors[self.actors.index(dead)] = self._replaced[dead]
        return self._live(dead)

    def start(self) -> dict:
        self.ray = _ray()
        connect(self.cfg.ray)
        res = self.ray.cluster_resources()
        kind = "GPU" if self.gpu else "CPU"
        n = self.cfg.ray_workers or int(res.get(kind, 0))
        if n < 1:
            raise FacexrayError(f"the Ray cluster has no {kind} for a worker (resources: {res})")
        self.actors = [self._new_actor() for _ in range(n)]
        try:
            infos = self.ray.get([a.describe.remote() for a in self.actors])
        except self.ray.exceptions.RayError as e:
            raise FacexrayError(f"the Ray workers could not load the models: {e}") from e
        self._info = infos[0]
        return self._info

    def results(self, paths: list[Path], stop: threading.Event) -> Iterator[PipelineOutput]:
        ray = self.ray
        queue = deque((str(p), 0) for p in paths)
        idle = deque(a for a in self.actors for _ in range(self.per_worker))
        inflight: dict = {}
        while inflight or (queue and not stop.is_set()):
            while idle and queue and not stop.is_set():
                actor, (path, attempts) = self._live(idle.popleft()), queue.popleft()
                inflight[actor.scan.remote(os.path.abspath(path))] = (actor, path, attempts)
            done, _ = ray.wait(list(inflight), num_returns=1, timeout=0.5)
            for ref in done:
                actor, path, attempts = inflight.pop(ref)
                try:
                    output = ray.get(ref)
                except ray.exceptions.RayTaskError as e:  # the scan raised: the video's own fault, no retry
                    yield self._error(path, f"worker error: {e}")
                except ray.exceptions.RayError as e:      # the worker died or was lost with its node
                    actor = self._replace(actor)
                    if attempts + 1 < self.cfg.ray_max_attempts:
                        tqdm.write(f"facexray scan: a Ray worker died scanning {path} (attempt {attempts + 1} of "
                                   f"{self.cfg.ray_max_attempts}): retrying on a new worker", file=sys.stderr)
                        queue.appendleft((path, attempts + 1))
                    else:
                        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                        yield self._error(path, f"the Ray worker died {attempts + 1} time(s) while scanning it: "
                                                f"{reason}")
                else:
                    output.result.path = path
                    yield output
                idle.append(actor)

    def _error(self, path: str, error: str) -> PipelineOutput:
        return PipelineOutput(VideoResult(path=path, verdict="error", score=None, error=error,
                                          model=self._info.get("name")), [])

    def close(self) -> None:
        if self.ray is not None and self.ray.is_initialized():
            for a in self.actors:
                self.ray.kill(a)
            self.ray.shutdown()
        self.actors = []
