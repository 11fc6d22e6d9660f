"""The verdict threshold chosen on data: how it is chosen, where it is stored, and who uses it."""

import json
from dataclasses import replace

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


FLIPPED = Calibration(threshold=0.456, max_false_alarm=0.05, false_alarm_rate=0.04, real_sources=25, sample="uniform=32",
                      split="val", flip=True, unflipped={"threshold": 0.321, "max_false_alarm": 0.05, "real_sources": 25,
                                                         "flip": False})


def test_a_calibration_chosen_on_mirror_averaged_scores_makes_the_checkpoint_score_so(calibrated, tmp_path):
    """`calibrate --flip` records the flip beside the threshold; every way of loading the checkpoint (torch,
    an ONNX export, `init:` for training) then scores as the threshold was chosen, or says it cannot."""
    from facexray.engines.xray import export_xray_onnx
    from facexray.models.checkpoint import load_checkpoint, load_checkpoint_as

    _, raw = calibrated
    path = write_calibrated(raw, FLIPPED, tmp_path / "flip.safetensors")
    cal = replace(FLIPPED, unflipped=None)
    assert read_metadata(path)["calibration"]["flip"] is True
    assert load_checkpoint(path)[0].flip and not load_checkpoint(raw)[0].flip
    assert not load_checkpoint_as(path, "xray_efficientnet_lite0")[0].flip      # training never flips

    crops = np.random.default_rng(0).integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
    mirrored = np.ascontiguousarray(crops[:, :, ::-1])
    runner = load_xray(path, engine="torch")
    assert runner.flip and runner.threshold == 0.456 and runner.describe()["flip"] is True
    (p, m), (pm, mm) = runner(crops), runner(mirrored)
    np.testing.assert_allclose(p, pm, atol=1e-6)
    np.testing.assert_allclose(m, mm[:, :, ::-1], atol=1e-6)
    plain = load_xray(raw, engine="torch")
    assert not plain.flip and np.abs(plain(crops)[0] - p).max() > 1e-4

    import shutil

    same_name = shutil.copy(raw, tmp_path / "m.safetensors")       # recalibrated in place: the same weights and name
    np.testing.assert_allclose(load_xray(same_name, engine="onnxruntime")(crops)[0], plain(crops)[0], atol=1e-4)
    write_calibrated(same_name, cal)
    np.testing.assert_allclose(load_xray(same_name, engine="onnxruntime")(crops)[0], p, atol=1e-4)  # not its cache

    onnx = load_xray(export_xray_onnx(path, tmp_path / "flip.onnx"), engine="onnxruntime")
    assert onnx.flip and onnx.threshold == 0.456
    np.testing.assert_allclose(onnx(crops)[0], p, atol=1e-4)

    unflipped = load_xray(path, engine="torch", flip=False)     # the threshold chosen on unmirrored scores
    assert not unflipped.flip and unflipped.threshold == 0.321
    np.testing.assert_allclose(unflipped(crops)[0], plain(crops)[0], atol=1e-6)
    assert load_xray(same_name, engine="torch", flip=False).threshold == DEFAULT_THRESHOLD   # none was chosen
    with pytest.raises(ValueError, match="as it was exported"):
        load_xray(tmp_path / "flip.onnx", engine="onnxruntime", flip=False)


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


@pytest.mark.usefixtures("detector_weights")
def test_scan_scores_as_the_model_is_calibrated_and_no_flip_takes_the_unmirrored_threshold(calibrated, shared_dir,
                                                                                         tmp_path, capsys):
    path = write_calibrated(calibrated[1], FLIPPED, tmp_path / "flip.safetensors")
    clip = shared_dir / "data/real_videos/lia/data__vox__driving2.mp4"
    recs = {}
    for flag in ([], ["--no-flip"]):
        out = tmp_path / f"r{len(flag)}.jsonl"
        assert main(["scan", str(clip), "--model", str(path), "--sample", "uniform=3", "--out", str(out), "-q",
                     *flag]) == 0
        recs[tuple(flag)] = rec = json.loads(out.read_text())
        assert rec["meta"]["xray_model"]["flip"] == (not flag)
    assert recs[()]["meta"]["threshold"] == 0.456 and recs["--no-flip",]["meta"]["threshold"] == 0.321
    assert recs[()]["score"] != recs["--no-flip",]["score"]
    assert "each face scored with its mirror image" in capsys.readouterr().err


def test_a_watch_alert_rule_takes_the_model_threshold_unless_set():
    from facexray.stream.config import AlertConfig

    assert AlertConfig().resolved(0.37).threshold == 0.37
    assert AlertConfig(threshold=0.8).resolved(0.37).threshold == 0.8
    assert AlertConfig().resolved(0.37).clear_below == pytest.approx(0.27)
    with pytest.raises(ValueError, match="not resolved"):
        AlertConfig().clear_below
