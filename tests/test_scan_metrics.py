"""`facexray scan --metrics-port`: a real Prometheus scrape during a real scan agrees with the records."""

import math
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from facexray.train.index import read_jsonl

ROOT = Path(__file__).resolve().parents[1]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scrape(port):
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return None
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_metrics_scraped_mid_scan_match_the_records(shared_dir, detector_weights, tmp_path):
    videos = sorted((shared_dir / "data/real_videos").rglob("*.mp4"))[1::3][:8]
    out, port = tmp_path / "r.jsonl", _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "facexray.cli", "scan", *map(str, videos), "--sample", "uniform=4",
                             "--model", "random", "--out", str(out), "-q", "--metrics-port", str(port)],
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    scrapes = []
    while proc.poll() is None:
        before = out.read_bytes().count(b"\n") if out.exists() else 0
        m = _scrape(port)
        after = out.read_bytes().count(b"\n") if out.exists() else 0
        if m is not None:
            scrapes.append((before, m, after))
        time.sleep(0.1)
    assert proc.wait() == 0, proc.stderr.read().decode()
    recs = read_jsonl(out)
    assert len(recs) == len(videos)
    mid = [s for s in scrapes if 0 < s[1][("facexray_scan_videos_total", (("status", "ok"),))] < len(videos)]
    assert mid, f"no scrape caught the scan in progress ({len(scrapes)} scrapes)"
    for before, m, after in mid:
        n = int(m[("facexray_scan_videos_total", (("status", "ok"),))])
        assert before - 1 <= n <= after              # counted right after the record is written
        assert m[("facexray_scan_videos_total", (("status", "error"),))] == 0
        assert m[("facexray_scan_videos_pending", ())] == len(videos) - n
        done = recs[:n]
        assert m[("facexray_scan_frames_total", ())] == sum(r["frames_scored"] for r in done)
        assert m[("facexray_scan_faces_total", ())] == sum(r["faces_scored"] for r in done)
        assert m[("facexray_scan_video_seconds_count", ())] == n
        for stage in ("decode", "detect", "xray", "total"):
            got = m[("facexray_scan_stage_seconds_total", (("stage", stage),))]
            assert math.isclose(got, sum(r["timings"][f"{stage}_s"] for r in done), abs_tol=1e-6), stage
        assert m[("facexray_scan_frames_per_second", ())] > 0
    with pytest.raises(OSError):                     # the server went with the scan
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
