"""What a site keeps between rounds, also on its own disk, so that a resumed run
(``oncofed resume``: a new Flower run, whose site contexts start empty) finds it.

Two things live at a site from round to round: its DP-SGD ledger (``dp =
"sample"``: every step it has taken, which its epsilon is computed from) and its
own normalisation layers (``norm-layers = "local"``, FedBN). After each training
round the ClientApp writes them to::

    <state-dir>/<run>/<site>/round-<r>.pt      (the two newest rounds are kept)

``state-dir`` is node config (default ``$ONCOFED_HOME/site-state``); ``<run>``
is the run's id as the server sends it (``run-lineage``: the same for a run and
its resumptions) and ``<site>`` the site's label. Nothing in it leaves the site.

When a run's context at the site holds neither (its first message), the site
reads them back:

* the ledger from the newest file, whatever its round: a round the interrupted
  run trained and the resumed run trains again counts twice (its update was sent
  both times), so the site's epsilon is never under-counted;
* its FedBN layers from the newest round *before* the one it is asked to train
  (the interrupted round's are not the model the server kept).
"""

from __future__ import annotations

import logging
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord

from oncofed.common.errors import ConfigError, DataError
from oncofed.common.ml.weights import save_atomic
from oncofed.common.paths import oncofed_home

log = logging.getLogger(__name__)

STATE_DIR = "state-dir"  # node config key
KEEP = 2
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,95}$")
_FILE = re.compile(r"^round-(\d{5})\.pt$")


def state_root(node_config: dict) -> Path:
    value = node_config.get(STATE_DIR)
    if value:
        return Path(str(value)).expanduser()
    return oncofed_home() / "site-state"


class SiteState:
    """One site's saved state for one run (``lineage``); a no-op when the
    server sent no lineage."""

    def __init__(self, node_config: dict, lineage: str, site: str) -> None:
        self.folder: Path | None = None
        if not lineage:
            return
        for what, name in (("run-lineage", lineage), ("site label", site)):
            if not _NAME.match(name):
                raise ConfigError(
                    f"{what} {name[:40]!r} is not letters, digits, '-' or '_': "
                    "no state is kept under it"
                )
        self.folder = state_root(node_config) / lineage / site

    def _rounds(self) -> list[tuple[int, Path]]:
        if self.folder is None or not self.folder.is_dir():
            return []
        found = [
            (int(m.group(1)), p)
            for p in self.folder.iterdir()
            if (m := _FILE.match(p.name)) is not None
        ]
        return sorted(found)

    def _read(self, path: Path) -> dict[str, Any]:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
            raise DataError(
                path,
                "contents",
                f"unreadable ({str(err).splitlines()[0][:120]})",
                "delete the file: the site then counts from the newest intact round",
            ) from None
        if not isinstance(state, dict) or not {"ledger", "norms"} <= set(state):
            raise DataError(
                path, "keys", "not a site state file", "delete the file"
            )  # fmt: skip
        return state

    def ledger(self) -> ConfigRecord | None:
        """The newest saved DP-SGD ledger (None: none saved)."""
        for _, path in reversed(self._rounds()):
            ledger = self._read(path)["ledger"]
            if ledger is not None:
                return ConfigRecord(ledger)
        return None

    def norms(self, before_round: int) -> dict[str, ArrayRecord]:
        """The FedBN layers saved after the newest round before
        ``before_round`` (per sweep-entry key), or none."""
        earlier = [p for r, p in self._rounds() if r < before_round]
        if not earlier:
            return {}
        saved = self._read(earlier[-1])["norms"]
        return {key: ArrayRecord(tensors) for key, tensors in saved.items()}

    def save(
        self, rnd: int, ledger: ConfigRecord | None, norms: dict[str, ArrayRecord]
    ) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        state = {
            "ledger": None if ledger is None else dict(ledger),
            "norms": {k: a.to_torch_state_dict() for k, a in norms.items()},
        }
        save_atomic(state, self.folder / f"round-{rnd:05d}.pt")
        for _, old in self._rounds()[:-KEEP]:
            old.unlink(missing_ok=True)
