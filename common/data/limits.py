"""Memory caps checked *before* an image is decoded.

A small file can declare a huge image (a 642 KB TIFF declaring 196 megapixels).
Every reader asks for the declared shape and sample size first (NIfTI header,
DICOM Rows x Columns x frames x BitsAllocated, TIFF page shape, Pillow's size) and
refuses with ``ImageTooLarge`` when the decoded array would exceed the cap, so the
case is quarantined instead of the process running out of memory.

``ONCOFED_MAX_IMAGE_BYTES`` sets the cap (default 2 GiB per image; a whole-slide
pyramid level is chosen under ``MAX_PIXELS`` instead, and a slide whose smallest
level is still above the cap is refused).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable

DEFAULT_MAX_IMAGE_BYTES = 2 * 1024**3


class ImageTooLarge(ValueError):
    """An image whose declared size exceeds the cap (the message says both)."""


def max_image_bytes() -> int:
    raw = os.environ.get("ONCOFED_MAX_IMAGE_BYTES", "")
    try:
        value = int(raw) if raw else DEFAULT_MAX_IMAGE_BYTES
    except ValueError:
        return DEFAULT_MAX_IMAGE_BYTES
    return value if value > 0 else DEFAULT_MAX_IMAGE_BYTES


def check_declared(shape: Iterable[int], itemsize: int, what: str) -> None:
    """Raise ``ImageTooLarge`` if ``shape`` x ``itemsize`` bytes exceeds the cap
    (or if the shape is not a list of non-negative integers)."""
    dims = [int(d) for d in shape]
    if any(d < 0 for d in dims) or itemsize <= 0:
        raise ImageTooLarge(f"{what}: declared shape {dims} is not valid")
    size = math.prod(dims) * itemsize
    cap = max_image_bytes()
    if size > cap:
        raise ImageTooLarge(
            f"{what}: declared {dims} x {itemsize} bytes = {size / 1024**2:.0f} MiB "
            f"decoded, above the {cap / 1024**2:.0f} MiB cap (ONCOFED_MAX_IMAGE_BYTES)"
        )


def check_nifti(img: object, what: str) -> None:
    """A nibabel image (header read, data not yet)."""
    header = img.header  # type: ignore[attr-defined]
    check_declared(header.get_data_shape(), header.get_data_dtype().itemsize, what)


def check_dicom(ds: object, what: str) -> None:
    """A pydicom dataset read with or without pixels (declared fields only)."""
    rows = int(getattr(ds, "Rows", 0) or 0)
    cols = int(getattr(ds, "Columns", 0) or 0)
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    bits = int(getattr(ds, "BitsAllocated", 16) or 16)
    check_declared((frames, rows, cols, samples), max(1, bits // 8), what)
