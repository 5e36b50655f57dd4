"""Nothing readable on the wire: small-sample metrics are withheld, and a site's
exception reaches the server as a code and a generic reason only."""

from __future__ import annotations

import shutil
import sqlite3

import pytest

from oncofed.client.app import reportable
from oncofed.common.config import from_run_config
from tests.conftest import SMALL_SITES
from tests.test_federation import _flwr_run, _superlink

CFG = from_run_config({})  # min-report-n 10, min-report-class-n 3


def _cases(pos: int, neg: int, key: str = "label") -> list[dict]:
    return [{key: 1.0, "label": 1.0}] * pos + [{key: 0.0, "label": 0.0}] * neg


def test_metrics_leave_a_site_only_above_both_limits():
    assert reportable(_cases(5, 5), CFG)
    assert not reportable(_cases(4, 5), CFG)  # 9 cases < min-report-n
    assert not reportable(_cases(2, 20), CFG)  # 2 positives < min-report-class-n
    assert not reportable(_cases(0, 30), CFG)  # one class: sensitivity would be NaN
    loose = from_run_config({"min-report-n": 1, "min-report-class-n": 0})
    assert reportable(_cases(0, 1), loose)
    survival = from_run_config({"task": "survival", "modalities": "clinical"})
    events = [{"event": 1.0, "label": 0.0}] * 2 + [{"event": 0.0, "label": 0.0}] * 20
    assert not reportable(events, survival)  # 2 events: too few


@pytest.mark.slow
def test_small_sites_withhold_metrics_and_failures_carry_no_detail(
    processes, small_dataset, tmp_path
):
    """A real simulation: every site's 9-case validation split is withheld (the
    store holds num-examples and the flag only), and a site whose data folder is
    missing under a path with a patient's name fails with a code and a generic
    reason; the name never reaches the server's messages about it."""
    data = tmp_path / "Jane-Doe-19500101" / "prepared"
    shutil.copytree(small_dataset.root, data)
    (data / small_dataset.site_dir(1).name / "manifest.csv").unlink()
    _superlink(processes, simulation=True)
    run_root = tmp_path / "runs"
    log = _flwr_run(
        processes,
        "oncofed-test",
        f"num-server-rounds=2 num-sites={SMALL_SITES} local-epochs=1 "
        f"run-dir='{run_root}' data-root='{data}'",
        "--federation-config",
        f"num-supernodes={SMALL_SITES}",
    )
    assert "OncoFed | round 2/2" in log, log[-4000:]
    # what the server received about the failure (in simulation the sites' own
    # log, with the details, shares this stream; in deployment it stays at the site)
    received = [
        ln
        for ln in log.splitlines()
        if "error in reply from node" in ln or ("Round" in ln and "failed:" in ln)
    ]
    assert received, log[-3000:]
    assert all("site data missing or unusable (reference" in ln for ln in received)
    assert not any("Jane-Doe" in ln for ln in received), received
    assert "suppressed (fewer cases than min-report-n" in log
    with sqlite3.connect(next(run_root.glob("*/run.sqlite"))) as db:
        rows = db.execute(
            "SELECT site, metric, value FROM site_metrics WHERE phase = 'evaluate'"
        ).fetchall()
        sites = {s for s, _, _ in rows}
        assert len(sites) == SMALL_SITES - 1  # the broken site sent nothing
        told = {m for _, m, v in rows if v is not None}
        assert told == {"num-examples", "suppressed"}  # every other value blank
        assert {v for _, m, v in rows if m == "suppressed"} == {1.0}
        assert {"auc", "sensitivity", "loss"} <= {m for _, m, _ in rows}
        trained = {
            m
            for (m,) in db.execute(
                "SELECT DISTINCT metric FROM site_metrics WHERE phase = 'train'"
            )
        }
        assert "auc" in trained  # training splits are large enough to report


def test_site_label_is_opaque_and_checked():
    from oncofed.client.site import site_label
    from oncofed.common.errors import ConfigError

    assert site_label({"site-name": "hospital-a", "data-path": "/x/St-Marys"}, 7) == (
        "hospital-a"
    )
    assert site_label({"partition-id": 3}, 7, "tss-dd") == "tss-dd"  # prepared
    assert site_label({"partition-id": 3}, 7, "bad name!") == "site-03"
    assert site_label({"data-path": "/data/Jane-Doe-ward"}, 12345, "Jane-Doe-ward") == (
        "node-12345"
    )
    for bad in ("", "a b", "x" * 33, "../etc", "name;drop"):
        with pytest.raises(ConfigError, match="site-name"):
            site_label({"site-name": bad}, 1)
