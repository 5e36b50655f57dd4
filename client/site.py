"""Which site this node is, and its data, from Flower's node config.

* Deployment: the hospital starts its SuperNode with
  ``--node-config "data-path='/data/oncofed/site'"`` (a prepared site folder).
* Simulation: Flower gives every virtual node ``partition-id``; node ``p`` plays
  site ``p`` of the run's dataset.
* The server knows a site only by :func:`site_label` (node config ``site-name``;
  in simulation the prepared site's name), never by a hospital's folder name.

A site only opens a prepared folder (``oncofed prepare`` / ``generate`` make them,
the ServerApp makes a scenario's embedded default before round 1); when there is
none the error names the command that makes it.

Loaded data is cached per process: simulation reuses its workers across rounds.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from pathlib import Path

from oncofed.common.config import DataConfig
from oncofed.common.data.harmonise import reference_samples
from oncofed.common.data.prepared import open_prepared
from oncofed.common.data.site import SiteData, label_subset
from oncofed.common.errors import ConfigError
from oncofed.common.ml.harmonise import load_harmonised

log = logging.getLogger(__name__)

DATA_PATH = "data-path"
PARTITION_ID = "partition-id"
SITE_NAME = "site-name"
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")


def site_label(node_config: dict, node_id: int, prepared_name: str = "") -> str:
    """The name this site is known by at the server: node config ``site-name``
    (letters, digits, ``-``, ``_``; at most 32); in simulation (``partition-id``)
    the site's name in the prepared dataset, which ``oncofed prepare`` wrote
    (``site-03``, ``tss-dd``; ``site-NN`` if it is not such a name); else
    ``node-<Flower node id>``. Never a hospital's own ``data-path`` folder name,
    which may be named after anything."""
    if SITE_NAME in node_config:
        name = str(node_config[SITE_NAME])
        if not _LABEL.match(name):
            raise ConfigError(
                f"node config {SITE_NAME}={name[:40]!r}: use 1-32 letters, digits, "
                "'-' or '_', starting with a letter or digit"
            )
        return name
    if PARTITION_ID in node_config:
        if _LABEL.match(prepared_name):
            return prepared_name
        return f"site-{int(node_config[PARTITION_ID]):02d}"
    return f"node-{node_id}"


def resolve_site_dir(node_config: dict, cfg: DataConfig) -> Path:
    if DATA_PATH in node_config:
        return Path(str(node_config[DATA_PATH])).expanduser()
    if PARTITION_ID in node_config:
        return open_prepared(cfg).site_dir(int(node_config[PARTITION_ID]))
    raise ConfigError(
        "This SuperNode has neither 'data-path' nor 'partition-id' in its node "
        "config. Fix: start it with --node-config \"data-path='/path/to/site'\"."
    )


@lru_cache(maxsize=32)
def _cached(site_dir: str, cfg: DataConfig, masks: bool) -> SiteData:
    # training and validation only: a site's test split is for reports, not runs
    data = load_harmonised(site_dir, cfg, splits=("train", "val"), masks=masks)
    if cfg.label_fraction < 1.0:  # label-efficiency studies: fewer labels
        full = data.split("train")
        data.splits["train"] = label_subset(full, cfg.label_fraction, cfg.seed)
        log.info(
            "Site %s: label-fraction %.2f keeps %d of %d training labels",
            data.name, cfg.label_fraction, len(data.split("train")), len(full),
        )  # fmt: skip
    log.info(
        "Site %s: %d train, %d validation cases, %d quarantined",
        data.name,
        len(data.split("train")),
        len(data.split("val")),
        len(data.quarantined),
    )
    return data


def site_data(node_config: dict, cfg: DataConfig, masks: bool = False) -> SiteData:
    """The site's training and validation splits through its harmoniser."""
    return _cached(str(resolve_site_dir(node_config, cfg)), cfg, masks)


@lru_cache(maxsize=8)
def _reference(site_dir: str, cfg: DataConfig, template_key: str) -> list[dict]:
    data = _cached(site_dir, cfg, False)
    template = next(s for s in data.split("train") if s["case_id"] == template_key)
    return reference_samples(site_dir, cfg, template)


def pretraining_samples(node_config: dict, cfg: DataConfig) -> list[dict]:
    """Task ``pretrain``: every CT the site may learn from without labels: its
    training cases (labels unused) and, where the site holds it, the public
    reference cohort (``reference/``). Validation and test cases are left out:
    they score the restoration."""
    site_dir = str(resolve_site_dir(node_config, cfg))
    train = _cached(site_dir, cfg, False).split("train")
    if not train:
        return []
    return [*train, *_reference(site_dir, cfg, train[0]["case_id"])]
