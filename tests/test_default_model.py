"""The shipped default model: small, says how it was made, and tells self-blended fakes of people it
never saw from their real faces; `scan` and `eval` use it with no --model."""

import json

import pytest

from facexray.cli import main
from facexray.engines.xray import DEFAULT_MODEL, load_xray
from facexray.faces.detect import DetectorConfig
from facexray.models.checkpoint import read_metadata
from facexray.train.evaluate import evaluate_blended
from facexray.train.prepare import prepare

pytestmark = pytest.mark.skipif(not DEFAULT_MODEL.exists(), reason=f"no default model at {DEFAULT_MODEL}")

MAX_BYTES = 40 * 2**20
HELD_OUT_VIDEOS = 3


def test_default_model_is_small_and_records_its_recipe_and_data():
    assert DEFAULT_MODEL.stat().st_size <= MAX_BYTES
    meta = read_metadata(DEFAULT_MODEL)
    prov = meta["provenance"]
    assert meta["arch"] == prov["recipe"]["arch"] and meta["crop"]["size"] == 256
    data = prov["data"]
    assert len(data["index_sha256"]) == 64 and data["faces"]["train"] > 1000 and data["identities"]["val"] > 10
    # trained only on the real faces of ../shared: every source lies under real_videos or real_faces
    assert data["sources"] and all("/real_videos/" in s or "/real_faces/" in s for s in data["sources"])
    assert len(data["val_identities"]) == data["identities"]["val"]
    assert prov["validation"]["auc"] >= 0.95 and prov["validation"]["n_fake"] > 100


@pytest.fixture(scope="module")
def held_out_faces(shared_dir, models_dir, tmp_path_factory):
    """A few of the model's validation (never trained on) videos, prepared afresh: other frames than its run's."""
    val_ids = read_metadata(DEFAULT_MODEL)["provenance"]["data"]["val_identities"]
    videos = sorted(p for i in val_ids if i.startswith("real_videos/")
                    for p in (shared_dir / "data").glob(i + ".*"))[:HELD_OUT_VIDEOS]
    assert len(videos) == HELD_OUT_VIDEOS, val_ids
    out = tmp_path_factory.mktemp("held_out") / "data"
    prepare(videos, out, workers=1, progress=False, sample="uniform=12", val_fraction=0.0,
            detector=DetectorConfig(weights=str(models_dir / "retinaface_mnet025/Retinaface__weights__mobilenet0.25_Final.pth")),
            landmark_weights=str(models_dir / "landmark68_cunjian/onnx__pfld.onnx"))
    return out


def test_default_model_separates_self_blended_fakes_of_unseen_people(held_out_faces):
    res = evaluate_blended(load_xray(None), held_out_faces, "sbi", split="train")
    frame = res["frame"]
    assert frame["n_fake"] >= 8 and frame["n_real"] >= 8
    assert frame["auc"] >= 0.9, frame


@pytest.mark.usefixtures("detector_weights")
def test_scan_uses_the_default_model_with_no_model_flag(shared_dir, tmp_path):
    out = tmp_path / "r.jsonl"
    clip = shared_dir / "data/real_videos/lia/data__vox__driving2.mp4"
    assert main(["scan", str(clip), "--sample", "uniform=4", "--out", str(out), "-q"]) == 0
    rec = json.loads(out.read_text())
    assert rec["model"] == DEFAULT_MODEL.name and rec["warning"] is None and rec["faces_scored"] > 0
