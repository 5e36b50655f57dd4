"""MICE imputation of clinical features, fitted on one site's training split only.

scikit-learn's ``IterativeImputer`` (multiple imputation by chained equations: each
column with gaps regressed on the others, in rounds) is fitted on the encoded
clinical values of the site's *training* cases and then fills the gaps of every
split of that site. Nothing is fitted on test cases or on another site's data; the
missing-value indicators stay in the feature vector, so the model still knows what
was imputed. A split with no training cases (the server's test set) keeps the
reference fill.
"""

from __future__ import annotations

import numpy as np
import torch

from common.data.clinical import COLUMNS
from common.keys import CLINICAL, present_key

N = len(COLUMNS)


def _matrix(samples: list[dict]) -> np.ndarray:
    """Encoded values with NaN where the indicator says missing."""
    x = np.stack([s[CLINICAL].numpy() for s in samples]).astype(np.float64)
    values, missing = x[:, :N], x[:, N:] > 0.5
    values[missing] = np.nan
    return values


def mice_fill(splits: dict[str, list[dict]], seed: int) -> bool:
    """Fill missing clinical values of every split in place; False if not fitted
    (fewer than 2 training cases with clinical data)."""
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer

    train = [s for s in splits.get("train", []) if s[present_key(CLINICAL)]]
    if len(train) < 2:
        return False
    imputer = IterativeImputer(max_iter=10, random_state=seed, keep_empty_features=True)
    imputer.fit(_matrix(train))
    for samples in splits.values():
        rows = [s for s in samples if s[present_key(CLINICAL)]]
        if not rows:
            continue
        filled = imputer.transform(_matrix(rows))
        for s, f in zip(rows, filled, strict=True):
            vec = s[CLINICAL].clone()
            vec[:N] = torch.from_numpy(f.astype(np.float32))
            s[CLINICAL] = vec
    return True
