"""Binary classification metrics, computed with scikit-learn.

A metric that is undefined on the given cases (AUC with one class present,
sensitivity with no positives) is NaN, never a made-up 0 or 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import brier_score_loss, f1_score, roc_auc_score

from common import keys


def binary_metrics(
    y_true: Sequence[float], y_prob: Sequence[float], threshold: float = 0.5
) -> dict[str, float]:
    """AUC, accuracy, F1, sensitivity, specificity and Brier score.

    Parameters
    ----------
    y_true : labels in {0, 1}, shape (N,).
    y_prob : predicted probabilities of class 1, shape (N,).
    threshold : probability at or above which a case is called positive.
    """
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(y_prob, dtype=float)
    if len(y) == 0:
        return {k: math.nan for k in keys.CLASSIFICATION_METRICS}
    pred = (p >= threshold).astype(int)
    pos, neg = y == 1, y == 0
    both = pos.any() and neg.any()
    return {
        keys.AUC: float(roc_auc_score(y, p)) if both else math.nan,
        keys.ACCURACY: float((pred == y).mean()),
        keys.F1: float(f1_score(y, pred, zero_division=0)) if pos.any() else math.nan,
        keys.SENSITIVITY: float(pred[pos].mean()) if pos.any() else math.nan,
        keys.SPECIFICITY: float(1 - pred[neg].mean()) if neg.any() else math.nan,
        keys.BRIER: float(brier_score_loss(y, p)),
    }
