"""Blended fakes made from real faces: Face X-ray's BI and Self-Blended Images (SBI).

Face X-ray (Li et al., CVPR 2020) learns where an image is a mix of two sources: a
foreground face F pasted onto a background face B through a soft mask M,
`I = M·F + (1−M)·B`, and the network predicts the blending boundary `4·M·(1−M)`.
Training needs only real faces:

- BI (`blend_bi`): F is another identity whose landmarks are close to B's
  (`NeighbourIndex`), warped onto B, colour-matched to B inside the mask (Reinhard
  transfer in LAB), and pasted through a random mask drawn from B's landmarks.
- SBI (`self_blend`, Shiohara & Yamasaki, CVPR 2022): F is B itself after a colour,
  frequency and small scale/shift change, so the only evidence left is the boundary.

Every input is an aligned crop (RGB uint8, square) with its 68 iBUG landmarks in that
crop's pixels; since all crops share one template, landmark vectors of different
faces compare directly. All randomness comes from the `np.random.Generator` passed
in, so a seeded generator reproduces a sample exactly.

The X-ray target is computed on the 64×64 output grid from the area-downsampled
mask (`xray_target`): the boundary of a sharp mask, which is 0 everywhere at full
resolution, still shows where a 64×64 cell mixes both sources.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from scipy.spatial import cKDTree

from ..faces.crop import similarity_transform
from .degrade import gaussian_blur, rescale, unsharp

XRAY_SIZE = 64
HULL_VARIANTS = ("face", "forehead", "inner", "components")
_SBI_BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)   # SBI's "dynamic blend": partial pastes too
_FOREHEAD_LIFT = (0.1, 0.4)   # the brows raised by this share of chin → nose bridge: the "forehead" hull's top


@dataclass(frozen=True)
class BlendResult:
    """A blended face: `image` RGB uint8 H×W×3, `mask` the alpha M (float32 H×W in [0, 1],
    in the output's geometry), `xray` the target 4·M·(1−M) on the 64×64 grid (float32)."""

    image: np.ndarray
    mask: np.ndarray
    xray: np.ndarray


def xray_target(mask: np.ndarray, size: int = XRAY_SIZE) -> np.ndarray:
    """The Face X-ray target of a blending mask: `B = 4·m·(1−m)` with m the mask area-averaged
    (cv2.INTER_AREA) to size×size, float32 in [0, 1]. 0 where a cell is all one source, 1 where
    it is an even mix."""
    m = np.clip(np.asarray(mask, np.float32), 0.0, 1.0)
    if m.shape != (size, size):
        m = cv2.resize(m, (size, size), interpolation=cv2.INTER_AREA)
    return 4.0 * m * (1.0 - m)


def landmark_features(landmarks: np.ndarray) -> np.ndarray:
    """(N, 68, 2) landmarks → (N, 136) float32 shape vectors: centred and scaled to unit RMS radius.

    What is left after removing position and size is what a similarity warp of one face
    onto another cannot fix (pose, expression, face shape), the mismatch that makes a
    blend implausible.
    """
    lm = np.asarray(landmarks, np.float64).reshape(len(landmarks), -1, 2)
    lm = lm - lm.mean(axis=1, keepdims=True)
    rms = np.sqrt((lm ** 2).sum(axis=2).mean(axis=1))
    return (lm / np.maximum(rms, 1e-9)[:, None, None]).reshape(len(lm), -1).astype(np.float32)


class NeighbourIndex:
    """Nearest faces by landmark shape (`landmark_features`, Euclidean), for picking BI partners.

    One k-d tree query per pick: asking for k plus the size of the query face's own
    identity group returns at least k faces of other identities whenever that many exist.
    """

    def __init__(self, landmarks: np.ndarray, identities: Sequence[str]):
        feats = landmark_features(landmarks)
        if len(feats) != len(identities):
            raise ValueError(f"{len(feats)} landmark sets but {len(identities)} identities")
        if not len(feats):
            raise ValueError("a NeighbourIndex needs at least one face")
        _, self._codes, self._group_size = np.unique(np.asarray(identities, dtype=object).astype(str),
                                                     return_inverse=True, return_counts=True)
        self._features = feats
        self._tree = cKDTree(feats)

    def __len__(self) -> int:
        return len(self._features)

    def candidates(self, i: int, k: int = 20) -> np.ndarray:
        """Indices of the k faces nearest to face i among the other identities, nearest first.

        Fewer when fewer exist. With a single identity in the index (nothing else to blend
        with), the k nearest other faces of that identity: a different photo or frame still
        differs in lighting and position, which leaves a boundary to learn.
        """
        code = self._codes[i]
        n = min(len(self), k + int(self._group_size[code]))
        _, idx = self._tree.query(self._features[i], k=n)
        idx = np.atleast_1d(idx)
        others = idx[self._codes[idx] != code][:k]
        return others if len(others) else idx[idx != i][:k]

    def pick(self, i: int, rng: np.random.Generator, k: int = 20) -> int:
        """A uniformly random choice among `candidates(i, k)`; ValueError if the index holds face i only."""
        cands = self.candidates(i, k)
        if not len(cands):
            raise ValueError("blending needs at least two faces in the index")
        return int(cands[rng.integers(len(cands))])


def _hull_polygons(lm: np.ndarray, variant: str, rng: np.random.Generator) -> list[np.ndarray]:
    """The point sets whose convex hulls, filled and merged, make the initial mask."""
    if variant == "face":
        return [lm]
    if variant == "forehead":
        return [_with_forehead(lm, rng.uniform(*_FOREHEAD_LIFT))]
    if variant == "inner":                      # brows, eyes, nose and mouth; no jaw line
        return [lm[17:]]
    if variant == "components":                 # brows+eyes+nose, and nose+mouth: a T shape
        return [lm[17:48], np.concatenate([lm[31:36], lm[48:68]])]
    raise ValueError(f"unknown hull variant {variant!r}; expected one of {HULL_VARIANTS}")


def _with_forehead(lm: np.ndarray, lift: float) -> np.ndarray:
    """The 68 landmarks and the brows raised by `lift` times the chin → top of the nose bridge vector."""
    return np.concatenate([lm, lm[17:27] + lift * (lm[27] - lm[8])])


def _filled_hulls(polygons: list[np.ndarray], shape: tuple[int, ...]) -> tuple[np.ndarray, float]:
    """The union of the polygons' filled convex hulls (uint8 H×W, 1 inside, at 1/16-pixel precision)
    and its size, the square root of its area (at least 1): what mask sizes scale with."""
    mask = np.zeros(shape[:2], np.uint8)
    for pts in polygons:
        hull = cv2.convexHull(np.round(pts * 16).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 1, lineType=cv2.LINE_8, shift=4)
    return mask, max(float(np.sqrt(np.count_nonzero(mask))), 1.0)


@lru_cache(maxsize=8)
def _pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    gx.flags.writeable = gy.flags.writeable = False
    return gx, gy


def _elastic(mask: np.ndarray, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """Warp a binary uint8 mask by a smooth random displacement field of std `amplitude` px.

    The field is Gaussian-filtered white noise on a grid 8× coarser than the image
    (correlation length 8–24 px), upsampled bicubically: smooth like filtered
    full-resolution noise, at a fraction of the cost.
    """
    h, w = mask.shape
    noise = rng.standard_normal((2, max(h // 8, 2), max(w // 8, 2))).astype(np.float32)
    sigma = rng.uniform(1.0, 3.0)
    field = [cv2.GaussianBlur(n, (0, 0), sigma, borderType=cv2.BORDER_REFLECT) for n in noise]
    field = [cv2.resize(f * (amplitude / max(float(f.std()), 1e-6)), (w, h), interpolation=cv2.INTER_CUBIC)
             for f in field]
    gx, gy = _pixel_grid(h, w)
    return cv2.remap(mask, gx + field[0], gy + field[1], cv2.INTER_NEAREST,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def random_hull_mask(landmarks: np.ndarray, shape: tuple[int, ...], rng: np.random.Generator,
                     variant: str | None = None) -> np.ndarray:
    """A random soft blending mask (float32 H×W in [0, 1], 1 inside) from 68 landmarks.

    The convex hull of one of `HULL_VARIANTS` (random unless given: the whole face, the
    face with forehead, the inner face, or eyes+nose+mouth components), elastically
    deformed, eroded (≤ 10 % of the region's size) or dilated (≤ 4 %) by a random elliptic
    kernel, then Gaussian-blurred with σ of 1.5–8 % of the region's size (the square root of
    its area) and rescaled so its maximum is 1. Sizes follow the region, so any crop
    resolution gets the same masks and a small region is not eroded or blurred away.
    """
    lm = np.asarray(landmarks, np.float64).reshape(68, 2)
    variant = HULL_VARIANTS[rng.integers(len(HULL_VARIANTS))] if variant is None else variant
    mask, size = _filled_hulls(_hull_polygons(lm, variant, rng), shape)
    mask = _elastic(mask, rng, rng.uniform(0.005, 0.05) * size)
    erode = rng.random() < 0.5
    radius = int(rng.integers(0, int((0.05 if erode else 0.02) * size) + 1))
    if radius:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        mask = (cv2.erode if erode else cv2.dilate)(mask, kernel)
    soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), rng.uniform(0.015, 0.08) * size,
                            borderType=cv2.BORDER_CONSTANT)
    peak = float(soft.max())
    return soft / peak if peak > 0 else soft


def color_transfer(source: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Reinhard colour transfer: `source` (RGB uint8) recoloured so that, inside the mask
    (M > 0.5), its per-channel LAB mean and std equal the target's there, up to the RGB gamut.

    A source spread under 1 LAB unit counts as 1, so the chroma noise of a grey photo is not
    blown up. Only the bounding box of M > 0 (the pixels a blend through M uses) is
    recoloured. Returns RGB uint8.
    """
    out = source.copy()
    box = _bbox(mask > 0)
    region = None if box is None else (mask[box] > 0.5).astype(np.uint8)
    if region is None or not region.any():
        return out
    src = cv2.cvtColor(source[box].astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    tgt = cv2.cvtColor(target[box].astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    (s_mean, s_std), (t_mean, t_std) = (cv2.meanStdDev(x, mask=region) for x in (src, tgt))
    gain = t_std.ravel() / np.maximum(s_std.ravel(), 1.0)
    lab = (src - s_mean.ravel()) * gain + t_mean.ravel()
    rgb = cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_LAB2RGB)
    out[box] = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return out


def _bbox(region: np.ndarray) -> tuple[slice, slice] | None:
    """The bounding box of a boolean H×W region as slices; None when it is empty."""
    ys, xs = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
    return (slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1)) if len(ys) else None


def _alpha_blend(foreground: np.ndarray, background: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`M·F + (1−M)·B` as uint8, written `B + M·(F−B)` so that it is exactly B where M == 0.

    Only the bounding box of M > 0 is computed; outside it the output is B.
    """
    out = background.copy()
    box = _bbox(mask > 0)
    if box is None:
        return out
    b = background[box].astype(np.float32)
    mixed = b + mask[box][..., None] * (foreground[box].astype(np.float32) - b)
    out[box] = np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
    return out


def _warp(image: np.ndarray, matrix: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return cv2.warpAffine(image, matrix, (shape[1], shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101)


def blend_bi(target: np.ndarray, target_lm: np.ndarray, source: np.ndarray, source_lm: np.ndarray,
             rng: np.random.Generator) -> BlendResult:
    """Face X-ray BI: the source face pasted onto the target (background) face.

    The source is warped onto the target by the least-squares similarity between their
    landmarks, recoloured to the target inside the mask (`color_transfer`), and blended
    through `random_hull_mask` of the TARGET's landmarks. The output has the target's
    geometry and equals it exactly wherever M == 0.
    """
    warped = _warp(source, similarity_transform(source_lm, target_lm), target.shape)
    mask = random_hull_mask(target_lm, target.shape, rng)
    fg = color_transfer(warped, target, mask)
    return BlendResult(_alpha_blend(fg, target, mask), mask, xray_target(mask))


def source_change(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """SBI's change of the pasted copy: colour (RGB shift, hue/saturation, brightness/contrast),
    then one frequency change (down-up scaling, blur or sharpening). Returns RGB uint8.

    Training also applies it to whole real faces (`SampleConfig.real_change_prob`): a blurred,
    sharpened or recoloured face is then no evidence by itself, only its boundary with the rest is."""
    img = image.astype(np.float32)
    if rng.random() < 0.3:
        img += rng.uniform(-20, 20, 3).astype(np.float32)
    if rng.random() < 0.3:
        hsv = cv2.cvtColor(np.clip(img, 0, 255) / 255.0, cv2.COLOR_RGB2HSV)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-10, 10)) % 360.0
        hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.85, 1.15), 0, 1)
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0
    img = img * rng.uniform(0.9, 1.1) + 255.0 * rng.uniform(-0.1, 0.1)
    img = np.clip(img, 0, 255)
    h, w = img.shape[:2]
    kind = rng.integers(3)
    if kind == 0:
        f = rng.uniform(0.25, 0.5)
        small = cv2.resize(img, (max(int(w * f), 1), max(int(h * f), 1)), interpolation=cv2.INTER_AREA)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    elif kind == 1:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.5))
    else:
        amount = rng.uniform(0.2, 0.5)
        img = img * (1.0 + amount) - amount * cv2.GaussianBlur(img, (0, 0), 1.0)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def head_mask(landmarks: np.ndarray, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A soft mask (float32 H×W in [0, 1]) of the whole head: the face with its forehead grown by
    20–40 % of the face's size, elastically deformed, with a ramp of σ 2–4 % of that size. It is 1
    over every mask `random_hull_mask` can draw at full strength, so a seam along it lies in the
    hair, ears, neck and background, never where a pasted face would meet its host."""
    lm = np.asarray(landmarks, np.float64).reshape(68, 2)
    mask, size = _filled_hulls([_with_forehead(lm, _FOREHEAD_LIFT[1])], shape)
    radius = int(rng.uniform(0.2, 0.4) * size)
    mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)))
    mask = _elastic(mask, rng, rng.uniform(0.005, 0.03) * size)
    soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), rng.uniform(0.02, 0.04) * size,
                            borderType=cv2.BORDER_REPLICATE)
    return np.minimum(soft, 1.0, out=soft)


def reframe_real(image: np.ndarray, lm: np.ndarray, surround: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A real face whose head meets a changed surround along `head_mask`: still a real face.

    One of: the head over `surround` (another real crop: a new scene behind it), over its
    own surround blurred (a shallow focus) or sharpened, or the head itself softened (a
    blown-up face in a sharper frame). Training can show these as real
    (`SampleConfig.real_reframe_prob`): a blend's seam lies inside the face, so neither the
    surround nor a soft face in a sharp frame is evidence of one. (Built to test whether the
    surround made three held-out real clips score like fakes; it did not move them: README,
    "The default model".) Returns RGB uint8 with `image`'s shape.
    """
    mask = head_mask(lm, image.shape, rng)
    head, rest = image, image
    kind = rng.integers(4)
    if kind == 0:
        rest = surround
    elif kind == 1:
        rest = gaussian_blur(image, rng.uniform(1.5, 6.0))
    elif kind == 2:
        rest = unsharp(image, amount=rng.uniform(0.5, 1.5), sigma=rng.uniform(0.8, 2.0))
    else:
        head = rescale(image, rng.uniform(0.3, 0.7))
    return _alpha_blend(head, rest, mask)


def self_blend(image: np.ndarray, lm: np.ndarray, rng: np.random.Generator) -> BlendResult:
    """SBI: the face blended with a changed copy of itself.

    The copy gets `source_change`'s colour and frequency change and a small scale
    (0.95–1.05) and shift (±3 % across, ±1.5 % vertically) about the face centre; the mask
    follows the shifted face and is scaled by a random ratio r (SBI's partial blends).
    The X-ray target is the boundary of the mask's shape, `xray_target(M / r)`: inside a
    partial paste the image is a mix of a face and its own recoloured copy, which nothing
    there tells from a real face of another colour, so `4·M·(1−M)` of the scaled mask would
    mark the whole face and teach a face-shaped map; where the paste meets the face is
    the evidence. Only the copy changes: the output equals `image` exactly wherever M == 0.
    """
    h, w = image.shape[:2]
    lm = np.asarray(lm, np.float64).reshape(68, 2)
    scale = rng.uniform(0.95, 1 / 0.95)
    shift = np.array([rng.uniform(-0.03, 0.03) * w, rng.uniform(-0.015, 0.015) * h])
    centre = lm.mean(axis=0)
    matrix = np.hstack([scale * np.eye(2), (centre * (1 - scale) + shift)[:, None]])
    source = _warp(source_change(image, rng), matrix, image.shape)
    shape = random_hull_mask(lm @ matrix[:, :2].T + matrix[:, 2], image.shape, rng)
    mask = shape * np.float32(_SBI_BLEND_RATIOS[rng.integers(len(_SBI_BLEND_RATIOS))])
    return BlendResult(_alpha_blend(source, image, mask), mask, xray_target(shape))
