"""`export`: a checkpoint becomes an ONNX file that scan's loader runs with the same results."""

import numpy as np
import onnx

from facexray.engines.xray import export_xray_onnx, load_xray
from facexray.faces.crop import CropSpec
from facexray.models.checkpoint import random_model, save_checkpoint


def test_exported_onnx_carries_metadata_and_matches_torch(tmp_path):
    net, meta = random_model(crop=CropSpec().to_dict(), seed=3)
    ckpt = save_checkpoint(net, tmp_path / "m.safetensors", crop=meta["crop"], provenance={"recipe": "test"})
    onnx_path = export_xray_onnx(ckpt, tmp_path / "m.onnx")
    a = load_xray(ckpt, engine="torch")
    b = load_xray(onnx_path, engine="onnxruntime")
    assert b.metadata["crop"] == CropSpec().to_dict() and b.metadata["provenance"] == {"recipe": "test"}
    assert b.metadata["exported_from"] == "m.safetensors"
    crops = np.random.default_rng(0).integers(0, 256, (3, 256, 256, 3), dtype=np.uint8)   # batch 3: dynamic axis
    (pa, ma), (pb, mb) = a(crops), b(crops)
    np.testing.assert_allclose(pb, pa, atol=1e-4)
    np.testing.assert_allclose(mb, ma, atol=1e-4)


def test_int8_export_is_marked_quantized_and_scores_close_to_float(tiny_dataset, tmp_path):
    """The shipped model (scored with each face's mirror image, so the graph holds both views) quantized on
    up to 32 training faces scores held-out faces, real and blended, as the float graph does. Scores, not an AUC: a tiny
    set's AUC moves by a few swapped pairs (on the 825 held-out faces of data/real the int8 blend AUC was
    0.963 against 0.964 in float, calibrated on 64 faces)."""
    from facexray.engines.xray import DEFAULT_MODEL
    from facexray.models.checkpoint import read_metadata
    from facexray.train.dataset import SampleConfig, XrayDataset, calibration_faces

    src = DEFAULT_MODEL
    meta = read_metadata(src)
    faces = calibration_faces(tiny_dataset, meta, faces=32)
    int8 = export_xray_onnx(src, tmp_path / "q.onnx", int8_faces=faces, int8_source=str(tiny_dataset))
    q, f = load_xray(int8, engine="onnxruntime"), load_xray(src, engine="onnxruntime")
    assert q.metadata["quantized"]["calibration_faces"] == len(faces) and q.threshold == f.threshold and q.flip
    ops = {n.op_type for n in onnx.load(str(int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops                   # an int8 graph, not the float one
    ds = XrayDataset(tiny_dataset, "val", SampleConfig.from_checkpoint(meta), seed=1, crop=f.crop_spec, train=False)
    crops = np.stack([ds[i]["image"].permute(1, 2, 0).numpy() for i in range(len(ds))])
    (pf, _), (pq, _) = f(crops), q(crops)

    def logit(p):
        p = np.clip(p, 1e-4, 1 - 1e-4)
        return np.log(p / (1 - p))
    assert len(crops) > 20 and np.corrcoef(logit(pf), logit(pq))[0, 1] > 0.95 and np.abs(pf - pq).mean() < 0.03


def test_the_onnx_cache_tells_architectures_with_the_same_weights_apart(tmp_path):
    """Same file name, same weights, another architecture: the cached ONNX graph of one must not serve the other."""
    from facexray.models.checkpoint import convert_checkpoint

    net, meta = random_model("xray_efficientnet_lite0", crop=CropSpec().to_dict(), seed=5)
    (tmp_path / "a").mkdir()
    fine = save_checkpoint(net, tmp_path / "a/m.safetensors", crop=meta["crop"])
    coarse = convert_checkpoint(fine, "xray_efficientnet_lite0_f8", tmp_path / "m.safetensors")
    crops = np.random.default_rng(1).integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
    for ckpt in (fine, coarse):
        (p_ort, _), (p_torch, _) = load_xray(ckpt, engine="onnxruntime")(crops), load_xray(ckpt, engine="torch")(crops)
        np.testing.assert_allclose(p_ort, p_torch, atol=1e-5)
