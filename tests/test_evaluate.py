"""`facexray eval` on labelled files: the whole tool, from a CSV of real and fake images."""

import json

import pytest

from facexray.cli import main


@pytest.mark.usefixtures("detector_weights")
def test_eval_csv_of_labelled_faces(shared_dir, tmp_path, capsys):
    dev = shared_dir / "data/labeled_dev"
    rows = [("mesonet/test_images__df__df00204.jpg", "fake"), ("mesonet/test_images__df__df01254.jpg", "fake"),
            ("mesonet/test_images__real__real00240.jpg", "real"), ("mesonet/test_images__real__real00772.jpg", "real")]
    csv = tmp_path / "dev.csv"
    csv.write_text("path,label\n" + "".join(f"{dev / p},{lab}\n" for p, lab in rows))
    out = tmp_path / "m.json"
    assert main(["eval", str(csv), "--model", "random", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res == json.loads(capsys.readouterr().out)
    assert res["video"]["n"] + sum(len(v) for v in res["not_scored"].values()) == 4
    assert res["video"]["n_fake"] + res["video"]["n_real"] == res["video"]["n"]
    assert res["frame"]["n"] >= res["video"]["n"]
    assert 0.0 <= res["video"]["auc"] <= 1.0 and 0.0 <= res["frame"]["eer"] <= 1.0


@pytest.mark.usefixtures("detector_weights")
def test_eval_faceforensics_layout_reports_per_method(shared_dir, tmp_path):
    import shutil

    clip = shared_dir / "data/real_videos/lia/data__vox__driving2.mp4"
    root = tmp_path / "FF"
    for rel in ("original_sequences/youtube/c23/videos/000.mp4", "manipulated_sequences/Deepfakes/c23/videos/000_003.mp4",
                "manipulated_sequences/Face2Face/c23/videos/000_003.mp4"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, root / rel)
    out = tmp_path / "m.json"
    assert main(["eval", str(root), "--model", "random", "--sample", "uniform=4", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert (res["video"]["n"], res["video"]["n_fake"]) == (3, 2)
    assert set(res["per_method"]) == {"Deepfakes", "Face2Face"}
    assert res["per_method"]["Deepfakes"]["video"]["n"] == 2          # its fake against the real
    # the same clip under three labels scores the same: a chance AUC, exactly
    assert res["video"]["auc"] == 0.5


def test_csv_takes_a_file_column_and_names_the_columns_it_needs(tmp_path):
    from facexray.train.evaluate import read_csv

    good = tmp_path / "LABELS.csv"
    good.write_text("file,label,method\nclips/a.mp4,fake,GHOST\n/abs/b.jpg,real,original\n")
    rows = read_csv(good)
    assert [(r["path"], r["label"], r["video"], r["method"]) for r in rows] == [
        (str(tmp_path / "clips/a.mp4"), 1, "clips/a.mp4", "GHOST"), ("/abs/b.jpg", 0, "/abs/b.jpg", "original")]
    bad = tmp_path / "bad.csv"
    bad.write_text("name,label\nx.mp4,fake\n")
    with pytest.raises(ValueError, match="path \\(or file\\) and label"):
        read_csv(bad)


def test_blended_faces_degraded_alike_are_scored_on_the_same_items(tiny_dataset, tmp_path, capsys):
    """`eval --blend --degrade`: the same held-out items, each degraded before scoring, real and blended alike."""
    from facexray.engines.xray import load_xray
    from facexray.train.evaluate import evaluate_blended

    runner = load_xray(None, engine="onnxruntime")
    clean = evaluate_blended(runner, tiny_dataset, "mix", split="val")
    worse = evaluate_blended(runner, tiny_dataset, "mix", split="val", degrade="h264_crf35")
    assert (clean["degrade"], worse["degrade"]) == (None, "h264_crf35")
    assert [clean["frame"][k] for k in ("n", "n_fake")] == [worse["frame"][k] for k in ("n", "n_fake")]
    assert clean["frame"]["log_loss"] != worse["frame"]["log_loss"]            # the pictures did change
    out = tmp_path / "d.json"
    assert main(["eval", str(tiny_dataset), "--blend", "sbi", "--degrade", "jpeg_q25", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["degrade"] == "jpeg_q25"
    assert main(["eval", str(tmp_path / "x.csv"), "--degrade", "jpeg_q25"]) == 2      # goes with --blend only
    assert "--degrade goes with --blend" in capsys.readouterr().err
