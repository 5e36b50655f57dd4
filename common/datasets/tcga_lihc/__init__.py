"""``tcga_lihc``: TCGA liver hepatocellular carcinoma (clinical, genomics, survival).

Source: a folder as downloaded from the GDC portal (``clinical.tsv``, either schema)
and/or cBioPortal (``data_clinical_patient.txt`` / ``data_clinical_sample.txt``),
optionally with genomic matrices keyed by TCGA barcode. Sites: tissue-source sites
(``TCGA-DD-...`` -> ``DD``), grouped by ``--site-map`` when given.
Binary label: advanced disease, AJCC stage III-IV (1) vs I-II (0); survival
(``time`` in days, ``event`` = death) is kept for the Cox head.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.datasets import DATASETS
from common.datasets.prepare import (
    PreparableDataset,
    PrepareOptions,
    ReadResult,
    Staging,
)
from common.datasets.synthetic.tcga_export import (
    TCGA_EXPORT_VERSION,
    write_tcga_export,
)
from common.datasets.tcga.reader import label_advanced, read_tcga

NAME = "tcga_lihc"


class TcgaLihc(PreparableDataset):
    name = NAME

    def read(
        self,
        root: Path,
        staging: Staging,
        opts: PrepareOptions,
        progress: Callable[[str], None],
    ) -> ReadResult:
        return read_tcga(root, opts, label_advanced, ("TCGA-LIHC",), progress, staging)

    synthetic_version = TCGA_EXPORT_VERSION

    def synthetic_source(self, out: Path, cfg: Any) -> bool:
        """Offline default: a synthetic GDC export (``common.datasets.synthetic``)."""
        write_tcga_export(out, "TCGA-LIHC", cfg.num_sites, seed=cfg.seed)
        return True


@DATASETS.register(NAME)
def _create() -> TcgaLihc:
    return TcgaLihc()
