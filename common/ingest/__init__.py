"""Offline ingestion: dataset readers and the registry that names them.

Every dataset is a package with the same API (``read`` for ``oncofed prepare``,
and, where a scenario runs offline, an embedded synthetic default). Ingestion turns
source files into the *prepared layout* (:mod:`oncofed.common.data.prepared`) that
run time only opens. It runs from the CLI (``oncofed prepare`` / ``generate``,
``oncofed ablate``) and, for a scenario's embedded default, once in the ServerApp
before round 1 (:func:`ensure_prepared`); never inside a ClientApp.

The synthetic generator is one more entry of this registry, not a special path.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

from oncofed.common.config import DataConfig
from oncofed.common.data.prepared import (
    DATASET_JSON,
    PreparedDataset,
    prepared_root,
)
from oncofed.common.errors import DataError
from oncofed.common.registry import Registry

DEFAULT_VERSION = "default_version"  # dataset.json key: what wrote the default


class Dataset(Protocol):
    """What every dataset package provides."""

    name: str

    def default_version(self, cfg: DataConfig) -> str | None:
        """Version of this dataset's embedded default for ``cfg`` (None: it has
        none, ``data-root`` is required). A cached default of another version is
        made again."""
        ...

    def make_default(self, cfg: DataConfig, out: Path) -> None:
        """Write the embedded default for ``cfg`` as a prepared root ``out``."""
        ...


DATASETS: Registry[Dataset] = Registry("dataset")


def ensure_prepared(cfg: DataConfig) -> PreparedDataset:
    """The run's prepared dataset, making the embedded default if it is missing
    or stale (written under a temporary name and renamed into place). A
    ``data-root`` must already be prepared: run time never prepares a download."""
    root = prepared_root(cfg)
    if cfg.data_root:
        if not (root / DATASET_JSON).is_file():
            raise DataError(
                root,
                "data-root",
                "not a prepared dataset folder (no dataset.json)",
                f"prepare the download first: 'oncofed prepare {cfg.dataset} "
                f"--root {root} --out DIR', then set data-root to DIR",
            )
        return PreparedDataset.open(root)
    dataset = get_dataset(cfg.dataset)
    version = dataset.default_version(cfg)
    if version is None:
        raise DataError(
            f"dataset {cfg.dataset}",
            "data-root",
            "no data root given and this dataset has no embedded default",
            f"set data-root to a folder made by 'oncofed prepare {cfg.dataset}'",
        )
    if _version(root) == version:
        return PreparedDataset.open(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        dataset.make_default(cfg, tmp / "out")
        meta_path = tmp / "out" / DATASET_JSON
        meta = json.loads(meta_path.read_text())
        meta_path.write_text(json.dumps({**meta, DEFAULT_VERSION: version}, indent=2))
        if root.exists():  # stale: another version wrote it
            shutil.move(root, tmp / "stale")
        os.rename(tmp / "out", root)
    except OSError:
        if _version(root) != version:  # not another process winning the race
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return PreparedDataset.open(root)


def _version(root: Path) -> str | None:
    meta = root / DATASET_JSON
    if not meta.is_file():
        return None
    return json.loads(meta.read_text()).get(DEFAULT_VERSION)


def get_dataset(name: str) -> Dataset:
    """The registry entry ``name`` (built-in datasets imported first)."""
    _import_builtin()
    return DATASETS.create(name)


def _import_builtin() -> None:
    # registering is a side effect of importing the dataset packages
    import oncofed.common.ingest.cirrmri600  # noqa: F401
    import oncofed.common.ingest.crc_metastasis  # noqa: F401
    import oncofed.common.ingest.crlm  # noqa: F401
    import oncofed.common.ingest.hcc_tace_seg  # noqa: F401
    import oncofed.common.ingest.lits17  # noqa: F401
    import oncofed.common.ingest.synthetic  # noqa: F401
    import oncofed.common.ingest.tcga_any  # noqa: F401
    import oncofed.common.ingest.tcga_brca_flamby  # noqa: F401
    import oncofed.common.ingest.tcga_coad_read  # noqa: F401
    import oncofed.common.ingest.tcga_lihc  # noqa: F401
