"""GPU benchmark: decode, detector, X-ray and end-to-end speed, and peak GPU memory, in one run (~5 min).

Measures on ../shared/data/bench/facenet_1080p_60s.mp4 (1920x1080 H.264, 25 fps, 1500 frames):
  decode-only fps of the whole clip: DALI (NVDEC) vs PyAV (CPU threads);
  detector frames/s (RetinaFace at 640 px: 1080p frames become 384x640 inputs) and X-ray faces/s
  (HRNet, default W18, at 256²) per engine configuration and batch size: torch fp32 eager,
  torch fp16 + CUDA graphs, torch.compile (fp16, at the largest batch only: each batch size
  compiles anew), and TensorRT FP16 when it is installed;
  end-to-end `--sample all` fps of the pipeline (fp16 + CUDA graphs, DALI when installed),
  and its ratio to DALI decode-only fps;
  peak GPU memory (torch's allocator) of each part.
Targets (issue 4, H100): X-ray >= 5000 faces/s, detector >= 1500 frames/s, end-to-end >= 800 fps
and >= 70 % of DALI decode-only fps. Writes benchmarks/results/gpu_<device>.json.

    python benchmarks/bench_gpu.py [--runs 3] [--arch xray_hrnet_w18] [--skip-compile]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402
from common import SHARED, machine, median_time, save  # noqa: E402

LONG = SHARED / "data/bench/facenet_1080p_60s.mp4"
BATCHES = (1, 8, 32, 64)
TARGETS = {"xray_faces_per_s": 5000, "detector_frames_per_s": 1500, "end_to_end_fps": 800,
           "end_to_end_over_dali_decode": 0.7}


def synced(fn):
    """`fn` followed by a device synchronisation, so wall time covers the GPU work."""
    def run():
        out = fn()
        torch.cuda.synchronize()
        return out
    return run


def peak_mb() -> float:
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def count(reader) -> int:
    with reader as r:
        return sum(1 for _ in r)


def engine_configs(skip_compile: bool) -> dict:
    from facexray.engines import TorchOptions

    configs = {"torch_fp32_eager": TorchOptions(),
               "torch_fp16_cuda_graphs": TorchOptions.for_device("cuda")}
    if not skip_compile:
        configs["torch_fp16_compile"] = TorchOptions(precision="fp16", channels_last=True, compile=True)
    return configs


def bench_network(name: str, module, outputs, shape, configs: dict, runs: int, dynamic_hw: bool) -> dict:
    """Items/s of one network per engine configuration and batch size, on random inputs of `shape` (C, H, W)."""
    from facexray.engines import create_engine
    from facexray.errors import BackendUnavailable

    res: dict = {}
    for label, opts in configs.items():
        torch.cuda.reset_peak_memory_stats()
        eng = create_engine("torch", module, outputs, (1, *shape), key=name, device="cuda", dynamic_hw=dynamic_hw,
                            options=opts)
        batches = BATCHES[-1:] if opts.compile else BATCHES
        res[label] = {}
        for b in batches:
            x = torch.randn((b, *shape), device="cuda")
            t, _ = median_time(synced(lambda: eng(x)), runs, warmup=2)
            res[label][f"batch{b}"] = round(b / t, 1)
        res[label]["peak_gpu_mb"] = peak_mb()
        del eng
        torch.cuda.empty_cache()
    if importlib.util.find_spec("tensorrt") is None:
        res["tensorrt_fp16"] = "not installed"
        return res
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    try:
        eng = create_engine("tensorrt", module, outputs, (1, *shape), key=name, device="cuda", dynamic_hw=dynamic_hw)
    except BackendUnavailable as e:  # e.g. a TensorRT other than 10: say so, keep the torch figures
        res["tensorrt_fp16"] = str(e)
        return res
    res["tensorrt_fp16"] = {"build_or_load_s": round(time.perf_counter() - t0, 1)}
    for b in BATCHES:
        x = torch.randn((b, *shape), device="cuda")
        t, _ = median_time(synced(lambda: eng(x)), runs, warmup=2)
        res["tensorrt_fp16"][f"batch{b}"] = round(b / t, 1)
    res["tensorrt_fp16"]["peak_gpu_mb_torch_side"] = peak_mb()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--arch", default="xray_hrnet_w18")
    ap.add_argument("--name", help="result name (default gpu_<device>)")
    ap.add_argument("--skip-compile", action="store_true", help="leave out torch.compile (minutes of compiling)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_gpu.py needs a CUDA device and torch sees none here; CPU figures come from bench_cpu.py")
    if not LONG.exists():
        sys.exit(f"benchmark clip not found: {LONG}")

    from facexray.decode import open_decoder, open_video
    from facexray.engines import TorchOptions, create_engine
    from facexray.engines.xray import XrayRunner
    from facexray.faces.crop import CropSpec
    from facexray.faces.detect import _OUTPUTS, RetinaFaceDetector, _ceil32
    from facexray.models.checkpoint import random_model
    from facexray.models.xray import OUTPUT_NAMES
    from facexray.pipeline import Pipeline, PipelineConfig

    device = torch.cuda.get_device_name(0)
    dali = importlib.util.find_spec("nvidia") is not None and importlib.util.find_spec("nvidia.dali") is not None
    out: dict = {"machine": {**machine(), "gpu": device, "cuda_runtime": torch.version.cuda,
                             "gpu_memory_gb": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)},
                 "runs": args.runs, "clip": str(LONG.relative_to(SHARED)), "arch": args.arch, "targets": TARGETS}

    # -- decode ----------------------------------------------------------------------------------
    with open_video(LONG, "uniform=1") as r:
        info = r.info
    n_frames = count(open_video(LONG, "all"))
    dec: dict = {"frames": n_frames, "size": [info.width, info.height], "codec": info.codec}
    t, _ = median_time(lambda: count(open_video(LONG, "all")), args.runs, warmup=0)
    dec["pyav_cpu_fps"] = round(n_frames / t, 1)
    if dali:
        torch.cuda.reset_peak_memory_stats()
        t, _ = median_time(synced(lambda: count(open_decoder(LONG, "all", "dali", "cuda"))), args.runs, warmup=1)
        dec["dali_fps"] = round(n_frames / t, 1)
        dec["dali_over_pyav"] = round(dec["dali_fps"] / dec["pyav_cpu_fps"], 2)
        dec["dali_peak_gpu_mb"] = peak_mb()
    else:
        dec["dali_fps"] = 'not installed (pip install -e ".[gpu]")'
    out["decode"] = dec

    # -- networks --------------------------------------------------------------------------------
    configs = engine_configs(args.skip_compile)
    det = RetinaFaceDetector(engine="torch", device="cuda")
    side = det._scale(info.height, info.width)
    det_shape = (3, _ceil32(side[0]), _ceil32(side[1]))
    out["detector_frames_per_s"] = {"input": list(det_shape), **bench_network(
        "retinaface_mnet025-bench", det.engine.module.float(), _OUTPUTS, det_shape, configs, args.runs, True)}
    del det
    net, meta = random_model(args.arch, crop=CropSpec().to_dict())
    out["xray_faces_per_s"] = {"input": [3, 256, 256], **bench_network(
        f"random-{args.arch}", net, OUTPUT_NAMES, (3, 256, 256), configs, args.runs, False)}

    # -- end to end ------------------------------------------------------------------------------
    torch.cuda.reset_peak_memory_stats()
    xray = XrayRunner(create_engine("torch", net, OUTPUT_NAMES, (1, 3, 256, 256), key=f"random-{args.arch}",
                                    device="cuda", options=TorchOptions.for_device("cuda", warmup_shape=(3, 256, 256))),
                      meta, f"random-{args.arch}")
    detector = RetinaFaceDetector(engine="torch", device="cuda")
    e2e: dict = {"sample": "all", "engine": "torch fp16 + CUDA graphs"}
    for decoder in (["dali"] if dali else []) + ["pyav"]:
        cfg = PipelineConfig(sample="all", decoder=decoder, detect_batch=32, queue_frames=64)
        with Pipeline(detector, xray, cfg) as pipe:
            res = pipe.run(LONG).result                           # warm-up: captures the detector's graphs
            assert res.error is None, res.error
            t, _ = median_time(lambda: pipe.run(LONG), args.runs, warmup=0)
        e2e[f"{decoder}_fps"] = round(n_frames / t, 1)
        e2e[f"{decoder}_faces_scored"] = res.faces_scored
        e2e[f"{decoder}_timings_of_warmup_run"] = res.timings
    if dali and isinstance(dec.get("dali_fps"), float):
        e2e["over_dali_decode_only"] = round(e2e["dali_fps"] / dec["dali_fps"], 3)
    e2e["peak_gpu_mb"] = peak_mb()
    out["end_to_end"] = e2e
    out["load_average_at_end"] = os.getloadavg()
    save(args.name or "gpu_" + re.sub(r"[^a-z0-9]+", "_", device.lower()).strip("_"), out)


if __name__ == "__main__":
    main()
