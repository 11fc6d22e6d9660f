"""Face-Cutout (Das, Seferbekov et al., ICCVW 2021): landmark-guided occlusion of training faces.

Random erasing hides arbitrary rectangles; Face-Cutout hides face parts instead, so a
detector cannot lean on one region (the eyes, the mouth) and must use the whole face:

- `sensory_cutout`: a thick band over the eyes, the nose or the mouth, a polyline
  through those landmarks drawn with a thickness of 2/3 of the distance between the
  eye centres (the line dilated by a disc).
- `hull_cutout`: a region bounded by the face outline (jaw + brows, 27 points): the
  convex hull of a run of consecutive outline points, of a random subset of them, or
  the top/bottom/left/right half of the outline polygon.

Cut pixels are filled with 0 (black), Face-Cutout's default.

On a blended fake the cutout must not hide the evidence the label rests on.
`face_cutout` measures the overlap on the X-ray target the network learns,
B = `xray_target(blend_mask)` (4·M·(1−M) on the 64×64 grid):

    overlap = Σ cut·B / Σ B,  cut = the cutout's share of each 64×64 cell

i.e. the share of the boundary evidence the cutout covers. A candidate over
`max_overlap` is shrunk (band thickness, or polygon about its centroid, by 3/4, 3/5,
1/2: Face-Cutout's w/3…w/6 ladder), then redrawn; when nothing qualifies the face is
left whole. Real faces (no mask, or a mask with no boundary) take any cutout.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .blend import xray_target

CUTOUT_FILL = 0
_SHRINK = (1.0, 3 / 4, 3 / 5, 1 / 2)
_TRIES = 4
_OUTLINE = np.r_[0:17, 26:16:-1]     # jaw left→right, then brows right→left: a closed contour
_SENSORY_PARTS = ("eyes", "nose", "mouth")


@dataclass(frozen=True)
class _Region:
    """A cutout before rasterising: a thick polyline (`width` > 0) or a filled polygon,
    optionally cut to one side of its centroid (`half`: 0 top, 1 bottom, 2 left, 3 right)."""

    points: np.ndarray
    width: float = 0.0
    half: int = -1

    def raster(self, shape: tuple[int, int], scale: float = 1.0) -> np.ndarray:
        """The region as a boolean mask of `shape`, line thickness or polygon scaled by `scale`."""
        canvas = np.zeros(shape, np.uint8)
        if self.width:
            cv2.polylines(canvas, [_fixed(self.points)], False, 1, thickness=max(1, round(self.width * scale)),
                          lineType=cv2.LINE_8, shift=4)
            return canvas.astype(bool)
        centre = self.points.mean(axis=0)
        cv2.fillPoly(canvas, [_fixed(centre + scale * (self.points - centre))], 1, lineType=cv2.LINE_8, shift=4)
        if self.half >= 0:
            cx, cy = (int(round(v)) for v in np.clip(centre, 0, [shape[1], shape[0]]))
            canvas[(np.s_[cy:], np.s_[:cy], np.s_[:, cx:], np.s_[:, :cx])[self.half]] = 0
        return canvas.astype(bool)


def _fixed(points: np.ndarray) -> np.ndarray:
    """Points as the 4-bit fixed-point int32 that cv2's drawing functions take with shift=4."""
    return np.round(np.asarray(points, np.float64) * 16).astype(np.int32).reshape(-1, 1, 2)


def _sensory_region(lm: np.ndarray, rng: np.random.Generator) -> _Region:
    eye_l, eye_r = lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)
    part = _SENSORY_PARTS[rng.integers(len(_SENSORY_PARTS))]
    if part == "eyes":
        pts = np.stack([lm[36], eye_l, eye_r, lm[45]])
    elif part == "nose":
        pts = lm[[27, 28, 29, 30, 33]]
    else:
        pts = lm[[48, 54]]
    return _Region(pts, width=2.0 / 3.0 * float(np.linalg.norm(eye_r - eye_l)))


def _hull_region(lm: np.ndarray, rng: np.random.Generator) -> _Region:
    outline = lm[_OUTLINE]
    mode = rng.integers(3)
    if mode == 2:
        return _Region(outline, half=int(rng.integers(4)))
    n = int(rng.integers(8, 16))
    idx = (rng.integers(len(outline)) + np.arange(n)) % len(outline) if mode == 0 else \
        rng.choice(len(outline), size=n, replace=False)
    return _Region(cv2.convexHull(outline[idx].astype(np.float32)).reshape(-1, 2).astype(np.float64))


def fill_cutout(image: np.ndarray, cut: np.ndarray) -> np.ndarray:
    """`image` with the pixels of a cutout mask (bool H×W) filled: the same cutout on another
    picture of the face (the real side of a paired item, `SampleConfig.paired`)."""
    out = image.copy()
    out[cut] = CUTOUT_FILL
    return out


def sensory_cutout(image: np.ndarray, lm: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Black out a thick band over the eyes, nose or mouth. Returns (image, cutout mask bool H×W)."""
    cut = _sensory_region(np.asarray(lm, np.float64).reshape(68, 2), rng).raster(image.shape[:2])
    return fill_cutout(image, cut), cut


def hull_cutout(image: np.ndarray, lm: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Black out a region bounded by the face outline. Returns (image, cutout mask bool H×W)."""
    cut = _hull_region(np.asarray(lm, np.float64).reshape(68, 2), rng).raster(image.shape[:2])
    return fill_cutout(image, cut), cut


def cutout_overlap(cut: np.ndarray, xray: np.ndarray) -> float:
    """Share of the X-ray target's boundary mass that a cutout covers (module docstring); 0 without a boundary.

    `cut` is the bool H×W cutout, `xray` the `xray_target` of the blending mask.
    """
    total = float(xray.sum())
    if total < 1e-6:
        return 0.0
    cells = cv2.resize(cut.astype(np.float32), xray.shape[::-1], interpolation=cv2.INTER_AREA)
    return float((cells * xray).sum()) / total


def face_cutout(image: np.ndarray, lm: np.ndarray, rng: np.random.Generator, blend_mask: np.ndarray | None = None,
                max_overlap: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Face-Cutout on a real or blended face: a sensory or hull cutout (even odds) covering
    at most `max_overlap` of the blending boundary of `blend_mask` (float H×W in [0, 1]).

    Returns (image, cutout mask bool H×W); the mask is all False when no cutout fits.
    """
    lm = np.asarray(lm, np.float64).reshape(68, 2)
    shape = image.shape[:2]
    xray = None if blend_mask is None else xray_target(blend_mask)
    for _ in range(_TRIES):
        region = (_sensory_region if rng.random() < 0.5 else _hull_region)(lm, rng)
        for scale in _SHRINK:
            cut = region.raster(shape, scale)
            if xray is None or cutout_overlap(cut, xray) <= max_overlap:
                return fill_cutout(image, cut), cut
    return image.copy(), np.zeros(shape, bool)
