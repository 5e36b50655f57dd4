"""TCGA clinical exports -> one harmonised row per patient.

Two sources, each recognised by content:

* **GDC portal** ``clinical.tsv``, in the older undotted schema
  (``case_submitter_id``, ``vital_status``, ...) and the newer dotted one
  (``cases.submitter_id``, ``demographic.vital_status``, ``diagnoses.*``, ...).
  Missing is the string ``'--``; a patient spans several rows (one per diagnosis x
  treatment): each field takes the patient's first non-missing value, follow-up the
  longest.
* **cBioPortal** ``data_clinical_patient.txt`` / ``data_clinical_sample.txt``: four
  ``#`` header lines, then a tab-separated table; missing is ``[Not Available]`` and
  similar.

The harmonised row keeps what a model or a survival analysis needs and no
identifier beyond the patient barcode: UUIDs, birth years, dates and free text are
dropped on ingest.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from common.data.schema import ColumnSpec
from common.datasets.tcga.barcode import patient_barcode
from common.quarantine import Quarantined

# the harmonised clinical schema shared by every TCGA reader
COLUMNS = (
    "age",
    "sex",
    "stage",
    "t_stage",
    "n_stage",
    "m_stage",
    "histology",
    "project",
)
# how they become features (histology and project are kept for reports only)
SCHEMA = [
    ColumnSpec("age", "numeric", ref=60.0, scale=12.0),
    ColumnSpec("sex", "categorical", categories=("M", "F")),
    ColumnSpec("stage", "categorical", categories=("0", "I", "II", "III", "IV")),
    ColumnSpec(
        "t_stage", "categorical", categories=("Tis", "T0", "T1", "T2", "T3", "T4")
    ),
    ColumnSpec("n_stage", "categorical", categories=("N0", "N1", "N2", "N3")),
    ColumnSpec("m_stage", "categorical", categories=("M0", "M1")),
]
DAYS_PER_MONTH = 30.4375

GDC_MISSING = {"'--", "--", "", "not reported", "unknown", "not allowed to collect"}
CBIO_MISSING = {
    "",
    "na",
    "[not available]",
    "[not applicable]",
    "[unknown]",
    "[discrepancy]",
    "[not evaluated]",
    "[completed]",
}

_GDC_ID = ("cases.submitter_id", "case_submitter_id")
_GDC_PREFIXES = ("", "demographic.", "diagnoses.", "cases.", "follow_ups.", "project.")


@dataclass
class PatientRecord:
    """One patient's harmonised clinical data and survival."""

    barcode: str
    clinical: dict[str, Any] = field(default_factory=dict)
    vital_status: str | None = None  # "alive" / "dead"
    time: float | None = None  # days to death or last follow-up
    sources: list[str] = field(default_factory=list)

    @property
    def event(self) -> int | None:
        return None if self.vital_status is None else int(self.vital_status == "dead")


# ---------------------------------------------------------------- recognition


def is_gdc_clinical(header: list[str]) -> bool:
    cols = set(header)
    return bool(cols & set(_GDC_ID)) and bool(
        cols & {"vital_status", "demographic.vital_status"}
    )


def is_cbioportal_clinical(lines: list[str]) -> str | None:
    """``patient`` or ``sample`` for a cBioPortal clinical file's first lines."""
    body = [ln for ln in lines if not ln.startswith("#")]
    if not body:
        return None
    header = body[0].rstrip("\n").split("\t")
    if "SAMPLE_ID" in header and "PATIENT_ID" in header:
        return "sample"
    if "PATIENT_ID" in header:
        return "patient"
    return None


# ---------------------------------------------------------------- values


def _clean(value: Any, missing: set[str]) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    text = str(value).strip()
    return None if text.lower() in missing else text


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


_ROMAN = re.compile(r"STAGE\s*(IV|I{1,3}|0|X)", re.I)


def normalise_stage(value: Any) -> str | None:
    """``Stage IIIB`` / ``STAGE IIIB`` -> ``III``; ``Stage X`` and unknown -> None."""
    if value is None:
        return None
    m = _ROMAN.search(str(value))
    if not m or m.group(1).upper() == "X":
        return None
    return m.group(1).upper()


def normalise_tnm(value: Any, letter: str) -> str | None:
    """``pT3a`` / ``T3a`` -> ``T3``; ``Tis`` kept; ``TX``/``MX`` and unknown -> None."""
    if value is None:
        return None
    m = re.search(rf"{letter}\s*(is|\d|X)", str(value), re.I)
    if not m or m.group(1).upper() == "X":
        return None
    code = m.group(1)
    return f"{letter}{'is' if code.lower() == 'is' else code}"


def _sex(value: Any) -> str | None:
    if value is None:
        return None
    v = str(value).strip().lower()
    return {"male": "M", "m": "M", "female": "F", "f": "F"}.get(v)


def _vital(value: Any) -> str | None:
    if value is None:
        return None
    v = str(value).strip().lower()
    if v in ("dead", "deceased", "1:deceased", "1"):
        return "dead"
    if v in ("alive", "living", "0:living", "0"):
        return "alive"
    return None


# ---------------------------------------------------------------- GDC


def read_gdc_clinical(path: Path) -> tuple[dict[str, PatientRecord], list[Quarantined]]:
    """Patients of a GDC ``clinical.tsv`` (either schema), and what was left out."""
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    id_col = next(c for c in _GDC_ID if c in frame.columns)

    def col(name: str) -> str | None:
        for prefix in _GDC_PREFIXES:
            if prefix + name in frame.columns:
                return prefix + name
        return None

    fields = {
        name: col(name)
        for name in (
            "project_id",
            "age_at_index",
            "age_at_diagnosis",
            "gender",
            "vital_status",
            "days_to_death",
            "days_to_last_follow_up",
            "ajcc_pathologic_stage",
            "ajcc_pathologic_t",
            "ajcc_pathologic_n",
            "ajcc_pathologic_m",
            "ajcc_clinical_stage",
            "ajcc_clinical_m",
            "primary_diagnosis",
        )
    }
    records: dict[str, PatientRecord] = {}
    quarantined: list[Quarantined] = []
    for raw_id, rows in frame.groupby(id_col, sort=True):
        barcode = patient_barcode(raw_id)
        if barcode is None:
            quarantined.append(
                Quarantined(
                    "", str(path), f"{raw_id!r} is not a TCGA patient barcode", id_col
                )
            )
            continue

        def first(name: str, rows: pd.DataFrame = rows) -> Any:
            c = fields[name]
            if c is None:
                return None
            for v in rows[c]:
                v = _clean(v, GDC_MISSING)
                if v is not None:
                    return v
            return None

        def values(name: str, rows: pd.DataFrame = rows) -> set[str]:
            c = fields[name]
            if c is None:
                return set()
            return {v for v in (_clean(x, GDC_MISSING) for x in rows[c]) if v}

        vitals = {v for v in map(_vital, values("vital_status")) if v is not None}
        if len(vitals) > 1:
            quarantined.append(
                Quarantined(
                    barcode,
                    str(path),
                    f"rows disagree on vital status ({', '.join(sorted(vitals))})",
                    fields["vital_status"] or "vital_status",
                )
            )
            continue
        age = _number(first("age_at_index"))
        if age is None and (days := _number(first("age_at_diagnosis"))) is not None:
            age = round(days / 365.25, 1)
        vital = vitals.pop() if vitals else None
        follow = [_number(v) for v in values("days_to_last_follow_up")]
        follow_max = max((f for f in follow if f is not None), default=None)
        death = _number(first("days_to_death"))
        time = death if vital == "dead" and death is not None else follow_max
        rec = PatientRecord(
            barcode=barcode,
            clinical={
                "age": age,
                "sex": _sex(first("gender")),
                "stage": normalise_stage(
                    first("ajcc_pathologic_stage") or first("ajcc_clinical_stage")
                ),
                "t_stage": normalise_tnm(first("ajcc_pathologic_t"), "T"),
                "n_stage": normalise_tnm(first("ajcc_pathologic_n"), "N"),
                "m_stage": normalise_tnm(
                    first("ajcc_pathologic_m") or first("ajcc_clinical_m"), "M"
                ),
                "histology": first("primary_diagnosis"),
                "project": first("project_id"),
            },
            vital_status=vital,
            time=time,
            sources=[str(path)],
        )
        records[barcode] = rec
    return records, quarantined


# ---------------------------------------------------------------- cBioPortal


def read_cbioportal_table(path: Path) -> pd.DataFrame:
    """A cBioPortal clinical file without its ``#`` header lines, all strings."""
    return pd.read_csv(
        path,
        sep="\t",
        comment=None,
        dtype=str,
        keep_default_na=False,
        skiprows=_n_hash(path),
    )


def _n_hash(path: Path) -> int:
    n = 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.startswith("#"):
                break
            n += 1
    return n


def read_cbioportal_patients(
    path: Path,
) -> tuple[dict[str, PatientRecord], list[Quarantined]]:
    frame = read_cbioportal_table(path)
    records: dict[str, PatientRecord] = {}
    quarantined: list[Quarantined] = []

    def get(row: dict, *names: str) -> Any:
        for n in names:
            if n in row:
                v = _clean(row[n], CBIO_MISSING)
                if v is not None:
                    return v
        return None

    for row in frame.to_dict("records"):
        barcode = patient_barcode(row["PATIENT_ID"])
        if barcode is None:
            quarantined.append(
                Quarantined(
                    "",
                    str(path),
                    f"{row['PATIENT_ID']!r} is not a TCGA patient barcode",
                    "PATIENT_ID",
                )
            )
            continue
        if barcode in records:
            quarantined.append(
                Quarantined(barcode, str(path), "patient listed twice", "PATIENT_ID")
            )
            continue
        months = _number(get(row, "OS_MONTHS"))
        records[barcode] = PatientRecord(
            barcode=barcode,
            clinical={
                "age": _number(get(row, "AGE")),
                "sex": _sex(get(row, "SEX", "GENDER")),
                "stage": normalise_stage(
                    get(row, "AJCC_PATHOLOGIC_TUMOR_STAGE", "TUMOR_STAGE", "STAGE")
                ),
                "t_stage": normalise_tnm(
                    get(row, "PATH_T_STAGE", "AJCC_TUMOR_PATHOLOGIC_PT"), "T"
                ),
                "n_stage": normalise_tnm(
                    get(row, "PATH_N_STAGE", "AJCC_NODES_PATHOLOGIC_PN"), "N"
                ),
                "m_stage": normalise_tnm(
                    get(row, "PATH_M_STAGE", "AJCC_METASTASIS_PATHOLOGIC_PM"), "M"
                ),
                "histology": None,
                "project": None,
            },
            vital_status=_vital(get(row, "OS_STATUS", "VITAL_STATUS")),
            time=None if months is None else round(months * DAYS_PER_MONTH, 1),
            sources=[str(path)],
        )
    return records, quarantined


def read_cbioportal_samples(path: Path) -> dict[str, dict[str, Any]]:
    """Per patient: cancer type and project-like fields from the sample file."""
    frame = read_cbioportal_table(path)
    out: dict[str, dict[str, Any]] = {}
    for row in frame.to_dict("records"):
        barcode = patient_barcode(row.get("PATIENT_ID"))
        if barcode is None:
            continue
        info = out.setdefault(barcode, {})
        for key, col in (
            ("histology", "CANCER_TYPE_DETAILED"),
            ("project", "ONCOTREE_CODE"),
        ):
            v = _clean(row.get(col), CBIO_MISSING)
            if v is not None and key not in info:
                info[key] = v
    return out


def merge_records(
    into: dict[str, PatientRecord], other: dict[str, PatientRecord]
) -> None:
    """Fill what ``into`` lacks from ``other`` (the first source wins on conflict)."""
    for barcode, rec in other.items():
        have = into.get(barcode)
        if have is None:
            into[barcode] = rec
            continue
        for k, v in rec.clinical.items():
            if have.clinical.get(k) is None and v is not None:
                have.clinical[k] = v
        if have.vital_status is None:
            have.vital_status = rec.vital_status
        if have.time is None:
            have.time = rec.time
        have.sources += rec.sources
