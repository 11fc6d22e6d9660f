"""`facexray scan` end to end on real videos, through the command line."""

import csv
import json
import shutil

import pytest

from facexray.cli import main

pytestmark = pytest.mark.usefixtures("detector_weights")


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _talking_heads(shared_dir):
    """Clips the manifest calls talking heads / driving videos (not film, stage or music clips)."""
    with open(shared_dir / "data/real_videos/MANIFEST.tsv") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    keys = ("talking", "driving", "vox", "hdtf")
    not_heads = ("film", "music video", "stage")
    return {r["file"] for r in rows
            if any(k in r["label"].lower() for k in keys) and not any(k in r["label"].lower() for k in not_heads)}


@pytest.mark.slow
def test_scan_all_real_videos_with_random_model(shared_dir, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    code = main(["scan", str(shared_dir / "data/real_videos"), "--sample", "uniform=16", "--model", "random",
                 "--out", str(out), "-q"])
    recs = _records(out)
    assert code == 0, [r["error"] for r in recs if r["error"]]
    assert len(recs) == 28
    assert all(r["error"] is None for r in recs)
    assert all("RANDOM" in r["warning"] and r["meta"]["xray_model"]["random"] for r in recs)
    heads = _talking_heads(shared_dir)
    assert len(heads) >= 20
    root = str(shared_dir / "data/real_videos") + "/"
    sel = [r for r in recs if r["path"].removeprefix(root) in heads]
    assert len(sel) == len(heads)
    sampled = sum(r["frames_scored"] for r in sel)
    with_face = sum(r["frames_with_faces"] for r in sel)
    per_clip = {r["path"].removeprefix(root): f"{r['frames_with_faces']}/{r['frames_scored']}" for r in sel}
    assert with_face / sampled >= 0.95, per_clip
    assert all(r["frames_scored"] >= 10 for r in recs)
    for r in recs:  # records are complete and consistent
        assert r["verdict"] in ("real", "fake") and 0.0 <= r["score"] <= 1.0
        assert r["faces_scored"] >= r["frames_with_faces"] > 0
        assert r["top_frames"] and all(0 <= t["pts"] <= r["meta"]["video"]["duration"] + 1 for t in r["top_frames"])
        assert {"decode_s", "detect_s", "crop_s", "xray_s", "total_s"} <= set(r["timings"])
    assert "scanned 28 file(s)" in capsys.readouterr().err


def test_scan_broken_files_gives_error_records_and_goes_on(shared_dir, tmp_path, capsys):
    src = shared_dir / "data/real_videos/lia/data__vox__driving2.mp4"
    d = tmp_path / "in"
    d.mkdir()
    data = src.read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])     # moov atom is at the end: lost
    (d / "empty.mp4").write_bytes(b"")
    (d / "text.mp4").write_text("this is not a video\n" * 50)
    shutil.copy(src, d / "good.mp4")
    out = tmp_path / "r.jsonl"
    code = main(["scan", str(d), "--sample", "uniform=4", "--model", "random", "--out", str(out), "-q"])
    recs = {r["path"].rsplit("/", 1)[1]: r for r in _records(out)}
    assert code == 1
    assert set(recs) == {"truncated.mp4", "empty.mp4", "text.mp4", "good.mp4"}
    assert recs["good.mp4"]["error"] is None and recs["good.mp4"]["verdict"] in ("real", "fake")
    for name in ("truncated.mp4", "empty.mp4", "text.mp4"):
        assert recs[name]["verdict"] == "error" and recs[name]["error"], name
    assert "empty" in recs["empty.mp4"]["error"] or "0 bytes" in recs["empty.mp4"]["error"]
    err = capsys.readouterr().err
    assert err.count("ERROR ") == 3


def test_scan_without_a_trained_model_says_how_to_get_one(shared_dir, tmp_path, capsys):
    clip = shared_dir / "data/real_videos/lia/data__vox__driving2.mp4"
    out = tmp_path / "r.jsonl"
    code = main(["scan", str(clip), "--model", str(tmp_path / "nope.safetensors"), "--out", str(out), "-q"])
    assert code == 3
    assert "not found" in capsys.readouterr().err
    assert not out.exists() or out.read_text() == ""


def test_scan_usage_errors(tmp_path, capsys):
    assert main(["scan", str(tmp_path / "missing")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["scan", str(tmp_path / "empty")]) == 2
    with pytest.raises(SystemExit) as e:
        main(["scan", str(tmp_path), "--sample", "uniform=banana"])
    assert e.value.code == 2


def test_scan_with_no_shipped_model_explains_the_options(shared_dir, tmp_path, capsys, monkeypatch):
    import facexray.engines.xray as xr

    monkeypatch.setattr(xr, "DEFAULT_MODEL", tmp_path / "absent.safetensors")
    clip = shared_dir / "data/real_videos/lia/data__vox__driving2.mp4"
    assert main(["scan", str(clip), "-q"]) == 3
    err = capsys.readouterr().err
    assert "no trained X-ray model" in err and "--model random" in err and "--model PATH" in err


MULTI_FACE_CLIPS = {   # clip: tracks at uniform=16 with IoU-only tracking (issue 15) → the most allowed now
    "facenet_pytorch/examples__video.mp4": (26, 16),
    "face_recognition/examples__short_hamilton_clip.mp4": (18, 12),
    "ghost/examples__videos__dirtydancing.mp4": (14, 10),
}


@pytest.mark.slow
def test_sparse_sampling_keeps_faces_in_their_tracks(shared_dir, tmp_path):
    root = shared_dir / "data/real_videos"
    out = tmp_path / "r.jsonl"
    assert main(["scan", *(str(root / c) for c in MULTI_FACE_CLIPS), "--sample", "uniform=16", "--model", "random",
                 "--out", str(out), "-q"]) == 0
    tracks = {r["path"].removeprefix(str(root) + "/"): r["tracks"] for r in _records(out)}
    for clip, (iou_only, most) in MULTI_FACE_CLIPS.items():
        assert tracks[clip] <= most < iou_only, (clip, tracks[clip])
