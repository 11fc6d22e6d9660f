"""TensorRT engine: an ONNX export built into a TensorRT engine (FP16), cached on disk, run on a CUDA stream.

Building takes minutes, so the serialized engine is kept in `cache_dir()/tensorrt/`, named
by a key of everything it depends on: the ONNX file's sha256, the TensorRT version, the GPU
model, the precision and the optimisation profile (batch 1..max, and the input sizes).
A changed model, driver stack or GPU therefore builds a new engine instead of loading a
stale or incompatible one. Kernel timings are kept in a timing cache beside it, so a
rebuild (another model, another profile) reuses what was already measured.

TensorRT is imported only when this engine is built: facexray works without it, and
`--engine tensorrt` then says what to install. Written against the TensorRT 10 Python API;
not yet run in this project (see README, "GPU").
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from ..errors import BackendUnavailable
from ..paths import cache_dir, file_sha256
from .base import Engine

PRECISIONS = ("fp16", "bf16", "fp32")
MAX_BATCH = 64
"""Largest batch of the optimisation profile (the GPU default batches are 32 and 64); larger batches run in chunks."""
MIN_SIDE = 32
"""Smallest input height/width of a profile with dynamic sizes (the detector pads to multiples of 32)."""
WORKSPACE_BYTES = 4 << 30
INSTALL_HELP = "install it with `pip install -e \".[tensorrt]\"` (TensorRT 10, needs an NVIDIA GPU and driver)"


def require_tensorrt(device: str | torch.device):
    """The `tensorrt` module, or `BackendUnavailable` saying what is missing (TensorRT 10, or a CUDA device)."""
    if torch.device(device).type != "cuda":
        raise BackendUnavailable("--engine tensorrt runs on a CUDA device; add --device cuda "
                                 "(or use --engine onnxruntime on CPU)")
    if not torch.cuda.is_available():
        raise BackendUnavailable("--engine tensorrt needs a CUDA device, but torch sees none on this machine")
    try:
        import tensorrt
    except ImportError:
        raise BackendUnavailable(f"--engine tensorrt: TensorRT is not installed; {INSTALL_HELP}, "
                                 "or use --engine torch") from None
    if tensorrt.__version__.split(".")[0] != "10":  # 11 removed BuilderFlag.FP16/BF16, which _build sets
        raise BackendUnavailable(f"--engine tensorrt is written for TensorRT 10, this machine has "
                                 f"{tensorrt.__version__}; {INSTALL_HELP}, or use --engine torch")
    return tensorrt



def engine_cache_key(onnx_sha256: str, trt_version: str, gpu_name: str, precision: str,
                     profile: dict[str, list[int]]) -> str:
    """The name a built engine is cached under: a hash of everything the engine depends on.

    Example:
        >>> k = engine_cache_key("ab" * 32, "10.3.0", "NVIDIA H100 80GB HBM3", "fp16",
        ...                      {"min": [1, 3, 256, 256], "opt": [64, 3, 256, 256], "max": [64, 3, 256, 256]})
        >>> len(k), k == engine_cache_key("ab" * 32, "10.3.0", "NVIDIA H100 80GB HBM3", "fp32",
        ...                               {"min": [1, 3, 256, 256], "opt": [64, 3, 256, 256], "max": [64, 3, 256, 256]})
        (24, False)
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown TensorRT precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    blob = json.dumps({"onnx": onnx_sha256, "tensorrt": trt_version, "gpu": gpu_name, "precision": precision,
                       "profile": profile}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def batch_profile(input_shape: tuple[int, int, int, int], dynamic_hw: bool, max_batch: int = MAX_BATCH) -> dict:
    """The optimisation profile: batch 1..`max_batch` (tuned for the largest), sizes up to `input_shape`'s."""
    _, c, h, w = input_shape
    lo = (MIN_SIDE, MIN_SIDE) if dynamic_hw else (h, w)
    return {"min": [1, c, *lo], "opt": [max_batch, c, h, w], "max": [max_batch, c, h, w]}


_TORCH_DTYPES = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT32": torch.int32,
                 "INT64": torch.int64, "INT8": torch.int8, "BOOL": torch.bool}


class TensorRTEngine(Engine):
    """Runs an ONNX network with TensorRT on one CUDA device; inputs and outputs are torch CUDA tensors."""

    name = "tensorrt"

    def __init__(self, onnx_path: str | Path, device: str | torch.device = "cuda",
                 input_shape: tuple[int, int, int, int] = (1, 3, 256, 256), dynamic_hw: bool = False,
                 precision: str = "fp16", max_batch: int = MAX_BATCH):
        trt = require_tensorrt(device)
        self.trt = trt
        self.device = torch.device(device)
        if self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.precision = precision
        self.max_batch = max_batch
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.profile = batch_profile(input_shape, dynamic_hw, max_batch)
        gpu = torch.cuda.get_device_name(self.device)
        folder = Path(cache_dir()) / "tensorrt"
        key = engine_cache_key(file_sha256(onnx_path), trt.__version__, gpu, precision, self.profile)
        self.plan_path = folder / f"{Path(onnx_path).stem}-{precision}-{key}.plan"
        self.timing_cache_path = folder / f"timing-{trt.__version__}-{gpu.replace(' ', '_')}.cache"
        with torch.cuda.device(self.device):
            if not self.plan_path.exists():
                self._build(Path(onnx_path))
            self.engine = trt.Runtime(self.logger).deserialize_cuda_engine(self.plan_path.read_bytes())
            if self.engine is None:
                raise BackendUnavailable(f"TensorRT could not load its cached engine {self.plan_path}; delete it to rebuild")
            self.context = self.engine.create_execution_context()
            self.stream = torch.cuda.Stream(self.device)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise ValueError(f"{onnx_path}: the TensorRT engine wants one input, this network has {inputs}")
        self.input_name = inputs[0]
        self.output_names = tuple(n for n in names if n != self.input_name)
        self._dtypes = {n: _TORCH_DTYPES[self.engine.get_tensor_dtype(n).name] for n in names}

    def _build(self, onnx_path: Path) -> None:
        """ONNX → serialized engine on disk (atomically), reading and updating the timing cache."""
        trt = self.trt
        builder = trt.Builder(self.logger)
        network = builder.create_network(0)  # explicit batch: the only mode of TensorRT 10
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ValueError(f"TensorRT cannot parse {onnx_path}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
        if self.precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        elif self.precision == "bf16":
            config.set_flag(trt.BuilderFlag.BF16)
        profile = builder.create_optimization_profile()
        profile.set_shape(network.get_input(0).name, self.profile["min"], self.profile["opt"], self.profile["max"])
        config.add_optimization_profile(profile)
        old = self.timing_cache_path.read_bytes() if self.timing_cache_path.exists() else b""
        config.set_timing_cache(config.create_timing_cache(old), ignore_mismatch=False)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
        self.plan_path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.plan_path, bytes(plan))
        _write_atomic(self.timing_cache_path, bytes(config.get_timing_cache().serialize()))

    @torch.no_grad()
    def __call__(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = [self._run(batch[s:s + self.max_batch]) for s in range(0, batch.shape[0], self.max_batch)]
        return {n: torch.cat([p[n] for p in parts]) if len(parts) > 1 else parts[0][n] for n in self.output_names}

    def _run(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """One chunk: bind the input and freshly allocated outputs by address and enqueue on our stream."""
        x = x.to(self.device, dtype=self._dtypes[self.input_name]).contiguous()  # TensorRT reads plain NCHW
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream):
            self.context.set_input_shape(self.input_name, tuple(x.shape))
            self.context.set_tensor_address(self.input_name, x.data_ptr())
            outs = {}
            for n in self.output_names:
                outs[n] = torch.empty(tuple(self.context.get_tensor_shape(n)), dtype=self._dtypes[n], device=self.device)
                self.context.set_tensor_address(n, outs[n].data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed (see its log above)")
        caller = torch.cuda.current_stream(self.device)
        caller.wait_stream(self.stream)  # callers read the outputs on their own stream
        x.record_stream(self.stream)
        for o in outs.values():
            o.record_stream(caller)
        return {n: o.float() for n, o in outs.items()}

    def describe(self) -> dict:
        return {**super().describe(), "precision": self.precision, "max_batch": self.max_batch,
                "tensorrt": self.trt.__version__, "plan": self.plan_path.name}


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
