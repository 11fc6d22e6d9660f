"""Manipulation masks from a fake and its original: where structural similarity (SSIM) breaks.

A labelled fake without a manipulation mask still teaches Face X-ray where the
boundary is, if its original frame is known (FaceForensics++ pairs every fake with
the video it was made from): the swapped region is where the two aligned crops stop
being structurally similar. This is Face-Cutout's difference mask: 1 − SSIM over a
Gaussian window, thresholded, cleaned (small specks of compression noise removed,
holes closed) and softened at the edge like a blending mask.

Example:
    >>> import numpy as np
    >>> a = np.full((64, 64, 3), 120, np.uint8); b = a.copy()
    >>> b[16:48, 16:48] = np.random.default_rng(0).integers(0, 255, (32, 32, 3))
    >>> m = difference_mask(b, a)
    >>> bool(m[32, 32] > 0.9), bool(m[2, 2] == 0)
    (True, True)
"""

from __future__ import annotations

import cv2
import numpy as np

SSIM_SIGMA = 1.5
"""Gaussian window of the SSIM statistics (the standard 11-tap window of Wang et al.)."""
DIFF_THRESHOLD = 0.25
"""1 − SSIM above which a pixel counts as manipulated. Re-encoding a real crop (JPEG
quality 75–95) keeps 1 − SSIM below 0.15 on smooth skin; a swapped face exceeds 0.4."""


def ssim_map(a: np.ndarray, b: np.ndarray, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Per-pixel SSIM of two same-size images (RGB or gray uint8), on luminance, in [-1, 1]."""
    def gray(x: np.ndarray) -> np.ndarray:
        x = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) if x.ndim == 3 else x
        return x.astype(np.float64)

    x, y = gray(a), gray(b)
    blur = lambda z: cv2.GaussianBlur(z, (0, 0), sigma)  # noqa: E731
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def difference_mask(fake: np.ndarray, original: np.ndarray, threshold: float = DIFF_THRESHOLD) -> np.ndarray:
    """The manipulated region of `fake` against its aligned `original`, as a soft mask in [0, 1] (float32, HxW)."""
    if fake.shape[:2] != original.shape[:2]:
        raise ValueError(f"fake {fake.shape[:2]} and original {original.shape[:2]} must be aligned crops of one size")
    hard = ((1.0 - ssim_map(fake, original)) > threshold).astype(np.uint8)
    side = max(3, round(min(hard.shape) / 32)) | 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    hard = cv2.morphologyEx(hard, cv2.MORPH_OPEN, kernel)
    hard = cv2.morphologyEx(hard, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3 * side,) * 2))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(hard, connectivity=8)
    if n > 1:                                   # keep the regions of at least a tenth of the largest
        areas = stats[1:, cv2.CC_STAT_AREA]
        keep = np.flatnonzero(areas >= 0.1 * areas.max()) + 1
        hard = np.isin(labels, keep).astype(np.uint8)
        filled = hard.copy()
        contours, _ = cv2.findContours(hard, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
        hard = filled
    soft = cv2.GaussianBlur(hard.astype(np.float32), (0, 0), side / 2)
    return np.clip(soft, 0.0, 1.0)
