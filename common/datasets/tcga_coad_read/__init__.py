"""``tcga_coad_read``: TCGA colon and rectal adenocarcinoma (clinical, genomics).

Source: a GDC / cBioPortal download folder, as for ``tcga_lihc``; patients of other
projects are quarantined with the reason. Sites: tissue-source sites, grouped by
``--site-map`` when given. Binary label: distant metastasis at diagnosis (M1 or
stage IV = 1; M0 = 0), the question of the colorectal-liver-metastasis scenario;
survival (``time``, ``event``) is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from common.datasets import DATASETS
from common.datasets.prepare import (
    PreparableDataset,
    PrepareOptions,
    ReadResult,
    Staging,
)
from common.datasets.tcga.reader import label_metastatic, read_tcga

NAME = "tcga_coad_read"


class TcgaCoadRead(PreparableDataset):
    name = NAME

    def read(
        self,
        root: Path,
        staging: Staging,
        opts: PrepareOptions,
        progress: Callable[[str], None],
    ) -> ReadResult:
        return read_tcga(
            root, opts, label_metastatic, ("TCGA-COAD", "TCGA-READ"), progress, staging
        )


@DATASETS.register(NAME)
def _create() -> TcgaCoadRead:
    return TcgaCoadRead()
