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
