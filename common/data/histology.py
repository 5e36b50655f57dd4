"""Histopathology: tiles and whole-slide images -> stain-normalised per-patient bags.

* Tiles (jpg, png, tif) are read with Pillow (tifffile for TIFFs Pillow cannot
  read) and cut or padded to ``tile`` x ``tile``.
* Whole-slide images (Aperio SVS and pyramidal TIFF) are read with tifffile
  (OpenSlide is not needed): the finest pyramid level with at most ``max_pixels``
  pixels is tiled on a grid.
* Tissue detection keeps a tile when at least ``min_tissue`` of its pixels are
  tissue: saturation above 0.07 and not near-white (mean RGB < 220). This two-line
  rule is written here (no library needed for it); background glass has low
  saturation and high brightness on H&E.
* Macenko stain normalisation (torchstain): one normaliser per site, fitted on a
  mosaic of that site's *training* tiles only, applied to every tile of the site.
  A tile the normaliser cannot handle (too little stain) is dropped and counted.
* A bag is saved as ``.npz`` holding ``tiles`` (N, 3, tile, tile) uint8.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from oncofed.common.data.limits import ImageTooLarge, check_declared

TILE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff"}
SLIDE_SUFFIXES = {".svs"}
TILE = 224
MAX_PIXELS = 40_000_000
MAX_TILES_PER_SLIDE = 64


def tissue_fraction(rgb: np.ndarray) -> float:
    """Share of tissue pixels in an RGB uint8 image (see module docstring)."""
    x = rgb.astype(np.float32) / 255.0
    mx, mn = x.max(axis=-1), x.min(axis=-1)
    saturation = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-6), 0.0)
    tissue = (saturation > 0.07) & (rgb.mean(axis=-1) < 220)
    return float(tissue.mean())


def read_tile(path: Path, tile: int = TILE) -> np.ndarray:
    """An RGB uint8 tile, centre-cropped or padded (white) to ``tile`` x ``tile``."""
    try:
        from PIL import Image

        with Image.open(path) as im:  # reads the header only
            check_declared((im.height, im.width, 3), 1, str(path))
            rgb = np.asarray(im.convert("RGB"))
    except ImageTooLarge:
        raise
    except Exception:  # noqa: BLE001 - Pillow cannot read some TIFFs
        import tifffile

        with tifffile.TiffFile(path) as tf:
            page = tf.pages[0]
            check_declared(page.shape, page.dtype.itemsize, str(path))  # type: ignore[union-attr]
            rgb = np.asarray(page.asarray())[..., :3]  # type: ignore[union-attr]
    return _fit(rgb, tile)


def _fit(rgb: np.ndarray, tile: int) -> np.ndarray:
    out = np.full((tile, tile, 3), 255, np.uint8)
    h, w = rgb.shape[:2]
    y0, x0 = max(0, (h - tile) // 2), max(0, (w - tile) // 2)
    crop = rgb[y0 : y0 + tile, x0 : x0 + tile, :3]
    out[: crop.shape[0], : crop.shape[1]] = crop
    return out


def tile_slide(
    path: Path,
    tile: int = TILE,
    min_tissue: float = 0.5,
    max_pixels: int = MAX_PIXELS,
    max_tiles: int = MAX_TILES_PER_SLIDE,
) -> np.ndarray:
    """Tissue tiles (N, tile, tile, 3) of a whole-slide image, in reading order."""
    import tifffile

    with tifffile.TiffFile(path) as tf:
        series = tf.series[0]
        levels = list(series.levels) if series.levels else [series]
        level = next((lv for lv in levels if np.prod(lv.shape[:2]) <= max_pixels), None)
        if level is None:  # never fall back to a level above the cap
            smallest = min(levels, key=lambda lv: np.prod(lv.shape[:2]))
            raise ImageTooLarge(
                f"{path}: the smallest pyramid level has "
                f"{int(np.prod(smallest.shape[:2]))} pixels, above the "
                f"{max_pixels} a slide level may have"
            )
        check_declared(level.shape, level.dtype.itemsize, str(path))
        image = np.asarray(level.asarray())[..., :3]
    tiles = []
    for y in range(0, image.shape[0] - tile + 1, tile):
        for x in range(0, image.shape[1] - tile + 1, tile):
            t = image[y : y + tile, x : x + tile]
            if tissue_fraction(t) >= min_tissue:
                tiles.append(np.ascontiguousarray(t))
    if len(tiles) > max_tiles:  # evenly spaced over the slide, deterministic
        idx = np.linspace(0, len(tiles) - 1, max_tiles).round().astype(int)
        tiles = [tiles[i] for i in idx]
    return np.stack(tiles) if tiles else np.zeros((0, tile, tile, 3), np.uint8)


@dataclass
class StainNormaliser:
    """Macenko normaliser of one site (torchstain, numpy backend)."""

    site: str
    normaliser: object

    @classmethod
    def fit(cls, site: str, tiles: list[np.ndarray]) -> StainNormaliser:
        """Fit on a mosaic of (up to 16) of the site's training tiles."""
        import torchstain

        if not tiles:
            raise ValueError(f"site {site}: no training tile to fit the stain on")
        pick = tiles[:: max(1, len(tiles) // 16)][:16]
        side = int(np.ceil(np.sqrt(len(pick))))
        t = pick[0].shape[0]
        mosaic = np.full((side * t, side * t, 3), 255, np.uint8)
        for i, tl in enumerate(pick):
            r, c = divmod(i, side)
            mosaic[r * t : (r + 1) * t, c * t : (c + 1) * t] = tl
        norm = torchstain.normalizers.MacenkoNormalizer(backend="numpy")
        norm.fit(mosaic)
        return cls(site, norm)

    def __call__(self, tile: np.ndarray) -> np.ndarray:
        out, _, _ = self.normaliser.normalize(I=tile, stains=False)  # type: ignore[attr-defined]
        return np.clip(out, 0, 255).astype(np.uint8)


def save_bag(tiles: list[np.ndarray], path: Path) -> None:
    arr = np.stack(tiles).transpose(0, 3, 1, 2) if tiles else np.zeros((0, 3, 1, 1))
    np.savez_compressed(path, tiles=arr.astype(np.uint8))


def load_bag(path: Path) -> np.ndarray:
    with np.load(path) as z:
        return z["tiles"]


def bag_tensor(tiles: np.ndarray, bag_size: int, tile_size: int):
    """A fixed-size bag (bag_size, 3, tile_size, tile_size) uint8 tensor: tiles
    evenly spaced over the bag (repeated when the bag is smaller), resized."""
    import torch
    import torch.nn.functional as F

    if len(tiles) == 0:
        raise ValueError("empty bag")
    idx = np.linspace(0, len(tiles) - 1, bag_size).round().astype(int)
    x = torch.from_numpy(np.ascontiguousarray(tiles[idx])).float()
    if x.shape[-1] != tile_size:
        x = F.interpolate(x, size=(tile_size, tile_size), mode="area")
    return x.round().clamp(0, 255).to(torch.uint8)
