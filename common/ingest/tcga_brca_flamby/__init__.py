"""``tcga_brca_flamby``: FLamby's Fed-TCGA-BRCA, our reference survival benchmark.

Source: a folder with FLamby's ``brca.csv`` (pid, 39 one-hot clinical features,
``E`` event, ``T`` days), ``train_test_split.csv`` (pid, fold, fold2 =
``train_k``/``test_k``) and ``centers.csv`` (TSS code -> region), recognised by
their columns. Sites are FLamby's 6 regions in FLamby's order (k = 0..5), named
after the region that ``centers.csv`` gives their patients' TSS codes; the
train/test split is FLamby's, unchanged. Patients in ``brca.csv`` that the split
file does not list are quarantined with that reason.
Binary label = ``E`` (event observed); survival ``time`` = ``T``, ``event`` = ``E``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pandas as pd

from oncofed.common.data.rows import Rows, read_rows
from oncofed.common.data.schema import ColumnSpec
from oncofed.common.errors import DataError
from oncofed.common.ingest import DATASETS
from oncofed.common.ingest.prepare import (
    Case,
    PreparableDataset,
    PrepareOptions,
    ReadResult,
    Staging,
)
from oncofed.common.ingest.tcga.barcode import patient_barcode, tss_code
from oncofed.common.ingest.tcga.reader import slug
from oncofed.common.quarantine import Quarantined

NAME = "tcga_brca_flamby"


def _rows(path: Path, key: str, needed: tuple[str, ...]) -> Rows:
    """``path``'s readable rows (FLamby writes comma-separated files); a header
    without ``key`` or a ``needed`` column is refused naming the file."""
    rows = read_rows(path, ",", key)
    missing = [c for c in needed if c not in rows.columns]
    if missing:
        raise DataError(
            path,
            "header",
            f"no column {', '.join(map(repr, missing))}",
            "point --root at FLamby's unmodified fed_tcga_brca files",
        )
    return rows


def _find(root: Path, columns: set[str]) -> Path | None:
    for p in sorted(root.rglob("*.csv")):
        try:
            header = set(pd.read_csv(p, nrows=0).columns)
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError):
            continue
        if columns <= header:
            return p
    return None


class TcgaBrcaFlamby(PreparableDataset):
    name = NAME

    def read(
        self,
        root: Path,
        staging: Staging,
        opts: PrepareOptions,
        progress: Callable[[str], None],
    ) -> ReadResult:
        table = _find(root, {"pid", "E", "T"})
        split_file = _find(root, {"pid", "fold", "fold2"})
        centers = _find(root, {"TSS Code", "Region"})
        for path, what in ((table, "brca.csv"), (split_file, "train_test_split.csv")):
            if path is None:
                raise DataError(
                    root,
                    "--root",
                    f"no FLamby {what} found (recognised by its columns)",
                    "point --root at FLamby's fed_tcga_brca folder",
                )
        assert table is not None and split_file is not None
        progress(table.name)
        # line by line: a damaged line costs its own row, named by file and line
        frame = _rows(table, "pid", ("E", "T"))
        split_rows = _rows(split_file, "pid", ("fold2",))
        split = {r["pid"]: r["fold2"] for r in split_rows.rows}
        progress(split_file.name)
        regions = {}
        quarantined: list[Quarantined] = [
            Quarantined(b.key, b.path, f"line {b.line}: {b.reason}", "line")
            for b in (*frame.bad, *split_rows.bad)
        ]
        if centers is not None:
            centre_rows = _rows(centers, "TSS Code", ("Region",))
            regions = {r["TSS Code"].upper(): r["Region"] for r in centre_rows.rows}
            quarantined += [
                Quarantined("", b.path, f"line {b.line}: {b.reason} (TSS code "
                            f"{b.key!r} left without a region)", "line")
                for b in centre_rows.bad
            ]  # fmt: skip
            progress(centers.name)
        features = [c for c in frame.columns if c not in ("pid", "E", "T")]
        cases: list[Case] = []
        site_regions: dict[int, Counter[str]] = {}
        for row in frame.rows:
            pid = str(row["pid"])
            barcode = patient_barcode(pid)
            if barcode is None:
                quarantined.append(
                    Quarantined("", str(table), f"{pid!r} is not a TCGA barcode", "pid")
                )
                continue
            if barcode not in split:
                quarantined.append(
                    Quarantined(
                        barcode,
                        str(table),
                        "not listed in FLamby's train_test_split.csv",
                        "pid",
                    )
                )
                continue
            fold2 = str(split[barcode])
            part, _, k = fold2.partition("_")
            if part not in ("train", "test") or not k.isdigit():
                quarantined.append(
                    Quarantined(barcode, str(split_file), f"fold2 {fold2!r}", "fold2")
                )
                continue
            values = _numbers(row, ["E", "T", *features])
            if isinstance(values, Quarantined):
                quarantined.append(replace(values, case_id=barcode, path=str(table)))
                continue
            if values["E"] not in (0.0, 1.0) or values["T"] < 0:
                quarantined.append(
                    Quarantined(
                        barcode, str(table),
                        f"E = {row['E']!r} (0 or 1) / T = {row['T']!r} (days, "
                        ">= 0) out of range", "E, T",
                    )
                )  # fmt: skip
                continue
            site_regions.setdefault(int(k), Counter())[
                regions.get(tss_code(barcode), "unknown")
            ] += 1
            event = int(values["E"])
            cases.append(
                Case(
                    case_id=barcode,
                    site=k,  # renamed below once regions are known
                    label=event,
                    clinical={f: values[f] for f in features},
                    time=values["T"],
                    event=event,
                    split=part,
                )
            )
        names = {
            k: f"region-{k}-{slug(counts.most_common(1)[0][0])}"
            for k, counts in site_regions.items()
        }
        for c in cases:
            c.site = names[int(c.site)]
        return ReadResult(
            cases=cases,
            quarantined=quarantined,
            sources=[
                {"file": str(p), "role": r}
                for p, r in (
                    (table, "flamby-table"),
                    (split_file, "flamby-split"),
                    (centers, "flamby-centers"),
                )
                if p is not None
            ],
            clinical_columns=features,
            clinical_schema=[
                ColumnSpec(f, "numeric", 58.0, 13.0)
                if f.startswith("age")
                else ColumnSpec(f, "numeric", 0.0, 1.0)
                for f in features
            ],
            site_info={
                names[k]: {"flamby_center": k, "regions": dict(v)}
                for k, v in site_regions.items()
            },
        )


@DATASETS.register(NAME)
def _create() -> TcgaBrcaFlamby:
    return TcgaBrcaFlamby()


def _numbers(row: dict[str, str], columns: list[str]) -> dict[str, float] | Quarantined:
    """The row's cells as finite numbers, or the first bad cell as a quarantine
    entry (case and file filled in by the caller)."""
    out: dict[str, float] = {}
    for c in columns:
        text = str(row.get(c, "")).strip()
        try:
            value = float(text)
        except ValueError:
            return Quarantined("", "", f"{text!r} is not a number", c)
        if not math.isfinite(value):
            return Quarantined("", "", f"{text!r} is not a finite number", c)
        out[c] = value
    return out
