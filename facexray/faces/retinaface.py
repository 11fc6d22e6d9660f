"""RetinaFace (MobileNet-0.25) in plain torch: network, priors, box/landmark decoding and NMS.

The module layout (`body`, `fpn`, `ssh1..3`, `ClassHead`, `BboxHead`, `LandmarkHead`)
is the widely used PyTorch RetinaFace one, so its published `.pth` files load with
`strict=True`. Two trainings of that network exist and they differ in activation and
prior sizes (see `CONFIGS`); loading one with the other's settings gives wrong boxes.

Everything after the network is vectorised torch, so it runs on the same device as
the network and needs no torchvision.

Example:
    >>> net = RetinaFace(CONFIGS["retinaface_mnet025"])
    >>> loc, conf, landms = net(torch.zeros(2, 3, 64, 96))
    >>> loc.shape, conf.shape, landms.shape
    (torch.Size([2, 252, 4]), torch.Size([2, 252, 2]), torch.Size([2, 252, 10]))
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class RetinaFaceConfig:
    """What differs between trainings of the same network.

    `leaky` is the LeakyReLU slope of the backbone, FPN and SSH (0 means ReLU);
    `min_sizes` are the prior sizes in input pixels per level (strides `steps`);
    `allow_upscale` says whether small images may be enlarged to the working size
    (a training whose largest prior is small would miss faces that grow past it).
    """

    name: str
    leaky: float
    min_sizes: tuple[tuple[int, ...], ...]
    steps: tuple[int, ...] = (8, 16, 32)
    variance: tuple[float, float] = (0.1, 0.2)
    allow_upscale: bool = True


CONFIGS: dict[str, RetinaFaceConfig] = {
    "retinaface_mnet025": RetinaFaceConfig(
        name="retinaface_mnet025", leaky=0.1, min_sizes=((16, 32), (64, 128), (256, 512))),
    "retinaface_1mb_mnet025": RetinaFaceConfig(
        name="retinaface_1mb_mnet025", leaky=0.0, min_sizes=((10, 20), (32, 64), (128, 256)),
        allow_upscale=False),
}

MEAN_BGR = (104.0, 117.0, 123.0)
"""Subtracted from BGR 0-255 pixels (no scaling) before the network."""


def get_config(name: str) -> RetinaFaceConfig:
    """The config registered as `name`; a ValueError lists the known names otherwise."""
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; known: {', '.join(CONFIGS)}") from None


# ---------------------------------------------------------------------------------------------
# network


def _conv_bn(inp: int, oup: int, stride: int, leaky: float | None, kernel: int = 3) -> nn.Sequential:
    """Conv (no bias) + BatchNorm, followed by LeakyReLU(`leaky`) unless `leaky` is None."""
    layers: list[nn.Module] = [nn.Conv2d(inp, oup, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(oup)]
    if leaky is not None:
        layers.append(nn.LeakyReLU(negative_slope=leaky, inplace=True))
    return nn.Sequential(*layers)


def _conv_dw(inp: int, oup: int, stride: int, leaky: float) -> nn.Sequential:
    """MobileNetV1 depthwise-separable block: 3x3 depthwise then 1x1 pointwise, each BN + activation."""
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False), nn.BatchNorm2d(inp),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )


class MobileNetV1(nn.Module):
    """MobileNetV1 at width 0.25; returns the stride-8, 16 and 32 feature maps (64, 128, 256 channels)."""

    def __init__(self, leaky: float):
        super().__init__()
        self.stage1 = nn.Sequential(
            _conv_bn(3, 8, 2, leaky), _conv_dw(8, 16, 1, leaky), _conv_dw(16, 32, 2, leaky),
            _conv_dw(32, 32, 1, leaky), _conv_dw(32, 64, 2, leaky), _conv_dw(64, 64, 1, leaky))
        self.stage2 = nn.Sequential(_conv_dw(64, 128, 2, leaky), *[_conv_dw(128, 128, 1, leaky) for _ in range(5)])
        self.stage3 = nn.Sequential(_conv_dw(128, 256, 2, leaky), _conv_dw(256, 256, 1, leaky))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c3 = self.stage1(x)
        c4 = self.stage2(c3)
        return c3, c4, self.stage3(c4)


class FPN(nn.Module):
    """Top-down feature pyramid; upsamples to the finer map's exact size, so any input size works."""

    def __init__(self, in_channels: tuple[int, int, int], out_channels: int, leaky: float):
        super().__init__()
        self.output1 = _conv_bn(in_channels[0], out_channels, 1, leaky, kernel=1)
        self.output2 = _conv_bn(in_channels[1], out_channels, 1, leaky, kernel=1)
        self.output3 = _conv_bn(in_channels[2], out_channels, 1, leaky, kernel=1)
        self.merge1 = _conv_bn(out_channels, out_channels, 1, leaky)
        self.merge2 = _conv_bn(out_channels, out_channels, 1, leaky)

    def forward(self, feats: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> list[torch.Tensor]:
        o1, o2, o3 = self.output1(feats[0]), self.output2(feats[1]), self.output3(feats[2])
        o2 = self.merge2(o2 + F.interpolate(o3, size=o2.shape[-2:], mode="nearest"))
        o1 = self.merge1(o1 + F.interpolate(o2, size=o1.shape[-2:], mode="nearest"))
        return [o1, o2, o3]


class SSH(nn.Module):
    """Single-stage headless context module: 3x3, 5x5 and 7x7 receptive fields concatenated."""

    def __init__(self, in_channels: int, out_channels: int, leaky: float):
        super().__init__()
        q = out_channels // 4
        self.conv3X3 = _conv_bn(in_channels, out_channels // 2, 1, None)
        self.conv5X5_1 = _conv_bn(in_channels, q, 1, leaky)
        self.conv5X5_2 = _conv_bn(q, q, 1, None)
        self.conv7X7_2 = _conv_bn(q, q, 1, leaky)
        self.conv7x7_3 = _conv_bn(q, q, 1, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c5_1 = self.conv5X5_1(x)
        c7_2 = self.conv7X7_2(c5_1)
        return F.relu(torch.cat([self.conv3X3(x), self.conv5X5_2(c5_1), self.conv7x7_3(c7_2)], dim=1))


class _Head(nn.Module):
    """A 1x1 conv predicting `values` numbers for each of `anchors` priors per position."""

    def __init__(self, in_channels: int, anchors: int, values: int):
        super().__init__()
        self.values = values
        self.conv1x1 = nn.Conv2d(in_channels, anchors * values, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, A*V, H, W) -> (N, H*W*A, V): position-major, anchor-minor, the order `priors` uses.
        return self.conv1x1(x).permute(0, 2, 3, 1).reshape(x.shape[0], -1, self.values)


class RetinaFace(nn.Module):
    """RetinaFace with a MobileNet-0.25 backbone.

    Input: (N, 3, H, W) float32, BGR minus `MEAN_BGR`, any H and W. Output:
    `loc` (N, P, 4) box offsets, `conf` (N, P, 2) softmax [background, face]
    and `landms` (N, P, 10) landmark offsets, one row per prior of `priors(cfg, H, W)`.
    The softmax is part of `forward`, so an exported ONNX graph returns probabilities.
    """

    def __init__(self, cfg: RetinaFaceConfig):
        super().__init__()
        self.cfg = cfg
        anchors = len(cfg.min_sizes[0])
        self.body = MobileNetV1(cfg.leaky)
        self.fpn = FPN((64, 128, 256), 64, cfg.leaky)
        self.ssh1 = SSH(64, 64, cfg.leaky)
        self.ssh2 = SSH(64, 64, cfg.leaky)
        self.ssh3 = SSH(64, 64, cfg.leaky)
        self.ClassHead = nn.ModuleList([_Head(64, anchors, 2) for _ in range(3)])
        self.BboxHead = nn.ModuleList([_Head(64, anchors, 4) for _ in range(3)])
        self.LandmarkHead = nn.ModuleList([_Head(64, anchors, 10) for _ in range(3)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p1, p2, p3 = self.fpn(self.body(x))
        feats = (self.ssh1(p1), self.ssh2(p2), self.ssh3(p3))
        loc = torch.cat([h(f) for h, f in zip(self.BboxHead, feats)], dim=1)
        conf = torch.cat([h(f) for h, f in zip(self.ClassHead, feats)], dim=1)
        landms = torch.cat([h(f) for h, f in zip(self.LandmarkHead, feats)], dim=1)
        return loc, F.softmax(conf, dim=-1), landms


def load_retinaface(path: str | Path, cfg: RetinaFaceConfig) -> RetinaFace:
    """Build the network for `cfg` and load `path` strictly (every key, every shape), in eval mode."""
    net = RetinaFace(cfg)
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    net.load_state_dict(state, strict=True)
    return net.eval()


# ---------------------------------------------------------------------------------------------
# priors and decoding

def priors(cfg: RetinaFaceConfig, height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Prior boxes (P, 4) as (cx, cy, w, h) in input pixels for an input of `height` x `width`.

    Same order as the network's outputs: level by level (stride 8, 16, 32), then row,
    column, prior size. Cached per (config, size, device); treat the result as read-only.
    """
    return _priors(cfg, int(height), int(width), str(device))


@functools.lru_cache(maxsize=256)
def _priors(cfg: RetinaFaceConfig, height: int, width: int, device: str) -> torch.Tensor:
    levels = []
    for step, sizes in zip(cfg.steps, cfg.min_sizes):
        fh, fw = math.ceil(height / step), math.ceil(width / step)
        cy = (torch.arange(fh, dtype=torch.float32) + 0.5) * step
        cx = (torch.arange(fw, dtype=torch.float32) + 0.5) * step
        s = torch.tensor(sizes, dtype=torch.float32)
        grid = torch.stack(torch.broadcast_tensors(
            cx[None, :, None], cy[:, None, None], s[None, None, :], s[None, None, :]), dim=-1)
        levels.append(grid.reshape(-1, 4))
    return torch.cat(levels).to(device)


def decode_boxes(loc: torch.Tensor, pri: torch.Tensor, variance: tuple[float, float]) -> torch.Tensor:
    """Offsets (..., 4) against priors (..., 4) (cx, cy, w, h) -> boxes (..., 4) as x1, y1, x2, y2."""
    centre = pri[..., :2] + loc[..., :2] * variance[0] * pri[..., 2:]
    size = pri[..., 2:] * torch.exp(loc[..., 2:] * variance[1])
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


def decode_landmarks(landms: torch.Tensor, pri: torch.Tensor, variance: tuple[float, float]) -> torch.Tensor:
    """Offsets (..., 10) against priors (..., 4) -> 5 points (..., 5, 2) in the priors' pixels."""
    offsets = landms.unflatten(-1, (5, 2))
    return pri[..., None, :2] + offsets * variance[0] * pri[..., None, 2:]


# ---------------------------------------------------------------------------------------------
# NMS


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of boxes a (..., N, 4) and b (..., M, 4), x1y1x2y2 continuous coordinates -> (..., N, M)."""
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    ax1, ay1, ax2, ay2 = (a[..., :, None, i] for i in range(4))
    bx1, by1, bx2, by2 = (b[..., None, :, i] for i in range(4))
    inter = ((torch.minimum(ax2, bx2) - torch.maximum(ax1, bx1)).clamp(min=0)
             * (torch.minimum(ay2, by2) - torch.maximum(ay1, by1)).clamp(min=0))
    return inter / (area_a[..., :, None] + area_b[..., None, :] - inter).clamp(min=1e-9)


def nms_sorted(boxes: torch.Tensor, valid: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS over a padded batch whose boxes are already sorted by descending score.

    boxes (B, K, 4), valid (B, K) bool -> keep (B, K) bool. Exactly greedy NMS: box j
    is kept iff no kept box i < j overlaps it by more than `iou_threshold`. Solved as
    a fixed point on the IoU matrix: each pass fixes at least one more leading box, and
    in practice a handful of passes settle it (chains of suppression are short), so the
    work is a few (B, K, K) tensor ops rather than a Python loop over boxes.
    """
    k = boxes.shape[1]
    upper = torch.ones(k, k, dtype=torch.bool, device=boxes.device).triu(1)
    over = (box_iou(boxes, boxes) > iou_threshold) & upper & valid[:, :, None] & valid[:, None, :]
    keep = valid.clone()
    while True:
        new = valid & ~(over & keep[:, :, None]).any(dim=1)
        if torch.equal(new, keep):
            return keep
        keep = new


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS for one image: boxes (N, 4) x1y1x2y2, scores (N,) -> kept indices, best first."""
    order = torch.argsort(scores, descending=True, stable=True)
    keep = nms_sorted(boxes[order][None], torch.ones(1, len(order), dtype=torch.bool, device=boxes.device),
                      iou_threshold)[0]
    return order[keep]
