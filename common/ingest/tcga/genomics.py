"""Genomic matrices keyed by TCGA barcode -> per-patient feature rows.

Recognised by content, in either orientation:

* **expression** (counts, RSEM, FPKM...): features x samples or samples x features;
  a leading annotation column (``Entrez_Gene_Id``) is skipped. Stored as
  ``log2(x + 1)`` unless already on a log scale (a negative value, or non-integer
  values none above 50), which is recorded in the report.

A matrix is recognised *positively*: at least 20 features, 90 % of whose names
are gene symbols, Ensembl / Entrez IDs, methylation probes or chromosome
segments, and none of which is an outcome, time, date, identity or free-text
column (:mod:`common.ingest.columns`). A table keyed by barcodes that fails this
(a survival table, a user's own clinical sheet) is never read as genomics.
* **methylation** betas: values within [0, 1] and probe IDs ``cg...``.
* **copy-number segments**: long table with sample, chromosome, start, end and a
  segment mean; summarised per chromosome as the length-weighted mean segment value
  (24 features, chr1-22, X), a plain and documented reduction.

Several samples of one patient: tumour samples (types 01-09) are averaged; normal
samples (10-19) are not patient features and are dropped (counted in the notes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from oncofed.common.ingest.columns import never_feature
from oncofed.common.ingest.tcga.barcode import (
    is_tumour_sample,
    looks_like_barcode,
    patient_barcode,
)
from oncofed.common.ingest.text import read_table
from oncofed.common.quarantine import Quarantined

SEGMENT_SAMPLE = ("ID", "sample", "Sample", "SAMPLE_ID", "GDC_Aliquot")
SEGMENT_CHROM = ("chrom", "Chromosome", "chr", "Chrom", "chromosome")
SEGMENT_START = ("loc.start", "Start", "start", "chromStart")
SEGMENT_END = ("loc.end", "End", "end", "chromEnd")
SEGMENT_VALUE = (
    "seg.mean",
    "Segment_Mean",
    "value",
    "segment_mean",
    "Segment_Mean_log2",
)
CHROMOSOMES = [str(i) for i in range(1, 23)] + ["X"]


@dataclass
class GenomicTable:
    """Per-patient features of one matrix, with what was left out."""

    kind: str
    features: pd.DataFrame  # index: patient barcode; columns: "<kind>:<feature>"
    quarantined: list[Quarantined] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    scale: str = ""  # expression: "already log scale" or "log2(x + 1) applied"


def _pick(columns: list[str], names: tuple[str, ...]) -> str | None:
    return next((c for c in names if c in columns), None)


# feature names a genomic matrix has (checked after the never-feature list)
_ENSEMBL = re.compile(r"^ENS[A-Z]*[GT]\d{6,}(\.\d+)?(_PAR_Y)?$")
_ENTREZ = re.compile(r"^\d{1,9}$")
_PROBE = re.compile(r"^(cg\d{6,}|ch\.\w+\.\d+[A-Z]?|rs\d+)$")
_SEGMENT = re.compile(
    r"^(chr)?([1-9]|1\d|2[0-2]|X|Y)([pq](\d+(\.\d+)?)?)?(:\d+-\d+)?$", re.I
)
# HGNC symbols: capitals and digits, hyphenated parts, the "orf" of C1orf112
_SYMBOL = re.compile(r"^[A-Z][A-Z0-9]*(orf\d+)?[A-Z0-9]*(-[A-Z0-9]+)*(\.\d+)?$")
MIN_GENOMIC_FEATURES = 20  # fewer named features: not a genomic matrix
GENE_LIKE_FRACTION = 0.9  # of the feature names
LOG_SCALE_MAX = 50.0  # expression never above this is taken as already logged


def feature_id_kind(name: str) -> str | None:
    """``ensembl``, ``entrez``, ``probe``, ``segment`` or ``symbol`` for a name a
    genomic matrix uses for its features, else None. TCGA's legacy ``SYMBOL|ENTREZ``
    (``A1BG|1``, ``?|100130426``) counts by either part. Outcome, time, identity
    and other never-feature names (``OS``, ``_EVENT``) are never gene-like."""
    text = str(name).strip()
    if not text or never_feature(text):
        return None
    parts = [p for p in text.split("|") if p and p != "?"] if "|" in text else [text]
    for part in parts:
        for kind, pattern in (
            ("ensembl", _ENSEMBL),
            ("entrez", _ENTREZ),
            ("probe", _PROBE),
            ("segment", _SEGMENT),
            ("symbol", _SYMBOL),
        ):
            if pattern.match(part):
                return kind
    return None


def gene_like_fraction(names: list[str]) -> float:
    names = [n for n in names if str(n).strip()]
    if not names:
        return 0.0
    return sum(feature_id_kind(n) is not None for n in names) / len(names)


def not_genomic_reason(names: list[str]) -> str | None:
    """Why features named ``names`` are not a genomic matrix, or None if they are
    (enough of them, nearly all gene / probe / segment names)."""
    names = [str(n).strip() for n in names if str(n).strip()]
    banned = sorted({n for n in names if never_feature(n)})
    if banned:
        shown = ", ".join(repr(n) for n in banned[:4])
        return (
            f"keyed by TCGA barcode, but its columns include outcome, time, date, "
            f"identity or free-text fields ({shown}), so it is not a genomic matrix"
        )
    if gene_like_fraction(names) < GENE_LIKE_FRACTION:
        odd = [n for n in names if feature_id_kind(n) is None][:4]
        return (
            "keyed by TCGA barcode, but its feature names are not gene symbols, "
            f"Ensembl / Entrez IDs, methylation probes or segments "
            f"({', '.join(map(repr, odd))})"
        )
    return None


def sniff_barcode_table(
    header: list[str], first_cells: list[str]
) -> tuple[str | None, str]:
    """(genomic kind or None, why not) of a delimited file; the reason is '' for a
    file that is not keyed by TCGA barcodes at all."""
    if all(_pick(header, n) for n in (SEGMENT_SAMPLE, SEGMENT_CHROM, SEGMENT_START)):
        if _pick(header, SEGMENT_END) and _pick(header, SEGMENT_VALUE):
            return "segments", ""
    if sum(_valid(h) for h in header) >= 1 and len(header) >= 2:
        annot = [h for h in header if not looks_like_barcode(h)]
        # features are the rows: judge the names in the first annotation column
        why = not_genomic_reason(first_cells) if annot else "no feature-name column"
        return (None, why) if why else ("matrix", "")
    if first_cells and sum(_valid(c) for c in first_cells) >= max(
        1, len(first_cells) // 2
    ):
        features = header[1:]
        why = not_genomic_reason(features)
        if why is None and len(features) < MIN_GENOMIC_FEATURES:
            why = (
                f"keyed by TCGA barcode, but only {len(features)} feature column(s) "
                f"(a genomic matrix has at least {MIN_GENOMIC_FEATURES})"
            )
        return (None, why) if why else ("matrix-t", "")
    return None, ""


def _valid(text: str) -> bool:
    """A real sample or patient barcode (not just a 'TCGA-COAD' project name)."""
    return looks_like_barcode(text) and patient_barcode(text) is not None


def read_matrix(path: Path, orientation: str, sep: str) -> GenomicTable:
    frame = read_table(path, sep)
    if orientation == "matrix-t":
        frame = frame.set_index(frame.columns[0]).T.reset_index()
    header = list(frame.columns)
    sample_cols = [c for c in header if looks_like_barcode(c)]
    annot = [c for c in header if c not in sample_cols]
    if not annot:
        raise ValueError("no feature-name column")
    feature_ids = frame[annot[0]].astype(str)
    why = not_genomic_reason(list(feature_ids))
    if why:
        raise NotGenomic(why)
    quarantined = [
        Quarantined("", str(path), f"{c!r} is not a valid TCGA barcode", c)
        for c in sample_cols
        if patient_barcode(c) is None
    ]
    good = [c for c in sample_cols if patient_barcode(c) is not None]
    values = frame[good].apply(pd.to_numeric, errors="coerce")
    values.index = feature_ids
    values = values[~values.index.duplicated()]
    numeric = int(values.notna().any(axis=1).sum())
    if numeric < MIN_GENOMIC_FEATURES:
        raise NotGenomic(
            f"only {numeric} feature(s) with numeric values (a genomic matrix has "
            f"at least {MIN_GENOMIC_FEATURES})"
        )
    values = values[values.notna().any(axis=1)]
    finite = values.to_numpy(dtype=float)
    is_meth = (
        bool(np.nanmin(finite) >= 0 and np.nanmax(finite) <= 1)
        and feature_ids.str.startswith("cg").mean() > 0.5
    )
    kind = "methylation" if is_meth else "expression"
    notes: list[str] = []
    scale = ""
    if kind == "expression":
        scale, values = _log_scale(values, path, notes)
    tumour = [c for c in good if is_tumour_sample(c.replace(".", "-"))]
    if len(tumour) < len(good):
        notes.append(
            f"{path.name}: {len(good) - len(tumour)} normal-tissue sample(s) not used"
        )
    per_patient = values[tumour].T
    per_patient.index = [patient_barcode(c) for c in tumour]
    per_patient = per_patient.groupby(level=0).mean()
    per_patient.columns = [f"{kind}:{f}" for f in per_patient.columns]
    return GenomicTable(kind, per_patient, quarantined, notes, scale)


class NotGenomic(ValueError):
    """A barcode-keyed table that is not a genomic matrix (the reason says why)."""


def _log_scale(
    values: pd.DataFrame, path: Path, notes: list[str]
) -> tuple[str, pd.DataFrame]:
    """Expression on a linear scale (counts, TPM, FPKM, RSEM) becomes
    ``log2(x + 1)``; values already logged (a negative value, or non-integer
    values none above ``LOG_SCALE_MAX``) are kept as they are; whole numbers are
    counts, however small. Returns what was done, for the
    report."""
    v = values.to_numpy(dtype=float)
    low, high = float(np.nanmin(v)), float(np.nanmax(v))
    finite = v[np.isfinite(v)]
    counts = bool(np.all(finite == np.round(finite))) and high > 1
    if low < 0 or (high <= LOG_SCALE_MAX and not counts):
        notes.append(
            f"{path.name}: expression already on a log scale (values {low:.3g} to "
            f"{high:.3g}); not logged again"
        )
        return "already log scale", values
    notes.append(
        f"{path.name}: expression on a linear scale (values {low:.3g} to "
        f"{high:.3g}); stored as log2(x + 1)"
    )
    return "log2(x + 1) applied", np.log2(values + 1.0)


def read_segments(path: Path, sep: str) -> GenomicTable:
    frame = read_table(path, sep)
    cols = list(frame.columns)
    s, c, a, b, v = (
        _pick(cols, n)
        for n in (
            SEGMENT_SAMPLE,
            SEGMENT_CHROM,
            SEGMENT_START,
            SEGMENT_END,
            SEGMENT_VALUE,
        )
    )
    assert s and c and a and b and v
    quarantined = [
        Quarantined("", str(path), f"{x!r} is not a valid TCGA barcode", s)
        for x in sorted(set(frame[s]))
        if patient_barcode(x) is None
    ]
    frame = frame[frame[s].map(lambda x: patient_barcode(x) is not None)].copy()
    frame = frame[frame[s].map(lambda x: is_tumour_sample(x.replace(".", "-")))]
    frame["patient"] = frame[s].map(patient_barcode)
    frame["chrom"] = frame[c].str.replace("chr", "", case=False).str.upper()
    frame["chrom"] = frame["chrom"].replace({"23": "X"})
    frame["length"] = pd.to_numeric(frame[b], errors="coerce") - pd.to_numeric(
        frame[a], errors="coerce"
    )
    frame["value"] = pd.to_numeric(frame[v], errors="coerce")
    frame = frame.dropna(subset=["length", "value"])
    frame = frame[frame["chrom"].isin(CHROMOSOMES) & (frame["length"] > 0)]
    frame["weighted"] = frame["value"] * frame["length"]
    g = frame.groupby(["patient", "chrom"])[["weighted", "length"]].sum()
    per = (g["weighted"] / g["length"]).unstack("chrom")
    per = per.reindex(columns=CHROMOSOMES)
    per.columns = [f"cnv:chr{ch}" for ch in per.columns]
    return GenomicTable("cnv", per, quarantined, [])


def select_features(
    tables: list[GenomicTable],
    site_of: dict[str, str],
    train: set[str],
    top_k: int,
) -> pd.DataFrame:
    """Join the tables per patient; keep, per kind, the ``top_k`` features with the
    highest median over sites of their variance on the site's training patients.

    Only training rows inform the choice, and each site contributes one variance per
    feature, so no test row and no single site decides the list.
    """
    kept = []
    for t in tables:
        f = t.features
        if f.shape[1] > top_k:
            variances = []
            for site in sorted(set(site_of.values())):
                rows = [p for p in f.index if site_of.get(p) == site and p in train]
                if len(rows) >= 2:
                    variances.append(f.loc[rows].var(axis=0, skipna=True))
            if variances:
                score = pd.concat(variances, axis=1).median(axis=1)
                f = f[score.sort_values(ascending=False).index[:top_k]]
        kept.append(f)
    if not kept:
        return pd.DataFrame()
    return pd.concat(kept, axis=1, join="outer")


def reference_stats(
    features: pd.DataFrame, site_of: dict[str, str], train: set[str]
) -> tuple[list[float], list[float]]:
    """Per feature: the median over sites of the site's training mean, and of its
    training standard deviation (floored at 1e-3): one centring for every site, to
    which no test row and no single site dictates."""
    means, sds = [], []
    for site in sorted(set(site_of.values())):
        rows = [p for p in features.index if site_of.get(p) == site and p in train]
        if rows:
            means.append(features.loc[rows].mean(axis=0, skipna=True))
            sds.append(features.loc[rows].std(axis=0, skipna=True))
    if not means:
        n = features.shape[1]
        return [0.0] * n, [1.0] * n
    centre = pd.concat(means, axis=1).median(axis=1).fillna(0.0)
    scale = pd.concat(sds, axis=1).median(axis=1).fillna(1.0).clip(lower=1e-3)
    return [round(float(v), 6) for v in centre], [round(float(v), 6) for v in scale]
