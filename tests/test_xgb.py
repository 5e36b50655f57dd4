"""The XGBoost clinical baseline: bagging rounds grow the ensemble and it learns."""

from __future__ import annotations

import dataclasses

import pytest

from oncofed.common.config import DataConfig, ModelConfig, from_run_config
from oncofed.common.data.site import load_site
from oncofed.common.errors import ConfigError
from oncofed.common.ml import xgb
from oncofed.common.ml.metrics import binary_metrics


def test_bagging_rounds_grow_one_ensemble_that_learns(small_dataset):
    """Three sites, twelve rounds, aggregated by Flower's own bagging function."""
    import xgboost
    from flwr.serverapp.strategy.strategy_utils import aggregate_bagging

    cfg = dataclasses.replace(ModelConfig(), family="xgboost")
    data = DataConfig(num_sites=len(small_dataset.sites), image_size=16, image_depth=4)
    sites = [load_site(small_dataset.site_dir(i), data) for i in range(3)]
    ensemble = b""
    for rnd in range(12):  # every site trains on the same round-start ensemble
        trees = [xgb.train_round(ensemble, s.split("train"), cfg, rnd) for s in sites]
        for t in trees:
            ensemble = aggregate_bagging(ensemble, t)
    bst = xgboost.Booster()
    bst.load_model(bytearray(ensemble))
    assert bst.num_boosted_rounds() == 12 * 3
    test = load_site(small_dataset.server_test_dir, data, ("test",)).split("test")
    y, p = xgb.predict(ensemble, test)
    assert binary_metrics(y, p)["auc"] > 0.65


def test_xgboost_needs_its_bagging_strategy():
    with pytest.raises(ConfigError, match="fedxgb_bagging"):
        from_run_config({"model-family": "xgboost"})
    with pytest.raises(ConfigError, match="fedxgb_bagging"):
        from_run_config({"strategy": "fedxgb_bagging"})
    ok = from_run_config({"model-family": "xgboost", "strategy": "fedxgb_bagging"})
    assert ok.model.family == "xgboost"


def test_a_sites_tree_carries_no_statistics_and_splits_only_on_the_grid(
    small_dataset,
):
    """What a site sends: split thresholds are grid values agreed before training
    (never a patient's own value), and the per-node gradient / Hessian sums are
    zeroed; predictions are those of the unstripped tree."""
    import json

    import numpy as np

    cfg = dataclasses.replace(ModelConfig(), family="xgboost")
    data = DataConfig(num_sites=len(small_dataset.sites), image_size=16, image_depth=4)
    train = load_site(small_dataset.site_dir(0), data).split("train")
    sent = json.loads(xgb.train_round(b"", train, cfg, seed=1))
    trees = sent["learner"]["gradient_booster"]["model"]["trees"]
    thresholds = []
    for tree in trees:
        for name in xgb.PRIVATE_TREE_FIELDS:
            assert set(tree[name]) == {0.0}, name
        thresholds += [
            c
            for c, left in zip(tree["split_conditions"], tree["left_children"],
                               strict=True)
            if left != -1
        ]  # fmt: skip
    assert thresholds
    steps = np.asarray(thresholds) / xgb.GRID
    assert np.allclose(steps, np.round(steps), atol=1e-4), thresholds
    raw_ages = {float(s["clinical"][0]) for s in train}  # encoded, not snapped
    assert not raw_ages <= {round(a / xgb.GRID) * xgb.GRID for a in raw_ages}
