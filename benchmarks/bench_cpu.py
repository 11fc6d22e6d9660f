"""CPU benchmark of the scan path, measured in one run against a naive frame-by-frame loop.

Measures on real clips from ../shared:
  decode-only fps (full decode) and uniform=32 vs full decode of the 60-s 1080p clip,
  detector frames/s at batch 1 and 16, X-ray faces/s at batch 1 and 32 (torch and onnxruntime) of
  each X-ray architecture (`ARCHS`: the shipped EfficientNet-Lite0 fusing at 1/8, the same fusing at 1/4
  (the model shipped before), and HRNet-W18-small-v2, side by side), and of the shipped one scoring
  each face with its mirror image too (`+flip`, as it is calibrated to: `models.xray.XrayNet`),
  end-to-end `--sample all` fps of the pipeline (torch, onnxruntime; each architecture) and of the
  naive loop (decode a frame, detect it, classify each face at batch 1 with HRNet-W18-small-v2 on torch,
  as reference detect_video code does), and the peak memory (max RSS) of `facexray scan` (the shipped
  model) over all real videos.
Writes benchmarks/results/cpu.json (or --name).

    python benchmarks/bench_cpu.py [--runs 3] [--name cpu]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import SHARED, machine, median_time, save  # noqa: E402

from facexray.decode import open_video  # noqa: E402
from facexray.engines import create_engine, default_batch  # noqa: E402
from facexray.engines.xray import DEFAULT_MODEL, XrayRunner, load_xray  # noqa: E402
from facexray.faces.crop import CropSpec, crop_face  # noqa: E402
from facexray.faces.detect import RetinaFaceDetector  # noqa: E402
from facexray.models import OUTPUT_NAMES, random_model, read_metadata  # noqa: E402
from facexray.pipeline import Pipeline, PipelineConfig  # noqa: E402

ARCHS = ("xray_efficientnet_lite0_f8", "xray_efficientnet_lite0", "xray_hrnet_w18_small_v2",
         "xray_efficientnet_lite0_f8+flip")
REFERENCE_ARCH = "xray_hrnet_w18_small_v2"   # the naive loop's network, as in the reference implementation
CLIP = SHARED / "data/real_videos/video_retalking/examples__face__4.mp4"
LONG = SHARED / "data/bench/facenet_1080p_60s.mp4"


def count_frames(path, sample: str) -> int:
    with open_video(path, sample) as r:
        return sum(1 for _ in r)


def naive_loop(path, detector: RetinaFaceDetector, xray) -> int:
    """The reference style: one frame decoded, detected, and each of its faces classified alone."""
    n = 0
    with open_video(path, "all") as reader:
        for frame in reader:
            det = detector.detect([frame.image])[0]
            for lm in det.landmarks:
                xray(crop_face(frame.image, lm, xray.crop_spec)[0][None])
            n += 1
    return n


def xray_runner(name: str, engine: str) -> XrayRunner:
    """The shipped model where it has this architecture (same speed as any weights), else random weights;
    a name ending in `+flip` scores each face with its mirror image too, others do not."""
    arch, _, flip = name.partition("+")
    if DEFAULT_MODEL.exists() and read_metadata(DEFAULT_MODEL)["arch"] == arch:
        return load_xray(None, engine=engine, flip=bool(flip))
    net, meta = random_model(arch, crop=CropSpec().to_dict())
    net.flip = bool(flip)
    return XrayRunner(create_engine(engine, net, OUTPUT_NAMES, (1, 3, 256, 256), key=f"random-{name}"), meta, name)


def per_second(count: int, seconds: float) -> float:
    return round(count / seconds, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--name", default="cpu")
    ap.add_argument("--skip-memory", action="store_true")
    args = ap.parse_args()
    if not CLIP.exists():
        sys.exit(f"benchmark clips not found under {SHARED}")
    out: dict = {"machine": machine(), "runs": args.runs, "clip": str(CLIP.relative_to(SHARED)),
                 "long_clip": str(LONG.relative_to(SHARED))}

    n_clip = count_frames(CLIP, "all")
    t, _ = median_time(lambda: count_frames(CLIP, "all"), args.runs)
    out["decode"] = {"clip_frames": n_clip, "clip_full_fps": per_second(n_clip, t)}
    if LONG.exists():
        t_full, _ = median_time(lambda: count_frames(LONG, "all"), args.runs, warmup=0)
        t_uni, _ = median_time(lambda: count_frames(LONG, "uniform=32"), args.runs, warmup=0)
        out["decode"].update(long_full_s=round(t_full, 3), long_uniform32_s=round(t_uni, 3),
                             long_uniform32_over_full=round(t_uni / t_full, 3), target_ratio_at_most=0.5)

    with open_video(CLIP, "uniform=16") as r:
        frames = [f.image for f in r]
    detectors = {e: RetinaFaceDetector(engine=e) for e in ("torch", "onnxruntime")}
    detectors16 = {e: RetinaFaceDetector(engine=e, max_batch=16) for e in ("torch", "onnxruntime")}
    xrays = {(a, e): xray_runner(a, e) for a in ARCHS for e in ("torch", "onnxruntime")}
    out["xray_models"] = {a: xrays[a, "torch"].name for a in ARCHS}
    dets = detectors["torch"].detect(frames)
    spec = xrays[ARCHS[0], "torch"].crop_spec
    crops = [crop_face(img, d.landmarks[0], spec)[0] for img, d in zip(frames, dets) if len(d.scores)]
    crops32 = np.stack([crops[i % len(crops)] for i in range(32)])
    out["detector_fps"], out["xray_faces_per_s"] = {}, {a: {} for a in ARCHS}
    for e in ("torch", "onnxruntime"):
        d = detectors[e]
        t1, _ = median_time(lambda: [d.detect([f]) for f in frames], args.runs)
        t16, _ = median_time(lambda: detectors16[e].detect(frames), args.runs)
        t_def, _ = median_time(lambda: d.detect(frames), args.runs)
        out["detector_fps"][e] = {"batch1": per_second(len(frames), t1), "batch16": per_second(len(frames), t16),
                                  f"default_batch{default_batch('detect', 'cpu')}": per_second(len(frames), t_def),
                                  "frame_size": list(frames[0].shape[:2])}
        for a in ARCHS:
            x = xrays[a, e]
            t1, _ = median_time(lambda: [x(c[None]) for c in crops32], args.runs)
            t32, _ = median_time(lambda: x(crops32), args.runs)
            bd = default_batch("xray", "cpu")
            t_def, _ = median_time(lambda: [x(crops32[i:i + bd]) for i in range(0, 32, bd)], args.runs)
            out["xray_faces_per_s"][a][e] = {"batch1": per_second(32, t1), "batch32": per_second(32, t32),
                                             f"default_batch{bd}": per_second(32, t_def)}
    for e in ("torch", "onnxruntime"):
        fast, *others = (out["xray_faces_per_s"][a][e][f"default_batch{default_batch('xray', 'cpu')}"] for a in ARCHS)
        for a, ref in zip(ARCHS[1:], others):
            out["xray_faces_per_s"][f"{ARCHS[0]}_over_{a}_{e}"] = round(fast / ref, 3)

    e2e: dict = {}
    t, _ = median_time(lambda: naive_loop(CLIP, detectors["torch"], xrays[REFERENCE_ARCH, "torch"]), args.runs)
    e2e["naive_torch_fps"] = per_second(n_clip, t)
    for a in ARCHS:
        for e in ("torch", "onnxruntime"):
            pipe = Pipeline(detectors[e], xrays[a, e], PipelineConfig(sample="all"))
            res = pipe.run(CLIP).result
            assert res.error is None and res.frames_scored == n_clip, res
            t, _ = median_time(lambda: pipe.run(CLIP), args.runs, warmup=0)
            e2e[f"{a}_pipeline_{e}_fps"] = per_second(n_clip, t)
            e2e[f"{a}_pipeline_{e}_over_naive"] = round(e2e[f"{a}_pipeline_{e}_fps"] / e2e["naive_torch_fps"], 3)
    e2e["target_over_naive_at_least"] = 1.5
    out["end_to_end_sample_all"] = e2e

    if not args.skip_memory:
        # The scan runs in a fresh process that reports its own peak RSS as VmHWM, which belongs to its
        # own address space: ru_maxrss (self or children) survives exec on Linux, so it would report this
        # large benchmark process's size as inherited between fork and exec.
        code = ("import re, sys; from facexray.cli import main; rc = main(sys.argv[1:]); "
                "print('PEAK_KB', re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1], "
                "file=sys.stderr); sys.exit(rc)")
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            model = [] if DEFAULT_MODEL.exists() else ["--model", "random"]
            proc = subprocess.run([sys.executable, "-c", code, "scan", str(SHARED / "data/real_videos"), *model,
                                   "--out", os.path.join(tmp, "r.jsonl"), "-q"],
                                  capture_output=True, text=True)
            wall = time.perf_counter() - t
        peak_mb = int(proc.stderr.rsplit("PEAK_KB", 1)[1].split()[0]) / 1024
        out["scan_all_real_videos"] = {"exit_code": proc.returncode, "wall_s": round(wall, 1),
                                       "settings": "defaults (uniform=32, engine auto)", "model": model or "shipped",
                                       "peak_rss_mb": round(peak_mb, 1),
                                       "target_peak_mb_below": 2048}
    out["load_average_at_end"] = os.getloadavg()
    save(args.name, out)


if __name__ == "__main__":
    main()
