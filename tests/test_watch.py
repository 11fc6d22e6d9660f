"""`facexray watch` end to end against real RTSP servers (GStreamer), real engines (`--model random`), a real
Prometheus scraping it, and SIGTERM on the real command."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from facexray.stream.config import WatchConfig
from facexray.stream.watch import Watch

from livestreams import FAST_RECONNECT, PROMETHEUS, TextServer, facexray_threads, free_port, wait_for, wait_port

pytestmark = [pytest.mark.rtsp, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
LOW_ALERT = {"threshold": 0.2, "min_duration_s": 1.0, "window_s": 2.0}   # random weights score about 0.4


def _metric(text: str, name: str, **labels) -> float:
    """The value of one series in Prometheus text format (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + ("{" + want + "}" if want else "") + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_two_streams_alerts_bad_urls_and_a_server_restart(rtsp_server, detector_weights, tmp_path):
    baseline, baseline_names = threading.active_count(), facexray_threads()
    a, b = rtsp_server(), rtsp_server("data/real_videos/edtalk/test_data__uncrop_Obama.mp4")   # 60 s and 20 s
    (tmp_path / "page.txt").write_text("this is no video\n" * 50)
    http = TextServer(tmp_path)
    cfg = WatchConfig.load(None, port=0, model="random", events=str(tmp_path / "events.jsonl"),
                           images=str(tmp_path / "img"), reconnect=dataclasses.asdict(FAST_RECONNECT), alert=LOW_ALERT,
                           streams=[{"name": "a", "url": a.url}, {"name": "b", "url": b.url},
                                    {"name": "badproto", "url": "notaproto://127.0.0.1/x"},
                                    {"name": "wrongport", "url": f"rtsp://127.0.0.1:{free_port()}/test"},
                                    {"name": "text", "url": f"http://127.0.0.1:{http.port}/page.txt"}])
    watch = Watch(cfg)
    watch.start()
    try:
        url = watch.server.url
        assert watch.server.host == "127.0.0.1"
        wait_for(lambda: _get(url + "/readyz")[0] == 200, 30, "ready")
        wait_for(lambda: min(_metric(_get(url + "/metrics")[1], "facexray_frames_analyzed_total", stream=s)
                          for s in "ab") >= 4, 30, "both streams analysed")
        m = _get(url + "/metrics")[1]
        for s in "ab":
            assert _metric(m, "facexray_stream_up", stream=s) == 1
            assert _metric(m, "facexray_faces_detected_total", stream=s) > 0
            assert _metric(m, "facexray_frames_decoded_total", stream=s) > _metric(m, "facexray_frames_analyzed_total",
                                                                                      stream=s)
            assert _metric(m, "facexray_frames_dropped_total", stream=s, reason="rate") > 0     # 2 of 25 fps
            assert _metric(m, "facexray_frame_latency_seconds_count", stream=s) > 0
        assert _metric(m, "facexray_stage_seconds_count", stage="detect") > 0
        assert _metric(m, "facexray_batch_size_count", stage="xray") > 0
        # the bad URLs: each a clear state and error, in metrics and /readyz, while a and b are served
        assert _metric(m, "facexray_stream_state", stream="badproto", state="stopped") == 1
        assert _metric(m, "facexray_stream_errors_total", stream="badproto", reason="invalid_url") == 1
        assert _metric(m, "facexray_stream_errors_total", stream="wrongport", reason="refused") >= 1
        assert _metric(m, "facexray_stream_errors_total", stream="text", reason="not_video") >= 1
        states = json.loads(_get(url + "/readyz")[1])["streams"]
        assert states["badproto"]["error"].startswith("invalid_url") and states["a"] == {
            "state": "up", "error": None, "reconnects": 0}
        assert "Connection refused" in states["wrongport"]["error"] and "not a video" in states["text"]["error"]

        # alerts fire on real streams (a low threshold: random weights) with images
        wait_for(lambda: _metric(_get(url + "/metrics")[1], "facexray_alerts_total", stream="a") >= 1, 20, "an alert")

        # server a dies for 5 s: a goes down and comes back by itself; b is analysed all along
        a.kill()
        wait_for(lambda: _metric(_get(url + "/metrics")[1], "facexray_stream_up", stream="a") == 0, 10, "a down")
        b_before = _metric(_get(url + "/metrics")[1], "facexray_frames_analyzed_total", stream="b")
        time.sleep(5.0)
        m = _get(url + "/metrics")[1]
        assert _metric(m, "facexray_frames_analyzed_total", stream="b") > b_before
        assert _metric(m, "facexray_stream_errors_total", stream="a", reason="refused") >= 1
        a.start()
        wait_for(lambda: _metric(_get(url + "/metrics")[1], "facexray_stream_reconnects_total", stream="a") == 1, 20,
              "a reconnected")
        a_up = _metric(_get(url + "/metrics")[1], "facexray_frames_analyzed_total", stream="a")
        wait_for(lambda: _metric(_get(url + "/metrics")[1], "facexray_frames_analyzed_total", stream="a") > a_up + 2,
              15, "a analysed again")
        assert watch.readiness()[1]["streams"]["a"]["state"] == "up"
    finally:
        watch.stop()
        assert watch.wait() == 1        # stopped while badproto, wrongport and text were failing
        http.stop()
    wait_for(lambda: threading.active_count() == baseline, 5, f"thread count back to {baseline}")  # no leak
    assert facexray_threads() == baseline_names
    events = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    alerts = [e for e in events if e["event"] == "alert"]
    assert {e["stream"] for e in alerts} >= {"a"}
    for e in alerts:
        assert e["start_ts"] <= e["end_ts"] and e["duration_s"] >= 1.0 and e["score"] >= 0.2
        assert Path(e["crop"]).stat().st_size > 1000 and Path(e["heatmap"]).stat().st_size > 1000
        assert e["warning"] and e["model"] == "random"
    opened = {(e["stream"], e["track"]) for e in alerts}
    cleared = {(e["stream"], e["track"]) for e in events if e["event"] == "clear"}
    assert opened <= cleared                                     # every alert was closed (at the latest at shutdown)


@pytest.fixture
def prometheus(tmp_path):
    """Start a real Prometheus scraping `targets` every second: `prometheus(["127.0.0.1:PORT"])` → its base URL."""
    if not Path(PROMETHEUS).exists():
        pytest.skip(f"{PROMETHEUS} not found (apt: prometheus)")
    procs = []

    def start(targets: list[str]) -> str:
        port = free_port()
        conf = tmp_path / "prometheus.yml"
        conf.write_text("global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n"
                        f"  - job_name: facexray\n    static_configs: [{{targets: {json.dumps(targets)}}}]\n")
        procs.append(subprocess.Popen([PROMETHEUS, f"--config.file={conf}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                       f"--web.listen-address=127.0.0.1:{port}"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(port, 30, procs[-1])
        return f"http://127.0.0.1:{port}"

    yield start
    for p in procs:
        p.kill()
        p.wait()


def test_cli_with_yaml_is_scraped_by_prometheus_stays_live_when_slow_and_stops_on_sigterm(
        rtsp_server, detector_weights, prometheus, tmp_path):
    a, b = rtsp_server(), rtsp_server()
    port = free_port()
    conf = tmp_path / "streams.yaml"
    conf.write_text(f"http: 127.0.0.1:{port}\nanalysis_fps: 2\nmodel: random\nalert: {json.dumps(LOW_ALERT)}\n"
                    "streams:\n"
                    f"  - {{name: calm, url: '{a.url}'}}\n"
                    f"  - {{name: flood, url: '{b.url}', analysis_fps: 0}}\n")      # every frame: more than the CPU can
    events = tmp_path / "events.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "facexray.cli", "watch", "--config", str(conf),
                             "--events", str(events), "--images", str(tmp_path / "img")],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_port(port, 60, proc)
        prom = prometheus([f"127.0.0.1:{port}"])
        query = prom + "/api/v1/query?" + urllib.parse.urlencode({"query": "facexray_frames_analyzed_total"})

        def scraped() -> dict:
            status, body = _get(query)
            res = json.loads(body)["data"]["result"] if status == 200 else []
            return {r["metric"]["stream"]: float(r["value"][1]) for r in res}

        wait_for(lambda: len([v for v in scraped().values() if v > 0]) == 2, 60, "Prometheus to see both streams")
        assert set(scraped()) == {"calm", "flood"}

        # the flood stream: latency stays bounded because frames are dropped, not queued
        def latency(text):
            return (_metric(text, "facexray_frame_latency_seconds_sum", stream="flood"),
                    _metric(text, "facexray_frame_latency_seconds_count", stream="flood"))

        s0, n0 = latency(_get(f"http://127.0.0.1:{port}/metrics")[1])
        time.sleep(6.0)
        m = _get(f"http://127.0.0.1:{port}/metrics")[1]
        s1, n1 = latency(m)
        assert n1 > n0 and (s1 - s0) / (n1 - n0) < 2.0, "recent frames waited long: the stream lags behind live"
        assert _metric(m, "facexray_frame_latency_seconds_bucket", stream="flood", le="5.0") == n1   # none ever > 5 s
        dropped = _metric(m, "facexray_frames_dropped_total", stream="flood", reason="queue_full")
        assert dropped > 0             # frames the engines could not take were dropped and counted, not queued
        assert _metric(m, "facexray_frames_dropped_total", stream="flood", reason="rate") == 0
        wait_for(lambda: events.exists() and '"alert"' in events.read_text(), 20, "an alert event")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err[-2000:]                                     # 128 + SIGTERM
    lines = [json.loads(x) for x in events.read_text().splitlines()]
    assert any(e["event"] == "alert" for e in lines)
    assert any(e["event"] == "clear" and e["reason"] == "shutdown" for e in lines)   # open alerts closed at SIGTERM
    assert "metrics and health on http://127.0.0.1:" in err
