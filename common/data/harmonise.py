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


def reference_samples(
    folder: str | Path, cfg: DataConfig, template: dict
) -> list[dict]:
    """The reference cohort under ``folder`` as unlabelled training samples shaped
    like ``template`` (a sample of the site): its CT windowed as the task's
    pipeline does, every other modality absent. An empty list when the folder
    holds no cohort. For self-supervised pretraining (task ``pretrain``), which
    needs no label."""
    from oncofed.common.data.transforms import window_hu
    from oncofed.common.keys import LABEL, MODALITIES, SITE_KEY, present_key

    if not (Path(folder) / REFERENCE_DIR / "manifest.csv").is_file():
        return []
    scans, _ = load_reference(folder, cfg)
    out = []
    for k, scan in enumerate(scans):
        sample = {
            key: (torch.zeros_like(v) if torch.is_tensor(v) else v)
            for key, v in template.items()
        }
        sample.update({CASE_ID: f"reference-{k:03d}", LABEL: float("nan")})
        sample[SITE_KEY] = template.get(SITE_KEY, "")
        for m in MODALITIES:
            if present_key(m) in sample:
                sample[present_key(m)] = _flag(template[present_key(m)], m == CT)
        sample[CT] = window_hu(scan[CT], cfg)
        out.append(sample)
    return out


def _flag(like: object, on: bool) -> object:
    """A presence flag of the same type as ``like`` (float or tensor)."""
    value = 1.0 if on else 0.0
    if torch.is_tensor(like):
        return torch.full_like(like, value)
    return value
