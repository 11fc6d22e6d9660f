"""The live-monitoring pieces that need no live server: alert rule on synthetic times, backoff, drop policy, config,
metrics and health server, alert sink with a real local webhook, a file played as a live source."""

import json
import random
import re
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from facexray.stream.alerts import AlertSink
from facexray.stream.config import AlertConfig, ReconnectConfig, StreamConfig, WatchConfig, streams_from_urls
from facexray.stream.metrics import WatchMetrics
from facexray.stream.rolling import AlertState, RollingScores
from facexray.stream.server import HealthServer
from facexray.stream.source import Backoff, LatestQueue, State, StreamSource, classify_error

RULE = AlertConfig(threshold=0.6, min_duration_s=2.0, hysteresis=0.2, window_s=1.0)


def _feed(rolling, times_scores, track=1):
    return [(t, e) for t, s in times_scores for e in rolling.update(t, [(track, s, f"face@{t}")] if s is not None else [])]


def test_alert_fires_only_after_the_score_stays_above_for_min_duration():
    r = RollingScores("cam", RULE)
    # above for 1.5 s, dips, then above for 3.5 s: only the second stretch fires, 2 s after its mean is back up
    seq = [(t / 10, 0.9) for t in range(0, 16)] + [(t / 10, 0.1) for t in range(16, 30)] + \
          [(t / 10, 0.9) for t in range(30, 66)]
    events = _feed(r, seq)
    assert [e.kind for _, e in events] == ["alert"]
    t, e = events[0]
    assert e.track == 1 and e.stream == "cam" and e.start >= 3.0 and t == pytest.approx(e.start + 2.0)
    assert e.score >= 0.6 and e.peak >= e.score and e.evidence.startswith("face@")


def test_alert_clears_with_hysteresis_not_at_the_threshold():
    state = AlertState(RULE)
    kinds = [state.update(t, s) for t, s in [(0, 0.7), (2, 0.7), (3, 0.5), (4, 0.45), (5, 0.41), (6, 0.39)]]
    assert kinds == [None, "alert", None, None, None, "clear"]   # 0.5 and 0.41 are inside the band (0.4, 0.6)
    assert [state.update(t, s) for t, s in [(7, 0.65), (8, 0.65)]] == [None, None]   # re-arms: needs 2 s again
    assert state.update(9, 0.65) == "alert"


def test_a_lost_track_clears_its_alert_and_the_stream_score_follows_the_worst_track():
    r = RollingScores("cam", RULE)
    for t in range(4):
        r.update(float(t), [(1, 0.9, None), (2, 0.2, None)])
    assert r.alerting == [1] and r.score == pytest.approx(0.9) and r.track_scores[2] == pytest.approx(0.2)
    events = r.update(5.5, [])                      # nobody seen for longer than the window
    assert [(e.kind, e.track, e.reason) for e in events] == [("clear", 1, "track_lost")]
    assert r.score is None and r.alerting == []


def test_backoff_grows_caps_jitters_and_resets():
    cfg = ReconnectConfig(initial_s=0.5, max_s=4.0, factor=2.0, jitter=0.25)
    b = Backoff(cfg, random.Random(1))
    delays = [b.next_delay() for _ in range(8)]
    for i, d in enumerate(delays):
        base = min(4.0 / 1.25, 0.5 * 2 ** i)                     # the jitter stays inside the cap
        assert base * 0.75 <= d <= min(4.0, base * 1.25)
    assert len({round(d, 6) for d in delays[4:]}) > 1            # capped delays still differ (jitter)
    b.reset()
    assert b.next_delay() <= 0.5 * 1.25


def test_backoff_never_waits_longer_than_its_cap():
    b = Backoff(ReconnectConfig(), random.Random(3))             # the defaults: 1 s doubling to 30 s, ±20 %
    delays = [b.next_delay() for _ in range(2000)]
    assert max(delays) <= ReconnectConfig().max_s                # was up to 36 s: jitter added after the cap
    assert min(delays[10:]) < 0.8 * ReconnectConfig().max_s      # and still spread below it


def test_an_unresolvable_host_has_its_own_reason_and_is_not_retried_forever():
    m = WatchMetrics()
    src = StreamSource(StreamConfig("typo", "rtsp://no-such-camera.invalid:554/stream1"), 2.0, listener=m)
    m.register_stream("typo")
    src.start()
    assert src.join(15)                                          # stopped by itself: a name that does not exist
    assert src.state is State.STOPPED and src.error.startswith("unresolved: cannot resolve host no-such-camera")
    assert m.registry.get_sample_value("facexray_stream_errors_total", {"stream": "typo", "reason": "unresolved"}) == 1
    assert m.registry.get_sample_value("facexray_stream_errors_total", {"stream": "typo", "reason": "error"}) == 0


def test_latest_queue_drops_the_oldest_and_never_blocks():
    q = LatestQueue(2)
    assert [q.put(i) for i in range(5)] == [None, None, 0, 1, 2]
    assert len(q) == 2 and q.get(0) == 3 and q.get(0) == 4 and q.get(0.01) is None
    q.close()
    assert q.get(None) is None                               # closed and empty: no wait


def test_error_messages_are_classified():
    assert classify_error("cannot open (Connection refused)") == "refused"
    assert classify_error("cannot open (Protocol not found)") == "invalid_url"
    assert classify_error("not a video file (invalid data found when processing input)") == "not_video"
    assert classify_error("[Errno 1414092869] Immediate exit requested") == "timeout"
    assert classify_error("cannot open (Server returned 404 Not Found)") == "http_error"
    assert classify_error("something new") == "error"


def test_config_from_yaml_with_per_stream_overrides(tmp_path):
    path = tmp_path / "streams.yaml"
    path.write_text("http: 127.0.0.1:9200\nanalysis_fps: 3\nalert: {threshold: 0.7, min_duration_s: 4}\n"
                    "reconnect: {initial_s: 0.5}\nstreams:\n  - rtsp://cam1/live\n"
                    "  - {name: gate, url: 'rtsp://cam2/live', analysis_fps: 1, alert: {threshold: 0.9}}\n")
    cfg = WatchConfig.load(path, port=9300, alert={"min_duration_s": None, "hysteresis": 0.05})
    assert (cfg.host, cfg.port, cfg.reconnect.initial_s, cfg.reconnect.max_s) == ("127.0.0.1", 9300, 0.5, 30.0)
    live, gate = cfg.streams
    assert (live.name, cfg.analysis_fps_of(live), cfg.alert_of(live).threshold) == ("live", 3, 0.7)
    assert (gate.name, cfg.analysis_fps_of(gate)) == ("gate", 1)
    assert cfg.alert_of(gate) == AlertConfig(threshold=0.9, min_duration_s=4, hysteresis=0.05)   # partial overrides merge
    with pytest.raises(ValueError, match="unknown watch option"):
        WatchConfig.from_dict({"stream": []})
    with pytest.raises(ValueError, match="unique"):
        WatchConfig.from_dict({"streams": ["rtsp://a/x", "rtsp://b/x"]})
    assert [s.name for s in streams_from_urls(["rtsp://a/x", "rtsp://b/x"])] == ["x", "x-2"]



@pytest.mark.parametrize("settings, message", [
    ({"analysis_fps": -1}, "watch analysis_fps must be ≥ 0, got -1"),
    ({"analysis_fps": "2"}, "watch analysis_fps must be a number, got '2'"),
    ({"queue_frames": 0}, "watch queue_frames must be ≥ 1"),
    ({"queue_frames": 1.5}, "watch queue_frames must be an integer"),
    ({"http": ":70000"}, "watch port must be ≥ 0 and ≤ 65535"),
    ({"alert": {"threshold": 1.5}}, "alert threshold must be ≥ 0 and ≤ 1, got 1.5"),
    ({"alert": {"window_s": 0}}, "alert window_s must be > 0"),
    ({"reconnect": {"jitter": 1}}, "reconnect jitter must be ≥ 0 and < 1"),
    ({"reconnect": {"initial_s": 5, "max_s": 2}}, "reconnect max_s must be ≥ 5"),
    ({"streams": [{"url": "rtsp://a/x", "analysis_fps": -2}]}, "stream x analysis_fps must be ≥ 0"),
    ({"streams": [{"url": "rtsp://a/x", "alert": {"hysteresis": -0.1}}]}, "alert hysteresis must be ≥ 0"),
])
def test_config_values_out_of_range_are_refused_naming_the_setting(settings, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        WatchConfig.from_dict(settings)


def test_watch_refuses_a_bad_setting_with_a_usage_error(tmp_path, capsys):
    from facexray.cli import main
    from facexray.stream.watch import EXIT_USAGE

    path = tmp_path / "watch.yaml"
    path.write_text("alert: {threshold: 2}\nstreams: [rtsp://127.0.0.1:1/x]\n")
    assert main(["watch", "--config", str(path)]) == EXIT_USAGE
    assert "alert threshold must be ≥ 0 and ≤ 1, got 2" in capsys.readouterr().err

def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_metrics_and_health_endpoints():
    m = WatchMetrics()
    m.register_stream("a")
    m.register_stream("b")
    ready = {"ok": False}
    srv = HealthServer(m.registry, lambda: (ready["ok"], {"streams": {"a": "up"}}), port=0)
    srv.start()
    try:
        assert srv.host == "127.0.0.1"
        m.state_changed("a", State.UP, None)
        m.dropped("a", "queue_full", 3)
        m.decoded("b", 7)
        status, text = _get(srv.url + "/metrics")
        assert status == 200
        assert 'facexray_stream_up{stream="a"} 1.0' in text and 'facexray_stream_up{stream="b"} 0.0' in text
        assert 'facexray_frames_dropped_total{reason="queue_full",stream="a"} 3.0' in text
        assert 'facexray_frames_decoded_total{stream="b"} 7.0' in text
        assert 'facexray_frames_analyzed_total{stream="b"} 0.0' in text        # present from the start
        assert 'facexray_stream_state{state="stopped",stream="b"} 1.0' in text
        assert _get(srv.url + "/healthz") == (200, "ok\n")
        status, body = _get(srv.url + "/readyz")
        assert status == 503 and json.loads(body) == {"ready": False, "streams": {"a": "up"}}
        ready["ok"] = True
        assert _get(srv.url + "/readyz")[0] == 200
        assert _get(srv.url + "/nope")[0] == 404
    finally:
        srv.stop()


class _Hook(BaseHTTPRequestHandler):
    received: list = []
    fail_first = 0

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if _Hook.fail_first > 0:
            _Hook.fail_first -= 1
            self.send_response(503)
        else:
            _Hook.received.append(body)
            self.send_response(200)
        self.end_headers()

    def log_message(self, *a):
        pass


def test_alert_sink_writes_jsonl_images_and_retries_the_webhook(tmp_path):
    hook = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    _Hook.received, _Hook.fail_first = [], 2                 # the first two attempts get a 503
    events = tmp_path / "events.jsonl"
    sink = AlertSink(str(events), tmp_path / "img", webhook=f"http://127.0.0.1:{hook.server_address[1]}/hook",
                     retries=3)
    crop = np.zeros((256, 256, 3), np.uint8)
    crop[:, :, 0] = 200
    xray = np.zeros((64, 64), np.float32)
    xray[20:40, 20:40] = 1.0
    rec = sink.emit({"event": "alert", "stream": "cam", "track": 2, "end_ts": 1.7e9, "score": 0.8}, crop, xray)
    sink.emit({"event": "clear", "stream": "cam", "track": 2, "end_ts": 1.7e9 + 5})
    sink.close()
    hook.shutdown()
    lines = [json.loads(x) for x in events.read_text().splitlines()]
    assert [x["event"] for x in lines] == ["alert", "clear"] and lines[0]["crop"] == rec["crop"]
    import cv2
    saved = cv2.imread(rec["crop"])[..., ::-1]
    assert saved.shape == (256, 256, 3) and saved[0, 0, 0] == 200
    heat = cv2.imread(rec["heatmap"])
    (b1, _, r1), (b0, _, r0) = heat[120, 120].astype(int), heat[5, 5].astype(int)
    assert heat.shape == (256, 256, 3) and r1 > b1 + 100 and b0 > r0 + 100           # red where the map is 1, blue at 0
    assert [x["event"] for x in _Hook.received] == ["alert", "clear"] and sink.delivered == 2 and sink.failed == 0


def test_a_file_source_plays_at_its_native_rate_and_finishes(shared_dir):
    clip = shared_dir / "data/real_videos/v_express/scripts__prepare_dataset__RD_Radio10_0_clip_0.mp4"  # 2.1 s
    m = WatchMetrics()
    src = StreamSource(StreamConfig("file", str(clip)), 5.0, queue_frames=100, listener=m)
    t0 = time.monotonic()
    src.start()
    assert src.join(15)
    elapsed = time.monotonic() - t0
    got = []
    while (item := src.frames.get(0)) is not None:
        got.append(item)
    assert 1.8 < elapsed < 5.0                                   # paced like a camera, not decoded at full speed
    assert src.state is State.STOPPED and src.error is None and src.reconnects == 0   # finished, not retried
    assert 9 <= len(got) <= 12                                   # 5 fps of 2.1 s
    decoded = m.registry.get_sample_value("facexray_frames_decoded_total", {"stream": "file"})
    rate = m.registry.get_sample_value("facexray_frames_dropped_total", {"stream": "file", "reason": "rate"})
    assert decoded == len(got) + rate and rate > 3 * len(got)       # every decoded frame accounted for


def test_metrics_carry_no_created_series():
    from prometheus_client import generate_latest

    from facexray.scan.metrics import ScanMetrics

    m = WatchMetrics()
    m.register_stream("cam")
    m.alerts.labels(stream="cam").inc()
    text = generate_latest(m.registry).decode()
    assert "facexray_alerts_total" in text and "_created" not in text
    scan = ScanMetrics(0)
    try:
        assert "facexray_scan_videos_total" in (text := generate_latest(scan.registry).decode())
        assert "_created" not in text
    finally:
        scan.close()
