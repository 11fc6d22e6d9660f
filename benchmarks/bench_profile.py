"""Where `scan --sample all` spends its time on two cores, and the levers of issue 16 on and off in one run.

For the three clips the issue measured the reference implementation on (its `detect_video`: dlib +
HRNet-W18 at batch 1; figures in `REFERENCE_FPS`), each configuration below scores every frame through
the pipeline as `facexray scan --sample all` does (ONNX Runtime, default batches), timed as the median
of --runs runs, with the time per stage from the record (`timings`: the networks' own seconds, shared
out per frame and face) and `outside_networks_s` = wall − (detect + crop + X-ray): when positive, the
time outside the networks (decoding not hidden behind them, waiting in queues, Python); when negative,
detection and X-ray batches ran at the same time (each stage has its own thread) for at least that long:

  before         the network that fuses its branches at 1/4 (`xray_efficientnet_lite0`), detector on every frame
  fuse_1/8       the shipped network, fusing at 1/8 (`xray_efficientnet_lite0_f8`), detector on every frame
  + interval     and the detector skipping frames within `detect_interval_s` (0.05 s) of the last it saw
                 (`scan --no-flip`)
  + flip         and each face scored with its mirror image too, as the shipped model is calibrated: the
                 defaults
  + 1 thread     and each ONNX Runtime session held to one intra-op thread (detector and X-ray run at the
                 same time in their own batcher threads)
  + int8         (with --int8 FILE.onnx, from `facexray export --int8`) the defaults with that int8 X-ray

A decode-only pass gives each clip's decoding cost alone. The shipped model's weights serve the 1/8
configurations (unmirrored but in `+ flip`); the 1/4 network runs with random weights (same cost). Writes benchmarks/results/profile.json.

    python benchmarks/bench_profile.py [--runs 3] [--int8 FILE.onnx]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import replace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import SHARED, machine, median_time, save  # noqa: E402

from facexray.decode import open_video  # noqa: E402
from facexray.engines import create_engine  # noqa: E402
from facexray.engines.onnx_engine import OnnxRuntimeEngine  # noqa: E402
from facexray.engines.xray import XrayRunner, load_xray  # noqa: E402
from facexray.faces.crop import CropSpec  # noqa: E402
from facexray.faces.detect import RetinaFaceDetector  # noqa: E402
from facexray.models import OUTPUT_NAMES, random_model  # noqa: E402
from facexray.pipeline import Pipeline, PipelineConfig  # noqa: E402

# The reference implementation's --sample all fps on this machine (issue 16's table).
REFERENCE_FPS = {
    "data/real_videos/face_recognition/examples__short_hamilton_clip.mp4": 3.50,
    "data/real_videos/ghost/examples__videos__nggyup.mp4": 1.12,
    "data/real_videos/facenet_pytorch/examples__video.mp4": 0.53,
}
TARGET_OVER_REFERENCE = 20.0


def geomean(xs: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def count_frames(path) -> int:
    with open_video(path, "all") as r:
        return sum(1 for _ in r)


def one_thread(engine: OnnxRuntimeEngine) -> OnnxRuntimeEngine:
    return OnnxRuntimeEngine(engine.path, threads=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--name", default="profile")
    ap.add_argument("--int8", metavar="FILE.onnx", help="also measure this int8 export of the shipped model")
    args = ap.parse_args()
    clips = {rel: SHARED / rel for rel in REFERENCE_FPS}
    if not all(p.exists() for p in clips.values()):
        sys.exit(f"the clips of issue 16 are not all under {SHARED}")
    out: dict = {"machine": machine(), "runs": args.runs, "reference_fps": REFERENCE_FPS,
                 "target_over_reference_geomean": TARGET_OVER_REFERENCE}

    shipped = load_xray(None, engine="onnxruntime", flip=False)
    net, meta = random_model("xray_efficientnet_lite0", crop=CropSpec().to_dict())
    fine = XrayRunner(create_engine("onnxruntime", net, OUTPUT_NAMES, (1, 3, 256, 256), key="random-lite0"), meta,
                      "random xray_efficientnet_lite0")
    detector = RetinaFaceDetector(engine="onnxruntime")
    detector_1t = RetinaFaceDetector(engine="onnxruntime")
    detector_1t.engine = one_thread(detector_1t.engine)
    shipped_1t = XrayRunner(one_thread(shipped.engine), shipped.metadata, shipped.name)
    every = PipelineConfig(sample="all", detect_interval_s=0.0)
    configs = {
        "before": (detector, fine, every),
        "fuse_1/8": (detector, shipped, every),
        "fuse_1/8 + interval": (detector, shipped, replace(every, detect_interval_s=PipelineConfig().detect_interval_s)),
        "fuse_1/8 + interval + 1 thread": (detector_1t, shipped_1t,
                                           replace(every, detect_interval_s=PipelineConfig().detect_interval_s)),
        "fuse_1/8 + interval + flip": (detector, load_xray(None, engine="onnxruntime", flip=True),
                                       replace(every, detect_interval_s=PipelineConfig().detect_interval_s)),
    }
    if args.int8:
        configs["fuse_1/8 + interval + int8"] = (detector, load_xray(args.int8, engine="onnxruntime"),
                                                 replace(every, detect_interval_s=PipelineConfig().detect_interval_s))
    out["configs"] = {name: {"xray": x.name, "arch": x.metadata["arch"], "flip": x.flip,
                             "detect_interval_s": c.detect_interval_s,
                             "ort_threads": x.engine.session.get_session_options().intra_op_num_threads or "default"}
                      for name, (_, x, c) in configs.items()}

    out["clips"] = {}
    for rel, path in clips.items():
        n = count_frames(path)
        t_dec, _ = median_time(lambda: count_frames(path), args.runs)
        row: dict = {"frames": n, "decode_only_fps": round(n / t_dec, 1), "reference_fps": REFERENCE_FPS[rel]}
        for name, (det, xray, cfg) in configs.items():
            with Pipeline(det, xray, cfg) as pipe:
                records = []

                def run():
                    records.append(pipe.run(path).result)
                t, times = median_time(run, args.runs)
            rec = records[-1]
            assert rec.error is None and rec.frames_scored == n, rec
            tm = rec.timings
            row[name] = {
                "fps": round(n / t, 2), "over_reference": round(n / t / REFERENCE_FPS[rel], 2),
                "runs_s": [round(x, 2) for x in times], "faces": rec.faces_scored,
                "frames_with_faces": rec.frames_with_faces, "score": round(rec.score, 4),
                "stages_s": {k: round(tm.get(k, 0.0), 3) for k in ("detect_s", "crop_s", "xray_s")},
                "outside_networks_s": round(tm["total_s"] - tm["detect_s"] - tm["crop_s"] - tm["xray_s"], 3),
                "wall_s": round(tm["total_s"], 3),
            }
            print(f"{rel.split('/')[-1][:40]:40s} {name:32s} {n / t:6.1f} fps  ({n / t / REFERENCE_FPS[rel]:5.1f}x ref)  "
                  f"{row[name]['stages_s']}", flush=True)
        out["clips"][rel] = row
    out["geomean_over_reference"] = {
        name: round(geomean([row[name]["over_reference"] for row in out["clips"].values()]), 2) for name in configs}
    out["load_average_at_end"] = os.getloadavg()
    out["date_end"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    save(args.name, out)


if __name__ == "__main__":
    main()
