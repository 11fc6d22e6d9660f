"""What a scan is asked to do, apart from doing it: reading it (the CLI's --help) loads no network or video code."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..faces.config import DetectorConfig
from ..pipeline import PipelineConfig

if TYPE_CHECKING:
    from ..report.evidence import EvidenceConfig


def _no_evidence() -> EvidenceConfig:
    """No annotated videos, no report (imported here: the report code pulls in matplotlib)."""
    from ..report.evidence import EvidenceConfig

    return EvidenceConfig()


@dataclass
class ScanConfig:
    """Everything a scan needs besides the paths; defaults come from the stages' own configs.

    `concurrency` videos are decoded at once and share the network batches (None: `auto_concurrency`;
    on Ray, per worker, default 1 on CPU workers). `resume` skips videos whose key (`scan/resume.py`)
    already has a record in `out`; `retry_errors` (implies `resume`) scans the errored ones again.
    `ray` is None (this machine), "auto" (a running cluster, else a local one), "local" (a new local
    one) or a cluster address.
    """

    out: str | None = None
    model: str | None = None
    flip: bool | None = None          # score faces with their mirror images: None = as the model is calibrated
    engine: str = "auto"
    device: str = "cpu"
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    evidence: EvidenceConfig = field(default_factory=_no_evidence)
    progress: bool = True
    concurrency: int | None = None
    resume: bool = False
    retry_errors: bool = False
    content_hash: bool = False
    ray: str | None = None
    ray_workers: int | None = None
    ray_max_attempts: int = 3
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
