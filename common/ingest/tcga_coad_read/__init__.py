"""``tcga_coad_read``: TCGA colon and rectal adenocarcinoma (clinical, genomics).

Source: a GDC / cBioPortal download folder, as for ``tcga_lihc``; patients of other
projects are quarantined with the reason. Sites: tissue-source sites, grouped by
``--site-map`` when given. Binary label: distant metastasis at diagnosis (M1 or
stage IV = 1; M0 = 0), the question of the colorectal-liver-metastasis scenario;
survival (``time``, ``event``) is kept.
"""

from __future__ import annotations

from oncofed.common.ingest import DATASETS
from oncofed.common.ingest.tcga.reader import TcgaDataset, label_metastatic

NAME = "tcga_coad_read"


@DATASETS.register(NAME)
def _create() -> TcgaDataset:
    return TcgaDataset(NAME, ("TCGA-COAD", "TCGA-READ"), label_metastatic, "TCGA-COAD")
