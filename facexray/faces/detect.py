"""Batched face detection with RetinaFace: many frames, of any sizes, in one forward pass.

Each image is resized (aspect kept, long side = `long_side`) and letterboxed (padded
bottom/right with the mean colour, which is zero after normalisation) into one common
size that is a multiple of 32; the batch runs through an engine (torch or ONNX Runtime);
boxes and landmarks are decoded, NMS'd and mapped back to each image's own pixels.

Usage (weights found through `resolve_weights`, e.g. `FACEXRAY_MODELS`)::

    det = RetinaFaceDetector(engine="onnxruntime")
    for d in det.detect([frame_a, frame_b]):        # RGB uint8 HWC, sizes may differ
        d.boxes, d.scores, d.landmarks              # in each frame's own pixels
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..contracts import Face
from ..engines import create_engine, default_batch
from .config import DetectorConfig
from .retinaface import MEAN_BGR, decode_boxes, decode_landmarks, get_config, load_retinaface, nms_sorted, priors
from .weights import resolve_weights

PRE_NMS_SCORE = 0.02
"""Candidates must score above this before NMS (the measured RetinaFace setting)."""
PRE_NMS_TOP_K = 5000
"""At most this many candidates per image go into NMS, best first."""
NMS_BUDGET = 1 << 22
"""Most IoU-matrix entries (images x K x K) one NMS call may hold; larger batches are split."""
_ARCH = "rf1"
"""Bumped when the network code changes (same weights, new graph), so stale ONNX exports are not reused."""
_OUTPUTS = ("loc", "conf", "landms")


@dataclass
class Detections:
    """The faces found in one image, best first, in that image's pixels.

    `boxes` (N, 4) float32 x1, y1, x2, y2 (may reach past the image edge for a face cut
    by it); `scores` (N,) float32; `landmarks` (N, 5, 2) float32 x, y in the order left
    eye, right eye, nose, left mouth corner, right mouth corner (left = image left).
    """

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    landmarks: np.ndarray = field(default_factory=lambda: np.zeros((0, 5, 2), np.float32))

    def __len__(self) -> int:
        return len(self.scores)

    def to_faces(self, frame_index: int, pts: float) -> list[Face]:
        """These detections as contract `Face`s of frame `frame_index` (untracked)."""
        return [Face(frame_index=frame_index, pts=pts, box=b, score=float(s), landmarks=lm)
                for b, s, lm in zip(self.boxes, self.scores, self.landmarks)]


def _ceil32(x: int) -> int:
    return int(math.ceil(x / 32) * 32)


class RetinaFaceDetector:
    """RetinaFace face detector over batches of RGB frames (see the module docstring)."""

    def __init__(self, weights: str | Path | None = None, config: DetectorConfig | None = None, **overrides):
        """Build from `config` (default `DetectorConfig()`), with `weights` and any of its
        fields given as keywords taking precedence, e.g. `RetinaFaceDetector(engine="onnxruntime")`."""
        config = replace(config or DetectorConfig(), **overrides)
        if weights is not None:
            config = replace(config, weights=str(weights))
        self.config = config
        self.cfg = get_config(config.name)
        self.weights_path = resolve_weights(config.name, config.weights)
        net = load_retinaface(self.weights_path, self.cfg)
        side = _ceil32(config.long_side)
        self.engine = create_engine(config.engine, net, _OUTPUTS, (1, 3, side, side), key=f"{config.name}-{_ARCH}",
                                    device=config.device, dynamic_hw=True)
        self.device = self.engine.device
        self._mean = torch.tensor(MEAN_BGR, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)

    def describe(self) -> dict:
        """Settings and engine, JSON-friendly, for records and benchmarks."""
        return {"detector": self.config.name, "weights": str(self.weights_path), "long_side": self.config.long_side,
                "score_threshold": self.config.score_threshold, **self.engine.describe()}

    # -- public ---------------------------------------------------------------------------

    def detect(self, images: Sequence[np.ndarray] | torch.Tensor) -> list[Detections]:
        """Detect faces in each image: RGB uint8 HWC numpy arrays or tensors (on any device) of any
        sizes, or a uint8 tensor (N, H, W, 3) of equal-size frames. One `Detections` per image.

        Images share a forward pass only with images of the same network input size, so an
        image's detections never depend on the sizes of the others in the call (letterbox
        padding up to a larger neighbour would shift them slightly).
        """
        step = max(1, self.config.max_batch or default_batch("detect", self.device))
        is_tensor = isinstance(images, torch.Tensor)
        sizes = [tuple(images.shape[1:3])] * len(images) if is_tensor else [im.shape[:2] for im in images]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (h, w) in enumerate(sizes):
            nh, nw = self._scale(h, w)
            groups.setdefault((_ceil32(nh), _ceil32(nw)), []).append(i)
        results: list[Detections | None] = [None] * len(images)
        for idx in groups.values():
            for start in range(0, len(idx), step):
                part = idx[start:start + step]
                # a tensor holds frames of one size, so its single group is contiguous
                if is_tensor:
                    chunk = images[part[0]:part[-1] + 1]
                elif isinstance(images[part[0]], torch.Tensor):   # frames of several GPU sources
                    chunk = torch.stack([images[i] for i in part])
                else:
                    chunk = [images[i] for i in part]
                batch, scales = self.preprocess(chunk)
                for i, det in zip(part, self.postprocess(self.engine(batch), tuple(batch.shape[-2:]), scales)):
                    results[i] = det
        return results

    # -- stages ---------------------------------------------------------------------------

    def _scale(self, h: int, w: int) -> tuple[int, int]:
        """The resized (height, width) of an h x w image."""
        s = self.config.long_side / max(h, w)
        if not self.cfg.allow_upscale:
            s = min(s, 1.0)
        return max(1, round(h * s)), max(1, round(w * s))

    def preprocess(self, images: Sequence[np.ndarray] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Resize + letterbox + RGB->BGR + mean subtraction.

        Returns the network input (N, 3, H, W), channels_last, on the engine's device and the per-image
        (sx, sy) resize factors (N, 2) that map original pixels to input pixels.
        """
        if isinstance(images, torch.Tensor):
            n, h, w, _ = images.shape
            nh, nw = self._scale(h, w)
            x = images.to(self.device).permute(0, 3, 1, 2).flip(1).float()
            if (nh, nw) != (h, w):
                x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False,
                                  antialias=2 * nh <= h).clamp_(0, 255)
            x = F.pad(x - self._mean, (0, _ceil32(nw) - nw, 0, _ceil32(nh) - nh))
            x = x.contiguous(memory_format=torch.channels_last)
            return x, torch.tensor([[nw / w, nh / h]] * n, dtype=torch.float32)
        sizes = [(int(im.shape[0]), int(im.shape[1])) for im in images]
        new = [self._scale(h, w) for h, w in sizes]
        canvas = np.empty((len(images), _ceil32(max(s[0] for s in new)), _ceil32(max(s[1] for s in new)), 3),
                          np.uint8)
        mean = np.array(MEAN_BGR, np.uint8)
        for i, (im, (h, w), (nh, nw)) in enumerate(zip(images, sizes, new)):
            if (nh, nw) != (h, w):
                # area averaging only where bilinear would alias badly (shrinking 2x or more):
                # at non-integer ratios it costs ~10 ms a frame, a third of the network's time
                interp = cv2.INTER_AREA if 2 * nh <= h else cv2.INTER_LINEAR
                im = cv2.resize(np.ascontiguousarray(im), (nw, nh), interpolation=interp)
            canvas[i, :nh, :nw] = cv2.cvtColor(np.ascontiguousarray(im), cv2.COLOR_RGB2BGR)
            canvas[i, nh:], canvas[i, :nh, nw:] = mean, mean           # letterbox: zero after normalising
        # normalise in NHWC, then view as NCHW: that layout is channels_last, which also runs
        # the convolutions faster on CPU than plain NCHW (measured)
        x = torch.from_numpy(canvas).to(self.device).float().sub_(self._mean.view(3)).permute(0, 3, 1, 2)
        return x, torch.tensor([[nw / w, nh / h] for (h, w), (nh, nw) in zip(sizes, new)], dtype=torch.float32)

    @torch.inference_mode()
    def postprocess(self, out: dict[str, torch.Tensor], input_hw: tuple[int, int],
                    scales: torch.Tensor) -> list[Detections]:
        """Raw network outputs for an input of `input_hw` -> `Detections` per image, in original pixels.

        Candidates above `PRE_NMS_SCORE` (top `PRE_NMS_TOP_K`) go through NMS, then the
        score threshold applies. Filtering by the threshold before NMS gives the same
        result more cheaply: greedy NMS lets a box be suppressed only by a higher-scoring
        one, so boxes under the threshold never decide the fate of those above it.
        """
        loc, conf, landms = out["loc"], out["conf"], out["landms"]
        n = loc.shape[0]
        scores = conf[..., 1]
        cand = (scores > PRE_NMS_SCORE) & (scores >= self.config.score_threshold)
        k = min(PRE_NMS_TOP_K, int(cand.sum(dim=1).max()))
        if k == 0:
            return [Detections() for _ in range(n)]
        pri = priors(self.cfg, input_hw[0], input_hw[1], loc.device)
        top, idx = scores.where(cand, torch.full_like(scores, -1.0)).topk(k, dim=1)
        valid = top >= 0
        pri_k = pri[idx]
        boxes = decode_boxes(loc.gather(1, idx[..., None].expand(-1, -1, 4)), pri_k, self.cfg.variance)
        lms = decode_landmarks(landms.gather(1, idx[..., None].expand(-1, -1, 10)), pri_k, self.cfg.variance)

        keep = torch.zeros_like(valid)
        per_call = max(1, NMS_BUDGET // (k * k))
        for s in range(0, n, per_call):
            keep[s:s + per_call] = nms_sorted(boxes[s:s + per_call], valid[s:s + per_call], self.config.nms_iou)

        sxy = scales.to(boxes.device)[:, None, :]                      # (N, 1, 2)
        boxes = (boxes / sxy.repeat(1, 1, 2)).float().cpu().numpy()
        lms = (lms / sxy[:, :, None, :]).float().cpu().numpy()
        top, keep = top.float().cpu().numpy(), keep.cpu().numpy()
        results = []
        for i in range(n):
            b = boxes[i][keep[i]]
            m = np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) >= self.config.min_face
            results.append(Detections(b[m].astype(np.float32), top[i][keep[i]][m].astype(np.float32),
                                      lms[i][keep[i]][m].astype(np.float32)))
        return results
