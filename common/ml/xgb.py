"""The XGBoost clinical baseline, federated by tree bagging.

Each round every site grows one tree on its own training cases, starting from the
global ensemble, and sends only that tree; Flower's ``FedXgbBagging`` appends every
site's tree to the global ensemble (it takes one boosting iteration per site and
round, so one local round is what it expects). Features are the
encoded clinical vector (values and missing indicators, :mod:`common.data.schema`)
followed by the genomic features when the data has them, snapped to a grid agreed
before training (:data:`GRID`), so split thresholds are grid values and never a
patient's own; a tree's per-node gradient and Hessian statistics are zeroed before
it leaves the site (:func:`strip_statistics`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from oncofed.common.config import ModelConfig
from oncofed.common.keys import CLINICAL, GENOMICS, LABEL, present_key

# Split thresholds are agreed before training: every feature is snapped to this
# grid (in the schema's encoded units: numeric columns are (value - ref) / scale,
# so 0.25 of a column's scale, e.g. 3 years of age at scale 12; one-hot values and
# missing indicators are 0 / 1, already on it; genomic features are centred and
# scaled likewise). Trees then split only at grid values, never at a patient's own.
GRID = 0.25
# per-node statistics a tree does not need for prediction, blanked before a tree
# leaves the site (they are gradient and Hessian sums over the site's cases)
PRIVATE_TREE_FIELDS = ("sum_hessian", "loss_changes", "base_weights")


def features(samples: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) for XGBoost, X snapped to :data:`GRID`; a case without clinical data
    has NaN features (XGBoost learns a default branch for them)."""
    rows = []
    for s in samples:
        clin = s[CLINICAL].numpy().astype(np.float32)
        if not s[present_key(CLINICAL)]:
            clin = np.full_like(clin, np.nan)
        gen = s[GENOMICS].numpy().astype(np.float32) if GENOMICS in s else np.zeros(0)
        rows.append(np.concatenate([clin, gen]))
    x = np.stack(rows) if rows else np.zeros((0, 0), np.float32)
    x = (np.round(x / GRID) * GRID).astype(np.float32)  # NaN stays NaN
    y = np.array([s[LABEL] for s in samples], dtype=np.float32)
    return x, y


def strip_statistics(model: bytes) -> bytes:
    """``model`` (a JSON booster) with :data:`PRIVATE_TREE_FIELDS` zeroed in every
    tree: predictions do not use them; they would tell the site's gradient and
    Hessian sums per node."""
    import json

    doc = json.loads(model)
    for tree in doc["learner"]["gradient_booster"]["model"]["trees"]:
        for name in PRIVATE_TREE_FIELDS:
            if name in tree:
                tree[name] = [0.0] * len(tree[name])
    return json.dumps(doc).encode()


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
        return strip_statistics(bytes(bst.save_raw("json")))
    bst = xgb.Booster(params=p)
    bst.load_model(bytearray(global_model))
    bst.update(dtrain, bst.num_boosted_rounds())
    n = bst.num_boosted_rounds()
    return strip_statistics(bytes(bst[n - 1 : n].save_raw("json")))


def predict(model: bytes, samples: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities); probabilities 0.5 before any tree exists."""
    import xgboost as xgb

    x, y = features(samples)
    if not model or len(y) == 0:
        return y, np.full(len(y), 0.5)
    bst = xgb.Booster()
    bst.load_model(bytearray(model))
    return y, bst.predict(xgb.DMatrix(x)).astype(np.float64)
