"""The crop function, the IoU tracker and the verdict rule."""

import cv2
import numpy as np
import pytest
import torch

from facexray.aggregate import AggregateConfig, aggregate_scores, track_score
from facexray.contracts import Face, FaceScore
from facexray.errors import CropSpecMismatch
from facexray.faces.crop import CropSpec, crop_face, crop_matrix, similarity_transform, to_frame_coords
from facexray.faces.retinaface import box_iou
from facexray.faces.track import FaceTracker


def _textured(h=480, w=640, seed=0):
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    return img


def test_similarity_transform_recovers_a_known_transform():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, (5, 2))
    ang, s, t = np.deg2rad(23), 1.7, np.array([12.0, -5.0])
    r = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    dst = src @ (s * r).T + t
    m = similarity_transform(src, dst)
    np.testing.assert_allclose(m[:, :2], s * r, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], t, atol=1e-9)


def test_crop_puts_landmarks_on_the_template_and_inverts():
    spec = CropSpec()
    lm = np.array([[250, 200], [330, 205], [290, 250], [258, 295], [322, 298]], np.float64)
    m = crop_matrix(lm, spec)
    mapped = lm @ m[:, :2].T + m[:, 2]
    # a real face is not exactly the template: the least-squares fit stays within a few pixels
    assert np.abs(mapped - spec.template_points()).max() < 8
    np.testing.assert_allclose(to_frame_coords(mapped, m), lm, atol=1e-6)


def test_crop_is_invariant_to_rotation_and_scale_of_the_frame():
    spec = CropSpec()
    img = _textured()
    lm = spec.template_points(120) + np.array([260, 150])
    crop_a, _ = crop_face(img, lm, spec)
    rot = cv2.getRotationMatrix2D((320, 240), 25, 1.3)
    img_b = cv2.warpAffine(img, rot, (640, 480), flags=cv2.INTER_LINEAR)
    lm_b = lm @ rot[:, :2].T + rot[:, 2]
    crop_b, _ = crop_face(img_b, lm_b, spec)
    inner = slice(60, 196)  # away from the frame border, where the rotated frame has no content
    diff = np.abs(crop_a[inner, inner].astype(int) - crop_b[inner, inner].astype(int)).mean()
    assert diff < 6, diff
    # and a different face position gives a genuinely different crop (the test can fail)
    crop_c, _ = crop_face(img, lm + 40, spec)
    assert np.abs(crop_a[inner, inner].astype(int) - crop_c[inner, inner].astype(int)).mean() > 20


def test_context_crop_holds_the_crop_exactly_at_its_centre():
    spec = CropSpec()
    img = _textured()
    lm = np.array([[280, 200], [350, 210], [315, 250], [285, 290], [345, 298]], np.float64)
    crop, _ = crop_face(img, lm, spec)
    ctx_spec = spec.with_context(384)
    ctx, _ = crop_face(img, lm, ctx_spec)
    assert ctx.shape == (384, 384, 3)
    diff = np.abs(spec.center_of(ctx).astype(int) - crop.astype(int))
    assert diff.max() <= 3 and diff.mean() < 0.05      # identical up to warpAffine fixed-point rounding
    with pytest.raises(ValueError):
        spec.with_context(301)


def test_crop_pads_with_black_outside_the_frame():
    spec = CropSpec()
    img = np.full((100, 100, 3), 200, np.uint8)
    lm = spec.template_points(60) - 20          # face hanging over the top-left corner
    crop, _ = crop_face(img, lm, spec)
    assert crop.shape == (256, 256, 3) and crop.dtype == np.uint8
    assert crop[0, 0].max() == 0 and crop[-40, -40].min() == 200


def test_crop_spec_check_and_round_trip():
    spec = CropSpec()
    assert CropSpec.from_dict(spec.to_dict()) == spec
    spec.check(spec.to_dict())
    with pytest.raises(CropSpecMismatch, match="trained on crop"):
        spec.check({**spec.to_dict(), "margin": 0.4})


def test_box_iou():
    a = torch.tensor([[0, 0, 10, 10.0]])
    b = torch.tensor([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30.0]])
    np.testing.assert_allclose(box_iou(a, b).numpy(), [[1.0, 1 / 3, 0.0]], rtol=1e-6)


def test_tracker_keeps_ids_through_motion_and_order_changes():
    t = FaceTracker(max_gap=1)
    a, b = np.array([0, 0, 50, 50.0]), np.array([200, 0, 250, 50.0])
    assert t.update([a, b]) == [0, 1]
    assert t.update([b + 5, a + 5]) == [1, 0]           # order swapped, still the same people
    assert t.update([a + 10]) == [0]                    # b missed once: kept
    assert t.update([a + 12, b + 5]) == [0, 1]          # b back within max_gap
    t.update([a + 14]), t.update([a + 16])              # b missed twice: its track ends
    assert t.update([a + 18, b + 5]) == [0, 2]


def _face(cx, cy, size, tilt=0.0):
    """A box and 5 landmarks of a frontal face of `size` pixels centred at (cx, cy); `tilt` moves the nose and
    mouth sideways (a turned head), in face sizes."""
    box = np.array([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2])
    rel = np.array([[-0.18, -0.1], [0.18, -0.1], [tilt, 0.05], [-0.14 + tilt, 0.22], [0.14 + tilt, 0.22]])
    return box, np.array([cx, cy]) + rel * size


def test_tracker_links_faces_of_sparse_frames_by_position_size_and_landmarks():
    a0, b0 = _face(100, 100, 80), _face(400, 100, 80)
    a1, b1 = _face(160, 110, 88), _face(350, 90, 76)          # seconds later: moved 0.75 and 0.65 face sizes
    assert box_iou(torch.tensor(a1[0])[None], torch.tensor(a0[0])[None]).item() < 0.3   # IoU alone loses them

    def tracked() -> FaceTracker:
        t = FaceTracker()
        assert t.update([a0[0], b0[0]], [a0[1], b0[1]]) == [0, 1]
        assert t.update([b1[0], a1[0]], [b1[1], a1[1]]) == [1, 0]
        return t

    same = _face(230, 110, 88)                               # 0.8 face further: the same face
    assert tracked().update([same[0]], [same[1]]) == [0]
    far = _face(400, 300, 88)                                # 2.4 face sizes from anyone: someone else
    turned = _face(230, 110, 88, tilt=0.35)                   # where `same` is, but its landmarks say another face
    big = _face(230, 110, 150)                               # where `same` is, but 1.7x the size
    for other in (far, turned, big):
        assert tracked().update([other[0]], [other[1]]) == [2]
    iou_only = FaceTracker()
    iou_only.update([a0[0]])
    assert iou_only.update([a1[0]]) == [1]                   # without landmarks: IoU only


def _fs(track, prob):
    return FaceScore(Face(0, 0.0, np.zeros(4), 1.0, np.zeros((5, 2)), track), prob)


def test_verdict_follows_the_most_suspicious_track():
    scores = [_fs(0, p) for p in (0.1, 0.2, 0.15, 0.1)] + [_fs(1, p) for p in (0.9, 0.8, 0.3)]
    agg = aggregate_scores(scores, AggregateConfig(top_k=2, min_track_faces=2, threshold=0.5))
    assert agg.worst_track == 1 and agg.verdict == "fake"
    assert agg.score == pytest.approx(0.85)
    assert [s.prob for s in agg.top[:2]] == [0.9, 0.8]


def test_single_frame_flicker_tracks_do_not_decide():
    scores = [_fs(0, 0.1), _fs(0, 0.2), _fs(0, 0.1), _fs(7, 0.99)]
    agg = aggregate_scores(scores, AggregateConfig(top_k=3, min_track_faces=2))
    assert agg.worst_track == 0 and agg.verdict == "real"
    # but when every track is short, the rule still decides on them
    assert aggregate_scores([_fs(7, 0.99)], AggregateConfig(min_track_faces=2)).verdict == "fake"


def test_no_faces_is_its_own_verdict():
    agg = aggregate_scores([])
    assert agg.verdict == "no_face" and agg.score is None


def test_track_score_is_mean_of_top_k():
    assert track_score([0.1, 0.9, 0.5, 0.7], 2) == pytest.approx(0.8)
    assert track_score([0.4], 5) == pytest.approx(0.4)
