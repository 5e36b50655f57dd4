"""The public reference cohort a site (or the server) holds for harmonisation.

With run-config ``harmonise`` set to a method that maps CT to a reference
scanner (``common/ml/harmonise.py``), every site folder, and each of the
server's folders, holds ``reference/``: unlabelled scans of the public reference
cohort (in a real consortium: a public dataset such as LiTS that each hospital
downloads itself), as ``reference/manifest.csv`` (``case_id, ct_path,
mask_path``; paths relative to ``reference/``) with each scan's liver label map.
"""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import torch

from oncofed.common.config import DataConfig
from oncofed.common.data.limits import check_nifti
from oncofed.common.data.rows import read_rows
from oncofed.common.data.transforms import ct_mask_transforms
from oncofed.common.errors import DataError
from oncofed.common.keys import CASE_ID, CT, MASK
from oncofed.common.quarantine import Quarantined

log = logging.getLogger(__name__)

REFERENCE_DIR = "reference"
MAX_REFERENCE_SCANS = 500


def load_reference(
    folder: str | Path, cfg: DataConfig
) -> tuple[list[dict[str, torch.Tensor]], list[Quarantined]]:
    """The reference cohort under ``folder/reference`` on the task's grid, in HU:
    ``[{ct: (1, S, S, D) HU, mask: (1, S, S, D) label map}]``, and the scans set
    aside (a bad scan is quarantined, the rest go on). Raises ``DataError`` when
    there is no cohort or none of it reads."""
    root = Path(folder) / REFERENCE_DIR
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        raise DataError(
            manifest,
            REFERENCE_DIR,
            "no public reference cohort here",
            "harmonise needs reference/manifest.csv (case_id, ct_path, mask_path) "
            "in every site folder: the scenario 'scanner_shift_sites' writes one; "
            "set harmonise = 'none' otherwise",
        )
    rows = read_rows(manifest, ",", CASE_ID)
    bad = [Quarantined(b.key, b.path, f"line {b.line}: {b.reason}") for b in rows.bad]
    pipeline = ct_mask_transforms(cfg, window=False)
    out = []
    for row in rows.rows[:MAX_REFERENCE_SCANS]:
        paths = {
            CT: root / row.get("ct_path", ""),
            MASK: root / row.get("mask_path", ""),
        }
        try:
            for p in paths.values():
                if not p.resolve().is_relative_to(root.resolve()):
                    raise ValueError(f"{p} lies outside {root}")
                check_nifti(nib.load(p), str(p))
            loaded = pipeline({k: str(v) for k, v in paths.items()})
        except Exception as err:  # noqa: BLE001 - a bad scan is set aside
            bad.append(Quarantined(row[CASE_ID], str(paths[CT]), str(err)[:300]))
            continue
        out.append({CT: loaded[CT].float(), MASK: loaded[MASK].round().to(torch.uint8)})
    if bad:
        log.warning("Reference cohort %s: %d scan(s) quarantined", root, len(bad))
    if not out:
        raise DataError(manifest, "ct_path", "no reference scan could be read",
                        "check the cohort's files (quarantined: "
                        f"{'; '.join(q.reason for q in bad[:3])})")  # fmt: skip
    return out, bad
