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
