"""Training-time augmentation (MONAI random dictionary transforms, seeded).

Intensity scale/shift and noise mimic scanner differences between sites; flips
along the cranio-caudal axis add anatomical variety. Only ``ct`` is touched.
"""

from __future__ import annotations

from monai.transforms import (
    Compose,
    RandFlipd,
    RandGaussianNoised,
    RandScaleIntensityd,
    RandShiftIntensityd,
    ToTensord,
)

from oncofed.common.keys import CT


def train_augmentation(seed: int) -> Compose:
    aug = Compose(
        [
            RandFlipd(keys=CT, prob=0.5, spatial_axis=2),
            RandScaleIntensityd(keys=CT, factors=0.1, prob=0.8),
            RandShiftIntensityd(keys=CT, offsets=0.05, prob=0.8),
            RandGaussianNoised(keys=CT, prob=0.3, std=0.02),
            # back to a plain tensor: MetaTensor bookkeeping in every model
            # operation costs about 20 % of a CPU epoch
            ToTensord(keys=CT, track_meta=False),
        ]
    )
    aug.set_random_state(seed=seed % 2**32)
    return aug
