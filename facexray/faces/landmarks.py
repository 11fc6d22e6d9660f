"""68-point face landmarks (the iBUG 300-W scheme), used by training-data preparation.

Face X-ray's blending masks and Face-Cutout both follow the face outline, which the
detector's five points do not give, so `prepare` stores 68 points per face. Inference
never needs them: THE crop uses the detector's five points only.

Any model that maps (image, detector boxes) to 68 points per box fits `LandmarkModel`;
the default is PFLD (ONNX). Usage::

    lm = PfldLandmarks()                       # weights via resolve_weights("pfld68")
    pts = lm.predict(frame, detections.boxes)  # (N, 68, 2) in frame pixels
    five = five_from_68(pts[0])                # eyes, nose tip, mouth corners
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np
import torch

from ..engines.onnx_engine import OnnxRuntimeEngine
from .weights import resolve_weights

PFLD_INPUT = 112
"""PFLD's input side: the face crop is PFLD_INPUT x PFLD_INPUT, RGB / 255, no mean or std."""
PFLD_CROP_SCALE = 1.2
"""The square PFLD crop's side, in units of the detector box's shorter side (measured on 300W/AFLW2000)."""
PFLD_CROP_SHIFT_Y = 0.1
"""The PFLD crop's centre lies this far below the box centre, in units of the box height (measured)."""


@runtime_checkable
class LandmarkModel(Protocol):
    """Anything that predicts 68 landmarks for the faces in an image."""

    def predict(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """68 points (N, 68, 2) float32 in `image` pixels for each of the N boxes (x1, y1, x2, y2)
        of `image` (RGB uint8 HWC)."""
        ...


def pfld_crop_boxes(boxes: np.ndarray) -> np.ndarray:
    """The square region PFLD sees for each detector box: (N, 3) origin x, origin y, side."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    side = PFLD_CROP_SCALE * np.minimum(w, h)
    cx = (b[:, 0] + b[:, 2]) / 2.0
    cy = (b[:, 1] + b[:, 3]) / 2.0 + PFLD_CROP_SHIFT_Y * h
    return np.stack([cx - side / 2.0, cy - side / 2.0, side], axis=1)


class PfldLandmarks:
    """PFLD 68-point landmarks run by ONNX Runtime; all faces of an image go through in one batch.

    `path` None finds the weights with `resolve_weights("pfld68")` (e.g. under
    `FACEXRAY_MODELS`); `threads` caps ONNX Runtime's threads (None: its default), which
    matters when several processes share the cores.
    """

    def __init__(self, path: str | Path | None = None, threads: int | None = None):
        self.path = resolve_weights("pfld68", path)
        self.engine = OnnxRuntimeEngine(self.path, threads=threads)

    def describe(self) -> dict:
        """The model and its weights, JSON-friendly, for records."""
        return {"landmarks": "pfld68", "weights": str(self.path)}

    def predict(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """See `LandmarkModel.predict`. Outside the image the crop is black (zero padding)."""
        regions = pfld_crop_boxes(boxes)
        if len(regions) == 0:
            return np.zeros((0, 68, 2), np.float32)
        image = np.ascontiguousarray(image)
        crops = np.empty((len(regions), PFLD_INPUT, PFLD_INPUT, 3), np.uint8)
        for i, (x0, y0, side) in enumerate(regions):
            s = PFLD_INPUT / side
            m = np.array([[s, 0.0, -x0 * s], [0.0, s, -y0 * s]])
            crops[i] = cv2.warpAffine(image, m, (PFLD_INPUT, PFLD_INPUT), flags=cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        x = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div_(255.0)
        out = next(iter(self.engine(x).values())).numpy().reshape(-1, 68, 2).astype(np.float64)
        return (regions[:, None, :2] + out * regions[:, None, 2:3]).astype(np.float32)


def five_from_68(lm68: np.ndarray) -> np.ndarray:
    """The detector's five points (left eye, right eye, nose tip, left and right mouth corner) from 68.

    Eye centres are the means of the six eye-contour points (36-41, 42-47); the nose tip
    is point 30, the mouth corners 48 and 54 (iBUG numbering, from 0).
    """
    p = np.asarray(lm68, np.float32).reshape(68, 2)
    return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])
