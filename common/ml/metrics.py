"""Binary classification metrics (scikit-learn) and survival concordance (lifelines).

A metric that is undefined on the given cases (AUC with one class present,
sensitivity with no positives) is NaN, never a made-up 0 or 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import brier_score_loss, f1_score, roc_auc_score

from oncofed.common import keys


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


def bootstrap_indices(
    n_cases: int, n_resamples: int = 1000, seed: int = 0
) -> np.ndarray:
    """Resampled case indices, shape (n_resamples, n_cases). The same arguments give
    the same indices, so intervals of models scored on one test set are paired."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_cases, size=(n_resamples, n_cases))


def resampled_metrics(
    y_true: np.ndarray, y_prob: np.ndarray, idx: np.ndarray, threshold: float = 0.5
) -> dict[str, np.ndarray]:
    """AUC, F1 and accuracy of every resample ``idx`` (R, N) -> arrays of shape (R,)
    (NaN where a resample lacks a class). Vectorised: AUC by the rank-sum
    (Mann-Whitney) identity, ties averaged, as scikit-learn computes it."""
    from scipy.stats import rankdata

    y = np.asarray(y_true, dtype=int)[idx]
    p = np.asarray(y_prob, dtype=float)[idx]
    pos = y == 1
    n1 = pos.sum(axis=1).astype(float)
    n0 = (~pos).sum(axis=1).astype(float)
    ranks = rankdata(p, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((ranks * pos).sum(axis=1) - n1 * (n1 + 1) / 2) / (n1 * n0)
        pred = p >= threshold
        tp = (pred & pos).sum(axis=1)
        fp = (pred & ~pos).sum(axis=1)
        fn = (~pred & pos).sum(axis=1)
        f1 = np.where(n1 > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), np.nan)
    auc[(n1 == 0) | (n0 == 0)] = np.nan
    return {
        keys.AUC: auc,
        keys.F1: f1.astype(float),
        keys.ACCURACY: (pred == pos).mean(axis=1),
    }


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval, NaN resamples left out."""
    v = values[np.isfinite(values)]
    if len(v) == 0:
        return math.nan, math.nan
    tail = 100 * (1 - level) / 2
    return float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))
