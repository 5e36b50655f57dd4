"""The XGBoost clinical baseline, federated by tree bagging.

Each round every site grows one tree on its own training cases, starting from the
global ensemble, and sends only that tree; Flower's ``FedXgbBagging`` appends every
site's tree to the global ensemble (it takes one boosting iteration per site and
round, so one local round is what it expects). Features are the
encoded clinical vector (values and missing indicators, :mod:`common.data.schema`)
followed by the genomic features when the data has them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from oncofed.common.config import ModelConfig
from oncofed.common.keys import CLINICAL, GENOMICS, LABEL, present_key


def features(samples: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) for XGBoost; a case without clinical data has NaN features (XGBoost
    learns a default branch for them)."""
    rows = []
    for s in samples:
        clin = s[CLINICAL].numpy().astype(np.float32)
        if not s[present_key(CLINICAL)]:
            clin = np.full_like(clin, np.nan)
        gen = s[GENOMICS].numpy().astype(np.float32) if GENOMICS in s else np.zeros(0)
        rows.append(np.concatenate([clin, gen]))
    x = np.stack(rows) if rows else np.zeros((0, 0), np.float32)
    y = np.array([s[LABEL] for s in samples], dtype=np.float32)
    return x, y


def params(cfg: ModelConfig, seed: int) -> dict:
    return {
        "objective": "binary:logistic",
        "eval_metric": "auc",
        "eta": cfg.xgb_eta,
        "max_depth": cfg.xgb_max_depth,
        "subsample": 0.8,
        "tree_method": "hist",
        "seed": seed,
        "nthread": 1,
    }


def train_round(
    global_model: bytes, samples: Sequence[dict], cfg: ModelConfig, seed: int
) -> bytes:
    """This site's new trees (a JSON booster holding only them)."""
    import xgboost as xgb

    x, y = features(samples)
    dtrain = xgb.DMatrix(x, label=y)
    p = params(cfg, seed)
    if not global_model:
        bst = xgb.train(p, dtrain, num_boost_round=1)
        return bytes(bst.save_raw("json"))
    bst = xgb.Booster(params=p)
    bst.load_model(bytearray(global_model))
    bst.update(dtrain, bst.num_boosted_rounds())
    n = bst.num_boosted_rounds()
    return bytes(bst[n - 1 : n].save_raw("json"))


def predict(model: bytes, samples: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities); probabilities 0.5 before any tree exists."""
    import xgboost as xgb

    x, y = features(samples)
    if not model or len(y) == 0:
        return y, np.full(len(y), 0.5)
    bst = xgb.Booster()
    bst.load_model(bytearray(model))
    return y, bst.predict(xgb.DMatrix(x)).astype(np.float64)
