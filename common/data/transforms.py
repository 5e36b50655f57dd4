"""MONAI dictionary transforms for CT: load, orient, HU window, fixed shape."""

from __future__ import annotations

from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    MapTransform,
    Orientationd,
    Resized,
    ScaleIntensityRanged,
)

from common.config import DataConfig
from common.keys import CT


class RequireVolumed(MapTransform):
    """Reject anything that is not a single-channel 3D volume, naming the shape."""

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            shape = tuple(d[key].shape)
            if len(shape) != 4 or shape[0] != 1 or min(shape[1:]) < 2:
                raise ValueError(
                    f"'{key}' has shape {shape[1:] if len(shape) > 1 else shape} "
                    "after loading; expected one 3D volume (X, Y, Z) with at least "
                    "2 voxels per axis"
                )
        return d


def _load_and_orient(keys: tuple[str, ...]) -> list:
    """Load, channel first, require one 3D volume, reorient to RAS."""
    return [
        LoadImaged(keys=keys, image_only=True),
        EnsureChannelFirstd(keys=keys, channel_dim="no_channel"),
        RequireVolumed(keys=keys),
        Orientationd(
            keys=keys, axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))
        ),
    ]


def _resize(cfg: DataConfig, keys: tuple[str, ...], mode: str) -> list:
    """Resample to the fixed shape, then plain tensors."""
    return [
        Resized(
            keys=keys,
            spatial_size=(cfg.image_size, cfg.image_size, cfg.image_depth),
            mode=mode,
        ),
        EnsureTyped(keys=keys, track_meta=False),
    ]


def ct_transforms(cfg: DataConfig, keys: tuple[str, ...] = (CT,)) -> Compose:
    """Path -> float tensor (1, S, S, D) in [0, 1] over the HU window.

    Loads NIfTI (or anything MONAI reads), reorients to RAS, clips to
    [hu-min, hu-max] and resamples to ``image-size`` x ``image-size`` x
    ``image-depth`` whatever the scanner's spacing.
    """
    window = ScaleIntensityRanged(
        keys=keys, a_min=cfg.hu_min, a_max=cfg.hu_max, b_min=0.0, b_max=1.0, clip=True
    )
    return Compose([*_load_and_orient(keys), window, *_resize(cfg, keys, "trilinear")])


def mask_transforms(cfg: DataConfig, key: str = "mask") -> Compose:
    """Label-map path -> uint8 tensor (1, S, S, D) on the same grid as
    :func:`ct_transforms` gives its CT (same orientation, nearest-neighbour resize)."""
    return Compose([*_load_and_orient((key,)), *_resize(cfg, (key,), "nearest")])
