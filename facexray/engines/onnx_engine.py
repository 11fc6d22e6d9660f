"""ONNX Runtime engine, and ONNX export with a dynamic batch axis."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .base import Engine


def export_onnx(module: nn.Module, path: str | Path, input_shape: tuple[int, int, int, int],
                output_names: tuple[str, ...], dynamic_hw: bool = False, opset: int = 17) -> Path:
    """Export `module` to ONNX at `path` with a dynamic batch (and optionally dynamic H, W).

    The file is written to a temporary name and renamed, so a crash never leaves
    a half-written model behind for the cache to trust.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.onnx")
    axes = {0: "batch"}
    if dynamic_hw:
        axes.update({2: "height", 3: "width"})
    dynamic_axes = {"input": axes, **{n: {0: "batch"} for n in output_names}}
    module = module.eval().cpu().float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(input_shape),), str(tmp), input_names=["input"],
                          output_names=list(output_names), dynamic_axes=dynamic_axes,
                          opset_version=opset, dynamo=False)
    os.replace(tmp, path)
    return path


class OnnxRuntimeEngine(Engine):
    """Runs an ONNX file with ONNX Runtime (CPU, or CUDA when its provider is installed)."""

    name = "onnxruntime"

    def __init__(self, onnx_path: str | Path, device: str | torch.device = "cpu", threads: int | None = None):
        import onnxruntime as ort

        self.device = torch.device("cpu")
        providers = ["CPUExecutionProvider"]
        if torch.device(device).type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise RuntimeError("onnxruntime on this machine has no CUDA provider; "
                                   "install onnxruntime-gpu or use --engine torch")
            providers.insert(0, "CUDAExecutionProvider")
        opts = ort.SessionOptions()
        # Spinning threads keep burning the cores between runs, starving decode and pre-processing.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = tuple(o.name for o in self.session.get_outputs())
        self.path = Path(onnx_path)

    def __call__(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        x = np.ascontiguousarray(batch.detach().cpu().float().numpy())
        outs = self.session.run(list(self.output_names), {self.input_name: x})
        return {n: torch.from_numpy(o) for n, o in zip(self.output_names, outs)}

    def describe(self) -> dict:
        return {**super().describe(), "providers": self.session.get_providers()}
