"""`facexray scan`: every file gets a record, a progress bar shows the way, a table sums it up.

Exit codes (also in `facexray scan --help`):
    0  every file was scanned (verdicts may be real, fake or no_face)
    1  the scan finished but some files could not be scanned (their records carry `error`),
       or their annotated video / report section could not be made (the summary says which)
    2  bad usage: an unknown option, a path that does not exist, or no video found
    3  the models could not be loaded (nothing was scanned)
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import av

from tqdm import tqdm

from .. import __version__
from ..contracts import VideoResult
from ..engines import resolve_engine
from ..engines.xray import load_xray
from ..errors import FacexrayError
from ..faces.detect import DetectorConfig, RetinaFaceDetector
from ..pipeline import Pipeline, PipelineConfig
from ..report.annotate import annotate, output_name
from ..report.evidence import Evidence, EvidenceConfig
from .discover import discover
from .results import ResultWriter

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_MODEL = 0, 1, 2, 3


@dataclass
class ScanConfig:
    """Everything a scan needs besides the paths; defaults come from the stages' own configs."""

    out: str | None = None
    model: str | None = None
    engine: str = "auto"
    device: str = "cpu"
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)
    progress: bool = True


def record_of(result: VideoResult, cfg: ScanConfig, runner_info: dict) -> dict:
    """The JSONL record of one result: the result itself plus how it was obtained."""
    rec = dataclasses.asdict(result)
    rec["meta"].update(sample=cfg.pipeline.sample, engine=resolve_engine(cfg.engine, cfg.device), device=cfg.device,
                       xray_model=runner_info, facexray_version=__version__)
    return rec


def print_summary(results: list[VideoResult], elapsed: float, out: str | None, stream=None,
                  extra: list[str] = ()) -> None:
    """A short table on stderr: counts per verdict, the most suspicious files, the errors; then `extra` lines."""
    stream = stream or sys.stderr
    counts = Counter(r.verdict for r in results)
    frames = sum(r.frames_scored for r in results)
    print(f"\nscanned {len(results)} file(s) in {elapsed:.1f} s ({frames / max(elapsed, 1e-9):.1f} frames/s); "
          + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())), file=stream)
    scored = sorted((r for r in results if r.score is not None), key=lambda r: -r.score)
    if scored:
        width = min(70, max(len(r.path) for r in scored))
        print(f"{'file':<{width}}  {'verdict':<8} {'score':>6} {'frames':>6} {'faces':>6}", file=stream)
        for r in scored[:10]:
            print(f"{r.path[-width:]:<{width}}  {r.verdict:<8} {r.score:6.3f} {r.frames_scored:6d} "
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


def run_scan(paths: list[str], cfg: ScanConfig) -> int:
    """Scan `paths` (files and folders) and return the exit code (see module docstring)."""
    try:
        files = discover(paths)
    except FileNotFoundError as e:
        print(f"facexray scan: {e}", file=sys.stderr)
        return EXIT_USAGE
    if not files:
        print("facexray scan: no video files found under " + ", ".join(paths), file=sys.stderr)
        return EXIT_USAGE
    pipeline = _load_pipeline(cfg, "scan")
    if pipeline is None:
        return EXIT_MODEL
    runner_info = pipeline.xray.describe()
    results: list[VideoResult] = []
    t0 = time.perf_counter()
    evidence = (Evidence(cfg.evidence, pipeline.crop_spec, files, cfg.progress,
                         about={"model": pipeline.xray.name, "sample": cfg.pipeline.sample})
                if cfg.evidence.wanted else None)
    extra: list[str] = []
    try:
        with ResultWriter(cfg.out) as writer, tqdm(files, unit="video", disable=not cfg.progress,
                                                   dynamic_ncols=True, file=sys.stderr) as bar:
            for path in bar:
                bar.set_postfix_str(path.name[-30:], refresh=False)
                output = pipeline.run(path)
                results.append(output.result)
                writer.write(record_of(output.result, cfg, runner_info))
                if evidence:
                    evidence.add(path, output)
    finally:
        if evidence:
            extra = evidence.close()
    print_summary(results, time.perf_counter() - t0, cfg.out, extra=extra)
    return EXIT_SOME_FAILED if any(r.error for r in results) or (evidence and evidence.problems) else EXIT_OK


def _load_pipeline(cfg: ScanConfig, command: str) -> Pipeline | None:
    """The detector, X-ray model and pipeline of `cfg`; None (after saying why on stderr) when they cannot load."""
    try:
        xray = load_xray(cfg.model, engine=cfg.engine, device=cfg.device)
        detector = RetinaFaceDetector(config=cfg.detector, engine=cfg.engine, device=cfg.device)
        pipeline = Pipeline(detector, xray, cfg.pipeline)
    except (FacexrayError, RuntimeError, ValueError) as e:
        print(f"facexray {command}: {e}", file=sys.stderr)
        return None
    if xray.is_random:
        print("WARNING: --model random: weights are random, scores mean nothing (plumbing check)", file=sys.stderr)
    return pipeline


def run_explain(path: str, out: str | None, cfg: ScanConfig) -> int:
    """`facexray explain`: score one image or video and write it annotated (PNG or MP4); returns the exit code.

    `out` defaults to `output_name(path)` (`clip.xray.mp4`, `face.xray.png`) in the current folder.
    """
    if not Path(path).is_file():
        print(f"facexray explain: no such file: {path}", file=sys.stderr)
        return EXIT_USAGE
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
            writer.write(record_of(output.result, cfg, pipeline.xray.describe()))
    print_summary([output.result], time.perf_counter() - t0, cfg.out, extra=extra)
    return EXIT_OK if ok else EXIT_SOME_FAILED
