"""Accuracy of an X-ray model (default: the shipped one), written down as numbers.

On the held-out (validation) identities of the dataset the model was trained on:
  - self-blended AUC, SBI and BI fakes separately, with the X-ray map's IoU with the true boundary;
  - the video-level false-alarm rate at the model's threshold on their real videos and photos, as
    `scan` scores them (re-measured here by `calibrate`, the very scoring that chose the threshold);
  - the face-level false-alarm rate of their real faces at that threshold, clean and degraded
    (JPEG q25, ×0.3 rescaling, blur σ 1.5, unsharp masking, H.264 CRF 35, a small face compressed
    and blown up: `facexray.train.degrade.DEGRADATIONS`).
On ../shared/data/labeled_dev: the score and verdict of every labelled item, through the scan
pipeline (a table: a handful of items gives no AUC worth claiming).
Writes benchmarks/results/accuracy.json (or --name).

    python benchmarks/bench_accuracy.py --data data/real [--model PATH] [--name accuracy]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import SHARED, machine, save  # noqa: E402

from facexray.decode import IMAGE_EXTENSIONS  # noqa: E402
from facexray.engines.xray import DEFAULT_MODEL, load_xray  # noqa: E402
from facexray.faces.detect import DetectorConfig, RetinaFaceDetector  # noqa: E402
from facexray.pipeline import Pipeline, PipelineConfig  # noqa: E402
from facexray.train.calibrate import calibrate  # noqa: E402
from facexray.train.evaluate import evaluate_blended, evaluate_robustness  # noqa: E402

LABELED_DEV = SHARED / "data/labeled_dev"


def labeled_dev(pipeline: Pipeline) -> list[dict]:
    """Score and verdict of every item of labeled_dev/LABELS.csv, as `scan` gives them."""
    rows = []
    with open(LABELED_DEV / "LABELS.csv", newline="") as f:
        for r in csv.DictReader(f):
            res = pipeline.run(str(LABELED_DEV / r["file"])).result
            rows.append({"file": r["file"], "label": r["label"], "dataset": r["dataset"], "method": r["method"],
                         "unit": r["unit"], "score": None if res.score is None else round(res.score, 4),
                         "verdict": res.verdict, "faces_scored": res.faces_scored, "error": res.error})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="the prepared dataset the model was trained on")
    ap.add_argument("--model", default=None, help=f"checkpoint (default {DEFAULT_MODEL.name}, the shipped one)")
    ap.add_argument("--name", default="accuracy")
    args = ap.parse_args()
    t0 = time.perf_counter()
    runner = load_xray(args.model, engine="onnxruntime")
    meta = runner.metadata
    out: dict = {"machine": machine(), "model": {"name": runner.name, "arch": meta["arch"],
                                                 "threshold": runner.threshold,
                                                 "validation_auc_recorded": meta["provenance"]["validation"]["auc"]},
                 "data": args.data}
    blends = {b: evaluate_blended(runner, args.data, b, split="val") for b in ("sbi", "bi")}
    out["self_blend_val"] = {b: {"auc": round(r["frame"]["auc"], 4), "n_real": r["frame"]["n_real"],
                                 "n_fake": r["frame"]["n_fake"], "identities": r["identities"], "xray": r["xray"]}
                             for b, r in blends.items()}
    scores = calibrate(args.model or DEFAULT_MODEL, args.data, engine="onnxruntime", progress=False,
                       with_unflipped=False).scores
    values = np.array(list(scores.values()))
    videos = np.array([Path(s).suffix.lower() not in IMAGE_EXTENSIONS for s in scores])
    t = runner.threshold
    out["video_false_alarms_val"] = {
        "threshold": t, "sources": len(values), "false_alarm_rate": round(float((values >= t).mean()), 4),
        "videos": int(videos.sum()), "video_false_alarm_rate": round(float((values[videos] >= t).mean()), 4)
        if videos.any() else None,
        "photos": int((~videos).sum()), "photo_false_alarm_rate": round(float((values[~videos] >= t).mean()), 4)
        if (~videos).any() else None,
        "score_quantiles": {q: round(float(np.quantile(values, q)), 4) for q in (0.5, 0.9, 0.95)}}
    out["robustness_val_real_faces"] = evaluate_robustness(runner, args.data, split="val")
    if (LABELED_DEV / "LABELS.csv").exists():
        with Pipeline(RetinaFaceDetector(config=DetectorConfig(), engine="onnxruntime"), runner, PipelineConfig()) as p:
            out["labeled_dev"] = labeled_dev(p)
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    save(args.name, out)


if __name__ == "__main__":
    main()
