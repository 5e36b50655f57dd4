"""MICE imputation of clinical features, fitted on one site's training split only.

scikit-learn's ``IterativeImputer`` (multiple imputation by chained equations: each
column with gaps regressed on the others, in rounds) is fitted on the encoded
clinical values of the site's *training* cases and then fills the gaps of every
split of that site. Nothing is fitted on validation or test cases or on another
site's data; the missing-value indicators stay in the feature vector, so the model
still knows what was imputed. A split with no training cases (the server's
validation and test sets) keeps the reference fill.

Which positions of the feature vector are numeric values and which are their
missing indicators comes from the folder's schema
(:meth:`common.data.schema.Schema.numeric_slots`), so the same code serves the
fixed HCC encoding and every prepared (schema) dataset. Only numeric values are
imputed; one-hot categories (with their own "missing" slot) are predictors only.
"""

from __future__ import annotations

import numpy as np
import torch

from oncofed.common.data.schema import Schema
from oncofed.common.keys import CLINICAL, present_key


def _matrix(samples: list[dict], slots: list[tuple[int, int]]) -> np.ndarray:
    """The whole encoded vector, with NaN at each value its indicator marks as
    missing."""
    x = np.stack([s[CLINICAL].numpy() for s in samples]).astype(np.float64)
    for value, indicator in slots:
        x[x[:, indicator] > 0.5, value] = np.nan
    return x


def mice_fill(splits: dict[str, list[dict]], seed: int, schema: Schema) -> bool:
    """Fill missing numeric clinical values of every split in place; False if not
    fitted (fewer than 2 training cases with clinical data, or no numeric column)."""
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer

    slots = schema.numeric_slots()
    train = [s for s in splits.get("train", []) if s[present_key(CLINICAL)]]
    if len(train) < 2 or not slots:
        return False
    values = [v for v, _ in slots]
    imputer = IterativeImputer(max_iter=10, random_state=seed, keep_empty_features=True)
    imputer.fit(_matrix(train, slots))
    for samples in splits.values():
        rows = [s for s in samples if s[present_key(CLINICAL)]]
        if not rows:
            continue
        filled = imputer.transform(_matrix(rows, slots))[:, values]
        for s, f in zip(rows, filled, strict=True):
            vec = s[CLINICAL].clone()
            vec[values] = torch.from_numpy(f.astype(np.float32))
            s[CLINICAL] = vec
    return True
