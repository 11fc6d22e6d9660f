"""Plain PyTorch engine: CPU or CUDA, optional half precision and channels_last."""

from __future__ import annotations

import torch
from torch import nn

from .base import Engine


class TorchEngine(Engine):
    """Runs an `nn.Module` in eval mode under `torch.inference_mode`.

    Example:
        >>> net = nn.Conv2d(3, 2, 1)
        >>> eng = TorchEngine(net, output_names=("y",))
        >>> eng(torch.zeros(1, 3, 4, 4))["y"].shape
        torch.Size([1, 2, 4, 4])
    """

    name = "torch"

    def __init__(self, module: nn.Module, output_names: tuple[str, ...], device: str | torch.device = "cpu",
                 half: bool = False, channels_last: bool = False):
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("--device cuda was asked for, but torch sees no CUDA device on this machine")
        self.half = half and self.device.type == "cuda"
        self.channels_last = channels_last
        module = module.eval().to(self.device)
        if self.half:
            module = module.half()
        if channels_last:
            module = module.to(memory_format=torch.channels_last)
        self.module = module
        self.output_names = tuple(output_names)

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        x = batch.to(self.device, non_blocking=True)
        x = x.half() if self.half else x.float()
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = self.module(x)
        if isinstance(out, torch.Tensor):
            out = (out,)
        return {n: o.float() for n, o in zip(self.output_names, out)}

    def describe(self) -> dict:
        return {**super().describe(), "half": self.half, "channels_last": self.channels_last}
