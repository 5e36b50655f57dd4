"""A prepared folder's feature schema: how its clinical and genomic columns become
fixed-length vectors, the same at every site.

``oncofed prepare`` writes ``schema.json`` into every site folder (and the server's
test folder). The schema is the consortium's agreement, not a statistic of one
site's data: the clinical columns, their kinds and categories come from the dataset
package's code; genomic features and their centring come from the preparation
(median over sites of per-site *training* statistics). A site folder without a
``schema.json`` (the synthetic HCC hospitals) uses the fixed HCC encoding of
:mod:`common.data.clinical`.

Numeric column -> (value - ref) / scale (after log1p when ``log``) and a missing
indicator; categorical column -> one-hot over its categories and a missing
indicator. Columns the label is derived from are not features.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from oncofed.common.data import clinical as hcc
from oncofed.common.data.clinical import ClinicalValueError
from oncofed.common.errors import DataError

SCHEMA_JSON = "schema.json"
_MISSING = {"", "na", "nan", "'--", "--", "not reported", "unknown", "none"}


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    kind: str = "numeric"  # or "categorical"
    ref: float = 0.0
    scale: float = 1.0
    log: bool = False
    categories: tuple[str, ...] = ()

    @property
    def width(self) -> int:
        return (len(self.categories) if self.kind == "categorical" else 1) + 1


@dataclass(frozen=True)
class Schema:
    dataset: str = "synthetic"
    clinical: tuple[ColumnSpec, ...] = ()
    genomics: tuple[str, ...] = ()
    genomics_center: tuple[float, ...] = ()
    genomics_scale: tuple[float, ...] = ()
    label_columns: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def uses_hcc_encoding(self) -> bool:
        return not self.clinical

    @property
    def clinical_dim(self) -> int:
        if self.uses_hcc_encoding:
            return hcc.NUM_FEATURES
        return sum(c.width for c in self.clinical if c.name not in self.label_columns)

    def numeric_slots(self) -> list[tuple[int, int]]:
        """(value index, missing-indicator index) of every numeric clinical column
        in the encoded vector: what MICE may impute. The HCC encoding puts all
        values first and all indicators after them; a schema column puts its
        indicator right after its value (numeric) or its one-hot (categorical)."""
        if self.uses_hcc_encoding:
            n = len(hcc.COLUMNS)
            return [(i, n + i) for i in range(n)]
        slots, pos = [], 0
        for col in self.clinical:
            if col.name in self.label_columns:
                continue
            if col.kind != "categorical":
                slots.append((pos, pos + 1))
            pos += col.width
        return slots

    @property
    def genomics_dim(self) -> int:
        return len(self.genomics)

    def encode_clinical(self, row: dict[str, Any]) -> np.ndarray:
        """Fixed-length float32 vector; ``ClinicalValueError`` names a bad cell."""
        if self.uses_hcc_encoding:
            return hcc.encode_row(row)
        parts: list[np.ndarray] = []
        for col in self.clinical:
            if col.name in self.label_columns:
                continue
            raw = row.get(col.name)
            text = "" if raw is None else str(raw).strip()
            if isinstance(raw, float) and math.isnan(raw):
                text = ""
            missing = text.lower() in _MISSING
            if col.kind == "categorical":
                vec = np.zeros(col.width, np.float32)
                if missing:
                    vec[-1] = 1.0
                elif text in col.categories:
                    vec[col.categories.index(text)] = 1.0
                else:
                    raise ClinicalValueError(
                        col.name, raw, f"not one of {', '.join(col.categories)}"
                    )
            else:
                vec = np.zeros(2, np.float32)
                if missing:
                    vec[1] = 1.0
                else:
                    try:
                        v = float(text)
                    except ValueError:
                        raise ClinicalValueError(
                            col.name, raw, "not a number"
                        ) from None
                    if not math.isfinite(v):
                        raise ClinicalValueError(col.name, raw, "not finite")
                    if col.log:
                        v = math.log1p(max(v, 0.0))
                    vec[0] = (v - col.ref) / col.scale
            parts.append(vec)
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def encode_genomics(self, row: dict[str, Any]) -> np.ndarray:
        """Centred and scaled genomic features; a missing value becomes 0 (the
        centre); a cell that is neither a number nor missing raises
        ``ClinicalValueError``."""
        out = np.zeros(len(self.genomics), np.float32)
        for i, name in enumerate(self.genomics):
            v = row.get(name)
            if v is None or str(v).strip().lower() in _MISSING:
                continue
            try:
                x = float(v)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise ClinicalValueError(name, v, "not a number") from None
            if math.isfinite(x):
                out[i] = (x - self.genomics_center[i]) / self.genomics_scale[i]
        return out

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Schema:
        cols = tuple(
            ColumnSpec(**{**c, "categories": tuple(c.get("categories", ()))})
            for c in d.get("clinical", ())
        )
        return cls(
            dataset=d.get("dataset", "synthetic"),
            clinical=cols,
            genomics=tuple(d.get("genomics", ())),
            genomics_center=tuple(d.get("genomics_center", ())),
            genomics_scale=tuple(d.get("genomics_scale", ())),
            label_columns=tuple(d.get("label_columns", ())),
            extra=dict(d.get("extra", {})),
        )


def load_schema(folder: str | Path) -> Schema:
    """The schema of a site (or server-test) folder; HCC default if none. A
    damaged file raises ``DataError`` naming it (never a bare parser error)."""
    path = Path(folder) / SCHEMA_JSON
    if not path.is_file():
        return Schema()
    try:
        schema = Schema.from_dict(json.loads(path.read_text(encoding="utf-8")))
        _check(schema)
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise DataError(
            path, "schema", f"unreadable ({err})", "prepare the folder again"
        ) from err
    return schema


def _check(schema: Schema) -> None:
    """Shapes and ranges a schema must have before anything is encoded with it."""
    n = len(schema.genomics)
    if not (len(schema.genomics_center) == len(schema.genomics_scale) == n):
        raise ValueError(
            "genomics, genomics_center and genomics_scale differ in length"
        )
    for v in (*schema.genomics_center, *schema.genomics_scale):
        if not isinstance(v, int | float) or not math.isfinite(v):
            raise ValueError(f"genomic centre / scale {v!r} is not a finite number")
    if any(v <= 0 for v in schema.genomics_scale):
        raise ValueError("a genomic scale is not positive")
    for c in schema.clinical:
        if c.kind not in ("numeric", "categorical"):
            raise ValueError(f"column {c.name!r}: kind {c.kind!r}")
        if not (math.isfinite(c.ref) and math.isfinite(c.scale) and c.scale > 0):
            raise ValueError(f"column {c.name!r}: ref / scale not finite and positive")
