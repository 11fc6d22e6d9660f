"""PyTorch engine: CPU or CUDA; on CUDA fp16/bf16, channels_last, CUDA graphs of fixed batch buckets, torch.compile.

A CUDA graph replays a whole forward pass with one launch, but only for the exact shape it
was captured with. So batch sizes are rounded up to a few fixed *buckets* (a batch of 11
runs padded to 16, its first 11 outputs are kept); a graph is captured per bucket and input
size, at warm-up for the sizes known in advance (the X-ray crop) and on first sight for the
others (detector input sizes follow the videos). Padding never changes an item's output:
the networks run in eval mode, where no item sees another.

Example:
    >>> net = nn.Conv2d(3, 2, 1)
    >>> eng = TorchEngine(net, output_names=("y",))
    >>> eng(torch.zeros(1, 3, 4, 4))["y"].shape
    torch.Size([1, 2, 4, 4])
    >>> TorchEngine(net, ("y",), options=TorchOptions(buckets=(4, 8)))(torch.zeros(3, 3, 4, 4))["y"].shape
    torch.Size([3, 2, 4, 4])
"""

from __future__ import annotations

import bisect
import copy
from dataclasses import dataclass, replace

import torch
from torch import nn

from .base import Engine

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
CUDA_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
"""Batch sizes captured as CUDA graphs by default (the GPU default batches are 32 and 64)."""


@dataclass(frozen=True)
class TorchOptions:
    """How the torch engine runs a network (the one place that knows these defaults).

    `precision` fp32 | fp16 | bf16 (weights and activations; outputs come back float32);
    `buckets`: batch sizes a batch is padded up to (larger batches run in chunks of the
    largest), () = run every batch as it comes; `cuda_graphs` captures one graph per bucket
    and input size (needs buckets, CUDA only); `compile` wraps the network in `torch.compile`;
    `warmup_shape` (C, H, W): run (and capture) every bucket at this input size at start-up.
    """

    precision: str = "fp32"
    channels_last: bool = False
    buckets: tuple[int, ...] = ()
    cuda_graphs: bool = False
    compile: bool = False
    warmup_shape: tuple[int, int, int] | None = None

    @classmethod
    def for_device(cls, device: str | torch.device, **overrides) -> TorchOptions:
        """The defaults for `device`: on CUDA fp16 + channels_last + CUDA graphs of `CUDA_BUCKETS`; on CPU plain fp32."""
        if torch.device(device).type == "cuda":
            base = cls(precision="fp16", channels_last=True, buckets=CUDA_BUCKETS, cuda_graphs=True)
        else:
            base = cls()
        return replace(base, **overrides)

    def check(self, device: torch.device) -> None:
        """Raise ValueError, saying why, for options that cannot run on `device`."""
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if device.type != "cuda":
            if self.precision != "fp32":
                raise ValueError(f"precision {self.precision} runs on CUDA only (on CPU it is slower, not faster); "
                                 "use fp32 or --device cuda")
            if self.cuda_graphs:
                raise ValueError("CUDA graphs need a CUDA device; on CPU leave them off")
        if self.cuda_graphs and not self.buckets:
            raise ValueError("CUDA graphs capture fixed batch sizes: give buckets, e.g. (1, 2, 4, 8, 16, 32, 64)")
        if any(b < 1 for b in self.buckets):
            raise ValueError(f"batch buckets must be >= 1, got {self.buckets}")


class _Graph:
    """One captured forward pass: a static input to copy into, and the static outputs it fills."""

    def __init__(self, module: nn.Module, example: torch.Tensor):
        self.input = example.clone()
        side = torch.cuda.Stream(device=example.device)
        side.wait_stream(torch.cuda.current_stream(example.device))
        with torch.cuda.stream(side):          # warm-up on a side stream, as capture requires
            for _ in range(2):
                module(self.input)
        torch.cuda.current_stream(example.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        # captured on the side stream, which lives on the input's device (torch.cuda.graph's own
        # capture stream is made once per process on whichever device was current: cuda:1 broke);
        # thread_local: the other stage's thread may launch work while this one captures
        with torch.cuda.graph(self.graph, stream=side, capture_error_mode="thread_local"):
            out = module(self.input)
        self.outputs = (out,) if isinstance(out, torch.Tensor) else tuple(out)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        self.input.copy_(x)
        self.graph.replay()
        return self.outputs


class TorchEngine(Engine):
    """Runs an `nn.Module` in eval mode without autograd, with the `TorchOptions` given.

    Raises RuntimeError when CUDA is asked for and missing, ValueError for options the
    device cannot run (fp16 or graphs on CPU).
    """

    name = "torch"

    def __init__(self, module: nn.Module, output_names: tuple[str, ...], device: str | torch.device = "cpu",
                 options: TorchOptions | None = None):
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("--device cuda was asked for, but torch sees no CUDA device on this machine")
        self.options = options or TorchOptions()
        self.options.check(self.device)
        self.dtype = PRECISIONS[self.options.precision]
        self.memory_format = torch.channels_last if self.options.channels_last else torch.contiguous_format
        if self.dtype != torch.float32:  # a half copy: the caller's module (maybe in another engine) stays fp32
            module = copy.deepcopy(module)
        module = module.eval().to(self.device, dtype=self.dtype, memory_format=self.memory_format)
        self.module = torch.compile(module) if self.options.compile else module
        self.output_names = tuple(output_names)
        self.buckets = tuple(sorted(set(self.options.buckets)))
        self._graphs: dict[tuple[int, ...], _Graph] = {}
        if self.options.warmup_shape is not None:
            self.warmup(self.options.warmup_shape)

    def warmup(self, shape: tuple[int, int, int]) -> None:
        """Run every bucket once at input size `shape` (C, H, W): compiles, captures graphs, fills caches."""
        for b in self.buckets or (1,):
            self(torch.zeros((b, *shape), device=self.device))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def bucket(self, n: int) -> int:
        """The batch size a batch of `n` runs at: the smallest bucket >= n (n itself without buckets)."""
        if not self.buckets:
            return n
        i = bisect.bisect_left(self.buckets, n)
        return self.buckets[min(i, len(self.buckets) - 1)]

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        n = batch.shape[0]
        top = self.buckets[-1] if self.buckets else max(n, 1)
        parts = [self._run(batch[s:s + top]) for s in range(0, n, top)] or [self._run(batch)]
        outs = [torch.cat(o) if len(o) > 1 else o[0] for o in zip(*parts)]
        return dict(zip(self.output_names, outs))

    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One chunk of at most the largest bucket: pad up to its bucket, run, keep the real rows (float32)."""
        n = x.shape[0]
        b = self.bucket(n)
        x = x.to(self.device, dtype=self.dtype, non_blocking=True)
        if b > n:
            x = torch.cat([x, x.new_zeros((b - n, *x.shape[1:]))])
        if self.options.channels_last:  # otherwise keep the caller's layout (the detector hands channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        if self.options.cuda_graphs:
            key = tuple(x.shape)
            graph = self._graphs.get(key)
            if graph is None:
                graph = self._graphs[key] = _Graph(self.module, x)
            out = graph(x)
        else:
            out = self.module(x)
            out = (out,) if isinstance(out, torch.Tensor) else tuple(out)
        # a graph's outputs are overwritten by its next replay: they leave as copies
        return tuple(o[:n].to(torch.float32, copy=self.options.cuda_graphs) for o in out)

    def describe(self) -> dict:
        o = self.options
        return {**super().describe(), "precision": o.precision, "channels_last": o.channels_last,
                "buckets": list(self.buckets), "cuda_graphs": o.cuda_graphs, "compile": o.compile}
