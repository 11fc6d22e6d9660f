"""The Face X-ray network: an HRNet that draws the blending boundary of a face, and a real/fake score.

Li et al., "Face X-ray for More General Face Forgery Detection" (CVPR 2020): the four
HRNet branches are upsampled to 1/4 resolution and concatenated; a 1×1 conv → BN → ReLU
→ 1×1 conv head predicts the X-ray, trained on 4·M·(1−M) of the blending mask M, and a
small classifier on the X-ray features gives the fake probability.

Example:
    >>> net = create_model("xray_hrnet_w18_small_v2").eval()
    >>> prob, xray = net(torch.rand(2, 3, 256, 256))
    >>> tuple(prob.shape), tuple(xray.shape)
    ((2,), (2, 64, 64))
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .hrnet import CONFIGS, hrnet

OUTPUT_NAMES = ("prob", "xray")
INPUT_SIZE = 256
XRAY_STRIDE = 4
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_ARCH = "xray_hrnet_w18_small_v2"
MODELS: dict[str, str] = {f"xray_{name}": name for name in CONFIGS}


class XrayNet(nn.Module):
    """HRNet backbone + X-ray head + real/fake classifier.

    Input: RGB float in [0, 1], (N, 3, H, W), H and W multiples of 32 (256 in use);
    the ImageNet normalisation is part of the network, so an exported graph carries it.
    `forward` returns `(prob (N,), xray (N, H/4, W/4))`, both in [0, 1];
    `forward_logits` returns the same before their sigmoids, for training.
    """

    def __init__(self, backbone: str = MODELS[DEFAULT_ARCH]):
        super().__init__()
        self.arch = f"xray_{backbone}"
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.backbone = hrnet(backbone)
        width = sum(self.backbone.out_channels)
        self.fuse = nn.Sequential(nn.Conv2d(width, width, 1), nn.BatchNorm2d(width), nn.ReLU())
        self.xray_head = nn.Conv2d(width, 1, 1)
        # Pooled X-ray features, plus the mean and max of the predicted X-ray.
        self.classifier = nn.Linear(width + 2, 1)

    def forward_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw outputs: the real/fake logit (N,) and the X-ray logits (N, H/4, W/4)."""
        feats = self.backbone((x - self.mean) / self.std)
        size = feats[0].shape[-2:]
        feats = [feats[0]] + [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in feats[1:]]
        hidden = self.fuse(torch.cat(feats, dim=1))
        xray_logits = self.xray_head(hidden)
        xray = torch.sigmoid(xray_logits).flatten(1)
        pooled = torch.cat([hidden.mean(dim=(2, 3)), xray.mean(dim=1, keepdim=True),
                            xray.amax(dim=1, keepdim=True)], dim=1)
        return self.classifier(pooled)[:, 0], xray_logits[:, 0]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(prob, xray)`: fake probability (N,) and X-ray map (N, H/4, W/4), named by `OUTPUT_NAMES`."""
        logit, xray_logits = self.forward_logits(x)
        return torch.sigmoid(logit), torch.sigmoid(xray_logits)


def list_models() -> list[str]:
    """The architecture names `create_model` accepts."""
    return list(MODELS)


def create_model(name: str = DEFAULT_ARCH, backbone_weights: str | Path | None = None) -> XrayNet:
    """Build the X-ray network `name`, its backbone from an official ImageNet checkpoint if given.

    Without `backbone_weights` every weight is freshly initialised (the official HRNet scheme).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    model = XrayNet(MODELS[name])
    if backbone_weights is not None:
        from .checkpoint import load_imagenet_checkpoint  # here, not at the top: checkpoint.py imports this module

        load_imagenet_checkpoint(model.backbone, backbone_weights)
    return model
