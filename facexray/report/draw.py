"""Drawing the evidence: X-ray heat maps, overlays, and scored faces on frames.

Small, pure functions on RGB uint8 arrays, shared by annotated videos, the HTML report
and live alerts:

- `heatmap(xray)`: colour a boundary map (values in [0, 1]) — dark blue where the
  model sees no blending boundary, through yellow to red where it sees one;
- `overlay(crop, xray)`: that colour laid over the aligned crop, opaque in proportion
  to the map's value, so a clean face stays visible and the boundary stands out;
- `draw_faces(image, faces)`: on a whole frame, each face's X-ray warped back from crop
  to frame coordinates (the inverse of THE crop's warp), its box coloured by its score
  and a label `#track score`;
- `drawn_region(face, ...)`: the rectangle outside of which `draw_faces` leaves a frame
  untouched (for tests and for anyone who composites).

Example:
    >>> import numpy as np
    >>> heatmap(np.zeros((64, 64), np.float32)).shape
    (64, 64, 3)
    >>> crop = np.full((256, 256, 3), 128, np.uint8)
    >>> bool((overlay(crop, np.zeros((64, 64), np.float32)) == crop).all())   # no boundary, no change
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..faces.crop import to_frame_image

ALPHA = 0.6
"""Opacity of the heat colour where the X-ray map is 1 (it falls linearly to 0 with the map)."""

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_PAD = 3  # pixels around the label text, and around everything drawn (line width, anti-aliasing)


@dataclass(frozen=True)
class DrawnFace:
    """One face to draw on a frame: where it is, what it scored, and its crop's warp.

    `matrix` is the 2×3 frame→crop affine of `faces.crop.crop_face` for this face;
    `crop_size` the side of that crop. `exact` is False when the face was scored on a
    nearby frame rather than this one (it is then drawn with a thin box).
    """

    box: np.ndarray
    track_id: int
    prob: float
    xray: np.ndarray | None
    matrix: np.ndarray
    crop_size: int
    exact: bool = True


def heatmap(xray: np.ndarray) -> np.ndarray:
    """Colour an X-ray map (H, W) with values in [0, 1] as RGB uint8 (H, W, 3) (OpenCV's JET colours)."""
    grey = np.clip(np.asarray(xray, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(grey, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def _blend(base: np.ndarray, colour: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """base·(1−w) + colour·w, with w (H, W) in [0, 1]; uint8 in, uint8 out."""
    w = weight[..., None].astype(np.float32)
    return (base.astype(np.float32) * (1.0 - w) + colour.astype(np.float32) * w + 0.5).astype(np.uint8)


def overlay(crop: np.ndarray, xray: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """The crop (S, S, 3) RGB uint8 with its X-ray map (any size, resized to S) laid over it."""
    size = (crop.shape[1], crop.shape[0])
    xr = np.clip(cv2.resize(np.asarray(xray, np.float32), size, interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
    return _blend(crop, heatmap(xr), alpha * xr)


def score_colour(prob: float) -> tuple[int, int, int]:
    """RGB for a fake probability: green at 0, yellow at 0.5, red at 1."""
    p = float(np.clip(prob, 0.0, 1.0))
    return (int(round(255 * min(1.0, 2 * p))), int(round(255 * min(1.0, 2 * (1 - p)))), 0)


@dataclass(frozen=True)
class _Label:
    text: str
    scale: float
    thick: int
    baseline: int
    rect: tuple[int, int, int, int]  # x1, y1, x2, y2


def _layout(face: DrawnFace, shape: tuple[int, ...]) -> _Label:
    """Where and how big the label goes: above the box, sized to the frame."""
    h, w = shape[:2]
    scale = max(0.4, min(h, w) / 900.0)
    thick = max(1, int(round(scale * 2)))
    text = f"#{face.track_id} {face.prob:.2f}"
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, thick)
    x1, y1 = int(round(face.box[0])), int(round(face.box[1]))
    top = y1 - th - base - 2 * _PAD
    if top < 0:  # no room above the box: put the label just inside it
        top = max(0, y1)
    return _Label(text, scale, thick, base, (x1, top, x1 + tw + 2 * _PAD, top + th + base + 2 * _PAD))


def _clip_rect(rect: tuple[float, float, float, float], shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    h, w = shape[:2]
    x1, y1, x2, y2 = rect
    return (max(0, int(np.floor(x1))), max(0, int(np.floor(y1))), min(w, int(np.ceil(x2))), min(h, int(np.ceil(y2))))


def _crop_rect(face: DrawnFace) -> tuple[float, float, float, float]:
    """The frame rectangle that holds the crop's square (where the warped X-ray can land)."""
    s = face.crop_size
    inv = cv2.invertAffineTransform(np.asarray(face.matrix, np.float64))
    corners = np.array([[-0.5, -0.5], [s - 0.5, -0.5], [-0.5, s - 0.5], [s - 0.5, s - 0.5]]) @ inv[:, :2].T + inv[:, 2]
    return corners[:, 0].min() - 1, corners[:, 1].min() - 1, corners[:, 0].max() + 1, corners[:, 1].max() + 1


def drawn_region(face: DrawnFace, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(x1, y1, x2, y2), clipped to a frame of `shape`: `draw_faces` changes no pixel outside it.

    It is the union of the crop's square mapped onto the frame (where the X-ray goes),
    the box and the label, grown by a few pixels for line width.
    """
    label = _layout(face, shape)
    rects = [label.rect, tuple(face.box)]
    if face.xray is not None:
        rects.append(_crop_rect(face))
    r = np.array(rects, np.float64)
    pad = _PAD + label.thick + 1  # half the box line, anti-aliasing, rounding
    return _clip_rect((r[:, 0].min() - pad, r[:, 1].min() - pad, r[:, 2].max() + pad, r[:, 3].max() + pad), shape)


def draw_faces(image: np.ndarray, faces: list[DrawnFace], alpha: float = ALPHA) -> np.ndarray:
    """A copy of the frame `image` (RGB uint8) with each face's X-ray, box and label drawn on it."""
    out = np.ascontiguousarray(image).copy()
    for f in faces:  # X-rays first, so that no map covers another face's box or label
        if f.xray is None:
            continue
        x1, y1, x2, y2 = _clip_rect(_crop_rect(f), out.shape)
        if x2 <= x1 or y2 <= y1:
            continue
        roi = (x1, y1, x2 - x1, y2 - y1)
        xr = np.clip(np.asarray(f.xray, np.float32), 0.0, 1.0)
        inside = to_frame_image(np.ones_like(xr), f.matrix, roi, f.crop_size)
        weight = alpha * to_frame_image(xr, f.matrix, roi, f.crop_size) * inside
        heat = heatmap(to_frame_image(xr, f.matrix, roi, f.crop_size))
        out[y1:y2, x1:x2] = _blend(out[y1:y2, x1:x2], heat, weight)
    for f in faces:
        colour = score_colour(f.prob)
        label = _layout(f, out.shape)
        lx1, ly1, lx2, ly2 = label.rect
        b = [int(round(v)) for v in f.box]
        cv2.rectangle(out, (b[0], b[1]), (b[2], b[3]), colour, label.thick + 1 if f.exact else 1, cv2.LINE_AA)
        cv2.rectangle(out, (lx1, ly1), (lx2, ly2), colour, -1)
        cv2.putText(out, label.text, (lx1 + _PAD, ly2 - _PAD - label.baseline), _FONT, label.scale, (0, 0, 0),
                    label.thick, cv2.LINE_AA)
    return out
