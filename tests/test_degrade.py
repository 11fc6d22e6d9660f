"""Picture degradations (training augmentation and the robustness check share them)."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from facexray.train.degrade import (
    DEGRADATIONS,
    DegradeConfig,
    gaussian_blur,
    h264,
    jpeg,
    random_degrade,
    rescale,
    small_compressed,
    unsharp,
)


def face(shared_dir: Path | None = None) -> np.ndarray:
    """A real face photo (256², RGB) when ../shared is there, else a synthetic textured picture."""
    if shared_dir is not None:
        img = cv2.imread(str(shared_dir / "data/real_faces/3ddfa_v2/examples__inputs__emma.jpg"))
        if img is not None:
            return cv2.cvtColor(cv2.resize(img, (256, 256), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    rng = np.random.default_rng(0)
    return cv2.GaussianBlur(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8), (0, 0), 2)


def high_freq(img: np.ndarray) -> float:
    """Mean absolute Laplacian of the grey picture: how much fine detail it holds."""
    return float(np.abs(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F)).mean())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / max(np.mean((a.astype(np.float64) - b) ** 2), 1e-12)))


@pytest.fixture(scope="module")
def img(request):
    try:
        shared = request.getfixturevalue("shared_dir")
    except pytest.skip.Exception:
        shared = None
    return face(shared)


def test_every_degradation_keeps_size_and_type_and_changes_the_picture(img):
    for name, fn in DEGRADATIONS.items():
        out = fn(img)
        assert out.shape == img.shape and out.dtype == np.uint8, name
        assert 15 < psnr(out, img) < 60, name          # changed, but still the same picture
        assert np.array_equal(fn(img), out), name       # deterministic


def test_blur_and_rescale_remove_detail_and_sharpening_adds_it(img):
    base = high_freq(img)
    assert high_freq(gaussian_blur(img, 1.5)) < 0.6 * base
    assert high_freq(rescale(img, 0.3)) < 0.6 * base
    assert high_freq(unsharp(img, 1.0, 1.5)) > 1.3 * base


def test_stronger_compression_loses_more(img):
    assert psnr(jpeg(img, 20), img) < psnr(jpeg(img, 90), img) - 3
    assert psnr(h264(img, 40), img) < psnr(h264(img, 20), img) - 3


def test_h264_round_trip_takes_odd_sizes():
    odd = np.random.default_rng(1).integers(0, 256, (67, 45, 3), dtype=np.uint8)
    assert h264(odd, 30).shape == odd.shape


def test_random_degrade_is_seeded_and_follows_its_config(img):
    a = random_degrade(img, np.random.default_rng(7))
    b = random_degrade(img, np.random.default_rng(7))
    assert np.array_equal(a, b)
    never = DegradeConfig(p_blur=0, p_sharpen=0, p_rescale=0, p_jpeg=0, p_h264=0)
    assert np.array_equal(random_degrade(img, np.random.default_rng(3), never), img)
    always_jpeg = DegradeConfig(p_blur=0, p_sharpen=0, p_rescale=0, p_jpeg=1.0, p_h264=0, jpeg_quality=(25, 25))
    assert np.array_equal(random_degrade(img, np.random.default_rng(3), always_jpeg), jpeg(img, 25))
    changed = sum(not np.array_equal(random_degrade(img, np.random.default_rng(s)), img) for s in range(40))
    assert 20 < changed < 40                             # the defaults degrade most items, not all


def grid_steps(img: np.ndarray, period: int, offset: int) -> float:
    """Mean horizontal step between columns `offset` − 1 and `offset` of every `period` columns."""
    g = np.abs(np.diff(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32), axis=1)).mean(0)
    return float(g[offset - 1::period].mean())


def test_a_small_compressed_picture_shows_its_blocks_enlarged(img):
    small = small_compressed(img, 0.5, lambda s: jpeg(s, 10))
    assert small.shape == img.shape and small.dtype == np.uint8
    # JPEG's 8-px blocks blown up ×2 step every 16 columns, not half-way between;
    # compressing after a full-size rescale steps every 8 alike
    assert grid_steps(small, 16, 16) > 1.3 * grid_steps(small, 16, 8)
    after = jpeg(rescale(img, 0.5), 10)
    assert grid_steps(after, 16, 16) < 1.15 * grid_steps(after, 16, 8)
    assert np.array_equal(small_compressed(img, 0.5, lambda s: s), rescale(img, 0.5))


def test_random_degrade_draws_a_small_compressed_picture_when_told(img):
    only_small = DegradeConfig(p_blur=0, p_sharpen=0, p_rescale=0, p_small=1.0, small_factor=(0.4, 0.4),
                               p_jpeg=1.0, p_h264=0, jpeg_quality=(30, 30))
    want = small_compressed(img, 0.4, lambda s: jpeg(s, 30))
    assert np.array_equal(random_degrade(img, np.random.default_rng(5), only_small), want)
    assert DegradeConfig().p_small == 0              # recipes written before it keep their meaning
