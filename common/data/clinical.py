"""Clinical (EHR) features: validation and encoding into a fixed-length vector.

Encoding uses fixed clinical reference values (not statistics of the data), so it
needs no fitting and cannot leak anything across sites or into test data. Each
column contributes its standardised value (0 when missing) and a missing-indicator.
With run-config ``imputation = "mice"``, :mod:`common.data.impute` replaces the zero
fill by MICE fitted on each site's training split.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Column:
    """One clinical column: its name, unit and how to standardise it."""

    name: str
    encode: Callable[[float], float]
    lo: float  # plausible physiological range; outside it the value is rejected
    hi: float


def _log(ref: float, scale: float) -> Callable[[float], float]:
    return lambda v: (math.log(max(v, 1e-3)) - math.log(ref)) / scale


def _lin(ref: float, scale: float) -> Callable[[float], float]:
    return lambda v: (v - ref) / scale


COLUMNS: tuple[Column, ...] = (
    Column("age", _lin(60, 12), 0, 120),
    Column("sex", lambda v: v, 0, 1),  # 1 male, 0 female
    Column("afp_ng_ml", lambda v: (math.log10(v + 1) - 1.0) / 0.8, 0, 1e7),
    Column("alt_u_l", _log(30, 0.5), 0, 1e4),
    Column("ast_u_l", _log(30, 0.5), 0, 1e4),
    Column("albumin_g_dl", _lin(3.8, 0.5), 0.5, 7),
    Column("bilirubin_mg_dl", _log(0.9, 0.6), 0, 60),
    Column("platelets_10e9_l", _lin(200, 70), 0, 2000),
    Column("inr", _lin(1.1, 0.15), 0.5, 10),
    Column("hbv", lambda v: v, 0, 1),
    Column("hcv", lambda v: v, 0, 1),
    Column("cirrhosis", lambda v: v, 0, 1),
)
NUM_FEATURES = 2 * len(COLUMNS)  # value + missing indicator per column

_SEX = {"m": 1.0, "male": 1.0, "f": 0.0, "female": 0.0}
_BOOL = {"yes": 1.0, "no": 0.0, "true": 1.0, "false": 0.0, "y": 1.0, "n": 0.0}


class ClinicalValueError(ValueError):
    """A clinical cell that is present but unusable; ``column`` names it."""

    def __init__(self, column: str, value: object, why: str) -> None:
        self.column = column
        super().__init__(f"column '{column}' = {value!r}: {why}")


def _parse(col: Column, raw: object) -> float | None:
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return None
    if isinstance(raw, str):
        text = raw.strip().lower()
        if text in ("", "na", "nan", "'--", "--", "not reported", "unknown"):
            return None
        if col.name == "sex" and text in _SEX:
            return _SEX[text]
        if text in _BOOL:
            return _BOOL[text]
        try:
            value = float(text)
        except ValueError:
            raise ClinicalValueError(col.name, raw, "not a number") from None
    else:
        value = float(raw)  # type: ignore[arg-type]
    if not math.isfinite(value) or not col.lo <= value <= col.hi:
        raise ClinicalValueError(
            col.name, raw, f"outside the plausible range {col.lo}..{col.hi}"
        )
    return value


def encode_row(row: dict[str, object]) -> np.ndarray:
    """Encode one patient's row into ``NUM_FEATURES`` float32 values.

    Raises
    ------
    ClinicalValueError
        For a present but non-numeric or implausible value (names the column).
    """
    out = np.zeros(NUM_FEATURES, dtype=np.float32)
    for i, col in enumerate(COLUMNS):
        value = _parse(col, row.get(col.name))
        if value is None:
            out[len(COLUMNS) + i] = 1.0
        else:
            out[i] = col.encode(value)
    return out
