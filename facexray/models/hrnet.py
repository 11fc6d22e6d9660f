"""HRNetV2 backbone (Wang et al., "Deep High-Resolution Representation Learning", TPAMI 2020).

Module and parameter names follow the official HRNet-Image-Classification code
(`lib/models/cls_hrnet.py`), so its ImageNet checkpoints load as they are (see
`facexray.models.checkpoint.load_imagenet_checkpoint`). The classification head
(`incre_modules`, `downsamp_modules`, `final_layer`, `classifier`) is left out:
Face X-ray uses the four branch feature maps themselves.

Example:
    >>> net = hrnet("hrnet_w18_small_v2")
    >>> [tuple(f.shape) for f in net(torch.zeros(1, 3, 64, 64))]
    [(1, 18, 16, 16), (1, 36, 8, 8), (1, 72, 4, 4), (1, 144, 2, 2)]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class StageConfig:
    """One HRNet stage: `num_modules` HighResolutionModules over `len(channels)` branches."""

    num_modules: int
    num_blocks: tuple[int, ...]
    channels: tuple[int, ...]


@dataclass(frozen=True)
class HRNetConfig:
    """An HRNet: `stem_blocks` Bottlenecks (64 planes) in `layer1`, then stages 2, 3 and 4 of BasicBlocks."""

    stem_blocks: int
    stages: tuple[StageConfig, StageConfig, StageConfig]


def _config(width: int, stem_blocks: int, num_modules: tuple[int, int, int], blocks: int) -> HRNetConfig:
    channels = (width, 2 * width, 4 * width, 8 * width)
    return HRNetConfig(stem_blocks, tuple(
        StageConfig(m, (blocks,) * (b + 2), channels[:b + 2]) for b, m in enumerate(num_modules)))


# As in the official experiments/cls_hrnet_*_sgd_lr5e-2_wd1e-4_bs32_x100.yaml.
CONFIGS: dict[str, HRNetConfig] = {
    "hrnet_w18_small_v2": _config(18, stem_blocks=2, num_modules=(1, 3, 2), blocks=2),
    "hrnet_w18": _config(18, stem_blocks=4, num_modules=(1, 4, 3), blocks=4),
    "hrnet_w32": _config(32, stem_blocks=4, num_modules=(1, 4, 3), blocks=4),
    "hrnet_w48": _config(48, stem_blocks=4, num_modules=(1, 4, 3), blocks=4),
}


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU()) if relu else nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with a residual connection."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + x)


class Bottleneck(nn.Module):
    """1×1 → 3×3 → 1×1 (×4 channels) with a residual connection, projected when the widths differ."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int):
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU()
        self.downsample = _conv_bn(inplanes, out, 1, relu=False) if inplanes != out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class HighResolutionModule(nn.Module):
    """Parallel branches of BasicBlocks, then every branch receives the sum of all branches.

    `fuse_layers[i][j]` brings branch j to branch i's resolution and width: a 1×1 conv
    and nearest upsampling when j is coarser, a chain of stride-2 3×3 convs when j is
    finer, and nothing (an Identity here, None in the official code) when j == i.
    """

    def __init__(self, num_blocks: tuple[int, ...], channels: tuple[int, ...]):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*(BasicBlock(c) for _ in range(n))) for n, c in zip(num_blocks, channels))
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(self._fuse(channels, i, j) for j in range(len(channels)))
            for i in range(len(channels)))
        self.relu = nn.ReLU()

    @staticmethod
    def _fuse(channels: tuple[int, ...], i: int, j: int) -> nn.Module:
        if j > i:
            return nn.Sequential(*_conv_bn(channels[j], channels[i], 1, relu=False),
                                 nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"))
        if j == i:
            return nn.Identity()
        steps = i - j
        return nn.Sequential(*(
            _conv_bn(channels[j], channels[i] if k == steps - 1 else channels[j], 3, 2, relu=k < steps - 1)
            for k in range(steps)))

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        out = []
        for fuse in self.fuse_layers:
            y = fuse[0](xs[0])
            for f, x in zip(fuse[1:], xs[1:]):
                y = y + f(x)
            out.append(self.relu(y))
        return out


def _transition(prev: tuple[int, ...], cur: tuple[int, ...]) -> nn.ModuleList:
    """Adapts the widths of existing branches and opens the new, coarser one from the coarsest."""
    layers: list[nn.Module] = []
    for i, c in enumerate(cur):
        if i < len(prev):
            layers.append(nn.Identity() if c == prev[i] else _conv_bn(prev[i], c, 3))
        else:
            steps = i + 1 - len(prev)
            layers.append(nn.Sequential(*(
                _conv_bn(prev[-1], c if k == steps - 1 else prev[-1], 3, 2) for k in range(steps))))
    return nn.ModuleList(layers)


class HRNet(nn.Module):
    """HRNetV2 backbone: forward returns the four branch maps at 1/4, 1/8, 1/16 and 1/32 resolution.

    Input is a normalised NCHW image; H and W should be multiples of 32.
    """

    IMAGENET_HEAD_PREFIXES = ("incre_modules.", "downsamp_modules.", "final_layer.", "classifier.")

    def __init__(self, config: HRNetConfig):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.layer1 = nn.Sequential(*(Bottleneck(64 if k == 0 else 256, 64) for k in range(config.stem_blocks)))
        prev: tuple[int, ...] = (64 * Bottleneck.expansion,)
        for n, stage in enumerate(config.stages, start=1):
            setattr(self, f"transition{n}", _transition(prev, stage.channels))
            setattr(self, f"stage{n + 1}", nn.Sequential(*(
                HighResolutionModule(stage.num_blocks, stage.channels) for _ in range(stage.num_modules))))
            prev = stage.channels
        self.out_channels: tuple[int, ...] = prev
        self._init_weights()

    def _init_weights(self) -> None:
        """The official initialisation: He-normal (fan_out) convolutions, unit BatchNorm."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        xs = [self.layer1(x)]
        for transition, stage in ((self.transition1, self.stage2), (self.transition2, self.stage3),
                                  (self.transition3, self.stage4)):
            # A new branch grows from the coarsest existing one, as in the official forward.
            xs = stage([t(xs[min(i, len(xs) - 1)]) for i, t in enumerate(transition)])
        return xs


def hrnet(name: str) -> HRNet:
    """Build the backbone `name` (one of `CONFIGS`), freshly initialised."""
    if name not in CONFIGS:
        raise ValueError(f"unknown HRNet {name!r}; choose one of {', '.join(CONFIGS)}")
    return HRNet(CONFIGS[name])
