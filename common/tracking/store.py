"""The run store: one SQLite file per run directory, long-format metrics.

Tables (every metric keyed by run, round and, per site, the site)::

    runs(run_id, name, started_at, finished_at, status, config_json,
         selected_round)
    global_metrics(run_id, round, split, metric, value)     server-side evaluation
                                                 split: 'val' | 'test' |
                                                 'privacy' (dp 'central')
    site_metrics(run_id, round, site, node_id, phase, metric, value)
                                                 phase: 'train' | 'evaluate'
    reply_keys(run_id, round, site, phase, record, kind, key)
                                                 what each site's reply held:
                                                 record names and keys, no values
    reply_events(run_id, round, site, node_id, phase, outcome, reason)
                                                 replies the server did not take
                                                 as sent: outcome 'rejected' (the
                                                 reason says which check),
                                                 'clipped' or 'failed' (an error
                                                 reply: crashed, timed out or
                                                 refused by site policy)
    site_policies(run_id, round, site, node_id, policy_sha256)
                                                 the SHA-256 of each site's policy
                                                 file, when first seen or changed
    resumes(run_id, round, resumed_at, flower_run_id, rows_dropped)
                                                 each time the run was resumed
                                                 (oncofed resume): the last
                                                 complete round it went on from,
                                                 the Flower run that did, and how
                                                 many rows of the interrupted
                                                 round were dropped
    predictions(run_id, round, split, case_index, label, prob)
                                                 the server's own validation and
                                                 test cases (binary tasks): what
                                                 ROC, calibration and confusion
                                                 panels draw; a position in the
                                                 server's split, no identifier,
                                                 never a site's case

The server scores the global model on its validation set after every round
(``split = 'val'``) and picks ``selected_round`` by the validation primary metric;
only then does it score the selected and the last round's model on its test set
(``split = 'test'``, two rounds at most).

``value`` is NULL where a metric is undefined (e.g. AUC on a one-class test split).
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

RUN_STORE = "run.sqlite"
VAL = "val"
TEST = "test"
PRIVACY = "privacy"  # dp 'central': the server's privacy accounting per round

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, name TEXT, started_at REAL, finished_at REAL,
    status TEXT, config_json TEXT, selected_round INTEGER);
CREATE TABLE IF NOT EXISTS global_metrics (
    run_id TEXT, round INTEGER, split TEXT, metric TEXT, value REAL,
    PRIMARY KEY (run_id, round, split, metric));
CREATE TABLE IF NOT EXISTS site_metrics (
    run_id TEXT, round INTEGER, site TEXT, node_id TEXT, phase TEXT, metric TEXT,
    value REAL, PRIMARY KEY (run_id, round, site, phase, metric));
CREATE TABLE IF NOT EXISTS reply_keys (
    run_id TEXT, round INTEGER, site TEXT, phase TEXT, record TEXT, kind TEXT,
    key TEXT, PRIMARY KEY (run_id, round, site, phase, record, key));
CREATE TABLE IF NOT EXISTS reply_events (
    run_id TEXT, round INTEGER, site TEXT, node_id TEXT, phase TEXT, outcome TEXT,
    reason TEXT);
CREATE TABLE IF NOT EXISTS site_policies (
    run_id TEXT, round INTEGER, site TEXT, node_id TEXT, policy_sha256 TEXT);
CREATE TABLE IF NOT EXISTS resumes (
    run_id TEXT, round INTEGER, resumed_at REAL, flower_run_id TEXT,
    rows_dropped INTEGER);
CREATE TABLE IF NOT EXISTS predictions (
    run_id TEXT, round INTEGER, split TEXT, case_index INTEGER, label REAL,
    prob REAL, PRIMARY KEY (run_id, round, split, case_index));
"""


def _clean(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) or math.isinf(v) else v


class RunStore:
    """Append-only writer/reader of ``run.sqlite``; ``readonly=True`` opens an
    existing store read-only (SQLite's ``mode=ro``), as the dashboard and reports
    do while a run may still be writing it."""

    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if readonly:
            if not self.path.is_file():
                raise FileNotFoundError(f"{self.path}: no run store here")
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._conn() as c:
            c.executescript(SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        if self.readonly:
            uri = f"{self.path.resolve().as_uri()}?mode=ro"
            return sqlite3.connect(uri, uri=True, timeout=5)
        return sqlite3.connect(self.path, timeout=30)

    def start_run(self, run_id: str, name: str, config: Mapping[str, Any]) -> None:
        with self._conn() as c:
            c.execute(
                "INSERT OR REPLACE INTO runs VALUES "
                "(?, ?, ?, NULL, 'running', ?, NULL)",
                (run_id, name, time.time(), json.dumps(dict(config), sort_keys=True)),
            )

    def finish_run(self, run_id: str, status: str = "finished") -> None:
        with self._conn() as c:
            c.execute(
                "UPDATE runs SET finished_at = ?, status = ? WHERE run_id = ?",
                (time.time(), status, run_id),
            )

    ROUND_TABLES = (
        "global_metrics",
        "site_metrics",
        "reply_keys",
        "reply_events",
        "site_policies",
        "predictions",
    )

    def rewind(self, run_id: str, rnd: int, flower_run_id: str) -> int:
        """Resume ``run_id`` after round ``rnd``: drop every row of a later
        (interrupted) round and any test score, mark the run running again and
        record the resumption; return the rows dropped."""
        dropped = 0
        with self._conn() as c:
            for table in self.ROUND_TABLES:
                dropped += c.execute(
                    f"DELETE FROM {table} WHERE run_id = ? AND round > ?",  # noqa: S608
                    (run_id, rnd),
                ).rowcount
            for table in ("global_metrics", "predictions"):  # scored at the end only
                dropped += c.execute(
                    f"DELETE FROM {table} WHERE run_id = ? AND split = ?",  # noqa: S608
                    (run_id, TEST),
                ).rowcount
            c.execute(
                "UPDATE runs SET status = 'running', finished_at = NULL, "
                "selected_round = NULL WHERE run_id = ?",
                (run_id,),
            )
            c.execute(
                "INSERT INTO resumes VALUES (?, ?, ?, ?, ?)",
                (run_id, rnd, time.time(), flower_run_id, dropped),
            )
        return dropped

    def resumes(self, run_id: str | None = None) -> pd.DataFrame:
        return self._frame("resumes", run_id)

    def select_round(self, run_id: str, rnd: int) -> None:
        """Record the round whose model validation chose."""
        with self._conn() as c:
            c.execute(
                "UPDATE runs SET selected_round = ? WHERE run_id = ?", (rnd, run_id)
            )

    def selected_round(self, run_id: str) -> int | None:
        with self._conn() as c:
            row = c.execute(
                "SELECT selected_round FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def selected_value(self, metric: str, split: str = "test") -> float:
        """``metric`` on ``split`` at the validation-selected round of the
        store's run (a store holds one run): what benchmarks report."""
        with self._conn() as c:
            (selected,) = c.execute("SELECT selected_round FROM runs").fetchone()
            (value,) = c.execute(
                "SELECT value FROM global_metrics WHERE split = ? AND metric = ? "
                "AND round = ?",
                (split, metric, selected),
            ).fetchone()
        return float(value)

    def log_global(
        self, run_id: str, rnd: int, metrics: Mapping[str, Any], split: str = VAL
    ) -> None:
        """Server-side metrics of round ``rnd``'s global model on ``split``."""
        if split not in (VAL, TEST, PRIVACY):
            raise ValueError(
                f"split must be '{VAL}', '{TEST}' or '{PRIVACY}', not {split!r}"
            )
        with self._conn() as c:
            c.executemany(
                "INSERT OR REPLACE INTO global_metrics VALUES (?, ?, ?, ?, ?)",
                [(run_id, rnd, split, k, _clean(v)) for k, v in metrics.items()],
            )

    def log_site(
        self,
        run_id: str,
        rnd: int,
        site: str,
        node_id: str,
        phase: str,
        metrics: Mapping[str, Any],
    ) -> None:
        with self._conn() as c:
            c.executemany(
                "INSERT OR REPLACE INTO site_metrics VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (run_id, rnd, site, node_id, phase, k, _clean(v))
                    for k, v in metrics.items()
                ],
            )

    def log_reply_keys(
        self,
        run_id: str,
        rnd: int,
        site: str,
        phase: str,
        records: list[tuple[str, str, str]],
    ) -> None:
        """What one site's reply held: (record name, kind, key) triples, where
        kind is 'arrays', 'metrics' or 'config'. Names only, never values: an
        audit of what crossed the wire."""
        with self._conn() as c:
            c.executemany(
                "INSERT OR REPLACE INTO reply_keys VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(run_id, rnd, site, phase, r, kind, k) for r, kind, k in records],
            )

    def log_reply_event(
        self,
        run_id: str,
        rnd: int,
        site: str,
        node_id: str,
        phase: str,
        outcome: str,
        reason: str,
    ) -> None:
        """A reply the server rejected, clipped, or that came back as an error."""
        with self._conn() as c:
            c.execute(
                "INSERT INTO reply_events VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, rnd, site, node_id, phase, outcome, reason),
            )

    def log_site_policy(
        self, run_id: str, rnd: int, site: str, node_id: str, sha256: str
    ) -> None:
        with self._conn() as c:
            c.execute(
                "INSERT INTO site_policies VALUES (?, ?, ?, ?, ?)",
                (run_id, rnd, site, node_id, sha256),
            )

    def site_policies(self, run_id: str | None = None) -> pd.DataFrame:
        return self._frame("site_policies", run_id)

    def reply_events(self, run_id: str | None = None) -> pd.DataFrame:
        return self._frame("reply_events", run_id)

    def log_predictions(
        self, run_id: str, rnd: int, split: str, labels: Any, probs: Any
    ) -> None:
        """The predicted probability of each of the server's own ``split`` cases
        for round ``rnd``'s global model, by position in that split."""
        if split not in (VAL, TEST):
            raise ValueError(f"split must be '{VAL}' or '{TEST}', not {split!r}")
        with self._conn() as c:
            c.executemany(
                "INSERT OR REPLACE INTO predictions VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (run_id, rnd, split, i, _clean(y), _clean(p))
                    for i, (y, p) in enumerate(zip(labels, probs, strict=True))
                ],
            )

    def predictions(self, run_id: str | None = None) -> pd.DataFrame:
        return self._frame("predictions", run_id)

    def reply_keys(self, run_id: str | None = None) -> pd.DataFrame:
        return self._frame("reply_keys", run_id)

    def global_frame(self, run_id: str | None = None) -> pd.DataFrame:
        return self._frame("global_metrics", run_id)

    def site_frame(self, run_id: str | None = None) -> pd.DataFrame:
        return self._frame("site_metrics", run_id)

    def _frame(self, table: str, run_id: str | None) -> pd.DataFrame:
        query = f"SELECT * FROM {table}"
        args: tuple[str, ...] = ()
        if run_id is not None:
            query, args = query + " WHERE run_id = ?", (run_id,)
        with self._conn() as c:
            known = c.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                (table,),
            ).fetchone()
            if not known:  # a store written before this table existed
                return pd.DataFrame()
            return pd.read_sql_query(query + " ORDER BY round", c, params=args)

    def runs(self) -> pd.DataFrame:
        with self._conn() as c:
            return pd.read_sql_query("SELECT * FROM runs ORDER BY started_at", c)
