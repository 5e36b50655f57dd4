"""MONAI dictionary transforms for CT: load, orient, HU window, liver crop, resize."""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager

import torch
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    CropForegroundd,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    MapTransform,
    Orientationd,
    Resized,
    ScaleIntensityRanged,
)

from oncofed.common.config import DataConfig
from oncofed.common.keys import CT, MASK

NVIMGCODEC_LOGGER = "monai.data.nvimgcodec_pydicom_plugin"


@contextmanager
def _quiet_gpu_dicom_codec():
    """MONAI's LoadImage builds every reader it knows, its nvImageCodec DICOM reader
    included, and that one warns twice per pipeline where the GPU codec is not
    installed. We load NIfTI (nibabel), so those two messages are silenced here;
    every other warning passes."""
    logger = logging.getLogger(NVIMGCODEC_LOGGER)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="NvImgCodecPydicomReader")
            yield
    finally:
        logger.setLevel(level)


ROI_MARGIN = 2  # voxels of the scan's own grid kept around the liver's bounding box


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
    with _quiet_gpu_dicom_codec():
        load = LoadImaged(keys=keys, image_only=True)
    return [
        load,
        EnsureChannelFirstd(keys=keys, channel_dim="no_channel"),
        RequireVolumed(keys=keys),
        Orientationd(
            keys=keys, axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))
        ),
    ]


class SameGridd(MapTransform):
    """Reject a label map whose grid is not its CT's (the crop and the Dice need
    one voxel grid), naming both shapes."""

    def __call__(self, data):
        d = dict(data)
        image, labels = (tuple(d[k].shape[1:]) for k in self.keys)
        if image != labels:
            raise ValueError(
                f"label map shape {labels} differs from its CT's {image}; "
                "the mask must be on the CT's voxel grid"
            )
        return d


class RequireForegroundd(MapTransform):
    """Reject a label map with no labelled voxel: there is no liver to crop to."""

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            if not bool((d[key] > 0).any()):
                raise ValueError(
                    "label map has no liver voxel (no value > 0), so ct-roi = "
                    "'liver' has nothing to crop to; fix the mask or set "
                    "ct-roi = 'none'"
                )
        return d


def _resize_and_window(
    cfg: DataConfig, keys: tuple[str, ...], mode: str | tuple[str, ...], window: bool
) -> list:
    """Resample to the fixed shape, plain tensors, then (``window``) the CT's HU
    window: last, so that a harmoniser's path (``window=False``, then
    :func:`window_hu`) differs from ``none``'s by its mapping only."""
    return [
        Resized(
            keys=keys,
            spatial_size=(cfg.image_size, cfg.image_size, cfg.image_depth),
            mode=mode,
        ),
        EnsureTyped(keys=keys, track_meta=False),
        *([_window(cfg)] if window else []),
    ]


def _window(cfg: DataConfig) -> ScaleIntensityRanged:
    return ScaleIntensityRanged(
        keys=(CT,), a_min=cfg.hu_min, a_max=cfg.hu_max, b_min=0.0, b_max=1.0, clip=True
    )


def window_hu(ct: torch.Tensor, cfg: DataConfig) -> torch.Tensor:
    """Hounsfield units -> [0, 1] over [hu-min, hu-max], clipped: the pipelines'
    own window (MONAI's), for CT that a harmoniser mapped in HU first."""
    out = _window(cfg)({CT: ct})[CT]
    return out.as_tensor() if isinstance(out, MetaTensor) else torch.as_tensor(out)


def ct_transforms(cfg: DataConfig, window: bool = True) -> Compose:
    """``{ct: path}`` -> float tensor (1, S, S, D) in [0, 1] over the HU window.

    Loads NIfTI (or anything MONAI reads), reorients to RAS, resamples the whole
    field of view to ``image-size`` x ``image-size`` x ``image-depth`` whatever the
    scanner's spacing, then clips to [hu-min, hu-max] and scales to [0, 1]. (With
    ``ct-roi = 'liver'`` CT is read with its label map: :func:`ct_mask_transforms`.)
    ``window=False`` keeps Hounsfield units, for a harmoniser to map first
    (``common/ml/harmonise.py``), which then windows with :func:`window_hu`. The
    window comes last on both paths, so a site that a harmoniser leaves unmapped
    gets exactly what ``harmonise = 'none'`` gives it.
    """
    keys = (CT,)
    return Compose(
        [*_load_and_orient(keys), *_resize_and_window(cfg, keys, "trilinear", window)]
    )


def ct_mask_transforms(cfg: DataConfig, window: bool = True) -> Compose:
    """``{ct: path, mask: path}`` -> the CT as :func:`ct_transforms` gives it and its
    LiTS label map (uint8-valued) on the same output grid.

    The label map must be on the CT's voxel grid. With ``ct-roi = 'liver'`` both are
    first cropped to the bounding box of the labelled voxels (liver and the tumours
    inside it) plus :data:`ROI_MARGIN` voxels, so the liver, not the whole abdomen,
    fills the ``image-size`` x ``image-size`` x ``image-depth`` grid.
    """
    keys = (CT, MASK)
    steps = [
        *_load_and_orient(keys),
        SameGridd(keys),
    ]
    if cfg.ct_roi == "liver":
        steps += [
            RequireForegroundd(keys=(MASK,)),
            CropForegroundd(
                keys=keys,
                source_key=MASK,
                margin=ROI_MARGIN,
                allow_smaller=True,
                start_coord_key=None,
                end_coord_key=None,
            ),
        ]
    modes = ("trilinear", "nearest")
    return Compose([*steps, *_resize_and_window(cfg, keys, modes, window)])
