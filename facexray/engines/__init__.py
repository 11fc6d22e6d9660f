"""Engines run a network on a batch. `create_engine` picks one by name.

Example:
    >>> from torch import nn
    >>> eng = create_engine("torch", nn.Identity(), ("y",), (1, 3, 8, 8), key="identity")
    >>> eng.name
    'torch'
"""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from ..paths import cache_dir

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .base import Engine
    from .torch_engine import TorchOptions

# Imported when first used, so that reading ENGINES and DEFAULT_BATCH (the CLI's --help) loads no torch.
_LAZY = {"Engine": ".base", "OnnxRuntimeEngine": ".onnx_engine", "export_onnx": ".onnx_engine",
         "TorchEngine": ".torch_engine", "TorchOptions": ".torch_engine"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

ENGINES = ("auto", "torch", "onnxruntime", "tensorrt")

# Batch sizes where each stage runs fastest per item, by device type. On this project's
# 2-core CPU, activations of big batches fall out of cache: detection at batch 16 ran 1.7x
# slower per frame than at 4 and X-ray batches past 8 gained nothing but memory
# (benchmarks/results/cpu.json). GPUs want large batches.
DEFAULT_BATCH = {"cpu": {"detect": 4, "xray": 8}, "cuda": {"detect": 32, "xray": 64}}


def resolve_engine(kind: str, device: str | torch.device) -> str:
    """`auto` → onnxruntime on CPU (about 2x torch here), torch on CUDA; any other name as given."""
    if kind != "auto":
        return kind
    return "torch" if device_type(device) == "cuda" else "onnxruntime"


def default_batch(stage: str, device: str | torch.device) -> int:
    """The default batch size of `stage` ("detect" or "xray") on `device`."""
    return DEFAULT_BATCH["cuda" if device_type(device) == "cuda" else "cpu"][stage]


def device_type(device: str | torch.device) -> str:
    """"cuda" for "cuda", "cuda:1" or such a torch.device; "cpu" for "cpu"; read without importing torch."""
    return str(device).split(":", 1)[0]


def state_hash(module: nn.Module) -> str:
    """A short hash of a module's parameters and buffers (names, shapes and values)."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def create_engine(kind: str, module: nn.Module, output_names: tuple[str, ...],
                  input_shape: tuple[int, int, int, int], key: str, device: str = "cpu",
                  dynamic_hw: bool = False, options: TorchOptions | None = None) -> Engine:
    """Build the engine `kind` for `module`.

    The torch engine runs with `options` (default `TorchOptions.for_device(device)`: fp16 and
    CUDA graphs on CUDA, warmed up at `input_shape` unless its height and width vary).
    ONNX-based engines cache their exported graph in `cache_dir()` under `key` (a
    readable name) and a hash of the module's weights, so the export runs once per
    set of weights and never serves stale ones; TensorRT caches its built engine beside it.
    """
    from .onnx_engine import OnnxRuntimeEngine, export_onnx
    from .torch_engine import TorchEngine, TorchOptions

    kind = resolve_engine(kind, device)
    if kind == "torch":
        if options is None:
            options = TorchOptions.for_device(device, warmup_shape=None if dynamic_hw else tuple(input_shape[1:]))
        return TorchEngine(module, output_names, device=device, options=options)
    if kind in ("onnxruntime", "tensorrt"):
        if kind == "tensorrt":
            from .tensorrt_engine import require_tensorrt

            require_tensorrt(device)  # before the export: say what is missing at once
        onnx_path = Path(cache_dir()) / "onnx" / f"{key}-{state_hash(module)}{'-dyn' if dynamic_hw else ''}.onnx"
        if not onnx_path.exists():
            export_onnx(module, onnx_path, input_shape, output_names, dynamic_hw=dynamic_hw)
        if kind == "onnxruntime":
            return OnnxRuntimeEngine(onnx_path, device=device)
        from .tensorrt_engine import TensorRTEngine

        return TensorRTEngine(onnx_path, device=device, input_shape=tuple(input_shape), dynamic_hw=dynamic_hw)
    raise ValueError(f"unknown engine {kind!r}; choose one of {', '.join(ENGINES)}")


__all__ = ["Engine", "TorchEngine", "TorchOptions", "OnnxRuntimeEngine", "export_onnx", "create_engine", "resolve_engine",
           "default_batch", "ENGINES", "DEFAULT_BATCH"]
