"""Torch engine options (buckets, CUDA graphs, fp16, compile) and the TensorRT engine.

The CPU tests check the logic every GPU run relies on (padding to buckets, option checks,
the TensorRT cache key and missing-backend errors); the `gpu` and `tensorrt` tests compare
the fast paths with fp32 eager on the real networks and are skipped without the hardware.
"""

import numpy as np
import pytest
import torch
from torch import nn

from facexray.engines import create_engine
from facexray.engines.tensorrt_engine import batch_profile, engine_cache_key
from facexray.engines.torch_engine import TorchEngine, TorchOptions
from facexray.errors import BackendUnavailable


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1))
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
    return net


def test_padding_to_buckets_gives_the_unpadded_outputs():
    x = torch.randn(11, 3, 16, 16)
    plain = TorchEngine(_net(), ("y",))
    bucketed = TorchEngine(_net(), ("y",), options=TorchOptions(buckets=(1, 4, 8)))
    assert [bucketed.bucket(n) for n in (1, 2, 3, 5, 8, 9)] == [1, 4, 4, 8, 8, 8]
    ref = plain(x)["y"]
    for n in (1, 3, 8, 11):          # 11 > the largest bucket: runs as 8 + 3 (padded to 4)
        got = bucketed(x[:n])["y"]
        assert got.shape == ref[:n].shape
        torch.testing.assert_close(got, ref[:n], rtol=1e-5, atol=1e-5)


def test_cpu_refuses_half_and_graphs_with_a_reason():
    with pytest.raises(ValueError, match="CUDA only"):
        TorchEngine(_net(), ("y",), options=TorchOptions(precision="fp16"))
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        TorchEngine(_net(), ("y",), options=TorchOptions(buckets=(1,), cuda_graphs=True))
    with pytest.raises(ValueError, match="unknown precision"):
        TorchEngine(_net(), ("y",), options=TorchOptions(precision="int3"))
    assert TorchOptions.for_device("cpu") == TorchOptions()
    cuda = TorchOptions.for_device("cuda")
    assert cuda.precision == "fp16" and cuda.cuda_graphs and cuda.buckets[-1] >= 64


@pytest.mark.slow
def test_torch_compile_matches_eager_on_cpu():
    x = torch.randn(3, 3, 16, 16)
    ref = TorchEngine(_net(), ("y",))(x)["y"]
    got = TorchEngine(_net(), ("y",), options=TorchOptions(compile=True, buckets=(4,), warmup_shape=(3, 16, 16)))(x)["y"]
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def test_tensorrt_cache_key_changes_with_everything_it_depends_on():
    prof = batch_profile((1, 3, 256, 256), dynamic_hw=False)
    assert prof == {"min": [1, 3, 256, 256], "opt": [64, 3, 256, 256], "max": [64, 3, 256, 256]}
    assert batch_profile((1, 3, 640, 640), dynamic_hw=True)["min"] == [1, 3, 32, 32]
    base = ("a" * 64, "10.3.0", "NVIDIA H100 80GB HBM3", "fp16", prof)
    key = engine_cache_key(*base)
    assert key == engine_cache_key(*base)
    for i, other in enumerate(("b" * 64, "10.4.0", "NVIDIA A100-SXM4-40GB", "fp32",
                               batch_profile((1, 3, 256, 256), False, max_batch=32))):
        changed = list(base)
        changed[i] = other
        assert engine_cache_key(*changed) != key
    with pytest.raises(ValueError, match="precision"):
        engine_cache_key("a" * 64, "10.3.0", "gpu", "int4", prof)


def test_tensorrt_asked_for_without_it_says_what_to_do():
    with pytest.raises(BackendUnavailable, match="--device cuda"):
        create_engine("tensorrt", _net(), ("y",), (1, 3, 16, 16), key="t", device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailable, match="CUDA device"):
            create_engine("tensorrt", _net(), ("y",), (1, 3, 16, 16), key="t", device="cuda")


# -- on a GPU ------------------------------------------------------------------------------


def _xray_and_detector():
    from facexray.faces.crop import CropSpec
    from facexray.faces.retinaface import get_config, load_retinaface
    from facexray.faces.weights import resolve_weights
    from facexray.models.checkpoint import random_model
    from facexray.models.xray import OUTPUT_NAMES

    xray, _ = random_model(crop=CropSpec().to_dict())
    det = load_retinaface(resolve_weights("retinaface_mnet025", None), get_config("retinaface_mnet025"))
    return [(xray, OUTPUT_NAMES, (3, 256, 256)), (det, ("loc", "conf", "landms"), (3, 384, 640))]


def _close(got: dict, ref: dict, tol: float) -> None:
    for name, r in ref.items():
        g = got[name]
        assert g.shape == r.shape and g.dtype == torch.float32
        err = (g - r).abs().max().item() / max(r.abs().max().item(), 1e-6)
        assert err < tol, f"{name}: relative max error {err:.4f}"


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_graphs_and_half_match_fp32_eager_on_the_real_networks(detector_weights, precision):
    for net, names, shape in _xray_and_detector():
        x = torch.randn(5, *shape, device="cuda").clamp_(-2, 2)
        ref = TorchEngine(net, names, device="cuda")(x)
        fast = TorchEngine(net, names, device="cuda", options=TorchOptions.for_device(
            "cuda", precision=precision, warmup_shape=shape))
        _close(fast(x), ref, 0.02 if precision == "fp16" else 0.05)
        _close(fast(x[:2]), {k: v[:2] for k, v in ref.items()}, 0.05)   # another bucket, replayed
        assert fast._graphs, "no CUDA graph was captured"


@pytest.mark.tensorrt
def test_tensorrt_engine_matches_torch_and_is_cached(detector_weights, tmp_path, monkeypatch):
    monkeypatch.setenv("FACEXRAY_CACHE", str(tmp_path))
    net, names, shape = _xray_and_detector()[0]
    x = torch.randn(3, *shape, device="cuda").clamp_(-2, 2)
    ref = TorchEngine(net, names, device="cuda")(x)
    eng = create_engine("tensorrt", net, names, (1, *shape), key="xray-test", device="cuda")
    _close(eng(x), ref, 0.02)
    plans = list((tmp_path / "tensorrt").glob("*.plan"))
    assert len(plans) == 1 and list((tmp_path / "tensorrt").glob("timing-*.cache"))
    mtime = plans[0].stat().st_mtime_ns
    again = create_engine("tensorrt", net, names, (1, *shape), key="xray-test", device="cuda")
    assert plans[0].stat().st_mtime_ns == mtime and again.plan_path == plans[0]
    np.testing.assert_allclose(again(x)["prob"].cpu().numpy(), eng(x)["prob"].cpu().numpy(), atol=1e-3)
