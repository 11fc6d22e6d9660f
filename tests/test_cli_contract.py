"""What a user meets at the command line: checked options, exit codes, messages (issue 15), black-box through `main`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from facexray.cli import main

ROOT = Path(__file__).resolve().parents[1]
SHORT_CLIP = "data/real_videos/v_express/scripts__prepare_dataset__RD_Radio10_0_clip_0.mp4"   # 2 s, 512², one face


def _usage_error(argv: list[str], capsys) -> str:
    """Run `main(argv)`, expect argparse's usage error (exit 2), return stderr."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("argv, option", [
    (["scan", "x.mp4", "--threshold", "2"], "--threshold"),
    (["scan", "x.mp4", "--threshold", "-1"], "--threshold"),
    (["scan", "x.mp4", "--threshold", "nan"], "--threshold"),
    (["scan", "x.mp4", "--det-threshold", "1.5"], "--det-threshold"),
    (["scan", "x.mp4", "--top-k", "0"], "--top-k"),
    (["scan", "x.mp4", "--detect-batch", "0"], "--detect-batch"),
    (["scan", "x.mp4", "--xray-batch", "-4"], "--xray-batch"),
    (["scan", "x.mp4", "-j", "0"], "--concurrency"),
    (["scan", "x.mp4", "--metrics-port", "70000"], "--metrics-port"),
    (["scan", "x.mp4", "--sample", "uniform=0"], "--sample"),
    (["scan", "x.mp4", "--sample", "bogus"], "--sample"),
    (["explain", "x.mp4", "--threshold", "1.01"], "--threshold"),
    (["explain", "x.mp4", "--sample", "fps=-2"], "--sample"),
    (["prepare", "x", "--out", "d", "--val-fraction", "1.5"], "--val-fraction"),
    (["prepare", "x", "--out", "d", "--workers", "0"], "--workers"),
    (["train", "--lr", "0"], "--lr"),
    (["train", "--epochs", "-1"], "--epochs"),
    (["eval", "d", "--sample", "every=0"], "--sample"),
    (["watch", "u", "--threshold", "2"], "--threshold"),
    (["watch", "u", "--backoff-max", "0"], "--backoff-max"),
    (["watch", "u", "--stall-timeout", "-1"], "--stall-timeout"),
    (["watch", "u", "--analysis-fps", "-1"], "--analysis-fps"),
    (["watch", "u", "--window", "0"], "--window"),
    (["watch", "u", "--max-batch", "0"], "--max-batch"),
    (["watch", "u", "--queue-frames", "0"], "--queue-frames"),
    (["watch", "u", "--hysteresis", "2"], "--hysteresis"),
    (["watch", "u", "--status-interval", "-5"], "--status-interval"),
])
def test_out_of_range_options_are_usage_errors_with_the_subcommand_s_usage(argv, option, capsys):
    err = _usage_error(argv, capsys)
    assert f"usage: facexray {argv[0]}" in err, err          # the subcommand's usage, not the top level's
    assert f"error: argument {option}" in err and repr(argv[-1]) in err, err     # names the option and the value


def test_in_range_values_and_the_unset_threshold_are_accepted():
    from facexray.cli import build_parser

    p = build_parser()
    assert p.parse_args(["scan", "x", "--threshold", "0"]).threshold == 0.0
    assert p.parse_args(["scan", "x", "--threshold", "1"]).threshold == 1.0
    assert p.parse_args(["watch", "u", "--threshold", "0.7"]).threshold == 0.7
    assert p.parse_args(["watch", "u"]).threshold is None       # None: the model's (calibrated) threshold
    assert p.parse_args(["scan", "x", "--sample", "uniform=1"]).sample == "uniform=1"


def test_explain_on_a_folder_says_it_is_a_folder(tmp_path, capsys):
    assert main(["explain", str(tmp_path), "--model", "random"]) == 2
    err = capsys.readouterr().err
    assert "is a folder" in err and "no such file" not in err and "facexray scan" in err
    (tmp_path / "empty.mp4").write_bytes(b"")
    # an input that cannot be opened is reported before the models load (an absent model would give exit 3)
    assert main(["explain", str(tmp_path / "empty.mp4"), "--model", str(tmp_path / "absent.safetensors")]) == 1
    assert "empty" in capsys.readouterr().err


def test_a_relative_models_folder_read_from_elsewhere_says_so(shared_dir, models_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    relative = os.path.relpath(models_dir)                    # ../shared/models, as README used to say
    monkeypatch.setenv("FACEXRAY_MODELS", relative)
    monkeypatch.chdir(tmp_path)                                # a user in another folder
    code = main(["scan", str(shared_dir / SHORT_CLIP), "--model", "random", "--engine", "torch", "-q"])
    assert code == 3
    err = capsys.readouterr().err
    assert f"FACEXRAY_MODELS={relative} is a relative path" in err and str(tmp_path) in err and "realpath" in err


def _bad_inputs(d: Path) -> None:
    d.mkdir()
    (d / "empty.mp4").write_bytes(b"")
    (d / "text.mp4").write_text("this is not a video\n" * 50)
    (d / "gone.mp4").symlink_to(d / "deleted-target.mp4")


def test_a_scan_of_only_bad_inputs_reports_them_without_loading_any_model(tmp_path, capsys):
    _bad_inputs(tmp_path / "in")
    out = tmp_path / "r.jsonl"
    # a model path that does not exist: loading it would end the scan with exit 3, so 1 proves nothing loaded
    t0 = time.monotonic()
    code = main(["scan", str(tmp_path / "in"), "--model", str(tmp_path / "absent.safetensors"), "--out", str(out),
                 "-q"])
    took = time.monotonic() - t0
    assert code == 1
    recs = {Path(r["path"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(recs) == {"empty.mp4", "text.mp4", "gone.mp4"}           # the broken link did not vanish
    assert all(r["verdict"] == "error" for r in recs.values())
    assert "broken symbolic link" in recs["gone.mp4"]["error"] and "deleted-target.mp4" in recs["gone.mp4"]["error"]
    assert "empty" in recs["empty.mp4"]["error"] and "not a video" in recs["text.mp4"]["error"]
    err = capsys.readouterr().err
    assert err.count("ERROR ") == 3 and "WARNING" not in err and "not found" not in err.replace("gone", "")
    assert took < 5, took


def test_a_scan_with_random_weights_warns_once(shared_dir, detector_weights, tmp_path, capsys):
    d = tmp_path / "in"
    _bad_inputs(d)
    shutil.copy(shared_dir / SHORT_CLIP, d / "good.mp4")
    code = main(["scan", str(d), "--model", "random", "--sample", "uniform=2", "-q"])
    assert code == 1
    err = capsys.readouterr().err
    assert err.count("WARNING") == 1 and "RANDOM" in err, err
    assert err.count("ERROR ") == 3


def _watch(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "facexray.cli", "watch", "--model", "random", "--http",
                           "127.0.0.1:0", *argv], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.slow
def test_watch_exits_1_when_a_source_fails(shared_dir, detector_weights, tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("no video here\n" * 40)
    good = str(shared_dir / SHORT_CLIP)
    for urls in ([str(tmp_path / "missing.mp4")], [str(tmp_path / "empty.mp4")], [str(tmp_path / "text.mp4")],
                 [good, str(tmp_path / "missing.mp4")]):
        p = _watch(urls)
        assert p.returncode == 1, (urls, p.stderr[-1500:])
    p = _watch([good])
    assert p.returncode == 0, p.stderr[-1500:]


@pytest.mark.slow
def test_watch_talks_to_the_operator_status_alerts_and_a_summary(shared_dir, detector_weights, tmp_path):
    events = tmp_path / "events.jsonl"
    p = _watch([str(shared_dir / SHORT_CLIP), "--status-interval", "0.5", "--threshold", "0", "--min-duration", "0",
                "--events", str(events), "--images", str(tmp_path / "img")])
    assert p.returncode == 0, p.stderr[-2000:]
    lines = p.stderr.splitlines()
    name = Path(SHORT_CLIP).stem
    status = [x for x in lines if f"stream {name}: up; " in x and "fps analysed" in x and "rolling score" in x]
    assert status, p.stderr[-2000:]
    alerts = [x for x in lines if "ALERT stream" in x]
    assert len(alerts) == sum(json.loads(x)["event"] == "alert" for x in events.read_text().splitlines()) >= 1
    assert not any(x.rstrip().endswith("()") for x in lines), p.stderr[-2000:]
    summary = [x for x in lines if f"summary: stream {name}: " in x]
    assert len(summary) == 1 and " frame(s) analysed" in summary[0] and f"{len(alerts)} alert(s), 0 error(s)" in \
        summary[0], summary


def test_the_summary_table_keeps_the_start_of_long_paths_and_their_file_names():
    import io

    from facexray.contracts import VideoResult
    from facexray.scan.runner import print_summary

    long = "../shared/data/real_videos/v_express/test_samples__short_case__AOC__gt_and_a_much_longer_tail.mp4"
    out = io.StringIO()
    print_summary([VideoResult(long, "real", 0.1, 16, 16, 16)], 1.0, None, stream=out)
    row = next(x for x in out.getvalue().splitlines() if "real " in x)
    assert row.startswith("../share") and "…/test_samples__short_case__AOC__gt_and_a_much_longer_tail.mp4" in row


@pytest.mark.slow
def test_a_scan_with_evidence_says_what_it_does_between_its_bars(shared_dir, detector_weights, tmp_path, capsys):
    code = main(["scan", str(shared_dir / SHORT_CLIP), "--model", "random", "--engine", "torch", "--sample",
                 "uniform=2", "--report", str(tmp_path / "r.html"), "--annotate", str(tmp_path / "ann")])
    assert code == 0
    err = capsys.readouterr().err
    steps = ["loading the models", "drawing the evidence of", "writing the report", "scanned 1 file(s)"]
    at = [err.find(s) for s in steps]
    assert all(i >= 0 for i in at) and at == sorted(at), (at, err[-2000:])


@pytest.mark.parametrize("argv", [["--help"], ["scan", "--help"], ["explain", "--help"]])
def test_help_imports_no_heavy_package(argv):
    """`--help` prints at once: it imports none of torch, OpenCV, matplotlib, PyAV (measured in README). Checked by
    what is imported, not by a timer (DESIGN: speed targets live in benchmarks/)."""
    heavy = ["torch", "cv2", "matplotlib", "av", "onnxruntime"]
    code = (f"import sys; from facexray.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            f"print([m for m in {heavy!r} if m in sys.modules], file=sys.stderr)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "usage: facexray" in p.stdout
    assert p.stderr.strip().splitlines()[-1] == "[]", p.stderr[-1000:]


def test_help_and_readme_name_one_detector_batch_default_each(capsys):
    import re

    from facexray.engines import DEFAULT_BATCH
    from facexray.pipeline import PipelineConfig

    with pytest.raises(SystemExit):
        main(["scan", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"one detector call (default {PipelineConfig().detect_batch})" in text
    assert f"takes them {DEFAULT_BATCH['cpu']['detect']} at a time on CPU" in text
    readme = (ROOT / "README.md").read_text()
    row = next(x for x in readme.splitlines() if x.startswith("| detector, 700²"))
    assert re.search(rf"\b{DEFAULT_BATCH['cpu']['detect']} \(the CPU default\)", row), row
    assert "(default)" not in row


def test_every_command_maps_missing_inputs_and_models_to_its_exit_code(tmp_path, capsys):
    missing = str(tmp_path / "nope")
    assert main(["export", missing + ".safetensors", "--out", str(tmp_path / "x.onnx")]) == 3     # the model
    assert main(["train", "--data", missing, "--out", str(tmp_path / "run"), "--epochs", "1"]) == 2   # the input
    assert main(["eval", missing, "--model", "random", "--engine", "torch"]) == 2
    assert main(["prepare", missing, "--out", str(tmp_path / "ds")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("facexray ") >= 4 and "nope" in err
