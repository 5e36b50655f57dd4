"""TCGA barcodes: ``TCGA-<TSS>-<participant>-<sample><vial>-<portion>...``.

The patient barcode (first 12 characters, ``TCGA-DD-A1EB``) is the only identifier
OncoFed keeps for TCGA cases: it is already a pseudonym. Characters 6-7 (1-based)
are the tissue-source site (TSS) code, the natural "hospital" of the case.
"""

from __future__ import annotations

import re

_BARCODE = re.compile(
    r"^TCGA-([A-Z0-9]{2})-([A-Z0-9]{4})(?:-(\d{2})([A-Z])?)?(?:[-.].*)?$", re.I
)
_SAMPLE_LIKE = re.compile(r"^TCGA[-.]", re.I)


def patient_barcode(text: object) -> str | None:
    """``TCGA-XX-YYYY`` for any barcode of that patient (also with dots, as some
    matrices write them), else None."""
    if not isinstance(text, str):
        return None
    m = _BARCODE.match(text.strip().replace(".", "-"))
    if not m:
        return None
    return f"TCGA-{m.group(1)}-{m.group(2)}".upper()


def looks_like_barcode(text: object) -> bool:
    """Starts like a TCGA barcode (used to tell a barcode column that has bad
    entries from an annotation column)."""
    return isinstance(text, str) and bool(_SAMPLE_LIKE.match(text.strip()))


def tss_code(barcode: str) -> str:
    """Tissue-source-site code: barcode characters 6-7 (``TCGA-DD-...`` -> ``DD``)."""
    return barcode[5:7].upper()


def sample_type(barcode: str) -> int | None:
    """Two-digit sample type (01 primary tumour, 10-19 normal), None if absent."""
    m = _BARCODE.match(barcode.strip().replace(".", "-"))
    return int(m.group(3)) if m and m.group(3) else None


def is_tumour_sample(barcode: str) -> bool:
    """Tumour samples are types 01-09; a bare patient barcode counts as tumour."""
    t = sample_type(barcode)
    return t is None or 1 <= t <= 9
