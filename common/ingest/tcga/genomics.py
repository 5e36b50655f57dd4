"""Genomic matrices keyed by TCGA barcode -> per-patient feature rows.

Recognised by content, in either orientation:

* **expression** (counts, RSEM, FPKM...): features x samples or samples x features;
  a leading annotation column (``Entrez_Gene_Id``) is skipped. Stored as
  ``log2(x + 1)`` unless the values are already negative somewhere (logged).
* **methylation** betas: values within [0, 1] and probe IDs ``cg...``.
* **copy-number segments**: long table with sample, chromosome, start, end and a
  segment mean; summarised per chromosome as the length-weighted mean segment value
  (24 features, chr1-22, X), a plain and documented reduction.

Several samples of one patient: tumour samples (types 01-09) are averaged; normal
samples (10-19) are not patient features and are dropped (counted in the notes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from oncofed.common.ingest.tcga.barcode import (
    is_tumour_sample,
    looks_like_barcode,
    patient_barcode,
)
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


def _pick(columns: list[str], names: tuple[str, ...]) -> str | None:
    return next((c for c in names if c in columns), None)


def sniff_genomics(header: list[str], first_cells: list[str]) -> str | None:
    """``segments``, ``matrix`` (samples as columns) or ``matrix-t`` (samples as
    rows) from a delimited file's header and first column, else None."""
    if all(_pick(header, n) for n in (SEGMENT_SAMPLE, SEGMENT_CHROM, SEGMENT_START)):
        if _pick(header, SEGMENT_END) and _pick(header, SEGMENT_VALUE):
            return "segments"
    if sum(_valid(h) for h in header) >= 1 and len(header) >= 2:
        return "matrix"
    if first_cells and sum(_valid(c) for c in first_cells) >= max(
        1, len(first_cells) // 2
    ):
        return "matrix-t"
    return None


def _valid(text: str) -> bool:
    """A real sample or patient barcode (not just a 'TCGA-COAD' project name)."""
    return looks_like_barcode(text) and patient_barcode(text) is not None


def read_matrix(path: Path, orientation: str, sep: str) -> GenomicTable:
    frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    if orientation == "matrix-t":
        frame = frame.set_index(frame.columns[0]).T.reset_index()
    header = list(frame.columns)
    sample_cols = [c for c in header if looks_like_barcode(c)]
    annot = [c for c in header if c not in sample_cols]
    if not annot:
        raise ValueError("no feature-name column")
    feature_ids = frame[annot[0]].astype(str)
    quarantined = [
        Quarantined("", str(path), f"{c!r} is not a valid TCGA barcode", c)
        for c in sample_cols
        if patient_barcode(c) is None
    ]
    good = [c for c in sample_cols if patient_barcode(c) is not None]
    values = frame[good].apply(pd.to_numeric, errors="coerce")
    values.index = feature_ids
    values = values[~values.index.duplicated()]
    finite = values.to_numpy(dtype=float)
    is_meth = (
        bool(np.nanmin(finite) >= 0 and np.nanmax(finite) <= 1)
        and feature_ids.str.startswith("cg").mean() > 0.5
    )
    kind = "methylation" if is_meth else "expression"
    if kind == "expression" and np.nanmin(finite) >= 0:
        values = np.log2(values + 1.0)
    notes = []
    tumour = [c for c in good if is_tumour_sample(c.replace(".", "-"))]
    if len(tumour) < len(good):
        notes.append(
            f"{path.name}: {len(good) - len(tumour)} normal-tissue sample(s) not used"
        )
    per_patient = values[tumour].T
    per_patient.index = [patient_barcode(c) for c in tumour]
    per_patient = per_patient.groupby(level=0).mean()
    per_patient.columns = [f"{kind}:{f}" for f in per_patient.columns]
    return GenomicTable(kind, per_patient, quarantined, notes)


def read_segments(path: Path, sep: str) -> GenomicTable:
    frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
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
