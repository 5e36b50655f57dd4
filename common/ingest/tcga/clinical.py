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

from oncofed.common.data.schema import ColumnSpec
from oncofed.common.ingest.columns import top_code_age
from oncofed.common.ingest.tcga.barcode import patient_barcode
from oncofed.common.ingest.text import TableError, decode, read_table
from oncofed.common.quarantine import Quarantined

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

# the patient barcode column: dotted (2020-), undotted, and pre-2020 exports
_GDC_ID = ("cases.submitter_id", "case_submitter_id", "submitter_id")
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


CBIO_CLINICAL_FIELDS = ("OS_STATUS", "AGE", "SEX", "AJCC_PATHOLOGIC_TUMOR_STAGE")


def is_cbioportal_clinical(lines: list[str], sep: str = "\t") -> str | None:
    """``patient``, ``sample`` or ``other`` (a timeline or panel table keyed by
    patient, not used) for a cBioPortal file's first lines, else None (column
    names in any case)."""
    body = [ln for ln in lines if not ln.startswith("#")]
    if not body:
        return None
    header = [h.strip().upper() for h in body[0].rstrip("\n").split(sep)]
    if "PATIENT_ID" not in header:
        return None
    if "SAMPLE_ID" in header:
        return "sample"
    if any(f in header for f in CBIO_CLINICAL_FIELDS):
        return "patient"
    return "other"


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


# per harmonised field: column names in GDC (any table prefix) and in the legacy
# Biotab files (nationwidechildrens.org_clinical_patient_*.txt)
FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "project_id": ("project_id",),
    "age_at_index": ("age_at_index", "age_at_initial_pathologic_diagnosis"),
    "age_at_diagnosis": ("age_at_diagnosis",),
    "gender": ("gender",),
    "vital_status": ("vital_status",),
    "days_to_death": ("days_to_death",),
    "days_to_last_follow_up": (
        "days_to_last_follow_up",
        "days_to_last_followup",
        "days_to_follow_up",
    ),
    "ajcc_pathologic_stage": (
        "ajcc_pathologic_stage",
        "ajcc_pathologic_tumor_stage",
        "stage_event_pathologic_stage",
        "pathologic_stage",
        "tumor_stage",  # GDC exports before 2020
    ),
    "ajcc_pathologic_t": (
        "ajcc_pathologic_t",
        "ajcc_tumor_pathologic_pt",
        "pathologic_T",
    ),
    "ajcc_pathologic_n": (
        "ajcc_pathologic_n",
        "ajcc_nodes_pathologic_pn",
        "pathologic_N",
    ),
    "ajcc_pathologic_m": (
        "ajcc_pathologic_m",
        "ajcc_metastasis_pathologic_pm",
        "pathologic_M",
    ),
    "ajcc_clinical_stage": ("ajcc_clinical_stage",),
    "ajcc_clinical_m": ("ajcc_clinical_m", "ajcc_metastasis_clinical_cm"),
    "primary_diagnosis": (
        "primary_diagnosis",
        "histologic_diagnosis",
        "histological_type",
    ),
}
BIOTAB_ID = "bcr_patient_barcode"
MISSING = GDC_MISSING | CBIO_MISSING


def is_biotab_clinical(header: list[str]) -> bool:
    return BIOTAB_ID in header and "vital_status" in header


def read_gdc_clinical(
    path: Path, sep: str = "\t"
) -> tuple[dict[str, PatientRecord], list[Quarantined]]:
    """Patients of a GDC ``clinical.tsv`` (either schema) or a Biotab clinical file
    (column names in any case)."""
    frame = _lower_columns(read_table(path, sep))
    id_col = next(c for c in (*_GDC_ID, BIOTAB_ID) if c in frame.columns)
    return read_clinical_frame(frame, str(path), id_col)


def read_gdc_json(path: Path) -> tuple[dict[str, PatientRecord], list[Quarantined]]:
    """Patients of a GDC clinical JSON export (a list of cases with nested
    ``demographic``, ``diagnoses`` and ``follow_ups``)."""
    import json

    cases = json.loads(decode(path).text)
    if not isinstance(cases, list):
        raise ValueError("a GDC clinical JSON export is a list of cases")
    rows = []
    for case in cases:
        if not isinstance(case, dict):
            continue
        base = {
            "cases.submitter_id": _json_barcode(case),
            "project.project_id": (case.get("project") or {}).get("project_id"),
        }
        base.update(
            {f"demographic.{k}": v for k, v in (case.get("demographic") or {}).items()}
        )
        follow = [
            f.get("days_to_follow_up")
            for f in case.get("follow_ups") or []
            if f.get("days_to_follow_up") is not None
        ]
        if follow:
            base["follow_ups.days_to_follow_up"] = max(follow)
        for d in case.get("diagnoses") or [{}]:
            rows.append({**base, **{f"diagnoses.{k}": v for k, v in d.items()}})
    frame = pd.DataFrame(rows).astype(object).where(lambda f: f.notna(), "")
    frame = frame.astype(str)
    return read_clinical_frame(frame, str(path), "cases.submitter_id")


def _json_barcode(case: dict[str, Any]) -> str:
    """A case's patient barcode: its own ``submitter_id`` (exports since 2023),
    else the prefix of a nested record's ``submitter_id`` (2019 and 2022 exports:
    ``TCGA-XX-XXXX_demographic``, ``..._diagnosis`` in ``diagnoses[]``,
    ``exposures[]``, ``follow_ups[]``); '' when none is a barcode."""
    own = str(case.get("submitter_id") or "")
    if patient_barcode(own):
        return own
    nested: list[Any] = [case.get("demographic")]
    for key in ("diagnoses", "exposures", "follow_ups", "family_histories"):
        items = case.get(key)
        nested += items if isinstance(items, list) else []
    for item in nested:
        if isinstance(item, dict):
            sub = str(item.get("submitter_id") or "").split("_")[0]
            if patient_barcode(sub):
                return sub
    return own


def is_gdc_json(path: Path) -> bool:
    if path.suffix.lower() != ".json":
        return False
    try:
        head = decode(path, limit=4096).text
    except (OSError, TableError):
        return False
    return (
        head.lstrip().startswith("[")
        and '"submitter_id"' in head
        and ('"demographic"' in head or '"diagnoses"' in head)
    )


def read_clinical_frame(
    frame: pd.DataFrame, source: str, id_col: str
) -> tuple[dict[str, PatientRecord], list[Quarantined]]:
    """One harmonised record per patient from a table with one or more rows each."""
    frame = _lower_columns(frame)
    id_col = id_col.lower()
    fields = {
        name: list(
            dict.fromkeys(
                prefix + alias.lower()
                for alias in FIELD_ALIASES[name]
                for prefix in _GDC_PREFIXES
                if prefix + alias in frame.columns
            )
        )
        for name in FIELD_ALIASES
    }
    records: dict[str, PatientRecord] = {}
    quarantined: list[Quarantined] = []
    for raw_id, rows in frame.groupby(id_col, sort=True):
        raw = str(raw_id).strip()
        if raw.startswith("CDE_ID") or raw == id_col:  # Biotab's extra header rows
            continue
        barcode = patient_barcode(raw)
        if barcode is None:
            quarantined.append(
                Quarantined(
                    "", source, f"{raw!r} is not a TCGA patient barcode", id_col
                )
            )
            continue
        rec = _patient_record(barcode, _Rows(rows, fields), source)
        if isinstance(rec, Quarantined):
            quarantined.append(rec)
        else:
            records[barcode] = rec
    return records, quarantined


@dataclass
class _Rows:
    """One patient's rows of a clinical table, read through the field aliases."""

    rows: pd.DataFrame
    fields: dict[str, list[str]]

    def first(self, name: str) -> Any:
        """The first present value of field ``name`` (None if none)."""
        for c in self.fields[name]:
            for v in self.rows[c]:
                v = _clean(v, MISSING)
                if v is not None:
                    return v
        return None

    def values(self, name: str) -> set[str]:
        """Every distinct present value of field ``name``."""
        return {
            v
            for c in self.fields[name]
            for v in (_clean(x, MISSING) for x in self.rows[c])
            if v
        }


NUMERIC_FIELDS = (
    "age_at_index",
    "age_at_diagnosis",
    "days_to_death",
    "days_to_last_follow_up",
)


def _patient_record(barcode: str, r: _Rows, source: str) -> PatientRecord | Quarantined:
    """The harmonised record of one patient, or why the patient is quarantined
    (rows that disagree on vital status, a non-numeric age or day count)."""
    vitals = {v for v in map(_vital, r.values("vital_status")) if v is not None}
    if len(vitals) > 1:
        return Quarantined(
            barcode,
            source,
            f"rows disagree on vital status ({', '.join(sorted(vitals))})",
            "vital_status",
        )
    for name in NUMERIC_FIELDS:
        for v in sorted(r.values(name)):
            if _number(v) is None:
                return Quarantined(barcode, source, f"{v!r} is not a number", name)
    age = _number(r.first("age_at_index"))
    if age is None and (days := _number(r.first("age_at_diagnosis"))) is not None:
        age = round(days / 365.25, 1)
    age = top_code_age(age)  # over 89: 90 (read 90 or older)
    vital = vitals.pop() if vitals else None
    follow = [_number(v) for v in r.values("days_to_last_follow_up")]
    follow_max = max((f for f in follow if f is not None), default=None)
    death = _number(r.first("days_to_death"))
    time = death if vital == "dead" and death is not None else follow_max
    return PatientRecord(
        barcode=barcode,
        clinical={
            "age": age,
            "sex": _sex(r.first("gender")),
            "stage": normalise_stage(
                r.first("ajcc_pathologic_stage") or r.first("ajcc_clinical_stage")
            ),
            "t_stage": normalise_tnm(r.first("ajcc_pathologic_t"), "T"),
            "n_stage": normalise_tnm(r.first("ajcc_pathologic_n"), "N"),
            "m_stage": normalise_tnm(
                r.first("ajcc_pathologic_m") or r.first("ajcc_clinical_m"), "M"
            ),
            "histology": r.first("primary_diagnosis"),
            "project": r.first("project_id"),
        },
        vital_status=vital,
        time=time,
        sources=[source],
    )


# ---------------------------------------------------------------- cBioPortal


def read_cbioportal_table(path: Path, sep: str = "\t") -> pd.DataFrame:
    """A cBioPortal clinical file without its ``#`` header lines, all strings,
    column names upper-cased (cBioPortal's own case)."""
    frame = read_table(path, sep, skip_hash=True)
    frame.columns = [str(c).strip().upper() for c in frame.columns]
    return frame


def _lower_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """GDC and Biotab column names are lower case; a re-saved file may not be."""
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    return frame


def read_cbioportal_patients(
    path: Path, one_row_per_patient: bool = True, sep: str = "\t"
) -> tuple[dict[str, PatientRecord], list[Quarantined]]:
    """Patients of a cBioPortal clinical file. A patient file has one row per
    patient (a repeated one is quarantined); a sample file (``one_row_per_patient``
    False, e.g. the older single ``data_clinical.txt``) repeats patients, whose
    first row is used."""
    frame = read_cbioportal_table(path, sep)
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
            if one_row_per_patient:
                quarantined.append(
                    Quarantined(
                        barcode, str(path), "patient listed twice", "PATIENT_ID"
                    )
                )
            continue
        bad = [
            (n, v)
            for n in ("AGE", "OS_MONTHS")
            if (v := get(row, n)) is not None and _number(v) is None
        ]
        if bad:
            quarantined.append(
                Quarantined(
                    barcode, str(path), f"{bad[0][1]!r} is not a number", bad[0][0]
                )
            )
            continue
        months = _number(get(row, "OS_MONTHS"))
        records[barcode] = PatientRecord(
            barcode=barcode,
            clinical={
                "age": top_code_age(_number(get(row, "AGE"))),
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
                "project": f"TCGA-{acr}"
                if (acr := get(row, "CANCER_TYPE_ACRONYM", "CANCER_TYPE"))
                and str(acr).isalpha()
                and len(str(acr)) <= 5
                else None,
            },
            vital_status=_vital(get(row, "OS_STATUS", "VITAL_STATUS")),
            time=None if months is None else round(months * DAYS_PER_MONTH, 1),
            sources=[str(path)],
        )
    return records, quarantined


def read_cbioportal_samples(path: Path, sep: str = "\t") -> dict[str, dict[str, Any]]:
    """Per patient: cancer type and project-like fields from the sample file."""
    frame = read_cbioportal_table(path, sep)
    out: dict[str, dict[str, Any]] = {}
    for row in frame.to_dict("records"):
        barcode = patient_barcode(row.get("PATIENT_ID"))
        if barcode is None:
            continue
        info = out.setdefault(barcode, {})
        for key, col in (("histology", "CANCER_TYPE_DETAILED"),):
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


def has_cbioportal_clinical_fields(path: Path, sep: str = "\t") -> bool:
    header = list(read_cbioportal_table(path, sep).columns)
    return any(f in header for f in CBIO_CLINICAL_FIELDS)


def read_follow_ups(path: Path, sep: str = "\t") -> dict[str, float]:
    """Longest ``days_to_follow_up`` per patient from a GDC ``follow_up.tsv`` (other
    GDC side tables give nothing we use)."""
    frame = _lower_columns(read_table(path, sep))
    id_col = next(c for c in (*_GDC_ID, BIOTAB_ID) if c in frame.columns)
    col = next(
        (
            c
            for c in ("follow_ups.days_to_follow_up", "days_to_follow_up")
            if c in frame
        ),
        None,
    )
    out: dict[str, float] = {}
    if col is None:
        return out
    for raw, value in zip(frame[id_col], frame[col], strict=True):
        b, v = patient_barcode(raw), _number(_clean(value, MISSING))
        if b and v is not None:
            out[b] = max(out.get(b, v), v)
    return out
