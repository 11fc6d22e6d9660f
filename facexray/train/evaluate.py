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
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from ..aggregate import track_score
from ..engines.xray import XrayRunner
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


def evaluate_blended(runner: XrayRunner, dataset: str | Path, blend: str = "sbi", split: str = "val",
                     batch: int = 16, threshold: float = 0.5) -> dict:
    """Frame-level metrics on the real faces of a dataset split and fakes blended from them.

    The items are made as the training validation makes them (`XrayDataset(train=False)`):
    with the sample settings and seed + 1 of the recipe the checkpoint records (`SampleConfig()`
    and seed 1 for a model without one), so `blend="mix"` on the training dataset reproduces the
    validation AUC the checkpoint records. Each face is kept real or blended with probability
    `fake_prob`; `blend` says which fakes: "sbi" (self-blended), "bi" (Face X-ray with a neighbour
    of another identity) or "mix" (the recipe's share of each).
    """
    from dataclasses import fields, replace

    from .dataset import SampleConfig, XrayDataset

    if blend not in BLENDS:
        raise ValueError(f"unknown blend {blend!r}: use {', '.join(BLENDS)}")
    recipe = (runner.metadata.get("provenance") or {}).get("recipe") or {}
    known = {f.name for f in fields(SampleConfig)}
    base = SampleConfig(**{k: v for k, v in (recipe.get("sample") or {}).items() if k in known})
    cfg = base if BLENDS[blend] is None else replace(base, sbi_prob=BLENDS[blend])
    ds = XrayDataset(dataset, split, cfg, seed=recipe.get("seed", 0) + 1, crop=runner.crop_spec, train=False)
    labels, scores = [], []
    for i in range(0, len(ds), batch):
        items = [ds[j] for j in range(i, min(i + batch, len(ds)))]
        crops = np.stack([it["image"].permute(1, 2, 0).numpy() for it in items])
        scores.extend(runner(crops)[0].tolist())
        labels.extend(int(it["label"]) for it in items)
    return {"blend": blend, "split": split, "identities": len({r["identity"] for r in ds.records}),
            "frame": binary_metrics(np.array(labels), np.array(scores), threshold)}


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
             blend: str | None = None) -> dict:
    """Evaluate `runner` on a prepared dataset (a folder with index.jsonl: its crops, or with `blend`
    its faces against fakes blended from them), a CSV of labelled files, or a folder in the FF++
    layout (both through the scan pipeline)."""
    source = Path(source)
    if (source / "index.jsonl").exists():
        if blend:
            return evaluate_blended(runner, source, blend, split=split or "val")
        return evaluate_index(runner, source, split=split)
    if blend:
        raise ValueError("--blend needs a prepared dataset (a folder with index.jsonl)")
    rows = rows_of_layout(source) if source.is_dir() else read_csv(source)
    from dataclasses import replace

    from ..faces.detect import RetinaFaceDetector
    from ..pipeline import Pipeline, PipelineConfig

    cfg = PipelineConfig() if sample is None else replace(PipelineConfig(), sample=sample)
    detector = RetinaFaceDetector(engine=runner.engine.name, device=str(runner.engine.device))
    return evaluate_files(Pipeline(detector, runner, cfg), rows)
