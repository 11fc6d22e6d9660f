"""THE crop function: (frame, face) → model input. Training and inference both call it.

A crop is a similarity warp that puts the five landmarks of a face on a fixed
template, scaled so the whole face and a band of context around it fit (the
blending boundary that Face X-ray looks for lies at the edge of the face, so the
crop must hold that edge and what lies outside it). The parameters live in a
versioned `CropSpec`; a checkpoint stores the spec it was trained with, and
`CropSpec.check` refuses to serve a model on any other crop.

Example:
    >>> import numpy as np
    >>> spec = CropSpec()
    >>> lm = spec.template_points(100) + 50     # a face already in template pose
    >>> crop, m = crop_face(np.zeros((300, 300, 3), np.uint8), lm, spec)
    >>> crop.shape
    (256, 256, 3)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

from ..errors import CropSpecMismatch

# The five-point template of ArcFace (left eye, right eye, nose, left and right mouth
# corner) in a 112×112 square: the de-facto standard pose for aligned faces.
_TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                          [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)


@dataclass(frozen=True)
class CropSpec:
    """How a face is cut out: the one place that knows the crop defaults.

    `margin` is the context added on each side, as a fraction of the template
    square (0.25 → the 112-px template face covers the middle 1/1.5 of the crop).
    `shift_y` moves the face down in the crop, as a fraction of its size, so the
    forehead and hairline (a frequent blending edge) stay inside.
    """

    version: str = "fx-crop-v1"
    size: int = 256
    method: str = "similarity5"
    margin: float = 0.25
    shift_y: float = 0.05

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CropSpec:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def check(self, other: CropSpec | dict) -> None:
        """Raise `CropSpecMismatch` unless `other` describes the same crop."""
        other = other if isinstance(other, CropSpec) else CropSpec.from_dict(other)
        if other != self:
            raise CropSpecMismatch(f"the model was trained on crop {other.to_dict()} but this "
                                   f"pipeline cuts {self.to_dict()}; re-train or use the matching crop spec")

    def with_context(self, size: int) -> CropSpec:
        """The same alignment and pixel scale on a larger canvas of side `size`.

        Its centre `self.size` square is this crop (`center_of` cuts it out; equal up to
        warpAffine's fixed-point rounding, a few grey levels at most),
        so training data can be stored once with context and re-cropped, jittered or
        blended later without ever using a different crop.
        """
        if size < self.size or (size - self.size) % 2:
            raise ValueError(f"a context size must be >= {self.size} and differ from it by an even number")
        return replace(self, size=size, margin=(size / self.size * (1.0 + 2.0 * self.margin) - 1.0) / 2.0)

    def center_of(self, context: np.ndarray) -> np.ndarray:
        """The crop of this spec inside a crop made with `self.with_context(...)`."""
        off = (context.shape[0] - self.size) // 2
        return context[off:off + self.size, off:off + self.size]

    def template_points(self, size: int | None = None) -> np.ndarray:
        """The five target landmark positions (5, 2) in a crop of side `size` (default `self.size`)."""
        size = self.size if size is None else size
        scale = size / (112.0 * (1.0 + 2.0 * self.margin))
        pts = (_TEMPLATE_112 - 56.0) * scale + size / 2.0
        pts[:, 1] += self.shift_y * 112.0 * scale
        return pts


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src→dst (Umeyama), as 2×3."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    r = u @ sign @ vt
    var_s = (s ** 2).sum() / len(src)
    scale = np.trace(np.diag(sig) @ sign) / var_s if var_s > 0 else 1.0
    t = mu_d - scale * r @ mu_s
    return np.hstack([scale * r, t[:, None]]).astype(np.float64)


def crop_matrix(landmarks: np.ndarray, spec: CropSpec = CropSpec()) -> np.ndarray:
    """The 2×3 affine that maps frame pixels to crop pixels for a face with these 5 landmarks."""
    if spec.method != "similarity5":
        raise ValueError(f"unknown crop method {spec.method!r}")
    return similarity_transform(np.asarray(landmarks, np.float64).reshape(5, 2), spec.template_points())


def crop_face(image: np.ndarray, landmarks: np.ndarray, spec: CropSpec = CropSpec()) -> tuple[np.ndarray, np.ndarray]:
    """Cut the aligned face out of `image` (RGB uint8 HWC). Returns (crop size×size×3 uint8, 2×3 matrix).

    Outside the frame the crop is black (zero padding), the same rule as the
    GPU path's grid sampling.
    """
    import cv2  # here, not at the top: reading a CropSpec (the CLI's --help) must stay light

    m = crop_matrix(landmarks, spec)
    crop = cv2.warpAffine(image, m, (spec.size, spec.size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return crop, m


def _pixel_to_normalised(width: int, height: int) -> np.ndarray:
    """3×3 mapping pixel coordinates (centre of pixel 0 at 0) to grid_sample's [-1, 1] (align_corners=False)."""
    return np.array([[2.0 / width, 0.0, 1.0 / width - 1.0], [0.0, 2.0 / height, 1.0 / height - 1.0],
                     [0.0, 0.0, 1.0]])


def crop_faces_torch(frames: torch.Tensor, landmarks: Sequence[np.ndarray], frame_of: Sequence[int],
                     spec: CropSpec = CropSpec()) -> tuple[torch.Tensor, np.ndarray]:
    """`crop_face` for many faces at once on tensors: the same warp, computed where the frames are.

    `frames` is (N, H, W, 3) RGB uint8 on any device (the GPU path's decoded frames); face k
    has 5 `landmarks[k]` and lies in frame `frame_of[k]`. Returns (crops (K, size, size, 3)
    uint8 on the frames' device, the K 2×3 matrices of `crop_matrix`): the same matrices as
    `crop_face`, applied with bilinear grid sampling and zero padding outside the frame, so
    pixels never travel to the host. It matches `crop_face` up to rounding (cv2 interpolates
    at 1/32-pixel steps): tests/test_crop_torch.py measures the difference on real faces.
    """
    import cv2  # here, not at the top: reading a CropSpec (the CLI's --help) must stay light
    import torch
    import torch.nn.functional as F

    n, h, w, _ = frames.shape
    k = len(landmarks)
    s = spec.size
    if k == 0:
        return torch.zeros((0, s, s, 3), dtype=torch.uint8, device=frames.device), np.zeros((0, 2, 3))
    mats = np.stack([crop_matrix(lm, spec) for lm in landmarks])
    # grid_sample wants, per output pixel in [-1, 1], where to read in [-1, 1]:
    # crop normalised → crop pixels → (inverse crop matrix) → frame pixels → frame normalised
    from_crop = np.linalg.inv(_pixel_to_normalised(s, s))
    to_frame = _pixel_to_normalised(w, h)
    thetas = np.stack([(to_frame @ np.vstack([cv2.invertAffineTransform(m), [0.0, 0.0, 1.0]]) @ from_crop)[:2]
                       for m in mats])
    theta = torch.from_numpy(thetas).to(device=frames.device, dtype=torch.float32)
    grid = F.affine_grid(theta, [k, 3, s, s], align_corners=False)
    out = torch.empty((k, s, s, 3), dtype=torch.uint8, device=frames.device)
    frame_of = np.asarray(frame_of, np.int64)
    for i in np.unique(frame_of):  # one sampling pass per frame: no copy of a frame per face
        sel = np.flatnonzero(frame_of == i)
        img = frames[int(i)].permute(2, 0, 1)[None].float()
        g = grid[torch.from_numpy(sel).to(frames.device)].reshape(1, len(sel) * s, s, 2)
        crop = F.grid_sample(img, g, mode="bilinear", padding_mode="zeros", align_corners=False)
        out[torch.from_numpy(sel).to(frames.device)] = (
            crop[0].reshape(3, len(sel), s, s).permute(1, 2, 3, 0).round_().clamp_(0, 255).to(torch.uint8))
    return out, mats


def to_frame_coords(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Map crop-pixel points (N, 2) back to frame pixels through the inverse of `matrix`."""
    import cv2  # here, not at the top: reading a CropSpec (the CLI's --help) must stay light

    inv = cv2.invertAffineTransform(np.asarray(matrix, np.float64))
    pts = np.asarray(points, np.float64)
    return pts @ inv[:, :2].T + inv[:, 2]


def to_frame_image(image: np.ndarray, matrix: np.ndarray, roi: tuple[int, int, int, int],
                   crop_size: int) -> np.ndarray:
    """Map an image drawn in crop coordinates back onto the frame: the inverse of `crop_face`'s warp.

    `image` covers the whole crop at any resolution (e.g. the 64×64 X-ray map of a
    `crop_size` crop); `matrix` is the 2×3 that `crop_face` returned; `roi` is
    (x, y, width, height) of the frame region wanted, so a face on a 4K frame costs only
    its own pixels. Outside the crop the result is 0. Returns an array of `roi`'s size
    with `image`'s channels and dtype.
    """
    import cv2  # here, not at the top: reading a CropSpec (the CLI's --help) must stay light

    x, y, w, h = roi
    k = image.shape[0] / crop_size  # crop pixel centre c ↦ image pixel (c + 0.5)·k − 0.5
    to_image = np.array([[k, 0.0, 0.5 * k - 0.5], [0.0, k, 0.5 * k - 0.5], [0.0, 0.0, 1.0]])
    from_roi = np.array([[1.0, 0.0, x], [0.0, 1.0, y], [0.0, 0.0, 1.0]])
    m = (to_image @ np.vstack([np.asarray(matrix, np.float64), [0.0, 0.0, 1.0]]) @ from_roi)[:2]
    return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
