"""``tcga``: any TCGA cohort (GDC / cBioPortal / Biotab download, genomics, slides).

The same readers as ``tcga_lihc`` without a project filter: every patient of every
project in ``--root`` is kept or quarantined with its reason. Sites: tissue-source
sites, grouped by ``--site-map`` when given. Binary label: advanced disease, AJCC
stage III-IV (1) vs 0-II (0); survival (``time``, ``event``) is kept.
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

NAME = "tcga"


class TcgaAny(PreparableDataset):
    name = NAME

    def read(
        self,
        root: Path,
        staging: Staging,
        opts: PrepareOptions,
        progress: Callable[[str], None],
    ) -> ReadResult:
        return read_tcga(root, opts, label_advanced, (), progress, staging)

    synthetic_version = TCGA_EXPORT_VERSION

    def synthetic_source(self, out: Path, cfg: Any) -> bool:
        """Offline default: a synthetic GDC export (``common.datasets.synthetic``)."""
        write_tcga_export(out, "TCGA-LIHC", cfg.num_sites, seed=cfg.seed)
        return True


@DATASETS.register(NAME)
def _create() -> TcgaAny:
    return TcgaAny()
