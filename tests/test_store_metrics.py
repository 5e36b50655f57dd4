"""Run store (a real SQLite file) and metric definitions."""

import math
import sqlite3

import pytest

from oncofed.common.ml.metrics import binary_metrics
from oncofed.common.tracking.store import RunStore


def test_run_store_long_format(tmp_path):
    store = RunStore(tmp_path / "run.sqlite")
    store.start_run("r1", "demo", {"num-server-rounds": 2})
    store.log_global("r1", 1, {"auc": 0.8, "accuracy": 0.7})
    store.log_global("r1", 1, {"auc": 0.6}, split="test")
    store.select_round("r1", 1)
    store.log_site(
        "r1", 1, "site-00", "17", "evaluate", {"auc": float("nan"), "num-examples": 9}
    )
    store.finish_run("r1")
    with sqlite3.connect(tmp_path / "run.sqlite") as db:
        # validation (the default) and test rows of one round are kept apart
        assert db.execute(
            "SELECT split, value FROM global_metrics WHERE metric='auc' ORDER BY split"
        ).fetchall() == [("test", 0.6), ("val", 0.8)]
        assert db.execute("SELECT selected_round FROM runs").fetchone() == (1,)
        # undefined metric is stored as NULL, not as a number
        assert db.execute(
            "SELECT value FROM site_metrics WHERE metric='auc' AND site='site-00'"
        ).fetchone() == (None,)
        assert db.execute("SELECT status FROM runs").fetchone() == ("finished",)
    assert store.selected_round("r1") == 1
    with pytest.raises(ValueError, match="split"):
        store.log_global("r1", 2, {"auc": 0.5}, split="train")
    frame = store.site_frame("r1")
    assert set(frame.columns) >= {"run_id", "round", "site", "phase", "metric", "value"}


def test_metrics_known_values():
    m = binary_metrics([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9])
    assert m["auc"] == pytest.approx(0.75)
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["sensitivity"] == pytest.approx(0.5)
    assert m["specificity"] == pytest.approx(0.5)
    assert m["brier"] == pytest.approx((0.01 + 0.36 + 0.36 + 0.01) / 4)


def test_undefined_metrics_are_nan_not_invented():
    m = binary_metrics([0, 0, 0], [0.2, 0.7, 0.1])
    assert math.isnan(m["auc"]) and math.isnan(m["sensitivity"])
    assert m["specificity"] == pytest.approx(2 / 3)


def test_breakdown_per_modality_subset_and_weights():
    import numpy as np

    from oncofed.common.ml.training import Predictions
    from oncofed.server.evaluation import breakdown

    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 10, dtype=float)
    p = np.clip(y * 0.6 + rng.uniform(0, 0.4, 20), 0, 1)
    subsets = ["ct+clinical"] * 12 + ["clinical"] * 6 + ["ct"] * 2
    w = np.tile([[0.7, 0.3]], (20, 1))
    out = breakdown(Predictions(y, p, 0.5, w, subsets, ("ct", "clinical")))
    assert out["n@ct+clinical"] == 12 and out["n@clinical"] == 6
    assert "n@ct" not in out  # fewer than 5 cases: no metric for that subset
    assert out["auc@ct+clinical"] == pytest.approx(
        binary_metrics(y[:12], p[:12])["auc"]
    )
    assert out["auc@clinical"] == pytest.approx(
        binary_metrics(y[12:18], p[12:18])["auc"]
    )
    assert out["weight@ct"] == pytest.approx(0.7)
    assert out["weight@clinical"] == pytest.approx(0.3)
    none = breakdown(Predictions(y, p, 0.5, None, subsets, ("ct", "clinical")))
    assert not any(k.startswith("weight@") for k in none)


def test_selected_value_reads_the_validation_selected_round(tmp_path):
    from oncofed.common.tracking.store import RunStore

    store = RunStore(tmp_path / "run.sqlite")
    store.start_run("r1", "run", {})
    for rnd, auc in ((1, 0.6), (2, 0.7), (3, 0.65)):
        store.log_global("r1", rnd, {"auc": auc}, "test")
    store.select_round("r1", 2)
    assert RunStore(tmp_path / "run.sqlite", readonly=True).selected_value("auc") == 0.7
