"""The face detector's settings, apart from the detector itself: reading them (the CLI's --help) loads no network code."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DetectorConfig:
    """Every detector setting and its default (the one place they are defined).

    `weights` None means `resolve_weights(name)`; `min_face` drops faces whose shorter
    box side is below it (original pixels); `max_batch` caps images per forward pass
    (None: the engine's measured best for the device, `engines.default_batch`).
    """

    weights: str | None = None
    name: str = "retinaface_mnet025"
    engine: str = "auto"
    device: str = "cpu"
    long_side: int = 640
    score_threshold: float = 0.5
    min_face: float = 0.0
    nms_iou: float = 0.4
    max_batch: int | None = None
