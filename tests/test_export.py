"""`export`: a checkpoint becomes an ONNX file that scan's loader runs with the same results."""

import numpy as np

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
