"""`facexray scan`: every file gets a record, a progress bar shows the way, a table sums it up.

The videos run on a backend (this machine, or a Ray cluster: `scan/ray_runner.py`); the
driver alone writes the results file, so both give the same records (`record_of`).

Exit codes (also in `facexray scan --help`):
    0    every file was scanned (verdicts may be real, fake or no_face)
    1    the scan finished but some files could not be scanned (their records carry `error`; with
         --resume, errors recorded earlier and not retried count too), or their annotated video /
         report section could not be made (the summary says which)
    2    bad usage: an unknown option, a path that does not exist, or no video found
    3    the models could not be loaded, or the Ray cluster could not be reached (nothing was scanned)
    130  stopped by SIGINT, 143 stopped by SIGTERM: the videos in flight were finished and recorded,
         the file is valid; run again with --resume to complete it
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Protocol

import av
from tqdm import tqdm

from .. import __version__
from ..batcher import BatchObserver
from ..contracts import VideoResult
from ..decode import unreadable as why_unreadable
from ..engines import resolve_engine
from ..errors import FacexrayError
from ..pipeline import Pipeline, PipelineOutput
from ..report.annotate import annotate, output_name
from ..report.evidence import Evidence
from ..train.index import read_jsonl
from .config import ScanConfig
from .discover import discover
from .results import ResultWriter, compact, latest_by_key
from .resume import ResumePlan, file_key, plan

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_MODEL = 0, 1, 2, 3
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def auto_concurrency(device: str, cores: int | None = None) -> int:
    """How many videos to decode at once when `--concurrency` is not given.

    On CUDA the networks wait on decoding, which runs on the CPU: one video per core, 2 to 8.
    On CPU the networks already use every core and each video decodes in its own thread, so
    more videos only fill the gaps while one seeks: one per 4 cores, at least 1 (on 2 cores,
    K = 2 and 4 were within run-to-run noise of K = 1: benchmarks/results/scan.json).
    """
    cores = cores or os.cpu_count() or 1
    if device.startswith("cuda"):
        return max(2, min(8, cores))
    return max(1, min(8, cores // 4))


@dataclass
class ScanReport:
    """What one `scan` call did: the results of this run, what resume left out, how long it took."""

    exit_code: int
    results: list[VideoResult] = field(default_factory=list)
    plan: ResumePlan | None = None
    elapsed_s: float = 0.0
    stopped_by: int | None = None


class Backend(Protocol):
    """Runs videos somewhere and hands their outputs back, in any order, one per path (the scored faces
    only when `cfg.evidence` wants them)."""

    def start(self) -> dict:
        """Load the models (raising FacexrayError, RuntimeError or ValueError); return the X-ray model info."""

    def results(self, paths: list[Path], stop: threading.Event) -> Iterator[PipelineOutput]:
        """Outputs of `paths`; once `stop` is set, finish the videos in flight and take no new one."""

    def close(self) -> None:
        """Free what `start` took."""


def build_pipeline(cfg: ScanConfig, observer: BatchObserver | None = None) -> Pipeline:
    """The detector + X-ray pipeline a scan runs (one per process, or per Ray worker), shared by its videos."""
    return Pipeline.load(cfg.model, cfg.engine, cfg.device, cfg.detector, cfg.pipeline, observer, flip=cfg.flip)


class LocalBackend:
    """Videos scanned in this process, `concurrency` at once on one shared pipeline (shared batches)."""

    def __init__(self, cfg: ScanConfig, observer: BatchObserver | None = None):
        self.cfg = cfg
        self.observer = observer
        self.concurrency = cfg.concurrency or auto_concurrency(cfg.device)
        self.pipeline: Pipeline | None = None

    def start(self) -> dict:
        self.pipeline = build_pipeline(self.cfg, self.observer)
        return self.pipeline.xray.describe()

    def results(self, paths: list[Path], stop: threading.Event) -> Iterator[PipelineOutput]:
        todo = iter(paths)
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="facexray-video") as pool:
            running = set()
            while True:
                while len(running) < self.concurrency and not stop.is_set() and (path := next(todo, None)):
                    running.add(pool.submit(self.pipeline.run, path))
                if not running:
                    return
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for f in done:
                    yield f.result()

    def close(self) -> None:
        if self.pipeline is not None:
            self.pipeline.close()
            self.pipeline = None


def record_of(result: VideoResult, cfg: ScanConfig, runner_info: dict, key: str | None = None) -> dict:
    """The JSONL record of one result: the result itself, its resume key, and how it was obtained."""
    rec = dataclasses.asdict(result)
    rec["key"] = key
    rec["meta"].update(sample=cfg.pipeline.sample, engine=resolve_engine(cfg.engine, cfg.device), device=cfg.device,
                       threshold=verdict_threshold(cfg, runner_info), xray_model=runner_info,
                       facexray_version=__version__)
    return rec


def verdict_threshold(cfg: ScanConfig, runner_info: dict) -> float | None:
    """The threshold verdicts are made with: --threshold when given, else the model's own (`describe()`);
    None when no model was loaded (every input failed before scoring)."""
    given = cfg.pipeline.aggregate.threshold
    return runner_info.get("threshold") if given is None else given


def threshold_text(cfg: ScanConfig, runner_info: dict) -> str | None:
    """`verdict_threshold` and where it comes from, for the summary (None when there is none)."""
    value = verdict_threshold(cfg, runner_info)
    if value is None:
        return None
    if cfg.pipeline.aggregate.threshold is not None:
        return f"{value:.3f} (--threshold)"
    return f"{value:.3f} ({runner_info.get('threshold_note', 'the model')})"


class _StopOnSignal:
    """While active (main thread only), the first SIGINT/SIGTERM sets `event`; a second one kills the
    process at once (the records written so far stay valid)."""

    def __init__(self):
        self.event = threading.Event()
        self.signum: int | None = None
        self._old: dict = {}

    def _handle(self, signum, frame) -> None:
        self.signum = signum
        self.event.set()
        for s in STOP_SIGNALS:
            signal.signal(s, signal.SIG_DFL)
        print(f"\nfacexray scan: {signal.Signals(signum).name}: finishing the videos in flight "
              "(signal again to abandon them); run again with --resume to complete", file=sys.stderr)

    def __enter__(self) -> _StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


SUMMARY_PATH_WIDTH = 70


def shorten_path(path: str, width: int) -> str:
    """`path` in at most `width` characters: whole when it fits, else its start and its file name joined by "…"
    (the file name whole as long as it fits), so the table never shows a path cut off at the left.

    >>> shorten_path("../shared/data/real_videos/edtalk/test_data__pose_source2.mp4", 40)
    '../shared/d…/test_data__pose_source2.mp4'
    """
    if len(path) <= width:
        return path
    name = path.rsplit("/", 1)[-1]
    if len(name) + 2 > width:                      # not even the file name fits: its middle goes
        head = (width - 1) // 2
        return name[:head] + "…" + name[len(name) - (width - 1 - head):]
    keep = width - len(name) - 2
    return path[:keep] + "…/" + name


def print_summary(results: list[VideoResult], elapsed: float, out: str | None, stream=None,
                  extra: list[str] = (), resume: ResumePlan | None = None, stopped_by: int | None = None,
                  threshold: str | None = None) -> None:
    """A short table on stderr: counts per verdict, the verdict threshold and where it comes from, what
    resume skipped, the most suspicious files, the errors; then `extra` lines."""
    stream = stream or sys.stderr
    counts = Counter(r.verdict for r in results)
    frames = sum(r.frames_scored for r in results)
    print(f"\nscanned {len(results)} file(s) in {elapsed:.1f} s ({frames / max(elapsed, 1e-9):.1f} frames/s); "
          + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())), file=stream)
    if threshold:
        print(f"verdict threshold {threshold}", file=stream)
    if resume and (resume.done or resume.duplicates or resume.retried):
        print(f"resume: skipped {resume.done} already recorded ({resume.errors_kept} with an error: "
              f"--retry-errors scans them again), {resume.duplicates} duplicate(s) of another file; "
              f"retried {resume.retried} error(s)", file=stream)
    if stopped_by is not None:
        left = len(resume.todo) - len(results) if resume else 0
        print(f"STOPPED by {signal.Signals(stopped_by).name} with {left} file(s) left: run again with --resume",
              file=stream)
    scored = sorted((r for r in results if r.score is not None), key=lambda r: -r.score)
    if scored:
        width = min(SUMMARY_PATH_WIDTH, max(len(r.path) for r in scored[:10]))
        print(f"{'file':<{width}}  {'verdict':<8} {'score':>6} {'frames':>6} {'faces':>6}", file=stream)
        for r in scored[:10]:
            print(f"{shorten_path(r.path, width):<{width}}  {r.verdict:<8} {r.score:6.3f} {r.frames_scored:6d} "
                  f"{r.faces_scored:6d}", file=stream)
        if len(scored) > 10:
            print(f"... and {len(scored) - 10} more", file=stream)
    for r in results:
        if r.error:
            print(f"ERROR {r.path}: {r.error}", file=stream)
    if any(r.warning for r in results):
        print(f"WARNING: {next(r.warning for r in results if r.warning)}", file=stream)
    if out:
        print(f"results: {out}", file=stream)
    for line in extra:
        print(line, file=stream)


def _plan(files: list[Path], cfg: ScanConfig) -> ResumePlan:
    """Keys for every file, and with --resume the ones already recorded left out (compacting the file first)."""
    keys = [file_key(f, cfg.content_hash) for f in
            tqdm(files, unit="file", desc="hashing", disable=not (cfg.progress and cfg.content_hash),
                 dynamic_ncols=True, file=sys.stderr)]
    latest: dict[str, dict] = {}
    if (cfg.resume or cfg.retry_errors) and cfg.out and Path(cfg.out).exists():
        compact(cfg.out)
        latest = latest_by_key(read_jsonl(Path(cfg.out)))
        if not latest and Path(cfg.out).stat().st_size:
            print(f"facexray scan: --resume: no record of {cfg.out} has a resume key; scanning everything",
                  file=sys.stderr)
    return plan(files, keys, latest, retry_errors=cfg.retry_errors)


def _say(cfg: ScanConfig, line: str) -> None:
    """A line of progress on stderr, for the steps without a progress bar (none with --quiet)."""
    if cfg.progress:
        print(f"facexray scan: {line}", file=sys.stderr, flush=True)


def _unreadable(files: list[Path], progress: bool) -> dict[Path, str]:
    """The files that cannot be opened (missing, empty, not a video, no decodable frame), with why: found before
    any model loads, so that they are reported at once and a scan of nothing readable loads nothing."""
    bad = {}
    for f in tqdm(files, unit="file", desc="opening", disable=not progress or len(files) < 2, leave=False,
                  dynamic_ncols=True, file=sys.stderr):
        why = why_unreadable(f)
        if why is not None:
            bad[f] = why
    return bad


def _backend(cfg: ScanConfig, observer: BatchObserver | None) -> Backend:
    if cfg.ray:
        from .ray_runner import RayBackend
        return RayBackend(cfg)
    return LocalBackend(cfg, observer)


def scan(paths: Iterable[str], cfg: ScanConfig) -> ScanReport:
    """Scan `paths` (files and folders): write the records, print progress and a summary; never raises
    on bad input (see the module docstring for the exit codes)."""
    paths = list(paths)
    try:
        files = discover(paths)
    except FileNotFoundError as e:
        print(f"facexray scan: {e}", file=sys.stderr)
        return ScanReport(EXIT_USAGE)
    if not files:
        print("facexray scan: no video files found under " + ", ".join(paths), file=sys.stderr)
        return ScanReport(EXIT_USAGE)
    todo = _plan(files, cfg)
    unreadable = _unreadable(todo.todo, cfg.progress)
    readable = [p for p in todo.todo if p not in unreadable]
    metrics = None
    if cfg.metrics_port is not None:
        from .metrics import ScanMetrics
        try:
            metrics = ScanMetrics(cfg.metrics_port, cfg.metrics_host)
        except OSError as e:
            print(f"facexray scan: --metrics-port {cfg.metrics_port}: {e}", file=sys.stderr)
            return ScanReport(EXIT_USAGE, plan=todo)
    backend = _backend(cfg, metrics.batch_done if metrics else None)
    runner_info: dict = {}
    try:
        if readable:   # a scan of files that cannot even be opened loads no model
            _say(cfg, f"loading the models ({len(readable)} file(s) to scan) ...")
            runner_info = backend.start()
    except (FacexrayError, RuntimeError, ValueError, ConnectionError) as e:
        print(f"facexray scan: {e}", file=sys.stderr)
        backend.close()
        if metrics:
            metrics.close()
        return ScanReport(EXIT_MODEL, plan=todo)
    if runner_info:
        threshold = verdict_threshold(cfg, runner_info)
        cfg = dataclasses.replace(cfg, evidence=dataclasses.replace(
            cfg.evidence, html=dataclasses.replace(cfg.evidence.html, threshold=threshold)))
    if metrics:
        metrics.start(len(todo.todo), todo.done + todo.duplicates)
    evidence = (Evidence(cfg.evidence, cfg.pipeline.crop, files, cfg.progress,
                         about={"model": runner_info.get("name"), "sample": cfg.pipeline.sample})
                if cfg.evidence.wanted else None)
    extra: list[str] = []
    by_path = {str(p): p for p in todo.todo}
    results: list[VideoResult] = []
    t0 = time.perf_counter()
    try:
        with _StopOnSignal() as stop, ResultWriter(cfg.out) as writer, \
                tqdm(total=len(todo.todo), unit="video", disable=not cfg.progress, dynamic_ncols=True,
                     file=sys.stderr) as bar:
            if todo.done:
                bar.write(f"resume: {todo.done} file(s) already in {cfg.out}, skipped", file=sys.stderr)
            failed = (PipelineOutput(VideoResult(str(p), "error", None, error=why), []) for p, why in unreadable.items())
            for output in chain(failed, backend.results(readable, stop.event) if readable else ()):
                result, path = output.result, by_path[output.result.path]
                results.append(result)
                writer.write(record_of(result, cfg, runner_info, todo.keys[path]))
                if metrics:
                    metrics.video_done(result)
                if evidence:   # annotating re-reads the whole video: say so, it can take longer than scoring it
                    bar.set_postfix_str(f"drawing the evidence of {path.name[-30:]}")
                    evidence.add(path, output)
                bar.set_postfix_str(path.name[-30:], refresh=False)
                bar.update()
    finally:
        backend.close()
        if metrics:
            metrics.close()
        if evidence:
            if cfg.evidence.report:
                _say(cfg, f"writing the report {cfg.evidence.report} ...")
            extra = evidence.close()
    elapsed = time.perf_counter() - t0
    if cfg.out and (cfg.resume or cfg.retry_errors):
        compact(cfg.out)
    print_summary(results, elapsed, cfg.out, extra=extra, resume=todo, stopped_by=stop.signum,
                  threshold=threshold_text(cfg, runner_info))
    if stop.signum is not None:
        code = 128 + stop.signum
    elif todo.errors_kept or any(r.error for r in results) or (evidence and evidence.problems):
        code = EXIT_SOME_FAILED
    else:
        code = EXIT_OK
    return ScanReport(code, results, todo, elapsed, stop.signum)


def run_scan(paths: list[str], cfg: ScanConfig) -> int:
    """Scan `paths` (files and folders) and return the exit code (see module docstring)."""
    return scan(paths, cfg).exit_code


def _load_pipeline(cfg: ScanConfig, command: str) -> Pipeline | None:
    """The pipeline of `cfg`; None (after saying why on stderr) when it cannot load."""
    try:
        pipeline = build_pipeline(cfg)
    except (FacexrayError, RuntimeError, ValueError) as e:
        print(f"facexray {command}: {e}", file=sys.stderr)
        return None
    return pipeline


def run_explain(path: str, out: str | None, cfg: ScanConfig) -> int:
    """`facexray explain`: score one image or video and write it annotated (PNG or MP4); returns the exit code.

    `out` defaults to `output_name(path)` (`clip.xray.mp4`, `face.xray.png`) in the current folder.
    """
    if Path(path).is_dir():
        print(f"facexray explain: {path} is a folder; explain takes one image or video "
              f"(`facexray scan {path} --annotate DIR` annotates every file of a folder)", file=sys.stderr)
        return EXIT_USAGE
    if not Path(path).is_file():
        print(f"facexray explain: no such file: {path}", file=sys.stderr)
        return EXIT_USAGE
    why = why_unreadable(path)
    if why is not None:
        print(f"facexray explain: {path}: {why}", file=sys.stderr)
        return EXIT_SOME_FAILED
    pipeline = _load_pipeline(cfg, "explain")
    if pipeline is None:
        return EXIT_MODEL
    t0 = time.perf_counter()
    output = pipeline.run(path)
    dest = Path(out or output_name(path))
    ok = output.result.error is None
    extra = []
    if ok:
        try:
            stats = annotate(path, output.scores, dest, pipeline.crop_spec, cfg.evidence.annotate,
                             progress=cfg.progress)
            extra.append(f"annotated: {dest} ({stats.frames} frame(s), {stats.faces_drawn} face(s) drawn)")
        except (FacexrayError, OSError, ValueError, av.FFmpegError) as e:
            ok = False
            extra.append(f"EVIDENCE ERROR {path}: {e}")
    if cfg.out:
        with ResultWriter(cfg.out) as writer:
            writer.write(record_of(output.result, cfg, pipeline.xray.describe(), file_key(path, cfg.content_hash)))
    print_summary([output.result], time.perf_counter() - t0, cfg.out, extra=extra,
                  threshold=threshold_text(cfg, pipeline.xray.describe()))
    return EXIT_OK if ok else EXIT_SOME_FAILED
