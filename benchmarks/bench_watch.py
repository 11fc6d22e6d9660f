"""How many live streams this machine watches at 2 analysed fps each without falling behind.

One GStreamer RTSP server serves the same real clip (25 fps) to N sessions; `facexray watch`
(in-process, the shipped model unless --model says otherwise, the default engines) analyses N
streams at 2 fps each. For each N, after a warm-up, two equal halves are measured from the watch's own Prometheus metrics:
analysed fps per stream (from `facexray_frames_analyzed_total`) and frame latency p95, capture
to verdict (from the `facexray_frame_latency_seconds` buckets, interpolated as Prometheus'
`histogram_quantile` does). N holds when every stream is analysed at >= 90 % of 2 fps in both
halves, the p95 stays under `LATENCY_BOUND_S`, and the second half's p95 is no more than 1.5x
the first's (+0.1 s): latency is not growing. N = 1 is the baseline of the same run.
Each half also profiles the stages (`facexray_stage_seconds`): the share of the wall time each
network stage (detect, crop, X-ray) was busy, and its milliseconds per analysed frame.

    python benchmarks/bench_watch.py [--seconds 24] [--max-n 12]   → benchmarks/results/watch.json
    python benchmarks/bench_watch.py --streams 1,4,8 --name watch_profile   (those N only)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, SHARED, machine, save

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from facexray.models.xray import DEFAULT_ARCH  # noqa: E402
from facexray.stream.config import AlertConfig, StreamConfig, WatchConfig  # noqa: E402
from facexray.stream.metrics import LATENCY_BUCKETS  # noqa: E402
from facexray.stream.watch import Watch  # noqa: E402

from livestreams import RtspServer, gst_rtsp_missing, wait_for  # noqa: E402

CLIP = SHARED / "data/real_videos/edtalk/test_data__pose_source2.mp4"  # 60 s, 256², H.264, 25 fps
TOOL = SHARED / "tools/rtsp_server_gst.py"
ANALYSIS_FPS = 2.0
LATENCY_BOUND_S = 1.0
WARMUP_S = 6.0
STAGES = ("detect", "crop", "xray")


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile over cumulative (upper bound, count) buckets, +Inf last."""
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if upper == float("inf"):
                return lower
            return lower + (upper - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = upper, count
    return lower


def snapshot(watch: Watch, names: list[str]) -> dict:
    reg = watch.metrics.registry
    bounds = [*LATENCY_BUCKETS, float("inf")]
    buckets = [(b, sum(reg.get_sample_value("facexray_frame_latency_seconds_bucket",
                                            {"stream": n, "le": "+Inf" if b == float("inf") else str(b)}) or 0.0
                       for n in names)) for b in bounds]
    return {"t": time.monotonic(), "buckets": buckets,
            "analyzed": {n: reg.get_sample_value("facexray_frames_analyzed_total", {"stream": n}) or 0.0
                         for n in names},
            "stage_s": {st: reg.get_sample_value("facexray_stage_seconds_sum", {"stage": st}) or 0.0 for st in STAGES},
            "dropped_queue": sum(reg.get_sample_value("facexray_frames_dropped_total",
                                                      {"stream": n, "reason": "queue_full"}) or 0.0 for n in names)}


def half(a: dict, b: dict) -> dict:
    dt = b["t"] - a["t"]
    fps = {n: (b["analyzed"][n] - a["analyzed"][n]) / dt for n in a["analyzed"]}
    delta = [(ub, cb - ca) for (ub, cb), (_, ca) in zip(b["buckets"], a["buckets"])]
    frames = max(1.0, sum(b["analyzed"].values()) - sum(a["analyzed"].values()))
    busy = {st: b["stage_s"][st] - a["stage_s"][st] for st in STAGES}
    return {"stage_busy_share": {st: round(v / dt, 3) for st, v in busy.items()},
            "stage_ms_per_frame": {st: round(1000 * v / frames, 1) for st, v in busy.items()},
            "seconds": round(dt, 2), "min_stream_fps": round(min(fps.values()), 3),
            "mean_stream_fps": round(sum(fps.values()) / len(fps), 3),
            "latency_p50_s": _round(quantile(0.5, delta)), "latency_p95_s": _round(quantile(0.95, delta)),
            "frames": int(delta[-1][1]), "dropped_queue_full": int(b["dropped_queue"] - a["dropped_queue"])}


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def measure(server: RtspServer, n: int, seconds: float, events: Path, model: str | None) -> dict:
    names = [f"s{i}" for i in range(n)]
    cfg = WatchConfig(streams=tuple(StreamConfig(name, server.url) for name in names), port=0, model=model,
                      analysis_fps=ANALYSIS_FPS, events=str(events), images=str(events.parent / "img"),
                      alert=AlertConfig(threshold=1.0, min_duration_s=1e9))   # never fires: the benchmark is about throughput
    watch = Watch(cfg)
    watch.start()
    try:
        wait_for(lambda: all(v["state"] == "up" for v in watch.readiness()[1]["streams"].values()), 60,
                 "all streams up")
        time.sleep(WARMUP_S)
        s0 = snapshot(watch, names)
        time.sleep(seconds / 2)
        s1 = snapshot(watch, names)
        time.sleep(seconds / 2)
        s2 = snapshot(watch, names)
    finally:
        watch.stop()
        watch.wait()
    first, second = half(s0, s1), half(s1, s2)
    p1, p2 = first["latency_p95_s"], second["latency_p95_s"]
    holds = (min(first["min_stream_fps"], second["min_stream_fps"]) >= 0.9 * ANALYSIS_FPS
             and p1 is not None and p2 is not None and max(p1, p2) <= LATENCY_BOUND_S and p2 <= 1.5 * p1 + 0.1)
    row = {"streams": n, "holds": holds, "first_half": first, "second_half": second,
           "load_average_1min_after": round(os.getloadavg()[0], 2)}    # other jobs on the machine skew the result
    print(f"N={n:2d}  fps/stream min {min(first['min_stream_fps'], second['min_stream_fps']):.2f}  "
          f"p95 {p1} -> {p2} s  {'holds' if holds else 'FALLS BEHIND'}", flush=True)
    return row


def model_name(model: str | None) -> str:
    """What the benchmark ran: the checkpoint's file and architecture."""
    from facexray.engines.xray import DEFAULT_MODEL
    from facexray.models.checkpoint import read_metadata

    if model == "random":
        return f"random weights ({DEFAULT_ARCH})"
    path = DEFAULT_MODEL if model is None else model
    return f"{Path(path).name} ({read_metadata(path)['arch']})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=24.0, help="measured seconds per N (two halves)")
    ap.add_argument("--max-n", type=int, default=12)
    ap.add_argument("--model", default=None, help="X-ray model (default: the shipped one; 'random' for its shape)")
    ap.add_argument("--streams", help="measure exactly these N (comma-separated) instead of searching the largest")
    ap.add_argument("--name", default="watch", help="results file name (benchmarks/results/NAME.json)")
    a = ap.parse_args()
    why = gst_rtsp_missing()
    if why or not CLIP.exists():
        print(f"bench_watch: cannot run: {why or f'{CLIP} not found'}", file=sys.stderr)
        return 2
    if WARMUP_S + a.seconds + 10 > 60:
        print("bench_watch: the served clip lasts 60 s; keep --seconds <= 40", file=sys.stderr)
        return 2
    env = machine()
    rows = []
    server = RtspServer(TOOL, CLIP).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            events = Path(tmp) / "events.jsonl"
            best = 0
            if a.streams:                                   # exactly these N
                for n in map(int, a.streams.split(",")):
                    rows.append(measure(server, n, a.seconds, events, a.model))
                    best = max(best, n) if rows[-1]["holds"] else best
            else:
                n = 1
                while n <= a.max_n:                         # 1, 2, 3, 4, 6, 8, 10, 12: until one falls behind
                    row = measure(server, n, a.seconds, events, a.model)
                    rows.append(row)
                    if not row["holds"]:
                        break
                    best = n
                    n = n + 1 if n < 4 else n + 2
                if rows[-1]["holds"] is False and rows[-1]["streams"] - best > 1:
                    mid = best + 1                          # the step skipped one N: try it
                    row = measure(server, mid, a.seconds, events, a.model)
                    rows.append(row)
                    best = mid if row["holds"] else best
    finally:
        server.kill()
    base = rows[0]
    save(a.name, {
        "benchmark": "facexray watch: live RTSP streams of one real clip (25 fps, 256²) at 2 analysed fps each",
        "machine": env,
        "clip": str(CLIP.relative_to(SHARED)),
        "settings": {"analysis_fps": ANALYSIS_FPS, "seconds_per_n": a.seconds, "warmup_s": WARMUP_S,
                     "latency_bound_s": LATENCY_BOUND_S, "model": model_name(a.model),
                     "engine": "auto", "rule": "every stream >= 90 % of 2 fps in both halves, p95 <= bound, "
                                               "second-half p95 <= 1.5x first + 0.1 s"},
        "max_streams_held": best,
        "baseline_n1": {"latency_p95_s": base["second_half"]["latency_p95_s"],
                        "latency_p50_s": base["second_half"]["latency_p50_s"]},
        "runs": rows,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
