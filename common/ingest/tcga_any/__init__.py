"""``tcga``: any TCGA cohort (GDC / cBioPortal / Biotab download, genomics, slides).

The same readers as ``tcga_lihc`` without a project filter: every patient of every
project in ``--root`` is kept or quarantined with its reason. Sites: tissue-source
sites, grouped by ``--site-map`` when given. Binary label: advanced disease, AJCC
stage III-IV (1) vs 0-II (0); survival (``time``, ``event``) is kept.
"""

from __future__ import annotations

from oncofed.common.ingest import DATASETS
from oncofed.common.ingest.tcga.reader import TcgaDataset, label_advanced

NAME = "tcga"


@DATASETS.register(NAME)
def _create() -> TcgaDataset:
    return TcgaDataset(NAME, (), label_advanced, "TCGA-LIHC")
