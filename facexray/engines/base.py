"""The one interface every engine offers: a batch in, named outputs out."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class Engine(ABC):
    """Runs one network on a batch.

    Input is an NCHW float32 tensor (already normalised by the caller, which owns
    pre-processing); output is a dict of named float32 tensors on `self.device`,
    batch first. Engines are interchangeable: the detector and the X-ray model
    never know which one runs them.
    """

    name: str = "base"
    output_names: tuple[str, ...] = ()
    device: torch.device = torch.device("cpu")

    @abstractmethod
    def __call__(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the network on `batch` (N, C, H, W) and return its outputs by name."""

    def describe(self) -> dict:
        """A short, JSON-friendly description for records and benchmarks."""
        return {"engine": self.name, "device": str(self.device)}
