"""Photometric and flip augmentation of training faces (albumentations), seeded per item.

Only transforms that keep every pixel where it is (JPEG re-compression, down-and-up
scaling, colour) run through albumentations; the horizontal flip is applied here to
the image and its X-ray target together, so the target always matches the pixels.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=1)
def _pixel_transforms():
    import albumentations as A

    return A.Compose([
        A.ImageCompression(quality_range=(40, 100), p=0.5),
        A.Downscale(scale_range=(0.5, 0.9), p=0.2),
        A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.15, p=0.4),
        A.HueSaturationValue(hue_shift_limit=8, sat_shift_limit=15, val_shift_limit=10, p=0.3),
        A.GaussianBlur(blur_limit=(3, 5), p=0.1),
    ])


def augment(image: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Augment an RGB uint8 face and flip its X-ray target with it; randomness from `rng` only."""
    if rng.random() < 0.5:
        image, target = image[:, ::-1], target[:, ::-1]
    tf = _pixel_transforms()
    tf.set_random_seed(int(rng.integers(0, 2**31 - 1)))
    return tf(image=np.ascontiguousarray(image))["image"], np.ascontiguousarray(target)
