"""The verdict threshold chosen on data: how it is chosen, where it is stored, and who uses it."""

import json

import numpy as np
import pytest

from facexray.aggregate import DEFAULT_THRESHOLD
from facexray.cli import main
from facexray.engines.xray import load_xray
from facexray.faces.crop import CropSpec
from facexray.models import random_model
from facexray.models.checkpoint import read_metadata, save_checkpoint
from facexray.train.calibrate import Calibration, choose_threshold, write_calibrated


@pytest.mark.parametrize("max_fa", [0.0, 0.05, 0.1, 0.3])
def test_the_threshold_is_the_lowest_that_keeps_false_alarms_within_the_bound(max_fa):
    rng = np.random.default_rng(0)
    for n in (1, 7, 20, 83):
        scores = rng.beta(2, 5, n)
        t = choose_threshold(scores, max_fa)
        assert (scores >= t).mean() <= max_fa + 1e-12
        assert ((scores >= t - 0.001).mean() > max_fa) or t == 0.0   # one step lower breaks the bound: the lowest
    assert choose_threshold([0.2, 0.2, 0.2], 0.0) == 0.201
    with pytest.raises(ValueError, match="no real scores"):
        choose_threshold([], 0.05)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """A random-weight checkpoint with a calibration saying threshold 0.123."""
    d = tmp_path_factory.mktemp("cal")
    net, _ = random_model("xray_efficientnet_lite0", crop=CropSpec().to_dict())
    raw = save_checkpoint(net, d / "raw.safetensors", crop=CropSpec().to_dict(), provenance={"recipe": {"x": 1}})
    cal = Calibration(threshold=0.123, max_false_alarm=0.05, false_alarm_rate=0.04, real_sources=25,
                      sample="uniform=32", split="val", scores={"a.mp4": 0.1})
    return write_calibrated(raw, cal, d / "cal.safetensors"), raw


def test_the_calibration_travels_in_the_checkpoint_and_sets_the_runner_threshold(calibrated):
    path, raw = calibrated
    meta = read_metadata(path)
    assert meta["calibration"]["threshold"] == 0.123 and meta["provenance"] == {"recipe": {"x": 1}}
    runner = load_xray(path, engine="torch")
    assert runner.threshold == 0.123 and "25 real videos and photos" in runner.threshold_note
    assert load_xray(raw, engine="torch").threshold == DEFAULT_THRESHOLD


@pytest.mark.usefixtures("detector_weights")
def test_scan_uses_the_model_threshold_unless_one_is_given(calibrated, shared_dir, tmp_path, capsys):
    path, _ = calibrated
    clip = shared_dir / "data/real_videos/lia/data__vox__driving2.mp4"
    out = tmp_path / "r.jsonl"
    assert main(["scan", str(clip), "--model", str(path), "--sample", "uniform=3", "--out", str(out), "-q"]) == 0
    rec = json.loads(out.read_text())
    assert rec["meta"]["threshold"] == 0.123
    assert rec["verdict"] == ("fake" if rec["score"] >= 0.123 else "real")
    assert "verdict threshold 0.123 (the model's own" in capsys.readouterr().err
    out2 = tmp_path / "r2.jsonl"
    assert main(["scan", str(clip), "--model", str(path), "--sample", "uniform=3", "--out", str(out2), "-q",
                 "--threshold", "1.0"]) == 0
    rec2 = json.loads(out2.read_text())
    assert rec2["meta"]["threshold"] == 1.0 and rec2["verdict"] == "real"
    assert "verdict threshold 1.000 (--threshold)" in capsys.readouterr().err


def test_a_watch_alert_rule_takes_the_model_threshold_unless_set():
    from facexray.stream.config import AlertConfig

    assert AlertConfig().resolved(0.37).threshold == 0.37
    assert AlertConfig(threshold=0.8).resolved(0.37).threshold == 0.8
    assert AlertConfig().resolved(0.37).clear_below == pytest.approx(0.27)
    with pytest.raises(ValueError, match="not resolved"):
        AlertConfig().clear_below
