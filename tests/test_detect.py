"""Face detection: RetinaFace weights, decoding, NMS, batching, engines, weights lookup,
and the acceptance test against human-annotated landmarks."""

import dataclasses
import shutil
from collections import defaultdict

import cv2
import numpy as np
import pytest
import torch

from facexray.errors import ModelNotFoundError
from facexray.faces import weights as weights_mod
from facexray.faces.annotations import read_annotated_faces
from facexray.faces.detect import Detections, DetectorConfig, RetinaFaceDetector
from facexray.faces.retinaface import CONFIGS, RetinaFace, load_retinaface, nms, nms_sorted, priors
from facexray.faces.weights import REGISTRY, resolve_weights

MNET = "models/retinaface_mnet025/Retinaface__weights__mobilenet0.25_Final.pth"
MNET_1MB = "models/retinaface_1mb_landmark/weights__mobilenet0.25_Final.pth"
FACES = "data/real_faces"


def _rgb(path):
    img = cv2.imread(str(path))
    assert img is not None, path
    return np.ascontiguousarray(img[:, :, ::-1])


@pytest.fixture(scope="module")
def weights(shared_dir):
    p = shared_dir / MNET
    if not p.is_file():
        pytest.skip(f"RetinaFace weights not found at {p}")
    return p


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Keep the ONNX export cache of these tests out of the user's cache."""
    with pytest.MonkeyPatch.context() as mp:
        d = tmp_path_factory.mktemp("cache")
        mp.setenv("FACEXRAY_CACHE", str(d))
        yield d


@pytest.fixture(scope="module")
def detector(weights, cache):
    return RetinaFaceDetector(weights)


@pytest.fixture(scope="module")
def ort_detector(weights, cache):
    return RetinaFaceDetector(weights, engine="onnxruntime")


# --- network and weights ------------------------------------------------------------------


def test_both_trainings_load_strictly_and_need_their_own_config(shared_dir, weights):
    state = torch.load(str(weights), map_location="cpu", weights_only=True)
    assert len(state) == 300
    photo = _rgb(shared_dir / FACES / "prnet/TestImages__trump.jpg")
    other = shared_dir / MNET_1MB
    if not other.is_file():
        pytest.skip(f"{other} not found")
    load_retinaface(other, CONFIGS["retinaface_1mb_mnet025"])   # strict: raises on any missing/extra key
    a = RetinaFaceDetector(weights).detect([photo])[0]
    b = RetinaFaceDetector(other, name="retinaface_1mb_mnet025").detect([photo])[0]
    assert len(a) == len(b) == 1
    assert _iou(a.boxes[0], b.boxes[0]) > 0.85


def test_priors_match_the_network_output_for_odd_sizes():
    cfg = CONFIGS["retinaface_mnet025"]
    net = RetinaFace(cfg).eval()
    for h, w in [(97, 131), (640, 384), (33, 32)]:
        with torch.inference_mode():
            loc, conf, landms = net(torch.zeros(1, 3, h, w))
        assert priors(cfg, h, w).shape == (loc.shape[1], 4)
        assert torch.allclose(conf.sum(-1), torch.ones(1, loc.shape[1]))


def test_real_face_gives_one_confident_face_with_plausible_landmarks(shared_dir, detector):
    det = detector.detect([_rgb(shared_dir / FACES / "prnet/TestImages__trump.jpg")])[0]
    assert len(det) == 1 and det.scores[0] > 0.9
    assert det.boxes.dtype == np.float32 and det.landmarks.shape == (1, 5, 2)
    (x1, y1, x2, y2), lm = det.boxes[0], det.landmarks[0]
    le, re, nose, lmo, rmo = lm
    assert le[0] < re[0] and lmo[0] < rmo[0]                  # left = image left
    assert max(le[1], re[1]) < nose[1] < min(lmo[1], rmo[1])   # eyes above nose above mouth
    assert le[0] < nose[0] < re[0]
    assert np.all((lm >= [x1, y1]) & (lm <= [x2, y2]))
    face = det.to_faces(frame_index=7, pts=0.28)[0]
    assert face.frame_index == 7 and face.score == pytest.approx(float(det.scores[0]))
    assert face.size == pytest.approx(min(x2 - x1, y2 - y1))


def test_blank_images_give_no_faces(detector):
    dets = detector.detect([np.zeros((120, 200, 3), np.uint8), np.full((64, 64, 3), 255, np.uint8)])
    assert [len(d) for d in dets] == [0, 0]
    assert detector.detect([]) == []


# --- acceptance: annotated landmarks fall inside the (10 % enlarged) detected box -----------


def _annotated_faces(shared_dir):
    """(dataset, image path, [points (K, 2)]) for every annotated image of the shared data."""
    by_image: dict = {}
    for f in read_annotated_faces(shared_dir / FACES):
        by_image.setdefault((f.dataset.lower().replace("-", ""), f.image), []).append(f.points)
    return [(ds, img, pts) for (ds, img), pts in by_image.items()]


def _iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_acceptance_annotated_points_inside_enlarged_boxes(shared_dir, detector):
    items = _annotated_faces(shared_dir)
    assert len(items) >= 25, "the shared annotated photos are missing"
    dets = detector.detect([_rgb(p) for _, p, _ in items])
    per_ds = defaultdict(list)
    for (ds, path, faces), det in zip(items, dets):
        for pts in faces:
            gt = np.r_[pts.min(0), pts.max(0)]
            if len(det) == 0 or max(_iou(b, gt) for b in det.boxes) == 0:
                per_ds[ds].append(0.0)
                continue
            b = det.boxes[int(np.argmax([_iou(b, gt) for b in det.boxes]))]
            centre, half = (b[:2] + b[2:]) / 2, (b[2:] - b[:2]) * 1.1 / 2
            per_ds[ds].append(float(np.all(np.abs(pts - centre) <= half, axis=1).mean()))
    fracs = [f for v in per_ds.values() for f in v]
    for ds, v in per_ds.items():
        print(f"{ds:10s} faces {len(v):2d}  with >=90% points inside: {np.mean(np.array(v) >= 0.9):.0%}  "
              f"mean fraction inside {np.mean(v):.3f}  worst {min(v):.3f}")
    ok = np.mean(np.array(fracs) >= 0.9)
    print(f"{'all':10s} faces {len(fracs):2d}  with >=90% points inside: {ok:.1%}")
    assert ok >= 0.95


# --- engines -------------------------------------------------------------------------------


def test_torch_and_onnxruntime_agree(shared_dir, detector, ort_detector):
    imgs = [_rgb(shared_dir / FACES / "prnet/TestImages__trump.jpg"),
            _rgb(shared_dir / FACES / "mmpose_facelm/tests__data__wflw__7_Cheering_Cheering_7_16.jpg")]
    x, _ = detector.preprocess(imgs)
    assert tuple(x.shape) == (2, 3, 640, 640)
    a, b = detector.engine(x), ort_detector.engine(x)
    torch.testing.assert_close(b["conf"], a["conf"], atol=1e-4, rtol=0)
    torch.testing.assert_close(b["loc"], a["loc"], atol=1e-3, rtol=0)
    torch.testing.assert_close(b["landms"], a["landms"], atol=1e-3, rtol=0)
    for da, db in zip(detector.detect(imgs), ort_detector.detect(imgs)):
        assert len(da) == len(db) > 0
        np.testing.assert_allclose(db.boxes, da.boxes, atol=0.5)
        np.testing.assert_allclose(db.landmarks, da.landmarks, atol=0.5)


# --- NMS -----------------------------------------------------------------------------------


def _reference_nms(boxes, scores, thr):
    """The textbook loop: take the best box, drop everything overlapping it by more than thr."""
    order = list(np.argsort(-scores, kind="stable"))
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        order = [j for j in order if _iou(boxes[i], boxes[j]) <= thr]
    return keep


def _random_boxes(rng, n):
    """Boxes in a few clusters, so that overlaps (and chains of suppression) are common."""
    centres = rng.uniform(0, 200, (max(1, n // 15), 2))[rng.integers(0, max(1, n // 15), n)]
    xy = centres + rng.normal(0, 8, (n, 2))
    wh = rng.uniform(10, 40, (n, 2))
    return np.concatenate([xy, xy + wh], 1).astype(np.float32), rng.permutation(n).astype(np.float32) / n


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("thr", [0.3, 0.4, 0.6])
def test_nms_equals_reference(seed, thr):
    rng = np.random.default_rng(seed)
    boxes, scores = _random_boxes(rng, 300)
    got = nms(torch.from_numpy(boxes), torch.from_numpy(scores), thr).tolist()
    ref = _reference_nms(boxes, scores, thr)
    assert got == ref
    assert 1 < len(ref) < 300          # the case is not trivial


def test_batched_padded_nms_equals_reference_per_image():
    rng = np.random.default_rng(9)
    sets = [_random_boxes(rng, n) for n in (50, 120, 0, 7)]
    k = max(len(s) for s, _ in sets)
    boxes = torch.zeros(len(sets), k, 4)
    valid = torch.zeros(len(sets), k, dtype=torch.bool)
    for i, (b, s) in enumerate(sets):
        order = np.argsort(-s, kind="stable")
        boxes[i, :len(b)] = torch.from_numpy(b[order])
        valid[i, :len(b)] = True
    boxes[~valid] = torch.tensor([0.0, 0.0, 500.0, 500.0])   # padding overlaps everything: must not count
    keep = nms_sorted(boxes, valid, 0.4)
    for i, (b, s) in enumerate(sets):
        order = np.argsort(-s, kind="stable")
        assert order[keep[i, :len(b)].numpy()].tolist() == _reference_nms(b, s, 0.4)
        assert not keep[i, len(b):].any()


# --- batching ------------------------------------------------------------------------------


def test_batch_of_different_sizes_equals_one_by_one(shared_dir, detector):
    imgs = [_rgb(shared_dir / FACES / "prnet/TestImages__trump.jpg"),                        # 750x375
            _rgb(shared_dir / FACES / "mmpose_facelm/tests__data__cofw__001766.jpg"),        # 235x322
            _rgb(shared_dir / FACES / "mmpose_facelm/tests__data__wflw__7_Cheering_Cheering_7_16.jpg")]
    batched = detector.detect(imgs)
    for img, db in zip(imgs, batched):
        (ds,) = detector.detect([img])
        assert len(ds) == len(db) > 0
        np.testing.assert_allclose(db.boxes, ds.boxes, atol=1.0)
        np.testing.assert_allclose(db.scores, ds.scores, atol=1e-2)


def test_tensor_batch_fast_path_matches_numpy(shared_dir, detector):
    img = _rgb(shared_dir / FACES / "mmpose_facelm/tests__data__wflw__7_Cheering_Cheering_7_16.jpg")
    frames = torch.from_numpy(np.stack([img, img[:, ::-1].copy()]))
    from_tensor = detector.detect(frames)
    from_numpy = detector.detect([img, img[:, ::-1].copy()])
    for a, b in zip(from_tensor, from_numpy):
        assert len(a) == len(b)
        # the two paths resize with different filters (torch and cv2 bilinear differ slightly), so
        # near-equal scores may swap order: match each box to its best-overlapping counterpart
        ious = np.array([[_iou(x, y) for y in b.boxes] for x in a.boxes])
        assert ious.max(1).min() > 0.9 and len(set(ious.argmax(1))) == len(a)


def test_min_face_and_threshold_filter(shared_dir, weights, cache):
    img = _rgb(shared_dir / FACES / "mmpose_facelm/tests__data__wflw__7_Cheering_Cheering_7_16.jpg")
    (all_faces,) = RetinaFaceDetector(weights).detect([img])
    (big,) = RetinaFaceDetector(weights, min_face=80).detect([img])
    sure_det = RetinaFaceDetector(config=DetectorConfig(weights=str(weights), score_threshold=0.99))
    assert sure_det.describe()["score_threshold"] == 0.99 and sure_det.describe()["engine"] == "onnxruntime"  # auto on CPU
    (sure,) = sure_det.detect([img])
    sides = np.minimum(all_faces.boxes[:, 2] - all_faces.boxes[:, 0], all_faces.boxes[:, 3] - all_faces.boxes[:, 1])
    assert len(all_faces) > 10
    assert len(big) == int((sides >= 80).sum()) > 0
    assert len(sure) == int((all_faces.scores >= 0.99).sum()) < len(all_faces)
    assert isinstance(big, Detections) and np.all(sure.scores >= 0.99)


# --- weights resolution --------------------------------------------------------------------


def test_explicit_missing_path_raises(tmp_path):
    with pytest.raises(ModelNotFoundError, match="do not exist"):
        resolve_weights("retinaface_mnet025", tmp_path / "nope.pth")


def test_models_dir_lookup_and_helpful_error(weights, tmp_path, monkeypatch):
    monkeypatch.setenv("FACEXRAY_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FACEXRAY_ALLOW_DOWNLOAD", raising=False)
    monkeypatch.setenv("FACEXRAY_MODELS", str(tmp_path / "models"))
    with pytest.raises(ModelNotFoundError) as e:
        resolve_weights("retinaface_mnet025")
    msg = str(e.value)
    assert "FACEXRAY_MODELS" in msg and "--detector-weights" in msg and str(tmp_path / "models") in msg
    flat = tmp_path / "models" / REGISTRY["retinaface_mnet025"].filename
    flat.parent.mkdir()
    shutil.copy(weights, flat)
    assert resolve_weights("retinaface_mnet025") == flat
    nested = tmp_path / "models" / "retinaface_mnet025" / flat.name
    nested.parent.mkdir()
    shutil.copy(weights, nested)
    assert resolve_weights("retinaface_mnet025") == nested      # the folder layout wins


def test_download_checks_sha256_and_leaves_nothing_behind(weights, tmp_path, monkeypatch):
    monkeypatch.setenv("FACEXRAY_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FACEXRAY_MODELS", raising=False)
    src = tmp_path / "server" / "w.pth"
    src.parent.mkdir()
    shutil.copy(weights, src)
    spec = REGISTRY["retinaface_mnet025"]
    target_dir = tmp_path / "cache" / "models" / spec.folder

    monkeypatch.setitem(weights_mod.REGISTRY, "retinaface_mnet025", dataclasses.replace(spec, url=src.as_uri()))
    with pytest.raises(ModelNotFoundError, match="FACEXRAY_ALLOW_DOWNLOAD"):
        resolve_weights("retinaface_mnet025")                   # downloads only when allowed

    monkeypatch.setenv("FACEXRAY_ALLOW_DOWNLOAD", "1")
    monkeypatch.setitem(weights_mod.REGISTRY, "retinaface_mnet025",
                        dataclasses.replace(spec, url=src.as_uri(), sha256="0" * 64))
    with pytest.raises(ModelNotFoundError, match="sha256"):
        resolve_weights("retinaface_mnet025")
    assert not target_dir.exists() or not any(target_dir.iterdir())

    monkeypatch.setitem(weights_mod.REGISTRY, "retinaface_mnet025", dataclasses.replace(spec, url=None))
    with pytest.raises(ModelNotFoundError, match="no download URL"):
        resolve_weights("retinaface_mnet025")

    monkeypatch.setitem(weights_mod.REGISTRY, "retinaface_mnet025", dataclasses.replace(spec, url=src.as_uri()))
    got = resolve_weights("retinaface_mnet025")
    assert got == target_dir / spec.filename and got.read_bytes() == weights.read_bytes()
    assert [p.name for p in target_dir.iterdir()] == [spec.filename]
    assert resolve_weights("retinaface_mnet025") == got          # now found in the cache
