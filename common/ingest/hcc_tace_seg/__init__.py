"""``hcc_tace_seg``: TCIA HCC-TACE-Seg (multiphase CT + segmentations + clinical).

Source layout as downloaded from TCIA: DICOM CT series and DICOM-SEG objects in any
folder structure (recognised by content), plus the clinical spreadsheet
(``HCC-TACE-Seg_clinical_data*.xlsx``; recognised as the table whose ID column
matches the DICOM Patient IDs). One series per patient: the one the segmentation
references. Segments named liver -> 1, tumour/mass -> 2.

Label: tumour present in the segmentation; ``--label-column`` takes a clinical
outcome column instead (e.g. a 0/1 response column). Sites: the data come from one
institution, so the site is the scanner (manufacturer + model), a documented proxy.
Identifying columns of the spreadsheet are dropped and IDs pseudonymised.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from oncofed.common.ingest import DATASETS
from oncofed.common.ingest.imaging import (
    build_cases,
    read_clinical_tables,
    read_dicom_images,
    require_found,
)
from oncofed.common.ingest.prepare import (
    PreparableDataset,
    PrepareOptions,
    ReadResult,
    Staging,
    pool_small_sites,
)

NAME = "hcc_tace_seg"


def read_dicom_dataset(
    root: Path,
    staging: Staging,
    opts: PrepareOptions,
    progress: Callable[[str], None],
    what: str,
) -> ReadResult:
    """DICOM CT + SEG + clinical table -> cases (shared with ``crlm``)."""
    images, quarantined, notes = read_dicom_images(
        root, staging, progress, {"CT"}, opts.allow_burned_in
    )
    require_found(
        root,
        len(images) + len(quarantined),
        f"{what} DICOM CT series",
        f"point --root at the {what} download folder",
    )
    clinical, sources, q, n = read_clinical_tables(
        root,
        {im.raw_id for im in images},
        (opts.label_column,) if opts.label_column else (),
    )
    tables = "; ".join(src["file"] for src in sources)
    cases, q2 = build_cases(images, clinical, opts, None, tables)
    notes += n
    if note := pool_small_sites(cases, opts.min_site_cases):
        notes.append(note)
    notes.append(
        "sites are scanners (manufacturer + model): the source does not "
        "record hospitals"
    )
    columns = sorted({k for c in cases if c.clinical for k in c.clinical})
    return ReadResult(
        cases=cases,
        quarantined=quarantined + q + q2,
        sources=sources + [{"file": "(DICOM series)", "role": f"{len(images)} series"}],
        clinical_columns=columns,
        label_columns=[opts.label_column] if opts.label_column else [],
        notes=notes,
    )


class DicomCtDataset(PreparableDataset):
    """A DICOM CT + SEG + spreadsheet dataset (HCC-TACE-Seg, CRLM)."""

    def __init__(self, name: str, what: str) -> None:
        self.name = name
        self.what = what

    def read(
        self,
        root: Path,
        staging: Staging,
        opts: PrepareOptions,
        progress: Callable[[str], None],
    ) -> ReadResult:
        return read_dicom_dataset(root, staging, opts, progress, self.what)


@DATASETS.register(NAME)
def _create() -> DicomCtDataset:
    return DicomCtDataset(NAME, "HCC-TACE-Seg")
