"""Per scanned file: its annotated video and its section of the HTML report, from one decode.

`scan` hands every `PipelineOutput` to an `Evidence`; it writes the annotated MP4 (or
PNG for an image) into the annotation folder and adds the file to the report, re-cutting
the report's face crops from the frames the annotation decodes anyway (without
annotation, a decode that stops after the last frame it needs). A failure here never
loses a scan result: it is reported and the scan goes on.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import av

from ..errors import FacexrayError
from ..faces.crop import CropSpec
from ..pipeline import PipelineOutput
from .annotate import AnnotateConfig, annotate, output_name
from .html import CropCutter, HtmlReport, ReportConfig, cut_crops


@dataclass(frozen=True)
class EvidenceConfig:
    """Where the evidence goes (None: not made) and how it looks."""

    annotate_dir: str | None = None
    report: str | None = None
    annotate: AnnotateConfig = field(default_factory=AnnotateConfig)
    html: ReportConfig = field(default_factory=ReportConfig)

    @property
    def wanted(self) -> bool:
        return bool(self.annotate_dir or self.report)


def annotated_names(files: list[Path]) -> dict[Path, str]:
    """Output names for the files of one scan: `clip.xray.mp4`, with a short hash of the path where names collide."""
    out = {f: output_name(f) for f in files}          # a picture's name needs a look inside it: once per file
    counts = Counter(out.values())
    for f, name in out.items():
        if counts[name] > 1:
            stem, _, ext = name.partition(".xray")
            name = f"{stem}-{hashlib.sha1(str(f).encode()).hexdigest()[:8]}.xray{ext}"
        out[f] = name
    return out


class Evidence:
    """Writes the annotated files and the report of one scan; use as a context manager."""

    def __init__(self, cfg: EvidenceConfig, crop_spec: CropSpec, files: list[Path], progress: bool = False,
                 about: dict | None = None):
        self.cfg = cfg
        self.crop_spec = crop_spec
        self.progress = progress
        self.names = annotated_names(files)
        self.report = HtmlReport(cfg.report, crop_spec, cfg.html, about or {}) if cfg.report else None
        self.annotated = 0
        self.problems: list[str] = []

    def add(self, path: Path, output: PipelineOutput) -> None:
        """Annotate `path` and add it to the report; problems are collected in `problems`, never raised."""
        result, scores = output.result, output.scores
        top = self.report.top_faces(scores) if self.report else []
        cutter = CropCutter(top, self.crop_spec)
        try:
            if self.cfg.annotate_dir and not result.error:
                annotate(path, scores, Path(self.cfg.annotate_dir) / self.names.get(path, output_name(path)),
                         self.crop_spec, self.cfg.annotate, on_frame=cutter.offer, progress=self.progress)
                self.annotated += 1
            elif top:
                cutter.crops = cut_crops(path, top, self.crop_spec)
        except (FacexrayError, OSError, ValueError, av.FFmpegError) as e:
            self.problems.append(f"{path}: {e}")
        if self.report:
            self.report.add(result, scores, cutter.crops)

    def close(self) -> list[str]:
        """Finish the report (call it also when a scan is interrupted); lines for the scan summary."""
        lines = [f"EVIDENCE ERROR {p}" for p in self.problems]
        if self.cfg.annotate_dir:
            lines.append(f"annotated: {self.annotated} file(s) in {self.cfg.annotate_dir}")
        if self.report:
            lines.append(f"report: {self.report.close()}")
        return lines
