"""``crlm``: TCIA Colorectal-Liver-Metastases (CT + DICOM-SEG + clinical table).

Source layout as downloaded from TCIA: per patient a portal-venous CT series and a
DICOM-SEG whose segments include the liver and the tumours, in any folder structure
(recognised by content), plus the clinical spreadsheet (recognised as the table
whose ID column matches the DICOM Patient IDs). Segments named liver -> 1,
tumour / lesion -> 2 (others, e.g. vessels or remnant, are ignored and noted).

Label: tumour present in the segmentation, or ``--label-column`` (e.g. a 0/1
recurrence column). Sites: scanner (manufacturer + model), a documented proxy.
"""

from __future__ import annotations

from oncofed.common.ingest import DATASETS
from oncofed.common.ingest.hcc_tace_seg import DicomCtDataset

NAME = "crlm"


@DATASETS.register(NAME)
def _create() -> DicomCtDataset:
    return DicomCtDataset(NAME, "CRLM")
