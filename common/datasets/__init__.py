"""Dataset registry. Every dataset is a package with the same API.

A dataset entry turns its source files into the *prepared layout* that the training
code reads, whatever the source::

    ROOT/dataset.json              name, site names, how it was made
    ROOT/site-XX/manifest.csv      one row per case: case_id, split, label,
                                   ct_path, mask_path, has_clinical
    ROOT/site-XX/clinical.tsv      one row per patient (empty cell = missing)
    ROOT/server-val/...            the server's validation set (model selection)
    ROOT/server-test/...           the server's held-out test set, same files

The synthetic generator is one more entry of this registry, not a special path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from common.config import DataConfig
from common.errors import DataError
from common.registry import Registry

SERVER_TEST = "server-test"
SERVER_VAL = "server-val"
# the server's held-out folders by manifest split: validation chooses models,
# test scores the chosen ones
SERVER_FOLDERS = {"val": SERVER_VAL, "test": SERVER_TEST}
DATASET_JSON = "dataset.json"


class Dataset(Protocol):
    """What every dataset package provides."""

    name: str

    def ensure(self, cfg: DataConfig) -> Path:
        """Return the prepared root for ``cfg`` (making or checking it as needed)."""
        ...


DATASETS: Registry[Dataset] = Registry("dataset")


@dataclass(frozen=True)
class PreparedDataset:
    """A prepared root: site folders plus the server's test folder."""

    root: Path
    name: str
    sites: tuple[str, ...]

    @classmethod
    def open(cls, root: str | Path) -> PreparedDataset:
        root = Path(root)
        meta_path = root / DATASET_JSON
        if not meta_path.is_file():
            raise DataError(
                root,
                DATASET_JSON,
                "not a prepared dataset folder (no dataset.json)",
                "point data-root at a folder written by the dataset's preparation",
            )
        meta = json.loads(meta_path.read_text())
        return cls(root=root, name=meta["name"], sites=tuple(meta["sites"]))

    def site_dir(self, partition_id: int) -> Path:
        """Folder of the site that simulated node ``partition_id`` plays."""
        if not 0 <= partition_id < len(self.sites):
            raise DataError(
                self.root,
                "partition-id",
                f"partition {partition_id} has no site: this dataset has "
                f"{len(self.sites)} sites",
                "run as many simulated SuperNodes as sites "
                "(flwr run ... --federation-config num-supernodes=N) "
                "or set num-sites",
            )
        return self.root / self.sites[partition_id]

    @property
    def server_test_dir(self) -> Path:
        return self.root / SERVER_TEST

    @property
    def server_val_dir(self) -> Path:
        """The server's validation folder; a folder prepared before validation
        splits existed has none (``DataError`` with the command that makes it)."""
        path = self.root / SERVER_VAL
        if not (path / "manifest.csv").is_file():
            raise DataError(
                self.root,
                SERVER_VAL,
                "no server validation folder: this dataset was prepared before "
                "OncoFed chose models on a validation split",
                "prepare it again with 'oncofed prepare' (or delete the cached "
                "synthetic folder so that it is generated again)",
            )
        return path


def open_dataset(cfg: DataConfig) -> PreparedDataset:
    """Resolve ``cfg.dataset`` through the registry and open its prepared root."""
    return PreparedDataset.open(get_dataset(cfg.dataset).ensure(cfg))


def get_dataset(name: str) -> Dataset:
    """The registry entry ``name`` (built-in datasets imported first)."""
    _import_builtin()
    return DATASETS.create(name)


def _import_builtin() -> None:
    # registering is a side effect of importing the dataset packages
    import common.datasets.cirrmri600  # noqa: F401
    import common.datasets.crc_metastasis  # noqa: F401
    import common.datasets.crlm  # noqa: F401
    import common.datasets.hcc_tace_seg  # noqa: F401
    import common.datasets.lits17  # noqa: F401
    import common.datasets.synthetic  # noqa: F401
    import common.datasets.tcga_any  # noqa: F401
    import common.datasets.tcga_brca_flamby  # noqa: F401
    import common.datasets.tcga_coad_read  # noqa: F401
    import common.datasets.tcga_lihc  # noqa: F401
