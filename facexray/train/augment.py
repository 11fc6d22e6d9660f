"""Photometric, quality and flip augmentation of training faces, seeded per item.

Colour changes run through albumentations; picture degradations (blur, sharpening,
rescaling, JPEG, H.264) come from `degrade`, the same functions the robustness check
measures with. Every transform keeps each pixel where it is; the horizontal flip is
applied here to the image and its X-ray target together, so the target always matches.
Real and blended faces go through the same draws: a quality change that only one class
saw would become the cue the network learns.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .degrade import DegradeConfig, random_degrade


@lru_cache(maxsize=1)
def _colour_transforms():
    import albumentations as A

    return A.Compose([
        A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.15, p=0.4),
        A.HueSaturationValue(hue_shift_limit=8, sat_shift_limit=15, val_shift_limit=10, p=0.3),
    ])


def augment(image: np.ndarray, target: np.ndarray, rng: np.random.Generator,
            degrade: DegradeConfig = DegradeConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Augment an RGB uint8 face and flip its X-ray target with it; randomness from `rng` only."""
    if rng.random() < 0.5:
        image, target = image[:, ::-1], target[:, ::-1]
    tf = _colour_transforms()
    tf.set_random_seed(int(rng.integers(0, 2**31 - 1)))
    image = tf(image=np.ascontiguousarray(image))["image"]
    return random_degrade(image, rng, degrade), np.ascontiguousarray(target)
