"""Throughput of `facexray scan` over a fixed subset of the real videos, per way of running it.

Runs, in one process and one session (so the ratios compare like with like):
  local scan with K = 1, 2 and 4 videos decoded at once (K = 1 is the baseline),
  Ray local (a new local cluster) with 1 and 2 workers.
Each configuration is scanned `--runs` times, round-robin after one warm-up scan (a drift in the
machine's load then hits every configuration); the time is the scan's own (`ScanReport.elapsed_s`:
from the first video handed out to the last record written, models already loaded and Ray workers
up); the median is reported with videos/s, frames/s and the ratio to K = 1.
Writes benchmarks/results/scan.json (or --name).

    python benchmarks/bench_scan.py [--runs 3] [--videos 8] [--sample uniform=8] [--name scan]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ROOT, SHARED, machine, save  # noqa: E402

sys.path.insert(0, str(ROOT))  # this checkout's facexray, whatever is installed

from facexray.pipeline import PipelineConfig  # noqa: E402
from facexray.scan import ScanConfig, scan  # noqa: E402

CONFIGS = {  # name: ScanConfig fields
    "local K=1": {"concurrency": 1},
    "local K=2": {"concurrency": 2},
    "local K=4": {"concurrency": 4},
    "ray local, 1 worker": {"ray": "local", "ray_workers": 1},
    "ray local, 2 workers": {"ray": "local", "ray_workers": 2},
}


def scan_once(files: list[str], cfg: ScanConfig) -> tuple[float, int]:
    """One scan of `files` into a fresh results file: its scan time and the frames it scored."""
    with tempfile.TemporaryDirectory() as d:
        rep = scan(files, dataclasses.replace(cfg, out=os.path.join(d, "r.jsonl")))
    assert rep.exit_code == 0 and len(rep.results) == len(files), rep.exit_code
    return rep.elapsed_s, sum(r.frames_scored for r in rep.results)


def summary(n_videos: int, times: list[float], frames: int) -> dict:
    t = statistics.median(times)
    return {"median_s": round(t, 3), "runs_s": [round(x, 3) for x in times], "videos_per_s": round(n_videos / t, 3),
            "frames_per_s": round(frames / t, 2), "frames": frames}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--videos", type=int, default=8, help="how many of the real videos (every other one, sorted)")
    ap.add_argument("--sample", default="uniform=8")
    ap.add_argument("--only", nargs="*", choices=list(CONFIGS), help="only these configurations (K=1 always runs)")
    ap.add_argument("--name", default="scan")
    args = ap.parse_args()
    files = [str(p) for p in sorted((SHARED / "data/real_videos").rglob("*.mp4"))[::2][:args.videos]]
    base = ScanConfig(model="random", progress=False, pipeline=PipelineConfig(sample=args.sample))
    out: dict = {"machine": machine(), "runs": args.runs, "sample": args.sample, "model": "random",
                 "videos": [os.path.relpath(f, SHARED) for f in files]}
    names = [n for n in CONFIGS if n == "local K=1" or not args.only or n in args.only]
    cfgs = {n: dataclasses.replace(base, **CONFIGS[n]) for n in names}
    scan_once(files, cfgs[names[0]])  # warm-up: the first scan of a session fills caches
    times: dict[str, list[float]] = {n: [] for n in names}
    frames: dict[str, int] = {}
    for run in range(args.runs):  # round-robin, so that a change in the machine's load hits every configuration
        for name in names:
            print(f"== run {run + 1}/{args.runs}: {name}", file=sys.stderr)
            t, frames[name] = scan_once(files, cfgs[name])
            times[name].append(t)
    out["results"] = {n: summary(len(files), times[n], frames[n]) for n in names}
    k1 = out["results"]["local K=1"]["median_s"]
    for r in out["results"].values():
        r["speedup_vs_K1"] = round(k1 / r["median_s"], 2)
    out["load_average_at_end"] = os.getloadavg()
    save(args.name, out)


if __name__ == "__main__":
    main()
