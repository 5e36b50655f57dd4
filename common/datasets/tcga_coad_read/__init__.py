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

    synthetic_version = TCGA_EXPORT_VERSION

    def synthetic_source(self, out: Path, cfg: Any) -> bool:
        """Offline default: a synthetic GDC export (``common.datasets.synthetic``)."""
        write_tcga_export(out, "TCGA-COAD", cfg.num_sites, seed=cfg.seed)
        return True


@DATASETS.register(NAME)
def _create() -> TcgaCoadRead:
    return TcgaCoadRead()
