"""Live sources against a real RTSP server (GStreamer): reconnect after the server dies, the stall watchdog,
the drop policy under a slow consumer, and clear errors for bad URLs. No engines here (see test_watch.py)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from facexray.stream.config import StreamConfig
from facexray.stream.metrics import WatchMetrics
from facexray.stream.source import State, StreamSource

from livestreams import FAST_RECONNECT, TextServer, facexray_threads, free_port, wait_for

pytestmark = pytest.mark.rtsp

FAST = FAST_RECONNECT


def _value(metrics: WatchMetrics, name: str, **labels) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def _consume(source: StreamSource, delay_s: float = 0.0) -> tuple[list, threading.Event, threading.Thread]:
    """Start `source` and a consumer thread that drains it into a list of (frame, time taken), sleeping
    `delay_s` after each; returns the list, the consumer's stop event and its thread (for `_stop`)."""
    got: list = []
    stop = threading.Event()

    def run():
        while not stop.is_set():
            item = source.frames.get(timeout=0.1)
            if item is not None:
                got.append((item, time.monotonic()))
                time.sleep(delay_s)

    consumer = threading.Thread(target=run, daemon=True, name="test-consumer")
    consumer.start()
    source.start()
    return got, stop, consumer


def _stop(source: StreamSource, stop: threading.Event, consumer: threading.Thread) -> bool:
    """Stop `source` and its consumer; whether the source's threads ended within 10 s."""
    source.stop()
    stop.set()
    joined = source.join(10)
    consumer.join(5)
    return joined


def test_source_reconnects_after_the_server_dies_and_threads_return_to_baseline(rtsp_server):
    baseline, baseline_names = threading.active_count(), facexray_threads()
    server = rtsp_server()
    metrics = WatchMetrics()
    metrics.register_stream("cam")
    src = StreamSource(StreamConfig("cam", server.url), 5.0, FAST, listener=metrics)
    got, stop, consumer = _consume(src)
    try:
        wait_for(lambda: len(got) >= 5, 15, "frames from the first connection")
        assert src.state is State.UP and _value(metrics, "facexray_stream_up", stream="cam") == 1
        server.kill()
        wait_for(lambda: src.state in (State.BACKOFF, State.CONNECTING), 10, "the stream to notice the server died")
        time.sleep(5.0)                                                  # the server stays dead for 5 s
        assert src.state is not State.UP and _value(metrics, "facexray_stream_up", stream="cam") == 0
        assert _value(metrics, "facexray_stream_errors_total", stream="cam", reason="refused") >= 2   # retried
        assert src.error is not None
        n_before = len(got)
        server.start()                                                    # same port, back up
        wait_for(lambda: src.state is State.UP and len(got) > n_before + 5, 20, "the stream to come back by itself")
        assert src.reconnects == 1 and _value(metrics, "facexray_stream_reconnects_total", stream="cam") == 1
        assert src.error is None
    finally:
        assert _stop(src, stop, consumer)
    assert src.state is State.STOPPED and _value(metrics, "facexray_stream_state", stream="cam", state="stopped") == 1
    wait_for(lambda: threading.active_count() == baseline, 5, f"thread count back to {baseline}")  # no leak
    assert facexray_threads() == baseline_names


def test_stall_watchdog_reconnects_a_frozen_stream(rtsp_server):
    server = rtsp_server()
    metrics = WatchMetrics()
    src = StreamSource(StreamConfig("cam", server.url), 5.0, FAST, listener=metrics)
    got, stop, consumer = _consume(src)
    try:
        wait_for(lambda: len(got) >= 3, 15, "first frames")
        os.kill(server.proc.pid, signal.SIGSTOP)                         # connection open, no data: a frozen camera
        wait_for(lambda: src.state is not State.UP, 4 * FAST.stall_s, "the watchdog to end the frozen connection")
        os.kill(server.proc.pid, signal.SIGCONT)
        wait_for(lambda: src.reconnects >= 1 and src.state is State.UP, 20, "a reconnect after the stall")
        assert _value(metrics, "facexray_stream_errors_total", stream="cam", reason="stall") >= 1
    finally:
        _stop(src, stop, consumer)


def test_slow_consumer_gets_recent_frames_and_drops_are_counted(rtsp_server):
    server = rtsp_server()
    metrics = WatchMetrics()
    src = StreamSource(StreamConfig("cam", server.url), 0, FAST, queue_frames=2, listener=metrics)
    got, stop, consumer = _consume(src, delay_s=0.25)                    # 4 frames/s for a 25 fps stream
    try:
        wait_for(lambda: len(got) >= 24, 30, "six seconds of slow consumption")
    finally:
        _stop(src, stop, consumer)
    waits = [taken - item.captured for item, taken in got[4:]]          # after the start-up burst
    assert max(waits) < 1.0, f"frames waited up to {max(waits):.2f} s: the queue grew"
    assert waits[-1] < 1.0 and sum(waits[-5:]) / 5 < 0.75             # no growth towards the end
    dropped = _value(metrics, "facexray_frames_dropped_total", stream="cam", reason="queue_full")
    decoded = _value(metrics, "facexray_frames_decoded_total", stream="cam")
    assert dropped > 2 * len(got)                                       # most frames were dropped, not queued
    assert decoded == len(got) + dropped + len(src.frames)              # every frame is accounted for


def test_bad_urls_give_clear_states_and_errors(tmp_path):
    (tmp_path / "readme.txt").write_text("not a video\n" * 100)
    http = TextServer(tmp_path)
    metrics = WatchMetrics()
    cases = {"badproto": "notaproto://127.0.0.1/x", "wrongport": f"rtsp://127.0.0.1:{free_port()}/test",
             "text": f"http://127.0.0.1:{http.port}/readme.txt", "missing": str(tmp_path / "missing.mp4")}
    sources = {n: StreamSource(StreamConfig(n, u), 2.0, FAST, listener=metrics) for n, u in cases.items()}
    try:
        for s in sources.values():
            s.start()
        wait_for(lambda: all(_value(metrics, "facexray_stream_errors_total", stream=n, reason=r) >= 2
                          for n, r in (("wrongport", "refused"), ("text", "not_video"))), 15, "retried failures")
        assert sources["badproto"].join(5) and sources["missing"].join(5)       # hopeless: stopped, not retried
        assert sources["badproto"].state is State.STOPPED and sources["badproto"].error.startswith("invalid_url")
        assert sources["missing"].error.startswith("not_found: file not found")
        assert _value(metrics, "facexray_stream_errors_total", stream="badproto", reason="invalid_url") == 1
        for n in ("wrongport", "text"):
            assert sources[n].state in (State.BACKOFF, State.CONNECTING) and not sources[n].finished
        assert "Connection refused" in sources["wrongport"].error and "not a video" in sources["text"].error
    finally:
        for s in sources.values():
            s.stop()
        for s in sources.values():
            s.join(10)
        http.stop()
