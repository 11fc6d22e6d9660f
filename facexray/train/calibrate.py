"""`facexray calibrate`: choose a model's video verdict threshold on data, and store it in its checkpoint.

A score of 0.5 means nothing by itself: how high a trained model scores real faces depends on
its data and recipe. The threshold that matters to a user is the one that keeps false alarms
rare on real videos like theirs, so it is chosen where the model has never trained: the real
videos (and photos, scored as one-frame videos) of its validation identities, each scored
exactly as `facexray scan` scores a file (same sampling, tracking and top-k rule). The
threshold is the lowest score at which at most `max_false_alarm` of them would be called
fake; it travels in the checkpoint's metadata (`calibration`), and `scan`, `explain` and
`watch` use it unless `--threshold` is given.

Example::

    cal = calibrate("runs/m/best.safetensors", "data/real")
    write_calibrated("runs/m/best.safetensors", cal, "facexray/weights/xray_default.safetensors")
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..decode import DEFAULT_SAMPLE
from .index import read_index

DEFAULT_MAX_FALSE_ALARM = 0.05


@dataclass
class Calibration:
    """A chosen threshold and what it was chosen on (stored as the checkpoint's `calibration`)."""

    threshold: float
    max_false_alarm: float
    false_alarm_rate: float
    real_sources: int                 # real videos and photos scored (photos as one-frame videos)
    sample: str
    split: str
    flip: bool = False                # scores average each face with its mirror image (`models.xray.XrayNet`)
    unflipped: dict | None = None     # with `flip`: the calibration of the unmirrored scores (`--no-flip`)
    dataset_index_sha256: str | None = None
    scores: dict[str, float] = field(default_factory=dict)    # source path → video score
    no_face: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def choose_threshold(real_scores: list[float] | np.ndarray, max_false_alarm: float = DEFAULT_MAX_FALSE_ALARM,
                     decimals: int = 3) -> float:
    """The lowest threshold (rounded up to `decimals`) at which at most `max_false_alarm` of `real_scores`
    reach it (a score at or above the threshold is a false alarm).

    >>> choose_threshold([0.1, 0.2, 0.3, 0.9], 0.25)
    0.301
    """
    s = np.sort(np.asarray(real_scores, np.float64))[::-1]
    if not len(s):
        raise ValueError("no real scores to choose a threshold on")
    if not 0.0 <= max_false_alarm < 1.0:
        raise ValueError(f"max_false_alarm must be in [0, 1), got {max_false_alarm}")
    allowed = int(math.floor(max_false_alarm * len(s) + 1e-9))
    if allowed >= len(s):
        return 0.0
    step = 10.0 ** -decimals
    t = round(math.floor(s[allowed] / step) * step, decimals)
    while t <= s[allowed]:                    # strictly above the highest score that must not alarm
        t = round(t + step, decimals)
    return t


def real_sources(dataset: str | Path, split: str = "val") -> list[str]:
    """The distinct source files of a prepared dataset's real faces in `split`, sorted."""
    return sorted({r["source"] for r in read_index(dataset, split) if r["label"] == "real"})


def calibrate(model: str | Path, dataset: str | Path, *, max_false_alarm: float = DEFAULT_MAX_FALSE_ALARM,
              sample: str = DEFAULT_SAMPLE, split: str = "val", engine: str = "auto", device: str = "cpu",
              progress: bool = True, flip: bool | None = None, with_unflipped: bool = True) -> Calibration:
    """Score every real source of `split` as `scan` would (with `model`, sampling `sample`) and choose the threshold.

    `flip` scores each face with its mirror image too (default: as `model` was calibrated); the
    calibration records it, and a checkpoint written with it scores that way. A flipped calibration
    also holds the unflipped one (`unflipped`: one more pass), for `scan --no-flip` at twice the X-ray speed,
    unless `with_unflipped` is False (a measurement that needs only the scores).

    Raises ValueError when no source yields a face.
    """
    import hashlib

    from tqdm import tqdm

    from ..faces.detect import DetectorConfig
    from ..pipeline import Pipeline, PipelineConfig

    sources = real_sources(dataset, split)
    if not sources:
        raise ValueError(f"no real faces in the {split!r} split of {dataset}")
    pipeline = Pipeline.load(str(model), engine, device, DetectorConfig(), replace(PipelineConfig(), sample=sample),
                             flip=flip)
    flip = pipeline.xray.flip
    scores: dict[str, float] = {}
    no_face: list[str] = []
    try:
        desc = "calibrating, faces and mirror images" if flip else "calibrating"
        for src in tqdm(sources, unit="file", desc=desc, disable=not progress):
            res = pipeline.run(src).result
            if res.score is None:
                no_face.append(src)
            else:
                scores[src] = round(float(res.score), 6)
    finally:
        pipeline.close()
    if not scores:
        raise ValueError(f"no face was scored in the {len(sources)} real source(s) of {dataset} ({split})")
    values = np.array(list(scores.values()))
    t = choose_threshold(values, max_false_alarm)
    index = Path(dataset) / "index.jsonl"
    unflipped = calibrate(model, dataset, max_false_alarm=max_false_alarm, sample=sample, split=split, engine=engine,
                          device=device, progress=progress, flip=False).to_dict() if flip and with_unflipped else None
    return Calibration(threshold=t, max_false_alarm=max_false_alarm, false_alarm_rate=float((values >= t).mean()),
                       real_sources=len(scores), sample=sample, split=split, flip=flip, unflipped=unflipped,
                       dataset_index_sha256=hashlib.sha256(index.read_bytes()).hexdigest(),
                       scores=scores, no_face=no_face)


def write_calibrated(model: str | Path, calibration: Calibration, out: str | Path | None = None) -> Path:
    """`model`'s checkpoint with `calibration` in its metadata, written to `out` (default: in place)."""
    from ..models.checkpoint import RESERVED_FIELDS, load_checkpoint, save_checkpoint

    net, meta = load_checkpoint(model)
    extra = {k: v for k, v in meta.items() if k not in RESERVED_FIELDS}
    extra["calibration"] = calibration.to_dict()
    return save_checkpoint(net, out or model, crop=meta["crop"], provenance=meta.get("provenance"), extra=extra,
                           half=meta.get("dtype") == "float16")
