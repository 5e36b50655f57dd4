"""Synthetic H&E tiles with per-site stain differences, for ``synthetic_multimodal``.

A tile is rendered by the Beer-Lambert law from two stain concentration maps:
haematoxylin (nuclei) and eosin (cytoplasm and stroma), ``RGB = 255 exp(-OD)`` with
``OD = c_H h + c_E e``. Each site has its own stain vectors ``h`` and ``e`` and
staining strength (protocols and scanners differ), which is what Macenko
normalisation removes.

Tumour tiles carry more, larger and more irregular nuclei. A positive case shows
tumour in its biopsy with probability ``HISTO_VISIBLE`` (sampling misses the rest),
drawn independently of the CT findings, so histology adds to CT and clinical data.
Each bag (``BAG_TILES`` tiles) is then Macenko-normalised with one normaliser per
site fitted on the site's training tiles only (:mod:`common.data.histology`) and
saved as ``histology/<case>.npz``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from oncofed.common.data import histology as histo

TILE = 64
BAG_TILES = 8
HISTO_VISIBLE = 0.7
TUMOUR_TILE_SHARE = 0.5
H_BASE = np.array([0.65, 0.70, 0.29])  # Ruifrok & Johnston haematoxylin OD vector
E_BASE = np.array([0.07, 0.99, 0.11])  # eosin


def site_stain(index: int, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The site's stain vectors and strength."""
    rng = np.random.default_rng([seed, index, 77])
    h = np.clip(H_BASE + rng.normal(0, 0.12, 3), 0.05, None)
    e = np.clip(E_BASE + rng.normal(0, 0.12, 3), 0.02, None)
    return h / np.linalg.norm(h), e / np.linalg.norm(e), float(rng.uniform(0.7, 1.4))


def render_tile(
    tumour: bool, stain: tuple[np.ndarray, np.ndarray, float], rng: np.random.Generator
) -> np.ndarray:
    h_vec, e_vec, strength = stain
    yy, xx = np.mgrid[0:TILE, 0:TILE]
    c_h = np.full((TILE, TILE), 0.05)
    n_nuclei = rng.poisson(30 if tumour else 12)
    for _ in range(n_nuclei):
        cy, cx = rng.uniform(0, TILE, 2)
        r = rng.uniform(3.0, 5.0) if tumour else rng.uniform(1.8, 2.8)
        ecc = rng.uniform(0.6, 1.0) if tumour else rng.uniform(0.85, 1.0)
        d = ((yy - cy) / r) ** 2 + ((xx - cx) / (r * ecc)) ** 2
        c_h = np.maximum(c_h, np.where(d <= 1, rng.uniform(0.8, 1.3), 0))
    c_e = 0.45 + 0.15 * rng.standard_normal((TILE, TILE))
    lumen = ((yy - rng.uniform(0, TILE)) ** 2 + (xx - rng.uniform(0, TILE)) ** 2) < (
        rng.uniform(0, 10) ** 2
    )
    c_e[lumen] = 0.02
    od = strength * (c_h[..., None] * h_vec + np.clip(c_e, 0, None)[..., None] * e_vec)
    rgb = 255.0 * np.exp(-od)
    rgb += rng.normal(0, 3, rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def raw_bag(label: int, stain, rng: np.random.Generator) -> list[np.ndarray]:
    visible = label == 1 and rng.random() < HISTO_VISIBLE
    return [
        render_tile(bool(visible and rng.random() < TUMOUR_TILE_SHARE), stain, rng)
        for _ in range(BAG_TILES)
    ]


def add_histology(site_dir: Path, held_out: list[Path], index: int, seed: int) -> None:
    """Render bags for a site's cases (and its cases in the server's ``held_out``
    folders), fit the site's Macenko normaliser on its training bags, write
    normalised bags and the ``histo_path`` manifest column."""
    stain = site_stain(index, seed)
    folders = [site_dir, *held_out]
    bags: dict[Path, dict[str, list[np.ndarray]]] = {}
    frames = {}
    for k, f in enumerate(folders):
        m = pd.read_csv(f / "manifest.csv", dtype=str, keep_default_na=False)
        frames[f] = m
        rng = np.random.default_rng([seed, index, 55, k])
        bags[f] = {
            row.case_id: raw_bag(int(row.label), stain, rng) for row in m.itertuples()
        }
    train = frames[site_dir]
    train_ids = set(train.case_id[train.split == "train"])
    fit_tiles = [t for cid, b in bags[site_dir].items() if cid in train_ids for t in b]
    norm = histo.StainNormaliser.fit(site_dir.name, fit_tiles)
    for f in folders:
        (f / "histology").mkdir(exist_ok=True)
        paths = []
        for cid in frames[f].case_id:
            out = []
            for t in bags[f][cid]:
                try:
                    out.append(norm(t))
                except Exception:  # noqa: BLE001 - keep the raw tile if stainless
                    out.append(t)
            rel = f"histology/{cid}.npz"
            histo.save_bag(out, f / rel)
            paths.append(rel)
        frames[f]["histo_path"] = paths
        frames[f].to_csv(f / "manifest.csv", index=False)
