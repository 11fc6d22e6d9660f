"""Shared helpers of the benchmark scripts: machine description, timing, JSON output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
RESULTS = Path(__file__).resolve().parent / "results"
os.environ.setdefault("FACEXRAY_MODELS", str(SHARED / "models"))


def machine() -> dict:
    """Where and with what the numbers were taken."""
    import av
    import cv2
    import numpy
    import onnxruntime
    import torch

    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "av": av.__version__, "opencv": cv2.__version__, "numpy": numpy.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "git_commit": commit, "load_average_at_start": os.getloadavg(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def median_time(fn: Callable[[], object], runs: int = 3, warmup: int = 1) -> tuple[float, list[float]]:
    """Median wall time of `fn` over `runs` runs after `warmup` untimed ones; also every run's time."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def save(name: str, payload: dict) -> Path:
    """Write `payload` as benchmarks/results/NAME.json and print it."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload, indent=2))
    print(f"saved {path}")
    return path
