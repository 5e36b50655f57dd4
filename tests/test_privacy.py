"""Nothing readable on the wire: small-sample metrics are withheld, and a site's
exception reaches the server as a code and a generic reason only."""

from __future__ import annotations

import json
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


# what a reply may hold besides weights: counts and flags...
COUNTS = {"num-examples", "num-quarantined", "suppressed", "unit-weight"}
# ...privacy accounting (computed from the site's size and the run config)...
ACCOUNTING = {
    "dp-epsilon",
    "dp-delta",
    "dp-noise-multiplier",
    "dp-sample-rate",
    "dp-steps",
}
# ...and aggregate metrics, sent only when computed on enough cases
AGGREGATES = {
    "loss",
    "auc",
    "accuracy",
    "f1",
    "sensitivity",
    "specificity",
    "brier",
    "c-index",
    "n-events",
    "dice-liver",
    "dice-liver-global",
    "dice-tumour",
    "dice-tumour-global",
}


@pytest.mark.slow
def test_every_reply_holds_only_weights_counts_and_aggregates(
    processes, small_dataset, tmp_path
):
    """Every record and key of every ClientApp reply, for every task and model
    family (one sweep: classification, survival, segmentation, XGBoost, central
    DP), as the server's reply audit (run store table reply_keys) saw them."""
    from oncofed.common.data.site import load_site
    from oncofed.common.ml.models import build_model

    _superlink(processes, simulation=True)
    run_root = tmp_path / "runs"
    sweep = (
        "modalities=ct,clinical; task=survival modalities=clinical; "
        "task=segmentation modalities=ct; "
        "model-family=xgboost strategy=fedxgb_bagging modalities=clinical; "
        "dp=central dp-clipping=client-fixed"
    )
    log = _flwr_run(
        processes,
        "oncofed-test",
        f"num-server-rounds=1 num-sites={SMALL_SITES} local-epochs=1 "
        f"run-dir='{run_root}' sweep='{sweep}'",
        "--federation-config",
        f"num-supernodes={SMALL_SITES}",
    )
    stores = sorted(run_root.glob("*/run.sqlite"))
    assert len(stores) == 5, log[-4000:]
    cfg_weights = None
    for store in stores:
        with sqlite3.connect(store) as db:
            held = db.execute(
                "SELECT site, phase, record, kind, key FROM reply_keys"
            ).fetchall()
            values = {
                (site, phase, metric): value
                for site, phase, metric, value in db.execute(
                    "SELECT site, phase, metric, value FROM site_metrics"
                )
            }
            (config,) = db.execute("SELECT config_json FROM runs").fetchone()
            accounted = dict(
                db.execute(
                    "SELECT metric, value FROM global_metrics WHERE split = 'privacy'"
                ).fetchall()
            )
        phases = {p for _, p, _, _, _ in held}
        assert phases == {"train", "evaluate"}, (store, log[-6000:])
        assert len({s for s, *_ in held}) == SMALL_SITES, store
        cfg = from_run_config(json.loads(config))
        if cfg.privacy.dp == "central":  # the server accounted its one release
            from oncofed.common.ml.privacy import epsilon_of

            assert accounted["dp-releases"] == 1.0
            assert accounted["dp-epsilon"] == pytest.approx(
                epsilon_of([(1.0, 1.0, 1)], 1e-5, "rdp")
            )
        else:
            assert not accounted
        if cfg.model.family == "neural":
            dims = load_site(small_dataset.site_dir(0), cfg.data).input_dims
            cfg_weights = set(
                build_model(cfg.model, cfg.data.image_depth, dims).state_dict()
            )
        for site, phase, record, kind, key in held:
            where = (store.parent.name, site, phase, record, key)
            if kind == "arrays":
                assert phase == "train" and record == "arrays", where
                if cfg.model.family == "neural":
                    assert key in cfg_weights, where  # a weight of the model
                else:
                    assert key == "0", where  # the site's trees, one byte array
            elif kind == "config":
                assert (record, key) == ("site", "site-id"), where
            else:
                assert record == "metrics", where
                assert key in COUNTS | ACCOUNTING | AGGREGATES, where
                n = values[(site, phase, "num-examples")]
                if key in AGGREGATES and values.get((site, phase, key)) is not None:
                    # an aggregate is only sent over at least min-report-n cases
                    assert n >= cfg.privacy.min_report_n, where
