"""``cirrmri600``: CirrMRI600+ cirrhotic-liver MRI (T1W and T2W) with liver masks.

Source layout as released: one folder per sequence (a ``T1`` or ``T2`` token in its
path, e.g. ``Cirrhosis_T1_3D``), each with split folders (``train``, ``valid``,
``test``) holding ``images/`` and ``masks/`` of NIfTI files that share their names.
A mask is binary (0 background, 1 cirrhotic liver).

Every case is cirrhotic and masks carry no tumour, so the binary label is fixed at 1
(the dataset serves segmentation and self-supervised pretraining; its report says
so); ``--label-column`` can take it from a table instead. The published split is
kept (``valid`` is the validation split). Sites: sequence (T1W / T2W) x
voxel-spacing group.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from oncofed.common.ingest import DATASETS
from oncofed.common.ingest.imaging import (
    NIFTI,
    build_cases,
    nifti_stem,
    read_nifti_pairs,
    require_found,
    spacing_site,
)
from oncofed.common.ingest.prepare import (
    PreparableDataset,
    PrepareOptions,
    ReadResult,
    Staging,
    pool_small_sites,
)
from oncofed.common.quarantine import Quarantined

NAME = "cirrmri600"
_SEQ = re.compile(r"(?<![A-Za-z0-9])T([12])(?:W)?(?![0-9])", re.I)
_MASK_DIR = re.compile(r"mask|label|seg", re.I)


def _sequence(path: Path) -> str | None:
    m = _SEQ.search(path.as_posix())
    return f"T{m.group(1)}W" if m else None


def _split(path: Path) -> str | None:
    parts = {p.lower() for p in path.parts}
    if "test" in parts:
        return "test"
    if parts & {"valid", "val", "validation"}:
        return "val"  # the published validation split chooses models
    if parts & {"train", "training"}:
        return "train"
    return None


class CirrMri600(PreparableDataset):
    name = NAME

    def read(
        self,
        root: Path,
        staging: Staging,
        opts: PrepareOptions,
        progress: Callable[[str], None],
    ) -> ReadResult:
        files = sorted(
            p for p in root.rglob("*") if p.is_file() and NIFTI.search(p.name)
        )
        masks = {
            (_sequence(p), _split(p), nifti_stem(p)): p
            for p in files
            if _MASK_DIR.search(p.parent.name)
        }
        images = [p for p in files if not _MASK_DIR.search(p.parent.name)]
        require_found(
            root,
            len(images),
            "CirrMRI600+ NIfTI images",
            "point --root at the CirrMRI600+ folder (Cirrhosis_T1_3D, ...)",
        )
        quarantined: list[Quarantined] = []
        pairs, seq_of, split_of = [], {}, {}
        for p in images:
            seq = _sequence(p)
            if seq is None:
                quarantined.append(
                    Quarantined(
                        "",
                        str(p),
                        "no T1/T2 token in the path: sequence unknown",
                        "path",
                    )
                )
                continue
            raw = f"{seq}-{nifti_stem(p)}"
            seq_of[raw], split_of[raw] = seq, _split(p)
            pairs.append((raw, p, masks.get((seq, _split(p), nifti_stem(p)))))
        found, q = read_nifti_pairs(
            pairs,
            staging,
            {0, 1},
            progress,
            site_of=lambda raw, zooms: f"{seq_of[raw]}-{spacing_site(zooms)}",
        )
        cases, q2 = build_cases(found, {}, opts, fixed_label=1)
        by_id = {im.case_id: im.raw_id for im in found}
        for c in cases:
            c.split = split_of.get(by_id[c.case_id])
        notes = [n for n in [pool_small_sites(cases, opts.min_site_cases)] if n]
        notes.append(
            "every CirrMRI600+ case is cirrhotic: the label is 1 for all "
            "cases (segmentation / pretraining data)"
        )
        return ReadResult(
            cases=cases,
            quarantined=quarantined + q + q2,
            sources=[{"file": str(p), "role": "image"} for p in images],
            notes=notes,
        )


@DATASETS.register(NAME)
def _create() -> CirrMri600:
    return CirrMri600()
