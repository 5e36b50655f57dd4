"""``tcga_lihc``: TCGA liver hepatocellular carcinoma (clinical, genomics, survival).

Source: a folder as downloaded from the GDC portal (``clinical.tsv``, either schema)
and/or cBioPortal (``data_clinical_patient.txt`` / ``data_clinical_sample.txt``),
optionally with genomic matrices keyed by TCGA barcode. Sites: tissue-source sites
(``TCGA-DD-...`` -> ``DD``), grouped by ``--site-map`` when given.
Binary label: advanced disease, AJCC stage III-IV (1) vs I-II (0); survival
(``time`` in days, ``event`` = death) is kept for the Cox head.
"""

from __future__ import annotations

from oncofed.common.ingest import DATASETS
from oncofed.common.ingest.tcga.reader import TcgaDataset, label_advanced

NAME = "tcga_lihc"


@DATASETS.register(NAME)
def _create() -> TcgaDataset:
    return TcgaDataset(NAME, ("TCGA-LIHC",), label_advanced, "TCGA-LIHC")
