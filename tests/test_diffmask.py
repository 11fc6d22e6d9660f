"""SSIM difference masks: the manipulated region of a fake against its original, on real faces."""

import cv2
import numpy as np
import pytest

from facexray.train.diffmask import difference_mask

FACES = ("codeformer_cropped/inputs__cropped_faces__0143.png", "codeformer_cropped/inputs__cropped_faces__0240.png")


def _face(shared_dir, name: str) -> np.ndarray:
    path = shared_dir / "data/real_faces" / name
    if not path.exists():
        pytest.skip(f"{path} not found")
    return cv2.resize(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), (256, 256), interpolation=cv2.INTER_AREA)


def _jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_mask_finds_a_pasted_face_region_and_ignores_recompression(shared_dir):
    target, donor = (_face(shared_dir, n) for n in FACES)
    region = np.zeros((256, 256), np.float32)
    cv2.ellipse(region, (128, 140), (60, 80), 0, 0, 360, 1.0, -1)
    alpha = cv2.GaussianBlur(region, (0, 0), 4)[..., None]
    fake = _jpeg((alpha * donor + (1 - alpha) * target).round().astype(np.uint8), 90)

    mask = difference_mask(fake, target)
    assert mask.dtype == np.float32 and mask.shape == (256, 256) and 0 <= mask.min() and mask.max() <= 1
    hit = mask > 0.5
    iou = (hit & (region > 0)).sum() / (hit | (region > 0)).sum()
    assert iou > 0.7, iou
    assert mask[region == 0].mean() < 0.05

    for q in (75, 95):
        assert difference_mask(_jpeg(target, q), target).mean() < 0.01      # re-encoding is no manipulation


def test_mask_needs_aligned_crops():
    with pytest.raises(ValueError, match="aligned"):
        difference_mask(np.zeros((8, 8, 3), np.uint8), np.zeros((9, 8, 3), np.uint8))
