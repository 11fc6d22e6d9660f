"""68-point landmarks against human annotations, and `prepare` on real videos and photos.

Real components throughout: the shared RetinaFace and PFLD weights, real clips and
photos from ../shared, and a FaceForensics++-shaped tree built from a real clip.
"""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from facexray.decode import open_video
from facexray.faces.annotations import read_annotated_faces
from facexray.faces.crop import CropSpec, crop_face
from facexray.faces.detect import RetinaFaceDetector
from facexray.faces.landmarks import LandmarkModel, PfldLandmarks, five_from_68
from facexray.faces.retinaface import box_iou
from facexray.train.prepare import LANDMARK_AGREEMENT, find_sources, prepare, split_of

MAX_NME = 0.10
"""Mean landmark error allowed on faces turned at most 45°, in outer-eye-corner distances (README: ≈0.04-0.075)."""

VIDEOS = ("3ddfa/demo_obama__obama.mp4", "dagan/assets__driving.mp4")
PHOTOS = ("deepface/tests__unit__dataset__img1.jpg", "codeformer_cropped/inputs__cropped_faces__0143.png",
          "3ddfa_v2/examples__inputs__emma.jpg", "prnet/TestImages__AFLW2000__image00081.jpg",
          "barbershop/input__face__15.png")
FFPP_CLIP = "v_express/scripts__prepare_dataset__RD_Radio10_0_clip_0.mp4"


# -- landmarks ----------------------------------------------------------------------------------------

def _annotated_faces(faces: Path) -> list[tuple[str, Path, np.ndarray, float | None]]:
    """(dataset, image, 68 annotated points, yaw in degrees or None) of the 68-point annotations of
    AFLW2000-3D (with pose), 300W and 300W-LP (no pose given)."""
    return [(f.dataset, f.image, f.points, f.yaw) for f in read_annotated_faces(faces)
            if f.dataset in ("AFLW2000", "300W", "300W-LP") and len(f.points) == 68]


def _nose_offset(points: np.ndarray) -> float:
    """Where the nose tip (30) sits between the jaw ends (0 and 16): 0.5 frontal, away from it when turned."""
    return float((points[30, 0] - points[0, 0]) / (points[16, 0] - points[0, 0]))


def test_pfld_landmarks_match_human_annotations(detector_weights, shared_dir):
    """Mean normalised error of PFLD, on the detector's box, against annotated faces turned at most 45°.

    300W/300W-LP give no pose, so their yaw is estimated from the annotation itself: the
    nose tip's position between the jaw ends, calibrated against the known yaw of the
    AFLW2000 faces (a straight-line fit over those turned at most 45°). The 300W-LP
    samples are its unrotated `_0` images, i.e. original AFW photos.
    """
    items = _annotated_faces(shared_dir / "data" / "real_faces")
    assert len(items) >= 15
    detector = RetinaFaceDetector()
    model = PfldLandmarks()
    assert isinstance(model, LandmarkModel)

    calib = [(_nose_offset(gt), yaw) for ds, _, gt, yaw in items if ds == "AFLW2000" and abs(yaw) <= 45]
    slope, icept = np.polyfit(*zip(*calib), 1)
    rows = []
    for ds, path, gt, yaw in items:
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        det = detector.detect([image])[0]
        ann_box = np.r_[gt.min(0), gt.max(0)]
        ious = box_iou(torch.from_numpy(det.boxes).double(), torch.from_numpy(ann_box[None].astype(np.float64)))[:, 0].tolist()
        assert ious and max(ious) > 0.4, f"annotated face of {path.name} not detected"
        j = int(np.argmax(ious))
        pred = model.predict(image, det.boxes[j:j + 1])
        assert pred.shape == (1, 68, 2) and pred.dtype == np.float32
        nme = float(np.linalg.norm(pred[0] - gt, axis=1).mean() / np.linalg.norm(gt[36] - gt[45]))
        estimated = yaw is None
        yaw = icept + slope * _nose_offset(gt) if estimated else yaw
        x1, y1, x2, y2 = det.boxes[j]
        agree = np.linalg.norm(five_from_68(pred[0]) - det.landmarks[j], axis=1).mean() / np.sqrt((x2 - x1) * (y2 - y1))
        rows.append((ds, path.name, yaw, estimated, nme, agree))

    print(f"\n{'dataset':9} {'image':45} {'yaw':>6} {'NME':>6} {'5-pt gap':>8}")
    for ds, name, yaw, est, nme, agree in rows:
        print(f"{ds:9} {name[-45:]:45} {yaw:6.1f}{'*' if est else ' '} {nme:6.3f} {agree:8.3f}")
    print("(* yaw estimated from the annotation)")
    for ds in ("AFLW2000", "300W", "300W-LP"):
        for turned in (False, True):
            errs = [r[4] for r in rows if r[0] == ds and (abs(r[2]) > 45) == turned]
            if errs:
                sign = ">" if turned else "<="
                print(f"{ds:9} yaw {sign} 45°: mean NME {np.mean(errs):.3f} over {len(errs)} face(s)")
    frontal = [r[4] for r in rows if abs(r[2]) <= 45]
    print(f"all       yaw <= 45°: mean NME {np.mean(frontal):.3f} over {len(frontal)} face(s)")
    assert len(frontal) >= 12
    assert np.mean(frontal) <= MAX_NME
    for ds in ("AFLW2000", "300W", "300W-LP"):
        errs = [r[4] for r in rows if r[0] == ds and abs(r[2]) <= 45]
        assert errs and np.mean(errs) <= MAX_NME, (ds, errs)
    # the five points read off the 68 agree with the detector's on faces turned at most 45°
    assert max(r[5] for r in rows if abs(r[2]) <= 45) < LANDMARK_AGREEMENT


def test_pfld_handles_no_box_and_faces_cut_by_the_edge(detector_weights):
    model = PfldLandmarks()
    image = np.full((100, 120, 3), 128, np.uint8)
    assert model.predict(image, np.zeros((0, 4), np.float32)).shape == (0, 68, 2)
    out = model.predict(image, np.array([[-30, -20, 60, 90], [50, 40, 110, 100]], np.float32))
    assert out.shape == (2, 68, 2) and np.isfinite(out).all()


def test_five_from_68_uses_eye_centres_nose_tip_and_mouth_corners():
    lm = np.zeros((68, 2), np.float32)
    lm[36:42] = [10, 20]
    lm[42:48] = [30, 20]
    lm[30], lm[48], lm[54] = [20, 30], [12, 40], [28, 40]
    np.testing.assert_array_equal(five_from_68(lm), [[10, 20], [30, 20], [20, 30], [12, 40], [28, 40]])


# -- prepare --------------------------------------------------------------------------------------------

def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _frame_of(rec: dict) -> np.ndarray:
    """The frame a record was cut from, decoded again."""
    src = Path(rec["source"])
    if src.suffix.lower() in (".jpg", ".png"):
        return cv2.cvtColor(cv2.imread(str(src)), cv2.COLOR_BGR2RGB)
    with open_video(src, "uniform=4") as video:
        return next(f.image for f in video if f.index == rec["frame"])


def test_split_is_by_identity_deterministic_and_near_the_fraction():
    ids = [f"person{i}" for i in range(2000)]
    splits = [split_of(i, 0, 0.15) for i in ids]
    assert splits == [split_of(i, 0, 0.15) for i in ids]
    assert 0.12 < splits.count("val") / len(ids) < 0.18
    assert splits != [split_of(i, 1, 0.15) for i in ids]
    assert all(split_of(i, 0, 0.0) == "train" for i in ids[:50])


def test_prepare_real_videos_and_photos_resumes_without_duplicates(detector_weights, shared_dir, tmp_path):
    data = shared_dir / "data"
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in PHOTOS:
        shutil.copy(data / "real_faces" / p, photos / Path(p).name)
    (photos / "broken.mp4").write_text("this is not a video\n")
    videos = [data / "real_videos" / v for v in VIDEOS]
    out = tmp_path / "dataset"
    settings = dict(sample="uniform=4", val_fraction=0.5, workers=1, progress=False)

    # a first run on part of the inputs, then a kill: records of an input written without its done record
    first = prepare([videos[0], photos], out, **settings)
    assert (first.sources, first.processed, first.errors) == (7, 7, 1)
    orphan = dict(_read(out / "index.jsonl")[0], source=str(videos[1]), id="orphan")
    with open(out / "index.jsonl", "a") as f:
        f.write(json.dumps(orphan) + "\n" + '{"id": "torn')

    report = prepare([*videos, photos], out, **settings)
    assert (report.sources, report.skipped, report.processed, report.errors) == (8, 7, 1, 0)
    recs = _read(out / "index.jsonl")
    assert report.index_faces == len(recs) == first.faces + report.faces
    assert len({r["id"] for r in recs}) == len(recs) and "orphan" not in {r["id"] for r in recs}
    assert report.faces == 4 and first.faces == 4 + len(PHOTOS)     # one face in every sampled frame and photo
    assert report.landmark_failures == first.landmark_failures == 0
    assert sum(report.index_by_split.values()) == sum(report.index_by_label.values()) == len(recs)
    assert report.index_by_label == {"real": len(recs)}
    errors = _read(out / "errors.jsonl")
    assert len(errors) == 1 and errors[0]["source"].endswith("broken.mp4") and errors[0]["error"]
    print("\n" + report.summary())

    # splits are by identity; identities are video ids for videos, stems for photos
    split_of_identity: dict[str, set[str]] = {}
    for r in recs:
        split_of_identity.setdefault(r["identity"], set()).add(r["split"])
    assert all(len(s) == 1 for s in split_of_identity.values())
    assert set(report.index_by_split) == {"train", "val"}
    assert {r["identity"] for r in recs} == {"3ddfa/demo_obama__obama", "dagan/assets__driving",
                                             *(Path(p).stem for p in PHOTOS)}

    spec, ctx = CropSpec(), CropSpec().with_context(320)
    detector = RetinaFaceDetector()
    for r in recs:
        assert r["label"] == "real" and r["method"] is None and r["mask"] is None
        assert r["crop_spec"] == spec.to_dict() and r["context_size"] == 320
        crop = cv2.imread(str(out / r["crop"]))
        assert crop.shape == (320, 320, 3)
        lm68, lm5 = np.array(r["landmarks68"]), np.array(r["landmarks5"])
        assert lm68.shape == (68, 2) and lm5.shape == (5, 2)
        assert (lm68 >= 0).all() and (lm68 < 320).all()
        # the face sits where the template puts it, and the 68 points outline it
        np.testing.assert_allclose(lm5, ctx.template_points(), atol=20)
        assert np.linalg.norm(five_from_68(lm68) - lm5, axis=1).mean() < LANDMARK_AGREEMENT * np.ptp(lm68[:, 0])
        assert 0.25 * 320 < np.ptp(lm68[:, 0]) < 0.8 * 320

    # the centre of a stored crop is THE crop of the same frame with the detector's 5 points
    for r in [r for r in recs if r["frame"] == 0][:3] + [r for r in recs if r["frame"] > 0][:2]:
        frame = _frame_of(r)
        det = detector.detect([frame])[0]
        j = int(np.argmin(np.abs(det.boxes - np.array(r["box"])).sum(1)))
        again, _ = crop_face(frame, det.landmarks[j], spec)
        stored = cv2.cvtColor(cv2.imread(str(out / r["crop"])), cv2.COLOR_BGR2RGB)
        diff = np.abs(spec.center_of(stored).astype(int) - again.astype(int))
        # warpAffine rounds source positions to 1/32 px, and the two warps round differently at a
        # handful of pixels: on a sharp edge that moves a value by up to 255/32 = 8 levels
        # (measured here: at most 5, at a few pixels of a 256² crop)
        assert diff.max() <= 8 and diff.mean() < 0.02, (r["id"], diff.max(), diff.mean())

    # a re-run does nothing and changes nothing
    before = {n: (out / n).read_bytes() for n in ("index.jsonl", "errors.jsonl", "done.jsonl")}
    again_report = prepare([*videos, photos], out, **settings)
    assert (again_report.processed, again_report.skipped, again_report.faces) == (0, 8, 0)
    assert before == {n: (out / n).read_bytes() for n in before}

    # the dataset's crop and split settings cannot change under it
    with pytest.raises(ValueError, match="prepared with"):
        prepare([photos], out, seed=1, **settings)


def test_prepare_with_two_worker_processes_gives_the_same_records(detector_weights, shared_dir, tmp_path):
    photos = [shared_dir / "data" / "real_faces" / p for p in PHOTOS[:3]]
    one = prepare(photos, tmp_path / "one", workers=1, progress=False)
    two = prepare(photos, tmp_path / "two", workers=2, progress=False)
    assert one.faces == two.faces == 3
    by_id = lambda d: sorted(_read(d / "index.jsonl"), key=lambda r: r["id"])  # noqa: E731
    assert by_id(tmp_path / "one") == by_id(tmp_path / "two")


def test_prepare_stores_webp_crops_losslessly_in_less_space(detector_weights, shared_dir, tmp_path):
    photos = [shared_dir / "data" / "real_faces" / p for p in PHOTOS]
    prepare(photos, tmp_path / "png", workers=1, progress=False)
    prepare(photos, tmp_path / "webp", workers=1, progress=False, image_format="webp")
    png, webp = (sorted(_read(tmp_path / f / "index.jsonl"), key=lambda r: r["id"]) for f in ("png", "webp"))
    assert len(png) == len(webp) == len(PHOTOS)
    for a, b in zip(png, webp):
        assert b["crop"] == a["crop"][:-len(".png")] + ".webp"
        assert {**b, "crop": a["crop"]} == a
        assert np.array_equal(cv2.imread(str(tmp_path / "png" / a["crop"])), cv2.imread(str(tmp_path / "webp" / b["crop"])))
    size = lambda d, recs: sum((tmp_path / d / r["crop"]).stat().st_size for r in recs)  # noqa: E731
    assert size("webp", webp) < 0.75 * size("png", png)
    # the format is one of the dataset's settings: a folder never mixes them
    with pytest.raises(ValueError, match="prepared with"):
        prepare(photos, tmp_path / "png", workers=1, progress=False, image_format="webp")
    with pytest.raises(ValueError, match="image_format"):
        prepare(photos, tmp_path / "other", workers=1, progress=False, image_format="jpg")


def _write_mask_video(path: Path, like: Path) -> list[int]:
    """A mask video with the frame count, rate and size of `like`: frame i is a flat grey level (the list)."""
    with av.open(str(like)) as src:
        s = src.streams.video[0]
        width, height, rate = s.width, s.height, s.average_rate
        n = sum(1 for _ in src.decode(video=0))
    levels = [10 + 3 * i for i in range(n)]
    assert levels[-1] < 256
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as dst:
        st = dst.add_stream("libx264", rate=rate, options={"crf": "0", "preset": "ultrafast"})
        st.width, st.height, st.pix_fmt = width, height, "yuv420p"
        for i, level in enumerate(levels):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), level, np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1) / rate
            dst.mux(st.encode(frame))
        dst.mux(st.encode(None))
    return levels


@pytest.mark.parametrize("image_format", ["png", "webp"])
def test_prepare_reads_the_faceforensics_layout(detector_weights, shared_dir, tmp_path, image_format):
    clip = shared_dir / "data" / "real_videos" / FFPP_CLIP
    root = tmp_path / "FF++"
    original = root / "original_sequences/youtube/c23/videos/000.mp4"
    fake = root / "manipulated_sequences/Deepfakes/c23/videos/000_003.mp4"
    unmasked = root / "manipulated_sequences/Face2Face/c23/videos/000_003.mp4"
    for p in (original, fake, unmasked):
        p.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, p)
    mask_video = root / "manipulated_sequences/Deepfakes/masks/videos/000_003.mp4"
    levels = _write_mask_video(mask_video, clip)

    srcs = {s.path: s for s in find_sources([root])}
    assert set(srcs) == {original.resolve(), fake.resolve(), unmasked.resolve()}     # masks are no inputs
    assert srcs[fake.resolve()].mask == mask_video.resolve()
    assert srcs[unmasked.resolve()].mask is None and srcs[unmasked.resolve()].original == original.resolve()

    out = tmp_path / "dataset"
    report = prepare([root], out, sample="uniform=2", workers=1, progress=False, image_format=image_format)
    assert (report.sources, report.errors, report.faces) == (3, 0, 6)
    assert report.index_by_label == {"real": 2, "fake": 4}
    recs = _read(out / "index.jsonl")
    assert {r["identity"] for r in recs} == {"ffpp/000"} and len({r["split"] for r in recs}) == 1
    for r in recs:
        assert r["crop"].endswith(f".{image_format}") and (r["mask"] is None or r["mask"] == r["crop"].replace(
            f".{image_format}", f"_mask.{image_format}"))
        if r["source"] == str(original.resolve()):
            assert (r["label"], r["method"], r["mask"]) == ("real", None, None)
        elif r["source"] == str(unmasked.resolve()):
            # no mask video: the SSIM difference against the original, here the very same frames
            assert (r["label"], r["method"]) == ("fake", "Face2Face")
            diff = cv2.imread(str(out / r["mask"]), cv2.IMREAD_GRAYSCALE)
            assert diff.shape == (320, 320) and diff.max() == 0
        else:
            assert (r["label"], r["method"]) == ("fake", "Deepfakes")
            assert r["video"] == "FF++/manipulated_sequences/Deepfakes/c23/videos/000_003"
            mask = cv2.imread(str(out / r["mask"]), cv2.IMREAD_GRAYSCALE)
            assert mask.shape == (320, 320) and mask.dtype == np.uint8
            # cut from the mask frame of the same time, with the face's crop: the frame's grey level
            # inside the frame, black (zero padding) beyond its edge
            level, m = levels[r["frame"]], mask.astype(int)
            assert abs(m[160, 160] - level) <= 2, (r["frame"], m[160, 160], level)
            inside = np.abs(m - level) <= 2
            assert inside.mean() > 0.5 and (inside | (m < level)).all()


def test_cli_prepare_takes_the_model_files_by_path(models_dir, shared_dir, tmp_path, monkeypatch):
    """With no FACEXRAY_MODELS and an empty cache, the weights given on the command line are used."""
    from facexray.cli import main

    monkeypatch.delenv("FACEXRAY_MODELS", raising=False)
    monkeypatch.setenv("FACEXRAY_CACHE", str(tmp_path / "empty_cache"))
    photo = tmp_path / "in" / "face.jpg"
    photo.parent.mkdir()
    shutil.copy(shared_dir / "data" / "real_faces" / PHOTOS[0], photo)
    args = ["prepare", str(photo.parent), "--out", str(tmp_path / "ds"), "--workers", "1", "--quiet"]
    assert main(args) == 2                                    # no weights anywhere: a clear refusal
    weights = ["--detector-weights", str(models_dir / "retinaface_mnet025" / "Retinaface__weights__mobilenet0.25_Final.pth"),
               "--landmark-weights", str(models_dir / "landmark68_cunjian" / "onnx__pfld.onnx")]
    assert main(args + weights) == 0
    assert len(_read(tmp_path / "ds" / "index.jsonl")) == 1
