"""`facexray scan --ray`: the same records as a local scan, and no video lost when a worker is killed."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from facexray.cli import main
from facexray.train.index import read_jsonl

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")
pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.usefixtures("detector_weights")]

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ["--sample", "uniform=4", "--model", "random", "-q"]


@pytest.fixture(scope="module")
def videos(shared_dir):
    """Eight real videos (every third of the set)."""
    return sorted((shared_dir / "data/real_videos").rglob("*.mp4"))[::3][:8]


@pytest.fixture(scope="module")
def local_records(videos, tmp_path_factory, models_dir):
    out = tmp_path_factory.mktemp("local") / "r.jsonl"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACEXRAY_MODELS", str(models_dir))
        assert main(["scan", *map(str, videos), *SAMPLE, "--out", str(out)]) == 0
    return {r["path"]: r for r in read_jsonl(out)}


def _busy_workers(pid):
    """The Ray workers under process `pid` that are scanning a video right now."""
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    busy = []
    for k in kids:
        try:
            if k.cmdline()[:1] == ["ray::VideoScanner.scan"]:
                busy.append(k)
        except psutil.Error:
            continue
    return busy


@pytest.fixture(scope="module")
def ray_run(videos, tmp_path_factory, models_dir):
    """A `--ray auto` scan (a new local Ray, 2 workers), one of whose workers is SIGKILLed mid-video."""
    from ray._private.services import find_gcs_addresses

    # `auto` joins any Ray already running on this machine; another user's cluster is not ours to test on
    address = "auto" if not find_gcs_addresses() else "local"
    out = tmp_path_factory.mktemp("ray") / "r.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": "", "FACEXRAY_MODELS": str(models_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "facexray.cli", "scan", *map(str, videos), *SAMPLE,
                             "--out", str(out), "--ray", address, "--ray-workers", "2"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killed = None
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        busy = _busy_workers(proc.pid) if out.exists() and out.read_text().count("\n") >= 1 else []
        if busy:
            killed = busy[0].pid
            os.kill(killed, signal.SIGKILL)
            break
        time.sleep(0.05)
    err = proc.communicate(timeout=240)[1].decode()
    return proc.returncode, out, err, killed


def test_ray_scan_gives_the_records_of_a_local_scan(ray_run, local_records):
    code, out, err, _ = ray_run
    assert code == 0, err
    recs = {r["path"]: r for r in read_jsonl(out)}
    assert set(recs) == set(local_records)
    for path, r in recs.items():
        want = local_records[path]
        # one onnxruntime thread per worker vs two locally, and other batch mates: float noise only
        assert math.isclose(r["score"], want["score"], abs_tol=1e-5), (path, r["score"], want["score"])
        for a, b in zip(r["top_frames"], want["top_frames"]):
            assert a["frame"] == b["frame"] and math.isclose(a["score"], b["score"], abs_tol=2e-5)
        same = ("key", "verdict", "frames_scored", "frames_with_faces", "faces_scored", "tracks", "error", "model",
                "warning")
        assert {k: r[k] for k in same} == {k: want[k] for k in same}
        assert {k: v for k, v in r["meta"].items() if k != "track_scores"} == \
            {k: v for k, v in want["meta"].items() if k != "track_scores"}


def test_a_killed_ray_worker_loses_no_video(ray_run, videos):
    code, out, err, killed = ray_run
    assert killed is not None, "no worker was caught scanning: the scan ended first"
    assert "a Ray worker died scanning" in err and "retrying on a new worker" in err, err
    lines = out.read_text().splitlines()
    recs = [json.loads(line) for line in lines]
    assert sorted(r["path"] for r in recs) == sorted(map(str, videos))     # each exactly once
    assert all(r["error"] is None for r in recs)
    assert not psutil.pid_exists(killed) or psutil.Process(killed).status() == psutil.STATUS_ZOMBIE
