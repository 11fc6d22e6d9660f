"""The batched tensor crop (GPU path) against THE crop function on real faces."""

import numpy as np
import pytest
import torch

from facexray.faces.crop import CropSpec, crop_face, crop_faces_torch

# Measured on 12 annotated photos and 2 frames of a 1280x720 video (CPU tensors): mean |diff|
# 0.02-0.06 grey levels, max 4 (cv2 interpolates at 1/32-pixel steps, grid_sample does not).
MEAN_TOL, MAX_TOL = 0.5, 8


def _compare(frames: np.ndarray, landmarks: list, frame_of: list, device: str = "cpu") -> tuple[float, int]:
    crops, mats = crop_faces_torch(torch.from_numpy(frames).to(device), landmarks, frame_of)
    assert crops.dtype == torch.uint8 and crops.device.type == torch.device(device).type
    ref = [crop_face(frames[i], lm) for lm, i in zip(landmarks, frame_of)]
    np.testing.assert_allclose(mats, np.stack([m for _, m in ref]))      # the same alignment, not a second one
    diff = np.abs(crops.cpu().numpy().astype(np.int16) - np.stack([c for c, _ in ref]).astype(np.int16))
    return float(diff.mean()), int(diff.max())


@pytest.fixture(scope="module")
def annotated(shared_dir):
    pytest.importorskip("scipy")
    from facexray.faces.annotations import read_annotated_faces
    from facexray.faces.landmarks import five_from_68

    faces = [f for f in read_annotated_faces(shared_dir / "data/real_faces") if len(f.points) == 68]
    if len(faces) < 4:
        pytest.skip("annotated faces not found under shared/data/real_faces")
    picked = faces[:: max(1, len(faces) // 12)][:12]
    return [(f.load_rgb(), five_from_68(f.points)) for f in picked]


def test_tensor_crop_matches_crop_face_on_annotated_photos(annotated):
    means, maxes = [], []
    for image, lm in annotated:
        m, mx = _compare(image[None], [lm], [0])
        means.append(m)
        maxes.append(mx)
    assert max(means) < MEAN_TOL and max(maxes) <= MAX_TOL, (means, maxes)


def test_tensor_crop_many_faces_many_frames_of_a_real_video(shared_dir, detector_weights):
    from facexray.decode import open_video
    from facexray.faces.detect import RetinaFaceDetector

    clip = shared_dir / "data/real_videos/face_recognition/examples__short_hamilton_clip.mp4"
    if not clip.exists():
        clip = sorted((shared_dir / "data/real_videos").glob("*/*.mp4"))[0]
    with open_video(clip, "uniform=3") as r:
        frames = np.stack([f.image for f in r])
    dets = RetinaFaceDetector(engine="torch").detect(list(frames))
    lms = [lm for d in dets for lm in d.landmarks]
    frame_of = [i for i, d in enumerate(dets) for _ in d.landmarks]
    assert len(set(frame_of)) >= 2, "need faces in at least two frames"
    # a face shifted half out of the frame exercises the zero padding on both paths
    lms.append(lms[0] - np.array([lms[0][:, 0].min(), 0.0]))
    frame_of.append(frame_of[0])
    mean, mx = _compare(frames, lms, frame_of)
    assert mean < MEAN_TOL and mx <= MAX_TOL, (mean, mx)


def test_tensor_crop_of_no_face_is_empty():
    crops, mats = crop_faces_torch(torch.zeros((1, 8, 8, 3), dtype=torch.uint8), [], [])
    assert crops.shape == (0, CropSpec().size, CropSpec().size, 3) and mats.shape == (0, 2, 3)


@pytest.mark.gpu
def test_tensor_crop_on_cuda_matches_crop_face(annotated):
    for image, lm in annotated[:4]:
        mean, mx = _compare(image[None], [lm], [0], device="cuda")
        assert mean < MEAN_TOL and mx <= MAX_TOL


def test_pipeline_scores_tensor_frames_like_numpy_frames(shared_dir, detector_weights):
    """Frames holding tensors (the GPU path's) go through the tensor crop and score as numpy frames do."""
    from facexray.contracts import Frame
    from facexray.decode import open_video
    from facexray.engines.xray import load_xray
    from facexray.faces.detect import RetinaFaceDetector
    from facexray.pipeline import Pipeline

    clip = shared_dir / "data/real_videos/face_recognition/examples__short_hamilton_clip.mp4"
    if not clip.exists():
        pytest.skip(f"{clip} not found")
    with open_video(clip, "uniform=2") as r:
        frames = list(r)
    tensors = [Frame(f.source_id, f.index, f.pts, torch.from_numpy(f.image)) for f in frames]
    with Pipeline(RetinaFaceDetector(engine="torch"), load_xray("random", engine="torch")) as pipe:
        ref = list(pipe.score_frames(frames))
        got = list(pipe.score_frames(tensors))
    assert sum(len(r.scores) for r in ref) >= 2
    for a, b in zip(ref, got):
        assert len(a.scores) == len(b.scores)
        for sa, sb in zip(a.scores, b.scores):
            # the tensor path also resizes for the detector with torch: landmarks agree to a pixel or so
            assert np.abs(sa.face.landmarks - sb.face.landmarks).max() < 2.0
            assert abs(sa.prob - sb.prob) < 0.02
            assert np.abs(sa.xray - sb.xray).mean() < 0.02
