"""From a dataset's source files to the prepared layout, with a report.

Every dataset package provides a *reader*: ``read(root, out, options) -> ReadResult``.
The reader recognises its files, assigns each case its natural site, writes any
converted image files under ``out`` (through :class:`Staging`) and returns one
:class:`Case` per patient plus every file or patient it had to leave out. This module
does the rest, the same for every dataset:

* re-partition if asked (seeded Dirichlet label skew or quantity skew),
* a seeded, label-stratified train/validation/test split inside each site (a
  published test split is kept; validation is then carved from its training part),
* one folder per site with ``manifest.csv`` and ``clinical.tsv`` (plus ``genomics.tsv``
  when the dataset has genomics), a ``server-val`` and a ``server-test`` folder (the
  unions of the sites' validation and test splits), ``dataset.json``,
* ``report.json`` and ``report.md``: cases per site x modality x label, missingness
  per clinical column, every quarantined file or patient with its reason.

Paths in a manifest are relative to the manifest's folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from oncofed.common.data.prepared import DATASET_JSON, SERVER_FOLDERS
from oncofed.common.data.schema import SCHEMA_JSON, ColumnSpec, Schema
from oncofed.common.errors import DataError
from oncofed.common.keys import CASE_ID, LABEL
from oncofed.common.quarantine import Quarantined
from oncofed.common.seeds import stable_int

MANIFEST = "manifest.csv"
CLINICAL_TSV = "clinical.tsv"
GENOMICS_TSV = "genomics.tsv"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
NOT_USED = "not used"

# manifest columns: the first six are what the training loader requires
MANIFEST_COLUMNS = (
    CASE_ID,
    "split",
    LABEL,
    "ct_path",
    "mask_path",
    "has_clinical",
    "histo_path",
    "has_genomics",
    "time",
    "event",
)
IMAGE_MODALITIES = {"ct_path": "ct", "histo_path": "histology"}


@dataclass
class Case:
    """One patient as a reader found it.

    ``files`` maps a manifest path column (``ct_path``, ``mask_path``,
    ``histo_path``) to a file already written under the preparation's output folder.
    ``clinical`` is the patient's clinical row (column -> value; None = missing).
    ``genomics`` maps feature name -> value. ``time``/``event`` are survival
    (days, 1 = event observed).
    """

    case_id: str
    site: str
    label: int | None
    clinical: dict[str, Any] | None = None
    genomics: dict[str, float | None] | None = None
    files: dict[str, Path] = field(default_factory=dict)
    time: float | None = None
    event: int | None = None
    split: str | None = None  # a reader with a published split sets it


@dataclass
class ReadResult:
    """What a reader returns: the cases and everything it left out."""

    cases: list[Case]
    quarantined: list[Quarantined] = field(default_factory=list)
    sources: list[dict[str, str]] = field(default_factory=list)  # file -> role
    unrecognised: list[str] = field(default_factory=list)
    clinical_columns: list[str] = field(default_factory=list)
    # clinical columns the binary label is derived from: models must not use them
    # as features for that label (kept for survival and reports)
    label_columns: list[str] = field(default_factory=list)
    # how clinical columns become features (None: inferred from the values)
    clinical_schema: list[ColumnSpec] | None = None
    # genomic features kept, with centre and scale (set by the reader's after_split)
    genomics_schema: dict[str, list] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    site_info: dict[str, dict[str, Any]] = field(default_factory=dict)
    # run once sites and splits are final (e.g. genomic feature selection on the
    # training rows only)
    after_split: Callable[[list[Case]], None] | None = None


@dataclass(frozen=True)
class PrepareOptions:
    """How to split. ``partition``: ``natural`` (the dataset's own sites),
    ``dirichlet`` (label skew, concentration ``alpha``) or ``quantity`` (site sizes
    drawn from a Dirichlet(``alpha``))."""

    partition: str = "natural"
    num_sites: int = 5
    alpha: float = 0.5
    seed: int = 2024
    test_fraction: float = 0.2
    # share of each site's cases held out for validation (model selection, early
    # stopping, tuning), carved from what is not test
    val_fraction: float = 0.15
    site_map: str | None = None  # CSV mapping tissue-source sites to regions
    tss_table: str | None = None  # GDC's TSS code table: TCGA projects by TSS code
    min_site_cases: int = 20  # natural sites smaller than this are grouped
    label_column: str | None = None  # imaging datasets: clinical column = label
    label: str | None = None  # TCGA datasets: which label rule (see --label)
    allow_burned_in: bool = False  # DICOM: keep series with BurnedInAnnotation YES


class Staging:
    """Where a reader writes converted files: ``out/_staging/<case>/...``; moved into
    the site folders once sites are final."""

    def __init__(self, out: Path) -> None:
        self.root = out / "_staging"
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, case_id: str, name: str) -> Path:
        p = self.root / case_id / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p


def check_out_dir(out: Path) -> None:
    """Refuse to write into a non-empty folder that is not an earlier preparation."""
    if out.exists() and any(out.iterdir()) and not (out / DATASET_JSON).exists():
        raise DataError(
            out,
            "--out",
            "folder exists, is not empty and holds no earlier preparation",
            "give an empty or new folder",
        )


# ---------------------------------------------------------------- partitioning


def partition(cases: list[Case], opts: PrepareOptions) -> list[Case]:
    """Re-assign sites when ``opts.partition`` is not ``natural``."""
    if opts.partition == "natural":
        return cases
    if opts.partition not in ("dirichlet", "quantity"):
        raise DataError(
            "--partition",
            "partition",
            f"unknown partition {opts.partition!r}",
            "use natural, dirichlet or quantity",
        )
    labelled = [c for c in cases if c.label is not None]
    frame = pd.DataFrame({LABEL: [c.label for c in labelled]})
    ids = flwr_partition(frame, opts)
    out = []
    for site_index, idx in enumerate(ids):
        for i in idx:
            c = labelled[i]
            c.site = f"site-{site_index:02d}"
            out.append(c)
    return out


def flwr_partition(frame: pd.DataFrame, opts: PrepareOptions) -> list[list[int]]:
    """Row indices per partition, from Flower Datasets' partitioners.

    ``dirichlet``: :class:`flwr_datasets.partitioner.DirichletPartitioner` on the label
    (label skew). ``quantity``: sizes drawn from Dirichlet(alpha) and cut with
    :class:`flwr_datasets.partitioner.SizePartitioner` (quantity skew, labels iid).
    """
    from datasets import Dataset
    from flwr_datasets.partitioner import DirichletPartitioner, SizePartitioner

    ds = Dataset.from_pandas(
        frame.reset_index(drop=True).assign(_row=range(len(frame)))
    )
    n = opts.num_sites
    if opts.partition == "dirichlet":
        part: Any = DirichletPartitioner(
            num_partitions=n,
            partition_by=LABEL,
            alpha=opts.alpha,
            min_partition_size=2,
            self_balancing=False,
            shuffle=True,
            seed=opts.seed,
        )
    else:
        rng = np.random.default_rng(opts.seed)
        shares = rng.dirichlet([opts.alpha] * n)
        sizes = np.maximum(1, np.floor(shares * len(frame))).astype(int)
        sizes[np.argmax(sizes)] -= sizes.sum() - len(frame)
        ds = ds.shuffle(seed=opts.seed)
        part = SizePartitioner(partition_sizes=[int(s) for s in sizes])
    part.dataset = ds
    return [list(part.load_partition(i)["_row"]) for i in range(n)]


def pool_small_sites(cases: list[Case], min_cases: int) -> str | None:
    """Pool natural sites with fewer than ``min_cases`` cases into ``site-small``;
    return a note naming them (None if none)."""
    counts = Counter(c.site for c in cases)
    small = {s for s, n in counts.items() if n < min_cases}
    if not small or len(counts) == 1:
        return None
    for c in cases:
        if c.site in small:
            c.site = "site-small"
    return (
        f"{len(small)} site(s) with fewer than {min_cases} cases pooled into "
        f"'site-small': {', '.join(sorted(small))}"
    )


def assign_splits(
    cases: list[Case], test_fraction: float, seed: int, val_fraction: float = 0.0
) -> None:
    """Label-stratified train/validation/test split inside each site, seeded.

    A case whose reader already set ``split`` (a published split) keeps it. Then,
    unless the site already has validation cases, ``val_fraction`` of each label's
    cases (at least one where the label has 3 or more training cases) move from
    ``train`` to ``val``. The test draw is the same with or without validation."""
    by_site: dict[str, list[Case]] = {}
    for c in cases:
        by_site.setdefault(c.site, []).append(c)
    for site, members in sorted(by_site.items()):
        todo = [c for c in members if c.split is None]
        rng = np.random.default_rng([seed, stable_int(site)])
        for group in _by_label(todo):
            order = rng.permutation(len(group))
            n_test = int(round(len(group) * test_fraction))
            if len(group) >= 2:
                n_test = max(1, n_test)
            for rank, i in enumerate(order):
                group[i].split = "test" if rank < n_test else "train"
        if val_fraction <= 0 or any(c.split == "val" for c in members):
            continue
        rng = np.random.default_rng([seed, stable_int(site), 1])
        labels = {c.label: 0 for c in members}
        for c in members:
            labels[c.label] += 1
        for group in _by_label([c for c in members if c.split == "train"]):
            n_val = int(round(labels[group[0].label] * val_fraction))
            if len(group) >= 3:
                n_val = min(max(1, n_val), len(group) - 1)
            else:
                n_val = 0
            for i in rng.permutation(len(group))[:n_val]:
                group[i].split = "val"


def _by_label(cases: list[Case]) -> list[list[Case]]:
    """Cases grouped by label (groups and members in a fixed order)."""
    return [
        sorted((c for c in cases if c.label == label), key=lambda c: c.case_id)
        for label in sorted({c.label for c in cases}, key=str)
    ]


# ---------------------------------------------------------------- writing


def write_prepared(
    out: Path,
    dataset: str,
    result: ReadResult,
    opts: PrepareOptions,
) -> dict[str, Any]:
    """Write the prepared layout and the report; return the report dict."""
    cases = partition(result.cases, opts)
    assign_splits(cases, opts.test_fraction, opts.seed, opts.val_fraction)
    if result.after_split is not None:
        result.after_split(cases)
    sites = sorted({c.site for c in cases})
    for d in [*sites, *SERVER_FOLDERS.values()]:
        if (out / d).exists():
            shutil.rmtree(out / d)
    columns = result.clinical_columns or sorted(
        {k for c in cases if c.clinical for k in c.clinical}
    )
    held_out: dict[str, list[dict]] = {split: [] for split in SERVER_FOLDERS}
    for site in sites:
        members = sorted((c for c in cases if c.site == site), key=lambda c: c.case_id)
        rows = [_write_case(out / site, c) for c in members]
        _write_tables(out / site, members, rows, columns)
        for c, row in zip(members, rows, strict=True):
            if c.split in held_out:
                held_out[c.split].append(
                    {
                        **row,
                        **{
                            k: f"../{site}/{row[k]}" if row[k] else ""
                            for k in ("ct_path", "mask_path", "histo_path")
                        },
                    }
                )
    for split, folder in SERVER_FOLDERS.items():
        _write_tables(
            out / folder,
            [c for c in cases if c.split == split],
            held_out[split],
            columns,
        )
    schema = Schema(
        dataset=dataset,
        clinical=tuple(
            result.clinical_schema
            if result.clinical_schema is not None
            else infer_schema(cases, columns)
        ),
        genomics=tuple(result.genomics_schema.get("features", ())),
        genomics_center=tuple(result.genomics_schema.get("center", ())),
        genomics_scale=tuple(result.genomics_schema.get("scale", ())),
        label_columns=tuple(result.label_columns),
    )
    for d in [*sites, *SERVER_FOLDERS.values()]:
        (out / d / SCHEMA_JSON).write_text(schema.to_json())
    staging = out / "_staging"
    if staging.exists():
        shutil.rmtree(staging)
    meta = {
        "name": dataset,
        "sites": sites,
        "partition": asdict(opts),
        "clinical_columns": columns,
        "label_columns": result.label_columns,
        "site_info": {s: result.site_info.get(s, {}) for s in sites},
    }
    (out / DATASET_JSON).write_text(json.dumps(meta, indent=2))
    report = build_report(dataset, cases, result, opts, columns)
    audit_report(report)
    (out / REPORT_JSON).write_text(json.dumps(report, indent=2, default=str))
    (out / REPORT_MD).write_text(report_markdown(report))
    return report


def infer_schema(cases: list[Case], columns: list[str]) -> list[ColumnSpec]:
    """Column kinds from the values, where the dataset's code fixes none: numeric if
    every present value is a number (centred on the median, scaled by the IQR),
    categorical if at most 20 distinct values, else left out."""
    specs = []
    for col in columns:
        values: list[Any] = [
            v for c in cases if c.clinical and not _is_missing(v := c.clinical.get(col))
        ]
        if not values:
            continue
        try:
            nums = np.array([float(v) for v in values])
        except (TypeError, ValueError):
            cats = sorted({str(v).strip() for v in values})
            if len(cats) <= 20:
                specs.append(ColumnSpec(col, "categorical", categories=tuple(cats)))
            continue
        q1, med, q3 = np.percentile(nums, [25, 50, 75])
        specs.append(ColumnSpec(col, "numeric", float(med), float(max(q3 - q1, 1e-3))))
    return specs


def _write_case(site_dir: Path, c: Case) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(MANIFEST_COLUMNS, "")
    row.update(
        {
            CASE_ID: c.case_id,
            "split": c.split,
            LABEL: "" if c.label is None else int(c.label),
            "has_clinical": int(bool(c.clinical)),
            "has_genomics": int(bool(c.genomics)),
            "time": "" if c.time is None or np.isnan(c.time) else c.time,
            "event": "" if c.event is None else int(c.event),
        }
    )
    for column, src in c.files.items():
        rel = Path(IMAGE_MODALITIES.get(column, "masks")) / src.name
        dst = site_dir / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        row[column] = rel.as_posix()
    return row


def _write_tables(
    folder: Path, cases: list[Case], rows: list[dict], columns: list[str]
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS)).to_csv(
        folder / MANIFEST, index=False
    )
    clinical = [{CASE_ID: c.case_id, **(c.clinical or {})} for c in cases if c.clinical]
    pd.DataFrame(clinical, columns=[CASE_ID, *columns]).to_csv(
        folder / CLINICAL_TSV, sep="\t", index=False, na_rep=""
    )
    genomics = [{CASE_ID: c.case_id, **c.genomics} for c in cases if c.genomics]
    if genomics:
        pd.DataFrame(genomics).to_csv(
            folder / GENOMICS_TSV, sep="\t", index=False, na_rep=""
        )


# ---------------------------------------------------------------- report


def build_report(
    dataset: str,
    cases: list[Case],
    result: ReadResult,
    opts: PrepareOptions,
    columns: list[str],
) -> dict[str, Any]:
    sites: dict[str, Any] = {}
    for site in sorted({c.site for c in cases}):
        members = [c for c in cases if c.site == site]
        modality_label: Counter[tuple[str, str]] = Counter()
        for c in members:
            for m in _modalities(c):
                modality_label[(m, str(c.label))] += 1
        missing = {
            col: round(
                float(
                    np.mean([_is_missing((c.clinical or {}).get(col)) for c in members])
                ),
                3,
            )
            for col in columns
        }
        sites[site] = {
            "cases": len(members),
            "train": sum(c.split == "train" for c in members),
            "val": sum(c.split == "val" for c in members),
            "test": sum(c.split == "test" for c in members),
            "labels": dict(Counter(str(c.label) for c in members)),
            "modality_by_label": {
                f"{m}|{lab}": n for (m, lab), n in sorted(modality_label.items())
            },
            "clinical_missing_fraction": missing,
            **result.site_info.get(site, {}),
        }
    return {
        "dataset": dataset,
        "partition": asdict(opts),
        "cases_kept": len(cases),
        # patients left out entirely (an entry about a patient kept from another
        # file is a file-level entry, listed but not counted here)
        "cases_quarantined": len(
            {q.case_id for q in result.quarantined if q.case_id}
            - {c.case_id for c in cases}
        ),
        # every quarantine entry (a patient may have several; a file-level entry
        # names no patient)
        "entries_quarantined": len(result.quarantined),
        "sites": sites,
        "quarantined": [asdict(q) for q in result.quarantined],
        "sources": result.sources,
        "unrecognised_files": result.unrecognised,
        "notes": result.notes,
    }


def audit_report(report: dict[str, Any]) -> None:
    """Check that a report's counts agree with each other, and raise
    ``RuntimeError`` naming the first that does not (a bug, never bad input):
    sites add up to the cases kept; each site's splits and labels add up to its
    cases; the entries are the quarantine list; the patients quarantined are
    named in it and are none of the cases kept."""
    sites = report["sites"]
    problems = []
    if sum(s["cases"] for s in sites.values()) != report["cases_kept"]:
        problems.append("the sites' cases do not add up to cases_kept")
    for name, s in sites.items():
        if s["train"] + s["val"] + s["test"] != s["cases"]:
            problems.append(f"{name}: train + val + test != cases")
        if sum(s["labels"].values()) != s["cases"]:
            problems.append(f"{name}: the label counts do not add up to its cases")
    if report["entries_quarantined"] != len(report["quarantined"]):
        problems.append("entries_quarantined is not the length of the list")
    named = {q["case_id"] for q in report["quarantined"] if q["case_id"]}
    if report["cases_quarantined"] > len(named):
        problems.append("more patients quarantined than the list names")
    if problems:
        raise RuntimeError("prepare report counts disagree: " + "; ".join(problems))


def _modalities(c: Case) -> Iterable[str]:
    if "ct_path" in c.files:
        yield "ct"
    if "histo_path" in c.files:
        yield "histology"
    if c.clinical:
        yield "clinical"
    if c.genomics:
        yield "genomics"


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


def _input_files(report: dict[str, Any]) -> list[str]:
    """Every input file and what it was taken as (or why it was not used)."""
    rows = [
        (s["file"], s["role"], s.get("why", "")) for s in report.get("sources", [])
    ] + [
        (f, NOT_USED, "not a file this dataset's reader knows")
        for f in report["unrecognised_files"]
    ]
    if not rows:
        return []
    out = ["", "## Input files", "", "| file | taken as | why |", "|---|---|---|"]
    for f, role, why in rows:
        out.append(f"| {f} | {role} | {str(why).replace('|', '/')} |")
    return out


def report_markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Preparation report: {report['dataset']}",
        "",
        f"Partition: {report['partition']['partition']}; seed "
        f"{report['partition']['seed']}; test fraction "
        f"{report['partition']['test_fraction']}; validation fraction "
        f"{report['partition'].get('val_fraction', 0)}. Validation cases choose "
        "models; test cases only score the chosen ones.",
        "",
        f"Cases kept: **{report['cases_kept']}**. Patients quarantined: "
        f"**{report['cases_quarantined']}**; quarantined entries in all: "
        f"**{report['entries_quarantined']}**.",
        "",
        "## Cases per site",
        "",
        "| site | cases | train | val | test | labels | modality x label |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for site, s in report["sites"].items():
        labels = ", ".join(f"{k}: {v}" for k, v in sorted(s["labels"].items()))
        mods = ", ".join(f"{k} {v}" for k, v in s["modality_by_label"].items())
        lines.append(
            f"| {site} | {s['cases']} | {s['train']} | {s.get('val', 0)} | {s['test']} "
            f"| {labels} | {mods} |"
        )
    cols = sorted(
        {c for s in report["sites"].values() for c in s["clinical_missing_fraction"]}
    )
    if cols:
        lines += ["", "## Clinical missingness (fraction of the site's cases)", ""]
        lines.append("| site | " + " | ".join(cols) + " |")
        lines.append("|---|" + "---:|" * len(cols))
        for site, s in report["sites"].items():
            m = s["clinical_missing_fraction"]
            lines.append(
                f"| {site} | " + " | ".join(f"{m.get(c, 0):.2f}" for c in cols) + " |"
            )
    lines += ["", "## Quarantined", ""]
    if not report["quarantined"]:
        lines.append("Nothing was quarantined.")
    else:
        lines += ["| case | file | field | reason |", "|---|---|---|---|"]
        for q in report["quarantined"]:
            lines.append(
                f"| {q['case_id'] or '-'} | {q['path']} | {q['field']} | "
                f"{q['reason'].replace('|', '/')} |"
            )
    lines += _input_files(report)
    if report["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- entry points


def prepare(
    dataset: str,
    root: Path,
    out: Path,
    opts: PrepareOptions,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Read ``root`` with dataset ``dataset``'s reader and write ``out``.

    An unusable ``root`` (missing, empty, no file of this dataset) raises
    ``DataError``; bad files and cases inside a usable root are quarantined.
    """
    from tqdm import tqdm

    from oncofed.common.ingest import get_dataset

    entry: Any = get_dataset(dataset)
    root = Path(root).resolve()
    if not root.exists():
        raise DataError(root, "--root", "folder not found", "check the path")
    if root.is_file():
        raise DataError(
            root,
            "--root",
            "is a file, not a folder",
            f"point --root at the folder that holds the download (e.g. {root.parent})",
        )
    if root.is_dir() and not any(root.iterdir()):
        raise DataError(root, "--root", "folder is empty", "point it at the download")
    check_out_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    merged = getattr(entry, "prepare_merged", None)
    if merged is not None:  # a dataset made of several prepared sources
        return merged(root, out, opts, show_progress)
    staging = Staging(out)
    bar = tqdm(desc=f"prepare {dataset}", unit="file", disable=not show_progress)

    def tick(name: str) -> None:
        bar.set_postfix_str(name[-40:], refresh=False)
        bar.update(1)

    try:
        result = entry.read(root, staging, opts, tick)
    finally:
        bar.close()
    if not result.cases:
        raise nothing_kept(root, result, getattr(entry, "no_case_fix", lambda: "")())
    return write_prepared(out, dataset, result, opts)


def nothing_kept(root: Path, result: ReadResult, fix: str = "") -> DataError:
    """The error of a preparation that kept no case: the commonest quarantine
    reasons with their counts, the files not used, and what to try."""
    example: dict[str, str] = {}  # one reason as written per reason pattern
    counts: Counter[str] = Counter()
    for q in result.quarantined:
        pattern = re.sub(r"'[^']*'", "'…'", q.reason)
        example.setdefault(pattern, q.reason)
        counts[pattern] += 1
    top = (
        "; ".join(f"{example[r]} ({n})" for r, n in counts.most_common(3))
        or "nothing was quarantined"
    )
    unused = sum(s.get("role") == NOT_USED for s in result.sources) + len(
        result.unrecognised
    )
    return DataError(
        root,
        "cases",
        f"no case kept ({len(result.quarantined)} quarantined entries; top reasons: "
        f"{top}; {unused} file(s) not used)",
        fix or "fix the files named in the reasons, or point --root at the download",
    )


class PreparableDataset:
    """Base of datasets read from source files. A dataset with an offline
    default overrides :meth:`synthetic_source` (a synthetic download of itself)
    and sets ``synthetic_version``; its default is that download, prepared."""

    name = ""
    synthetic_version: int | None = None  # None: no embedded default

    def read(
        self,
        root: Path,
        staging: Staging,
        opts: PrepareOptions,
        progress: Callable[[str], None],
    ) -> ReadResult:
        raise NotImplementedError

    def synthetic_source(self, out: Path, cfg: Any) -> None:
        """Write a synthetic download of this dataset into ``out``."""
        raise NotImplementedError

    def default_version(self, cfg: Any) -> str | None:
        if self.synthetic_version is None:
            return None
        return f"synthetic-v{self.synthetic_version}"

    def make_default(self, cfg: Any, out: Path) -> None:
        """The synthetic download (next to ``out``), prepared into ``out``."""
        raw = out.parent / "raw"
        self.synthetic_source(raw, cfg)
        opts = PrepareOptions(seed=cfg.seed, min_site_cases=1)
        prepare(self.name, raw, out, opts, False)
