"""The shipped default model: small, says how it was made, tells self-blended fakes of people it never
saw from their real faces, keeps real faces real when the picture gets worse, carries a threshold chosen
on data; `scan`, `explain` and `eval` use it with no --model."""

import json

import pytest

from facexray.cli import main
from facexray.engines.xray import DEFAULT_MODEL, load_xray
from facexray.faces.detect import DetectorConfig
from facexray.models.checkpoint import read_metadata
from facexray.models.xray import DEFAULT_ARCH
from facexray.train.evaluate import evaluate_blended, evaluate_robustness
from facexray.train.prepare import prepare

pytestmark = pytest.mark.skipif(not DEFAULT_MODEL.exists(), reason=f"no default model at {DEFAULT_MODEL}")

MAX_BYTES = 40 * 2**20
HELD_OUT_FRAMES = 8
MAX_DEGRADED_FALSE_ALARMS = 0.10


def test_default_model_is_small_and_records_its_recipe_data_and_threshold():
    assert DEFAULT_MODEL.stat().st_size <= MAX_BYTES
    meta = read_metadata(DEFAULT_MODEL)
    prov = meta["provenance"]
    assert meta["arch"] == DEFAULT_ARCH and meta["crop"]["size"] == 256
    # trained as the recipe says; served in an architecture with the very same weights (converted_from)
    assert prov["recipe"]["arch"] == meta.get("converted_from", {}).get("arch", meta["arch"])
    data = prov["data"]
    assert len(data["index_sha256"]) == 64 and data["faces"]["train"] > 1000 and data["identities"]["val"] > 10
    # trained only on the real faces of ../shared: every source lies under real_videos, real_faces or real_more
    assert data["sources"] and all(any(f"/{d}/" in s for d in ("real_videos", "real_faces", "real_more"))
                                   for s in data["sources"])
    assert len(data["val_identities"]) == data["identities"]["val"]
    assert prov["validation"]["n_fake"] > 100 and prov["validation"]["auc"] >= 0.9
    cal = meta["calibration"]
    # scored with each face's mirror image by default, and calibrated without it too (scan --no-flip)
    assert cal["flip"] and not cal["unflipped"]["flip"]
    for c in (cal, cal["unflipped"]):
        assert 0 < c["threshold"] < 1 and c["false_alarm_rate"] <= c["max_false_alarm"] == 0.05
        assert c["real_sources"] >= 20 and c["dataset_index_sha256"] == data["index_sha256"]


@pytest.fixture(scope="module")
def held_out_faces(shared_dir, models_dir, tmp_path_factory):
    """Every validation (never trained on) identity of the model, its videos and photos prepared afresh:
    other frames than its run's (`HELD_OUT_FRAMES` a video)."""
    meta = read_metadata(DEFAULT_MODEL)
    # the calibration scored exactly the held-out identities' real sources; their paths from shared/data on
    sources = sorted(shared_dir / "data" / p.split("/data/", 1)[1] for p in meta["calibration"]["scores"])
    assert len(sources) == len(meta["provenance"]["data"]["val_identities"]) and all(p.exists() for p in sources)
    out = tmp_path_factory.mktemp("held_out") / "data"
    prepare(sources, out, workers=2, progress=False, sample=f"uniform={HELD_OUT_FRAMES}", val_fraction=0.0,
            detector=DetectorConfig(weights=str(models_dir / "retinaface_mnet025/Retinaface__weights__mobilenet0.25_Final.pth")),
            landmark_weights=str(models_dir / "landmark68_cunjian/onnx__pfld.onnx"))
    return out


@pytest.mark.parametrize("blend", ["sbi", "bi"])
def test_default_model_separates_blended_fakes_of_unseen_people(held_out_faces, blend):
    res = evaluate_blended(load_xray(None), held_out_faces, blend, split="train")
    frame = res["frame"]
    assert frame["n_fake"] >= 8 and frame["n_real"] >= 8
    assert frame["auc"] >= 0.85, frame
    assert res["xray"]["fake_iou_mean"] > res["xray"]["real_cells_flagged"]


def test_real_faces_stay_real_when_the_picture_gets_worse(held_out_faces):
    """JPEG q25, ×0.3 rescaling, blur σ 1.5, unsharp masking, H.264 CRF 35 and a small face compressed and
    blown up: each keeps the false alarms of the held-out identities' real faces at the model's threshold
    at or below 10 %."""
    res = evaluate_robustness(load_xray(None), held_out_faces, split="train")
    assert res["faces"] >= 150 and res["threshold"] == load_xray(None).threshold
    rates = {k: v["false_alarm_rate"] for k, v in res["conditions"].items()}
    assert set(rates) == {"clean", "jpeg_q25", "rescale_x0.3", "blur_s1.5", "unsharp", "h264_crf35",
                          "small_x0.35_jpeg40"}
    assert max(rates.values()) <= MAX_DEGRADED_FALSE_ALARMS, rates


@pytest.mark.usefixtures("detector_weights")
def test_scan_uses_the_default_model_and_its_threshold_with_no_flag(shared_dir, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    clip = shared_dir / "data/real_videos/lia/data__vox__driving2.mp4"
    assert main(["scan", str(clip), "--sample", "uniform=4", "--out", str(out), "-q"]) == 0
    rec = json.loads(out.read_text())
    assert rec["model"] == DEFAULT_MODEL.name and rec["warning"] is None and rec["faces_scored"] > 0
    threshold = read_metadata(DEFAULT_MODEL)["calibration"]["threshold"]
    assert rec["meta"]["threshold"] == threshold and rec["verdict"] == "real"
    assert f"verdict threshold {threshold:.3f}" in capsys.readouterr().err
