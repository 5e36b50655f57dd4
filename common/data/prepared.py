"""Opening a *prepared* dataset folder at run time; never making one.

A prepared root (written by ``oncofed prepare`` or ``oncofed generate``, or once by
the ServerApp before round 1 for a scenario's embedded synthetic default) holds::

    ROOT/dataset.json              name, site names, how it was made
    ROOT/site-XX/manifest.csv      one row per case: case_id, split (train / val /
                                   test), label, ct_path, mask_path, has_clinical
    ROOT/site-XX/clinical.tsv      one row per patient (empty cell = missing)
    ROOT/server-val/...            the server's validation set (chooses models)
    ROOT/server-test/...           the server's held-out test set (scores them)

Where the root is follows from the run config alone (:func:`prepared_root`), so a
ClientApp finds it without preparing anything, and says which command makes it when
it is missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from oncofed.common.config import DataConfig
from oncofed.common.errors import DataError
from oncofed.common.paths import data_cache_dir

SERVER_TEST = "server-test"
SERVER_VAL = "server-val"
# the server's held-out folders by manifest split: validation chooses models,
# test scores the chosen ones
SERVER_FOLDERS = {"val": SERVER_VAL, "test": SERVER_TEST}
DATASET_JSON = "dataset.json"
DEFAULTS = "defaults"  # cache folder of the scenarios' embedded synthetic defaults


def prepared_root(cfg: DataConfig) -> Path:
    """The run's prepared root: ``data-root`` (its sub-folder ``data-view`` when
    set), else the cached folder of the dataset's embedded default for this site
    count and seed."""
    if cfg.data_root:
        root = Path(cfg.data_root).expanduser()
        return root / cfg.data_view if cfg.data_view else root
    return (
        data_cache_dir()
        / DEFAULTS
        / f"{cfg.dataset}-sites{cfg.num_sites}-seed{cfg.seed}"
    )


def open_prepared(cfg: DataConfig) -> PreparedDataset:
    """Open the run's prepared dataset; ``DataError`` naming the command that makes
    it when there is none."""
    root = prepared_root(cfg)
    if (root / DATASET_JSON).is_file():
        return PreparedDataset.open(root)
    if cfg.data_root:
        fix = (
            f"prepare the download first: 'oncofed prepare {cfg.dataset} --root "
            f"DOWNLOAD --out DIR', then set data-root to DIR"
        )
    else:
        fix = (
            "the ServerApp writes the embedded default before round 1; to make it "
            f"by hand: 'oncofed generate --dataset {cfg.dataset} --num-sites "
            f"{cfg.num_sites} --seed {cfg.seed}'"
        )
    raise DataError(root, DATASET_JSON, "no prepared dataset here", fix)


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

    def server_dir(self, split: str) -> Path:
        """The server's folder of ``split``: ``val`` or ``test``."""
        return self.server_val_dir if split == "val" else self.server_test_dir

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
