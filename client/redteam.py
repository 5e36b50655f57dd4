"""Red-team mode (run-config ``attack``, ``attack-sites``): simulated sites that
misbehave, to measure what the server's guard and robust strategies withstand.

Only a simulated node attacks. Flower's simulation gives each virtual node a
node config of exactly ``partition-id`` and ``num-partitions``; a hospital's
SuperNode is started with its own keys (``data-path``, ``site-name``, a policy),
so a run config asking it to attack is refused there with a configuration error,
whoever submitted the run. In simulation the sites with ``partition-id <
attack-sites`` attack:

* ``sign-flip``: sends the global model minus its update;
* ``scale``: sends its update x 100;
* ``noise``: adds Gaussian noise (std 0.1) to every weight;
* ``nan``: sends NaN weights;
* ``label-flip``: trains on flipped labels (data poisoning; classification);
* ``impersonate``: answers under the next site's label.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord

from oncofed.common import keys
from oncofed.common.config import OncoFedConfig
from oncofed.common.errors import ConfigError

SIMULATED_NODE = {"partition-id", "num-partitions"}
SCALE = 100.0
NOISE_STD = 0.1
ARRAY_ATTACKS = ("sign-flip", "scale", "noise", "nan")


def attacks(cfg: OncoFedConfig, node_config: dict) -> str | None:
    """The attack this node carries out, or None; refuses outside simulation."""
    fed = cfg.federation
    if fed.attack == "none":
        return None
    if set(node_config) != SIMULATED_NODE:
        raise ConfigError(
            f"run-config attack = '{fed.attack}' is a simulation-only red-team mode: "
            "this SuperNode is not a simulated node and refuses the run"
        )
    if fed.attack == "label-flip" and cfg.model.task != "classification":
        raise ConfigError("attack 'label-flip' flips class labels: task classification")
    if int(node_config["partition-id"]) >= fed.attack_sites:
        return None
    return fed.attack


def flip_labels(samples: list[dict]) -> list[dict]:
    return [{**s, keys.LABEL: 1.0 - float(s[keys.LABEL])} for s in samples]


def poison(
    kind: str, trained: ArrayRecord, sent: ArrayRecord, seed: int
) -> ArrayRecord:
    """The weights an attacking site sends instead of ``trained``."""
    rng = np.random.default_rng(seed)
    out = ArrayRecord()
    for name, array in trained.items():
        w = np.asarray(array.numpy())
        g = np.asarray(sent[name].numpy())
        if kind == "sign-flip":
            new = g - (w - g)
        elif kind == "scale":
            new = g + SCALE * (w - g)
        elif kind == "noise":
            new = w + rng.normal(0.0, NOISE_STD, w.shape)
        else:  # nan
            new = np.full_like(w, np.nan)
        out[name] = Array(np.asarray(new, dtype=w.dtype))
    return out


def impersonated(node_config: dict, sites: list[str]) -> str:
    """The label of the next simulated site."""
    p = int(node_config["partition-id"])
    return sites[(p + 1) % len(sites)]
