"""Binary classification metrics (scikit-learn) and survival concordance (lifelines).

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
    y_true: Sequence[float] | np.ndarray,
    y_prob: Sequence[float] | np.ndarray,
    threshold: float = 0.5,
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


def survival_metrics(
    time: Sequence[float] | np.ndarray | None,
    event: Sequence[float] | np.ndarray | None,
    risk: Sequence[float] | np.ndarray | None,
) -> dict[str, float]:
    """Harrell's C-index of ``risk`` (higher = earlier event), by lifelines, over
    the cases with a known time; NaN when no pair is comparable."""
    from lifelines.utils import concordance_index

    if time is None or event is None or risk is None:
        return {keys.C_INDEX: math.nan, keys.N_EVENTS: 0.0}
    t = np.asarray(time, dtype=float)
    e = np.asarray(event, dtype=float)
    r = np.asarray(risk, dtype=float)
    ok = np.isfinite(t) & np.isfinite(e) & np.isfinite(r)
    t, e, r = t[ok], e[ok], r[ok]
    n_events = float(e.sum())
    if len(t) < 2 or n_events == 0:
        return {keys.C_INDEX: math.nan, keys.N_EVENTS: n_events}
    try:
        c = float(concordance_index(t, -r, e))
    except ZeroDivisionError:  # no admissible pair
        c = math.nan
    return {keys.C_INDEX: c, keys.N_EVENTS: n_events}


def primary_metric(task: str) -> str:
    """The metric that picks the best round and heads the logs."""
    if task == "segmentation":
        return "dice-tumour-global"
    return keys.C_INDEX if task == "survival" else keys.AUC
