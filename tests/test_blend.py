"""Blending (BI, SBI), the neighbour search and Face-Cutout: invariants on real annotated faces.

The faces are the human-annotated 68-point photos of the shared data (AFLW2000 and 300-W),
aligned with THE crop on a 320² context canvas, as `prepare` stores them.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facexray.faces.annotations import aligned, read_annotated_faces
from facexray.faces.crop import CropSpec, similarity_transform
from facexray.train.blend import (
    HULL_VARIANTS,
    NeighbourIndex,
    blend_bi,
    color_transfer,
    head_mask,
    landmark_features,
    random_hull_mask,
    reframe_real,
    self_blend,
    xray_target,
)
from facexray.train.cutout import face_cutout, hull_cutout, sensory_cutout

FACES = "data/real_faces"
CONTEXT = 320


def aligned_annotated_faces(root: Path, spec: CropSpec) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, aligned crop RGB uint8, 68 points in crop pixels) of every 68-point-annotated photo under `root`."""
    return [(f"{f.dataset}/{f.image.name}", *aligned(f, spec)) for f in read_annotated_faces(root)
            if len(f.points) == 68]


@pytest.fixture(scope="module")
def faces(shared_dir):
    items = aligned_annotated_faces(shared_dir / FACES, CropSpec().with_context(CONTEXT))
    assert len(items) >= 15, "the shared 68-point annotated photos are missing"
    return items


def _cells(a: np.ndarray, n: int = 64) -> np.ndarray:
    """Mean of each of n×n equal blocks (the side must be a multiple of n)."""
    h, w = a.shape
    return a.reshape(n, h // n, n, w // n).mean(axis=(1, 3))


def _pairs(faces, count: int, seed: int = 0):
    """`count` (target, source, rng) triples of distinct faces, each with its own seed."""
    pick = np.random.default_rng(seed)
    for s in range(count):
        i, j = pick.choice(len(faces), 2, replace=False)
        yield faces[i], faces[j], np.random.default_rng(1000 + s)


def _far_outside(lm: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels more than 0.6 face sizes from the landmarks' hull with the highest forehead a mask can have."""
    region = np.concatenate([lm, lm[17:27] + 0.4 * (lm[27] - lm[8])])
    hull = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.round(region).astype(np.int32)), 1)
    dist = cv2.distanceTransform(1 - hull, cv2.DIST_L2, 5)
    return dist > 0.6 * np.ptp(lm, axis=0).max()


# --- masks and X-ray targets -------------------------------------------------------------


def test_hull_masks_are_soft_full_inside_and_zero_far_outside(faces):
    for f, (_, crop, lm) in enumerate(faces):
        far = _far_outside(lm, crop.shape[:2])
        inner_area = cv2.contourArea(cv2.convexHull(lm[17:]))
        for v, variant in enumerate(HULL_VARIANTS):
            m = random_hull_mask(lm, crop.shape, np.random.default_rng(10 * f + v), variant=variant)
            assert m.dtype == np.float32 and m.shape == crop.shape[:2]
            assert m.min() >= 0.0 and m.max() == pytest.approx(1.0)
            assert (m > 0.99).sum() > 0.03 * inner_area, ("the mask needs a core of pure source", variant, f)
            assert far.any() and (m[far] == 0).all(), (variant, f)
            contours, _ = cv2.findContours((m > 0.5).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            band = ((m > 0.01) & (m < 0.99)).sum() / sum(cv2.arcLength(c, True) for c in contours)
            assert band > 3.0, ("the edge must be a soft ramp several pixels wide, not a cut", variant, f)


def test_xray_target_is_zero_inside_and_outside_and_peaks_on_the_boundary(faces):
    peaks = []
    for (_, target, t_lm), (_, source, s_lm), rng in _pairs(faces, 40):
        res = blend_bi(target, t_lm, source, s_lm, rng)
        x = res.xray
        assert x.dtype == np.float32 and x.shape == (64, 64)
        assert x.min() >= 0.0 and x.max() <= 1.0
        m = _cells(res.mask)
        np.testing.assert_allclose(x, 4 * m * (1 - m), atol=1e-5)
        outside = _cells((res.mask == 0).astype(np.float32)) == 1
        inside = _cells((res.mask > 0.999).astype(np.float32)) == 1
        assert outside.sum() > 500 and inside.sum() > 10
        assert (x[outside] == 0).all() and (x[inside] < 0.004).all()
        half = np.abs(m - 0.5) < 0.05
        assert half.any() and (x[half] > 0.99).all()
        peaks.append(x.max())
    assert min(peaks) > 0.95


def test_xray_target_of_a_sharp_mask_marks_its_edge():
    mask = np.zeros((256, 256), np.float32)
    mask[64:192, 66:190] = 1.0            # edges at x = 66 and 190: half of a 4-px cell
    x = xray_target(mask)
    assert x[32, 16] == 1.0 and x[32, 47] == 1.0 and x[32, 32] == 0.0 and x[5, 5] == 0.0
    assert x[16:48, 16].min() == 1.0 and (x[:, :16] == 0).all()


# --- BI ----------------------------------------------------------------------------------


def _lab_mean(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)[region].mean(axis=0)


def test_bi_equals_the_target_where_the_mask_is_zero_and_matches_its_colour_inside(faces):
    raw, blended = [], []
    for (_, target, t_lm), (_, source, s_lm), rng in _pairs(faces, 30, seed=1):
        res = blend_bi(target, t_lm, source, s_lm, rng)
        assert res.image.dtype == np.uint8 and res.image.shape == target.shape
        assert res.mask.shape == target.shape[:2] and res.mask.dtype == np.float32
        zero = res.mask == 0
        assert zero.mean() > 0.3
        np.testing.assert_array_equal(res.image[zero], target[zero])
        inside = res.mask > 0.5
        assert np.abs(res.image[inside].astype(int) - target[inside]).mean() > 2, "the source must show"
        raw.append(np.abs(_lab_mean(source, inside) - _lab_mean(target, inside)))
        blended.append(np.abs(_lab_mean(res.image, inside) - _lab_mean(target, inside)))
    assert np.mean(blended) < 0.2 * np.mean(raw), "the pasted face must take the target's colour"


def test_bi_moves_the_source_face_onto_the_target_face(faces):
    def ncc(a, b, region):
        a, b = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)[region].astype(np.float64) for x in (a, b))
        a, b = a - a.mean(), b - b.mean()
        return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))

    for s, ((_, target, t_lm), (_, source, s_lm), rng) in enumerate(_pairs(faces, 10, seed=4)):
        small = np.array([[0.6, 0.0, 10.0 + s], [0.0, 0.6, 20.0]])     # the source, shrunk into a corner
        moved = cv2.warpAffine(source, small, source.shape[1::-1])
        res = blend_bi(target, t_lm, moved, s_lm @ small[:, :2].T + small[:, 2], rng)
        assert (res.mask[_far_outside(t_lm, target.shape[:2])] == 0).all(), "the mask follows the target"
        core = res.mask > 0.99
        expected = cv2.warpAffine(source, similarity_transform(s_lm, t_lm), target.shape[1::-1])
        assert ncc(res.image, expected, core) > 0.9 > ncc(res.image, target, core) + 0.2


def test_bi_on_the_256_crop_from_a_larger_source(faces):
    spec = CropSpec()
    off = (CONTEXT - spec.size) // 2
    (_, target, t_lm), (_, source, s_lm) = faces[0], faces[1]
    res = blend_bi(spec.center_of(target), t_lm - off, source, s_lm, np.random.default_rng(0))
    assert res.image.shape == (256, 256, 3) and res.mask.shape == (256, 256) and res.xray.shape == (64, 64)
    zero = res.mask == 0
    np.testing.assert_array_equal(res.image[zero], spec.center_of(target)[zero])


def test_color_transfer_matches_the_target_lab_statistics(faces):
    def lab(img, region):
        return cv2.cvtColor(img.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)[region]

    mean_before, mean_after, std_ratio = [], [], []
    for (_, target, t_lm), (_, source, _), rng in _pairs(faces, 20, seed=2):
        mask = random_hull_mask(t_lm, target.shape, rng, variant="face")
        region = mask > 0.5
        t, s, o = (lab(x, region) for x in (target, source, color_transfer(source, target, mask)))
        mean_before.append(np.abs(t.mean(0) - s.mean(0)))
        mean_after.append(np.abs(t.mean(0) - o.mean(0)))
        std_ratio.append(o[:, 0].std() / t[:, 0].std())
    assert np.median(mean_after) < 1.0
    assert np.mean(mean_after) < 0.15 * np.mean(mean_before)
    assert 0.9 < np.median(std_ratio) < 1.1


# --- neighbours --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bank(faces):
    """Four jittered copies of each face's landmarks, one identity per face."""
    rng = np.random.default_rng(7)
    lms = np.concatenate([lm + rng.normal(0, 1.0, (4, 68, 2)) for _, _, lm in faces])
    ids = [name for name, _, _ in faces for _ in range(4)]
    return lms, ids


def test_neighbour_is_another_identity_among_the_k_nearest(bank):
    lms, ids = bank
    index = NeighbourIndex(lms, ids)
    feats = landmark_features(lms)
    ids_arr = np.array(ids)
    k = 5
    for i in range(len(lms)):
        d = np.linalg.norm(feats - feats[i], axis=1)
        order = np.argsort(d, kind="stable")
        expected = order[ids_arr[order] != ids_arr[i]][:k]
        cands = index.candidates(i, k)
        assert sorted(cands.tolist()) == sorted(expected.tolist())
        assert np.all(np.diff(d[cands]) >= 0)
        picks = {index.pick(i, np.random.default_rng(s), k=k) for s in range(40)}
        assert picks <= set(expected.tolist()) and len(picks) > 1
        assert all(ids[j] != ids[i] for j in picks)


def test_neighbour_distance_ignores_position_and_scale(bank):
    lms, ids = bank
    twin = lms[0] * 1.3 + np.array([17.0, -9.0])           # same shape, elsewhere and larger
    index = NeighbourIndex(np.concatenate([lms, twin[None]]), ids + ["twin"])
    assert index.candidates(0, 3)[0] == len(lms)


def test_neighbour_fallbacks_with_few_identities(bank):
    lms, _ = bank
    index = NeighbourIndex(lms[:4], ["a", "a", "a", "b"])
    assert index.candidates(0, 20).tolist() == [3]
    assert index.pick(3, np.random.default_rng(0), k=20) in (0, 1, 2)
    alone = NeighbourIndex(lms[:3], ["a", "a", "a"])        # one identity: its other faces
    assert sorted(alone.candidates(1, 20).tolist()) == [0, 2]
    with pytest.raises(ValueError):
        NeighbourIndex(lms[:1], ["a"]).pick(0, np.random.default_rng(0))
    with pytest.raises(ValueError):
        NeighbourIndex(lms[:2], ["a"])


# --- SBI ---------------------------------------------------------------------------------


def test_sbi_changes_the_face_only_where_the_mask_is_positive(faces):
    for f, (_, crop, lm) in enumerate(faces):
        res = self_blend(crop, lm, np.random.default_rng(f))
        assert res.image.shape == crop.shape and res.image.dtype == np.uint8
        assert res.mask.dtype == np.float32 and 0 <= res.mask.min() and res.mask.max() <= 1.0
        assert min(abs(res.mask.max() - r) for r in (0.25, 0.5, 0.75, 1.0)) < 1e-5
        zero = res.mask == 0
        assert zero.mean() > 0.3
        np.testing.assert_array_equal(res.image[zero], crop[zero])
        inside = res.mask >= 0.5 * res.mask.max()
        assert (res.image[inside] != crop[inside]).any(axis=-1).mean() > 0.3
        shape = res.mask / res.mask.max()          # the target marks where the paste meets the face,
        np.testing.assert_allclose(res.xray, 4 * _cells(shape) * (1 - _cells(shape)), atol=1e-5)
        deep_inside = _cells(shape) > 0.99            # not the inside of a half-transparent paste
        assert deep_inside.any() and res.xray[deep_inside].max() < 0.05


# --- real faces reframed ------------------------------------------------------------------


def test_the_head_mask_holds_every_paste_so_its_seam_lies_outside_the_face(faces):
    for f, (_, crop, lm) in enumerate(faces):
        head = head_mask(lm, crop.shape, np.random.default_rng(f))
        assert head.dtype == np.float32 and head.shape == crop.shape[:2] and 0 <= head.min() <= head.max() <= 1
        for v, variant in enumerate(HULL_VARIANTS):
            paste = random_hull_mask(lm, crop.shape, np.random.default_rng(100 * f + v), variant=variant)
            assert head[paste > 0.5].min() > 0.99, (variant, f)
        sbi = self_blend(crop, lm, np.random.default_rng(f)).mask
        assert head[sbi > 0.5 * sbi.max()].min() > 0.99, f
    corners = [head_mask(lm, crop.shape, np.random.default_rng(0))[[0, 0, -1, -1], [0, -1, 0, -1]].min()
               for _, crop, lm in faces]
    assert np.median(corners) < 0.01                    # and the surround is there to change


def test_a_reframed_real_face_keeps_its_face_or_its_frame_exactly(faces):
    kept_face = kept_frame = 0
    for f, ((_, crop, lm), (_, other, _)) in enumerate(zip(faces, faces[1:])):
        out = reframe_real(crop, lm, other, np.random.default_rng(f))
        assert out.shape == crop.shape and out.dtype == np.uint8 and (out != crop).any()
        head = head_mask(lm, crop.shape, np.random.default_rng(f))
        face = head > 0.999
        if (out[face] == crop[face]).all():
            kept_face += 1
        else:                                           # the head softened: its frame untouched
            np.testing.assert_array_equal(out[head < 0.001], crop[head < 0.001])
            kept_frame += 1
    assert kept_face and kept_frame


# --- Face-Cutout -------------------------------------------------------------------------


def test_cutout_covers_at_most_max_overlap_of_the_blending_boundary(faces):
    limit = 0.3
    cut_any, over_without_rule = 0, 0
    for (_, target, t_lm), (_, source, s_lm), rng in _pairs(faces, 150, seed=3):
        res = blend_bi(target, t_lm, source, s_lm, rng)
        m = _cells(res.mask)
        boundary = 4 * m * (1 - m)                   # the X-ray target, computed here independently
        state = rng.bit_generator.state
        img, cut = face_cutout(res.image, t_lm, rng, blend_mask=res.mask, max_overlap=limit)
        overlap = (_cells(cut.astype(np.float32)) * boundary).sum() / boundary.sum()
        assert overlap <= limit + 1e-6
        assert (img[cut] == 0).all()
        np.testing.assert_array_equal(img[~cut], res.image[~cut])
        cut_any += bool(cut.any())
        rng.bit_generator.state = state
        _, free = face_cutout(res.image, t_lm, rng)
        over_without_rule += (_cells(free.astype(np.float32)) * boundary).sum() / boundary.sum() > limit
    assert cut_any >= 0.8 * 150, "the rule must shrink cutouts, not drop most of them"
    assert over_without_rule >= 10, "without a mask some cutouts must break the limit, else this test proves nothing"


def test_sensory_and_hull_cutouts_follow_the_landmarks(faces):
    for f, (_, crop, lm) in enumerate(faces):
        outline = np.zeros(crop.shape[:2], np.uint8)
        cv2.fillConvexPoly(outline, cv2.convexHull(np.round(lm[:27]).astype(np.int32)), 1)
        outline = cv2.dilate(outline, np.ones((5, 5), np.uint8)).astype(bool)
        parts = [lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[[48, 54]].mean(0)]
        for s in range(6):
            rng = np.random.default_rng(100 * f + s)
            img, cut = sensory_cutout(crop, lm, rng)
            assert cut.dtype == bool and cut.shape == crop.shape[:2] and (img[cut] == 0).all()
            assert any(cut[int(round(y)), int(round(x))] for x, y in parts)
            assert cut.mean() < 0.25
            img, cut = hull_cutout(crop, lm, rng)
            assert cut.sum() > 50 and (img[cut] == 0).all()
            np.testing.assert_array_equal(img[~cut], crop[~cut])
            assert (cut & ~outline).sum() <= 0.01 * cut.sum()


# --- reproducibility ---------------------------------------------------------------------


def _sample(faces, seed: int):
    rng = np.random.default_rng(seed)
    (_, target, t_lm), (_, source, s_lm) = faces[2], faces[5]
    bi = blend_bi(target, t_lm, source, s_lm, rng)
    sbi = self_blend(target, t_lm, rng)
    img, cut = face_cutout(bi.image, t_lm, rng, blend_mask=bi.mask)
    return [bi.image, bi.mask, bi.xray, sbi.image, sbi.mask, img, cut]


def test_same_seed_same_sample_other_seed_other_sample(faces, bank):
    a, b, c = _sample(faces, 5), _sample(faces, 5), _sample(faces, 6)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[1], c[1]) and not np.array_equal(a[3], c[3])
    index = NeighbourIndex(*bank)
    assert [index.pick(i, np.random.default_rng(1)) for i in range(20)] == \
           [index.pick(i, np.random.default_rng(1)) for i in range(20)]
