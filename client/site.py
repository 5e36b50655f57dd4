"""Which site this node is, and its data, from Flower's node config.

* Deployment: the hospital starts its SuperNode with
  ``--node-config "data-path='/data/oncofed/site'"`` (a prepared site folder).
* Simulation: Flower gives every virtual node ``partition-id``; node ``p`` plays
  site ``p`` of the run's dataset.

A site only opens a prepared folder (``oncofed prepare`` / ``generate`` make them,
the ServerApp makes a scenario's embedded default before round 1); when there is
none the error names the command that makes it.

Loaded data is cached per process: simulation reuses its workers across rounds.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

from oncofed.common.config import DataConfig
from oncofed.common.data.prepared import open_prepared
from oncofed.common.data.site import SiteData, load_site
from oncofed.common.errors import ConfigError

log = logging.getLogger(__name__)

DATA_PATH = "data-path"
PARTITION_ID = "partition-id"


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
    data = load_site(site_dir, cfg, splits=("train", "val"), masks=masks)
    log.info(
        "Site %s: %d train, %d validation cases, %d quarantined",
        data.name,
        len(data.split("train")),
        len(data.split("val")),
        len(data.quarantined),
    )
    return data


def site_data(node_config: dict, cfg: DataConfig, masks: bool = False) -> SiteData:
    return _cached(str(resolve_site_dir(node_config, cfg)), cfg, masks)
