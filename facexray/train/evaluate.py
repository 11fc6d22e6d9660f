"""`facexray eval`: frame- and video-level AUC, AP, EER, log loss and accuracy of a model.

Inputs:
  - a prepared dataset (a folder with index.jsonl, labels from `prepare`): the stored crops
    are scored directly, so the numbers measure the model, not the detector; with `blend`,
    its real faces are scored against fakes blended from them as the training validation
    makes them (SBI, BI or the recipe's mix), e.g. a model's self-blended AUC on held-out
    identities;
  - a CSV with `path,label[,video][,method]` (label real/fake or 0/1), or a folder in the
    FF++ layout: every file runs through the scan pipeline (images too), so the numbers
    measure the tool.
Frame level: one score per face (label of its file/record). Video level: the scan rule
(mean of the top-k face scores) per video. Per method: each method's fakes against all reals.
Accuracy is measured at the model's own threshold (`XrayRunner.threshold`).
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from ..aggregate import track_score
from ..engines.xray import XrayRunner
from .degrade import DEGRADATIONS
from .index import read_index
from .metrics import binary_metrics


def _label(v: str) -> int:
    v = str(v).strip().lower()
    if v in ("1", "fake", "manipulated", "deepfake"):
        return 1
    if v in ("0", "real", "original", "pristine"):
        return 0
    raise ValueError(f"unknown label {v!r}: use real/fake or 0/1")


def read_csv(path: str | Path) -> list[dict]:
    """Rows of an evaluation CSV: path (or file; relative to the CSV's folder if not absolute), label,
    video, method."""
    base = Path(path).parent
    rows = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        col = next((c for c in ("path", "file") if c in (reader.fieldnames or ())), None)
        if col is None or "label" not in (reader.fieldnames or ()):
            raise ValueError(f"{path}: an evaluation CSV needs columns path (or file) and label, "
                             f"found {', '.join(reader.fieldnames or ['none'])}")
        for r in reader:
            p = Path(r[col])
            rows.append({"path": str(p if p.is_absolute() else base / p), "label": _label(r["label"]),
                         "video": r.get("video") or r[col], "method": r.get("method") or None})
    return rows


def summarise(frame_labels, frame_scores, frame_methods, videos: dict[str, tuple[int, list[float], str | None]],
              threshold: float = 0.5, top_k: int = 5) -> dict:
    """Frame-level, video-level and per-method metrics from per-face scores grouped by video."""
    fl, fs = np.asarray(frame_labels), np.asarray(frame_scores)
    out = {"frame": binary_metrics(fl, fs, threshold)}
    v_lab = np.array([lab for lab, _, _ in videos.values()])
    v_score = np.array([track_score(s, top_k) for _, s, _ in videos.values()])
    out["video"] = binary_metrics(v_lab, v_score, threshold)
    methods = sorted({m for m in frame_methods if m})
    per = {}
    for m in methods:
        sel = (fl == 0) | (np.asarray(frame_methods, dtype=object) == m)
        vsel = np.array([lab == 0 or meth == m for lab, _, meth in videos.values()])
        per[m] = {"frame": binary_metrics(fl[sel], fs[sel], threshold),
                  "video": binary_metrics(v_lab[vsel], v_score[vsel], threshold)}
    if per:
        out["per_method"] = per
    return out


def evaluate_index(runner: XrayRunner, dataset: str | Path, split: str | None = None, batch: int = 16,
                   threshold: float = 0.5, top_k: int = 5) -> dict:
    """Score the stored crops of a prepared dataset (optionally one split) and summarise."""
    recs = read_index(dataset, split)
    if not recs:
        raise ValueError(f"no faces in {dataset} (split {split})")
    spec = runner.crop_spec
    scores: list[float] = []
    for i in range(0, len(recs), batch):
        crops = []
        for r in recs[i:i + batch]:
            ctx = cv2.cvtColor(cv2.imread(str(Path(dataset) / r["crop"]), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            crops.append(spec.center_of(ctx))
        scores.extend(runner(np.stack(crops))[0].tolist())
    labels = [int(r["label"] == "fake") for r in recs]
    videos: dict[str, tuple[int, list[float], str | None]] = {}
    for r, lab, s in zip(recs, labels, scores):
        videos.setdefault(r["video"], (lab, [], r.get("method")))[1].append(s)
    return summarise(labels, scores, [r.get("method") for r in recs], videos, threshold, top_k)


BLENDS = {"sbi": 1.0, "bi": 0.0, "mix": None}   # share of SBI among the blended fakes (None: the recipe's)
XRAY_LEVEL = 0.5   # an X-ray cell at or above this counts as boundary (map quality in `evaluate_blended`)


def xray_iou(pred: np.ndarray, target: np.ndarray, level: float = XRAY_LEVEL) -> float:
    """IoU of a predicted X-ray map and its target, both thresholded at `level` (1.0 when both are empty)."""
    p, t = pred >= level, target >= level
    union = np.logical_or(p, t).sum()
    return float(np.logical_and(p, t).sum() / union) if union else 1.0


def evaluate_blended(runner: XrayRunner, dataset: str | Path, blend: str = "sbi", split: str = "val",
                     batch: int = 16, threshold: float = 0.5, degrade: str | None = None) -> dict:
    """Frame-level metrics on the real faces of a dataset split and fakes blended from them, and the
    quality of the X-ray maps: on the fakes, the IoU of map and true boundary (`xray_iou`); on the
    real faces, the share of map cells at or above `XRAY_LEVEL` (ideally none).

    The items are made as the training validation makes them (`XrayDataset(train=False)`):
    with the sample settings and validation seed of the recipe the checkpoint records (`SampleConfig()`
    and seed 1 for a model without one), so `blend="mix"` on the training dataset reproduces the
    validation AUC the checkpoint records. Each face is kept real or blended with probability
    `fake_prob`; `blend` says which fakes: "sbi" (self-blended), "bi" (Face X-ray with a neighbour
    of another identity) or "mix" (the recipe's share of each). `degrade` (a name of
    `degrade.DEGRADATIONS`) degrades every item, real and blended, before it is scored: how well
    blends are still told apart in, e.g., a JPEG-compressed picture.
    """
    from dataclasses import replace

    from .dataset import SampleConfig, XrayDataset

    if blend not in BLENDS:
        raise ValueError(f"unknown blend {blend!r}: use {', '.join(BLENDS)}")
    recipe = (runner.metadata.get("provenance") or {}).get("recipe") or {}
    base = SampleConfig.from_checkpoint(runner.metadata)
    cfg = base if BLENDS[blend] is None else replace(base, sbi_prob=BLENDS[blend])
    ds = XrayDataset(dataset, split, cfg, seed=recipe.get("val_seed", recipe.get("seed", 0) + 1),
                     crop=runner.crop_spec, train=False)
    worse = DEGRADATIONS[degrade] if degrade else (lambda im: im)
    labels, scores, ious, real_cells = [], [], [], []
    for i in range(0, len(ds), batch):
        items = [ds[j] for j in range(i, min(i + batch, len(ds)))]
        crops = np.stack([worse(np.ascontiguousarray(it["image"].permute(1, 2, 0).numpy())) for it in items])
        probs, maps = runner(crops)
        scores.extend(probs.tolist())
        labels.extend(int(it["label"]) for it in items)
        for it, m in zip(items, maps):
            if it["label"] > 0:
                ious.append(xray_iou(m, it["xray"].numpy()))
            else:
                real_cells.append(float((m >= XRAY_LEVEL).mean()))
    return {"blend": blend, "split": split, "degrade": degrade, "identities": len({r["identity"] for r in ds.records}),
            "frame": binary_metrics(np.array(labels), np.array(scores), threshold),
            "xray": {"level": XRAY_LEVEL, "fake_iou_mean": float(np.mean(ious)) if ious else None,
                     "fake_iou_median": float(np.median(ious)) if ious else None,
                     "real_cells_flagged": float(np.mean(real_cells)) if real_cells else None}}


def evaluate_robustness(runner: XrayRunner, dataset: str | Path, split: str = "val", threshold: float | None = None,
                        limit: int | None = None, batch: int = 16) -> dict:
    """How often real faces are called fake, as they are and under each of `degrade.DEGRADATIONS`.

    The stored crops of the split's real faces (every k-th, to at most `limit`) are scored clean and
    degraded; a face is a false alarm when its score reaches `threshold` (default: the model's
    video threshold, `runner.threshold`).
    """

    threshold = runner.threshold if threshold is None else threshold
    recs = [r for r in read_index(dataset, split) if r["label"] == "real"]
    if not recs:
        raise ValueError(f"no real faces in {dataset} (split {split})")
    if limit and len(recs) > limit:
        recs = recs[::math.ceil(len(recs) / limit)]
    spec = runner.crop_spec
    crops = [spec.center_of(cv2.cvtColor(cv2.imread(str(Path(dataset) / r["crop"]), cv2.IMREAD_COLOR),
                                         cv2.COLOR_BGR2RGB)) for r in recs]
    out = {"split": split, "faces": len(recs), "threshold": threshold, "conditions": {}}
    for name, fn in {"clean": None, **DEGRADATIONS}.items():
        scores = []
        for i in range(0, len(crops), batch):
            chunk = crops[i:i + batch] if fn is None else [fn(c) for c in crops[i:i + batch]]
            scores.extend(runner(np.stack(chunk))[0].tolist())
        s = np.array(scores)
        out["conditions"][name] = {"false_alarm_rate": float((s >= threshold).mean()), "mean_score": float(s.mean()),
                                   "p95_score": float(np.quantile(s, 0.95))}
    return out


def evaluate_files(pipeline, rows: list[dict], threshold: float = 0.5, top_k: int = 5, progress: bool = True) -> dict:
    """Run the scan pipeline over labelled files and summarise (files with no face are counted, not scored)."""
    from tqdm import tqdm

    labels, scores, methods = [], [], []
    videos: dict[str, tuple[int, list[float], str | None]] = {}
    skipped = defaultdict(list)
    for row in tqdm(rows, unit="file", disable=not progress):
        out = pipeline.run(row["path"])
        if out.result.error or not out.scores:
            skipped[out.result.error or "no face"].append(row["path"])
            continue
        probs = [s.prob for s in out.scores]
        labels += [row["label"]] * len(probs)
        scores += probs
        methods += [row["method"]] * len(probs)
        videos.setdefault(row["video"], (row["label"], [], row["method"]))[1].extend(probs)
    res = summarise(labels, scores, methods, videos, threshold, top_k) if labels else {}
    res["not_scored"] = {k: v for k, v in skipped.items()}
    return res


def rows_of_layout(folder: str | Path) -> list[dict]:
    """Labelled rows for every video and photo under `folder`, labels and methods from the FF++ layout
    (`original_sequences` real, `manipulated_sequences/<method>` fake; other files count as real)."""
    from .prepare import find_sources

    return [{"path": str(s.path), "label": int(s.label == "fake"), "video": s.video, "method": s.method}
            for s in find_sources([folder])]


def evaluate(source: str | Path, runner: XrayRunner, split: str | None = None, sample: str | None = None,
             blend: str | None = None, robustness: bool = False, degrade: str | None = None) -> dict:
    """Evaluate `runner` on a prepared dataset (a folder with index.jsonl: its crops, with `blend`
    its faces against fakes blended from them, with `robustness` its real faces degraded), a CSV
    of labelled files, or a folder in the FF++ layout (both through the scan pipeline)."""
    source = Path(source)
    if (source / "index.jsonl").exists():
        if robustness:
            return evaluate_robustness(runner, source, split=split or "val")
        if blend:
            return evaluate_blended(runner, source, blend, split=split or "val", threshold=runner.threshold,
                                    degrade=degrade)
        return evaluate_index(runner, source, split=split, threshold=runner.threshold)
    if blend or robustness:
        raise ValueError("--blend and --robustness need a prepared dataset (a folder with index.jsonl)")
    if degrade:
        raise ValueError("--degrade goes with --blend")
    rows = rows_of_layout(source) if source.is_dir() else read_csv(source)
    from dataclasses import replace

    from ..faces.detect import RetinaFaceDetector
    from ..pipeline import Pipeline, PipelineConfig

    cfg = PipelineConfig() if sample is None else replace(PipelineConfig(), sample=sample)
    detector = RetinaFaceDetector(engine=runner.engine.name, device=str(runner.engine.device))
    return evaluate_files(Pipeline(detector, runner, cfg), rows, threshold=runner.threshold)
