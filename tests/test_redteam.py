"""Red-team mode: simulated sites attack a real Flower simulation; the server's
guard rejects what it must and the run completes. A hospital's SuperNode refuses
the mode."""

from __future__ import annotations

import sqlite3
import subprocess

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord

from oncofed.client import redteam
from oncofed.common.config import from_run_config
from oncofed.common.errors import ConfigError
from tests.conftest import BIN, SMALL_SITES
from tests.test_federation import ROUNDS, _flwr_run, _small_run, _superlink

SIMULATED = {"partition-id": 0, "num-partitions": 3}


def test_only_a_simulated_node_attacks():
    cfg = from_run_config({"attack": "sign-flip", "attack-sites": 1})
    assert redteam.attacks(cfg, SIMULATED) == "sign-flip"
    assert redteam.attacks(cfg, {**SIMULATED, "partition-id": 1}) is None
    for hospital in (
        {"data-path": "/data/site"},
        {"data-path": "/data/site", "site-name": "h1"},
        {**SIMULATED, "data-path": "/data/site"},
    ):
        with pytest.raises(ConfigError, match="simulation-only"):
            redteam.attacks(cfg, hospital)
    with pytest.raises(ConfigError, match="attack-sites"):
        from_run_config({"attack": "nan"})


def test_poisoned_weights_do_what_they_say():
    sent = ArrayRecord({"w": Array(np.zeros(4, np.float32))})
    trained = ArrayRecord({"w": Array(np.full(4, 0.5, np.float32))})
    w = {
        k: redteam.poison(k, trained, sent, 0)["w"].numpy()
        for k in redteam.ARRAY_ATTACKS
    }
    np.testing.assert_allclose(w["sign-flip"], -0.5)
    np.testing.assert_allclose(w["scale"], 50.0)
    assert np.isnan(w["nan"]).all()
    assert not np.allclose(w["noise"], 0.5) and np.abs(w["noise"] - 0.5).max() < 1.0


@pytest.mark.slow
@pytest.mark.parametrize(
    "strategy,attack,reason",
    [("fedavg", "nan", "NaN or Inf"), ("fedmedian", "scale", "update norm")],
)
def test_an_attacking_site_is_rejected_and_the_run_completes(
    processes, small_dataset, tmp_path, strategy, attack, reason
):
    _superlink(processes, simulation=True)
    run_root = tmp_path / "runs"
    log = _flwr_run(
        processes,
        "oncofed-test",
        _small_run(run_root)
        + f" strategy='{strategy}' attack='{attack}' attack-sites=1",
        "--federation-config",
        f"num-supernodes={SMALL_SITES}",
    )
    assert f"OncoFed | round {ROUNDS}/{ROUNDS}" in log, log[-4000:]
    with sqlite3.connect(next(run_root.glob("*/run.sqlite"))) as db:
        status = db.execute("SELECT status FROM runs").fetchone()[0]
        events = db.execute(
            "SELECT round, site, outcome, reason FROM reply_events WHERE phase='train'"
        ).fetchall()
        trained = db.execute(
            "SELECT round, COUNT(DISTINCT site) FROM site_metrics WHERE phase='train' "
            "GROUP BY round"
        ).fetchall()
        auc = db.execute(
            "SELECT value FROM global_metrics WHERE split='val' AND metric='auc' "
            "AND round = ?",
            (ROUNDS,),
        ).fetchone()[0]
    assert status == "finished"
    # the attacker (partition 0) is rejected every round, with the reason
    assert [e[0] for e in events] == list(range(1, ROUNDS + 1)), events
    assert len({e[1] for e in events}) == 1, events
    assert all(e[2] == "rejected" and reason in e[3] for e in events), events
    assert trained == [(r, SMALL_SITES - 1) for r in range(1, ROUNDS + 1)]
    assert auc is not None and np.isfinite(auc)
    # what a user reads: oncofed show lists the rejections with their reason
    shown = subprocess.run(
        [str(BIN / "oncofed"), "show", str(next(run_root.glob("*/run.sqlite")))],
        capture_output=True, text=True,
    )  # fmt: skip
    assert "Replies not taken as sent" in shown.stdout, shown.stdout + shown.stderr
    assert reason in shown.stdout
