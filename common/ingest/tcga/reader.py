"""Read a TCGA download folder (any mix of GDC / cBioPortal / genomic files).

Files are recognised by their content, not their names. Sites are tissue-source
sites (barcode characters 6-7); with a mapping table (``--site-map``, columns
``TSS Code`` and ``Region`` as FLamby's ``centers.csv``) they are grouped into
regions; sites with fewer than ``min_site_cases`` patients are pooled into
``site-small`` either way. Every patient seen in any file ends up either in a site
or quarantined with a reason.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from oncofed.common.data import histology as histo
from oncofed.common.errors import ConfigError, DataError
from oncofed.common.ingest import text
from oncofed.common.ingest.prepare import (
    Case,
    PreparableDataset,
    PrepareOptions,
    ReadResult,
    Staging,
    pool_small_sites,
)
from oncofed.common.ingest.synthetic.tcga_export import (
    TCGA_EXPORT_VERSION,
    write_tcga_export,
)
from oncofed.common.ingest.tcga import clinical as tc
from oncofed.common.ingest.tcga import genomics as tg
from oncofed.common.ingest.tcga import tss
from oncofed.common.ingest.tcga.barcode import (
    looks_like_barcode,
    patient_barcode,
    tss_code,
)
from oncofed.common.quarantine import Quarantined
from oncofed.common.registry import suggestion

TEXT_SUFFIXES = {".tsv", ".txt", ".csv", ".tab", ".seg", ".xlsx", ".xls", ""}
NOT_USED = "not used"
GENOMICS_TOP_K = 256

# label rule: clinical row -> 0/1, or a reason why it cannot be decided
LabelRule = Callable[[tc.PatientRecord], "int | str"]
# the clinical columns each rule reads (excluded from that label's features)
LABEL_COLUMNS = {
    "label_metastatic": ["stage", "m_stage"],
    "label_advanced": ["stage", "t_stage", "n_stage", "m_stage"],
}


def label_metastatic(rec: tc.PatientRecord) -> int | str:
    """1 = distant metastasis at diagnosis (M1 or stage IV), 0 = M0 and stage < IV."""
    m, stage = rec.clinical.get("m_stage"), rec.clinical.get("stage")
    if m == "M1" or stage == "IV":
        return 1
    if m == "M0":
        return 0
    return "metastasis status unknown (M stage and AJCC stage missing or MX)"


def label_advanced(rec: tc.PatientRecord) -> int | str:
    """1 = AJCC stage III-IV, 0 = stage I-II."""
    stage = rec.clinical.get("stage")
    if stage in ("III", "IV"):
        return 1
    if stage in ("0", "I", "II"):
        return 0
    return "AJCC stage missing"


FIVE_YEARS_DAYS = 5 * 365.25


def label_os_event(rec: tc.PatientRecord) -> int | str:
    """1 = died during follow-up, 0 = alive at last contact."""
    if rec.event is None:
        return "vital status missing"
    return rec.event


def label_os_5y(rec: tc.PatientRecord) -> int | str:
    """1 = died within 5 years of diagnosis, 0 = seen alive (or died) after 5
    years; alive and followed for less than 5 years cannot be decided."""
    if rec.time is None or rec.event is None:
        return "vital status or follow-up time missing"
    if rec.event == 1 and rec.time < FIVE_YEARS_DAYS:
        return 1
    if rec.time >= FIVE_YEARS_DAYS:
        return 0
    return "alive but followed for less than 5 years (5-year survival unknown)"


# --label choices of the TCGA datasets
LABEL_RULES: dict[str, LabelRule] = {
    "stage-3-4": label_advanced,
    "m1": label_metastatic,
    "os-event": label_os_event,
    "os-5y": label_os_5y,
}
LABEL_HELP = (
    "a cohort without AJCC stage (ovarian, prostate, brain, leukaemia) can use "
    "another label: --label os-event (died during follow-up), os-5y (died within 5 "
    "years), m1 (distant metastasis) or stage-3-4 (AJCC stage III-IV)"
)


def classify(path: Path) -> tuple[str, str] | None:
    """(role, separator) of a file by its content, ``(NOT_USED, why)`` for a
    table keyed by TCGA barcodes that is neither clinical nor genomic, or None if
    not ours."""
    if tc.is_gdc_json(path):
        return "gdc-json", ""
    stem_suffix = Path(path.name.removesuffix(".gz")).suffix.lower()
    if stem_suffix not in TEXT_SUFFIXES:
        return None
    try:
        lines = text.first_lines(path)
    except (OSError, UnicodeError, text.TableError):
        return None
    body = [ln for ln in lines if not ln.startswith("#")]
    if not body:
        return None
    sep = text.sniff_delimiter(body)
    cb = tc.is_cbioportal_clinical(lines, sep)
    if cb:
        return f"cbioportal-{cb}", sep
    header = [
        h.strip() for h in next(csv.reader([body[0].rstrip("\n")], delimiter=sep))
    ]
    lower = [h.lower() for h in header]
    if tss.is_tss_table(lower):
        return "tss-table", sep
    if tc.is_gdc_clinical(lower) or tc.is_biotab_clinical(lower):
        return "gdc-clinical", sep
    if set(lower) & {"cases.submitter_id", "case_submitter_id", tc.BIOTAB_ID}:
        return "gdc-other", sep  # follow_up.tsv, exposure.tsv, ...
    first_cells = [
        next(csv.reader([ln], delimiter=sep))[0] for ln in body[1:] if ln.strip()
    ]
    kind, why = tg.sniff_barcode_table(header, first_cells)
    if kind:
        return f"genomics-{kind}", sep
    if why:
        return NOT_USED, why
    return None


def load_site_map(path: str | None) -> dict[str, str]:
    """TSS code -> region name from a CSV with ``TSS Code`` and ``Region`` columns."""
    if not path:
        return {}
    p = Path(path)
    if not p.is_file():
        raise DataError(p, "--site-map", "file not found", "give a CSV mapping file")
    frame = pd.read_csv(p, dtype=str, keep_default_na=False)
    missing = [c for c in ("TSS Code", "Region") if c not in frame.columns]
    if missing:
        raise DataError(
            p,
            ", ".join(missing),
            "column(s) absent",
            "the mapping needs columns 'TSS Code' and 'Region' "
            "(as FLamby's centers.csv)",
        )
    return {
        r["TSS Code"].strip().upper(): r["Region"].strip()
        for r in frame.to_dict("records")
    }


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def _histology_patient(path: Path) -> str | None:
    """Patient barcode of a tile or slide: from its name or a parent folder's."""
    for part in (path.name, *(p.name for p in path.parents)):
        if looks_like_barcode(part) and (b := patient_barcode(part)):
            return b
    return None


@dataclass
class _Scan:
    """Everything read from a TCGA download, before cases are built."""

    sources: list[dict[str, str]] = field(default_factory=list)
    unrecognised: list[str] = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    patients: dict[str, tc.PatientRecord] = field(default_factory=dict)
    cbio_patients: dict[str, tc.PatientRecord] = field(default_factory=dict)
    sample_info: dict[str, dict[str, Any]] = field(default_factory=dict)
    tables: list[tg.GenomicTable] = field(default_factory=list)
    histology: dict[str, list[Path]] = field(default_factory=dict)
    follow_ups: dict[str, float] = field(default_factory=dict)
    studies: dict[str, str] = field(default_factory=dict)  # folder -> project
    tss: tss.TssTable = field(default_factory=tss.TssTable)  # TSS code -> project
    from_tss: int = 0  # patients whose project only the TSS table gave


def read_tcga(
    root: Path,
    opts: PrepareOptions,
    label_rule: LabelRule,
    projects: tuple[str, ...] = (),
    progress: Callable[[str], None] | None = None,
    staging: Staging | None = None,
) -> ReadResult:
    """Recognise every file under ``root`` and build one case per patient."""
    scan = _Scan()
    if opts.tss_table:
        table = Path(opts.tss_table)
        if not table.is_file():
            raise DataError(
                table, "--tss-table", "file not found",
                "give the GDC's tissue-source-site code table (TSV or CSV)",
            )  # fmt: skip
        scan.tss.update(tss.read_tss_table(table))
        scan.sources.append({"file": str(table), "role": "tss-table", "why": ""})
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if progress:
            progress(path.name)
        _scan_file(scan, path)
    if not any(src["role"] != NOT_USED for src in scan.sources):
        raise DataError(
            root,
            "--root",
            "no TCGA clinical or genomic file recognised here",
            "point --root at the folder holding the GDC / cBioPortal download",
        )
    _merge_sources(scan)
    scan.notes += scan.tss.notes
    if projects:
        _keep_projects(scan, projects)
    _quarantine_unlabelled(scan)
    cases = _build_cases(scan, opts, label_rule)
    result = ReadResult(
        cases=cases,
        quarantined=scan.quarantined,
        sources=scan.sources,
        unrecognised=scan.unrecognised,
        clinical_columns=list(tc.COLUMNS),
        label_columns=LABEL_COLUMNS.get(label_rule.__name__, []),
        clinical_schema=list(tc.SCHEMA),
        notes=scan.notes,
    )

    def after_split(cs: list[Case]) -> None:
        if scan.tables:
            _attach_genomics(cs, scan.tables, result)
        if scan.histology and staging is not None:
            result.quarantined += _attach_histology(
                cs, scan.histology, staging, result.notes
            )

    result.after_split = after_split
    return result


def _scan_file(scan: _Scan, path: Path) -> None:
    """Recognise one file by its content and read it into ``scan``; a file that
    cannot be read is quarantined with the reason."""
    if path.suffix.lower() in histo.TILE_SUFFIXES | histo.SLIDE_SUFFIXES:
        b = _histology_patient(path)
        if b is None:
            scan.unrecognised.append(str(path))
        else:
            scan.histology.setdefault(b, []).append(path)
        return
    if path.name.lower() == "meta_study.txt":  # cBioPortal: the study's project
        project = read_study_meta(path)
        scan.sources.append(
            {"file": str(path), "role": "cbioportal-study", "why": project or ""}
        )
        if project:
            scan.studies[str(path.parent)] = project
        return
    role = classify(path)
    if role is None:
        scan.unrecognised.append(str(path))
        return
    kind, sep = role
    if kind == NOT_USED:
        scan.sources.append({"file": str(path), "role": NOT_USED, "why": sep})
        return
    source = {"file": str(path), "role": kind}
    scan.sources.append(source)
    try:
        _read_by_kind(scan, path, kind, sep)
    except tg.NotGenomic as err:
        source.update(role=NOT_USED, why=str(err))
    except Exception as err:  # noqa: BLE001 - a bad file is quarantined, not fatal
        scan.quarantined.append(Quarantined("", str(path), f"unreadable: {err}", kind))
        source.update(role=NOT_USED, why=f"unreadable: {err}")
        return
    if kind.startswith("genomics-") and source["role"] != NOT_USED:
        table = scan.tables[-1]
        source["role"] = f"genomic: {table.kind}"
        if table.scale:
            source["why"] = table.scale


def _read_by_kind(scan: _Scan, path: Path, kind: str, sep: str) -> None:
    if kind == "gdc-clinical":
        recs, q = tc.read_gdc_clinical(path, sep)
        scan.quarantined += q
        tc.merge_records(scan.patients, recs)
    elif kind == "gdc-json":
        recs, q = tc.read_gdc_json(path)
        scan.quarantined += q
        tc.merge_records(scan.patients, recs)
    elif kind == "gdc-other":
        scan.follow_ups.update(tc.read_follow_ups(path, sep))
    elif kind == "cbioportal-patient":
        recs, q = tc.read_cbioportal_patients(path, sep=sep)
        scan.quarantined += q
        tc.merge_records(scan.cbio_patients, recs)
    elif kind == "cbioportal-sample":
        for b, info in tc.read_cbioportal_samples(path, sep).items():
            scan.sample_info.setdefault(b, {}).update(info)
        if tc.has_cbioportal_clinical_fields(path, sep):  # older data_clinical.txt
            recs, q = tc.read_cbioportal_patients(path, False, sep)
            scan.quarantined += q
            tc.merge_records(scan.cbio_patients, recs)
    elif kind == "tss-table":
        scan.tss.update(tss.read_tss_table(path))
    elif kind == "cbioportal-other":
        pass  # timeline / gene-panel tables: recognised, not used
    elif kind == "genomics-segments":
        scan.tables.append(tg.read_segments(path, sep))
    else:
        scan.tables.append(tg.read_matrix(path, kind.removeprefix("genomics-"), sep))


def _merge_sources(scan: _Scan) -> None:
    """GDC records first, cBioPortal fills their gaps; GDC follow-ups extend a
    living patient's time; sample-level fields fill clinical gaps."""
    patients = scan.patients
    tc.merge_records(patients, scan.cbio_patients)
    for b, days in scan.follow_ups.items():  # GDC follow_up.tsv: the longest one
        rec = patients.get(b)
        if rec and rec.vital_status != "dead" and (rec.time or 0) < days:
            rec.time = days
    for b, info in scan.sample_info.items():
        if b in patients:
            for k, v in info.items():
                if patients[b].clinical.get(k) is None:
                    patients[b].clinical[k] = v
    for t in scan.tables:
        scan.quarantined += t.quarantined
        scan.notes += t.notes


# cBioPortal's combined TCGA studies stand for several GDC projects
COMBINED_PROJECTS = {
    "TCGA-COADREAD": ("TCGA-COAD", "TCGA-READ"),
    "TCGA-GBMLGG": ("TCGA-GBM", "TCGA-LGG"),
    "TCGA-KIPAN": ("TCGA-KICH", "TCGA-KIRC", "TCGA-KIRP"),
    "TCGA-STES": ("TCGA-STAD", "TCGA-ESCA"),
}


# TCGA Biotab clinical files: nationwidechildrens.org_clinical_patient_<disease>.txt
BIOTAB_NAME = re.compile(r"^nationwidechildrens\.org_clinical_\w*?_([a-z]{2,8})\.txt")


def read_study_meta(path: Path) -> str | None:
    """The TCGA project of a cBioPortal ``meta_study.txt`` (``type_of_cancer`` or
    the ``cancer_study_identifier`` such as ``lihc_tcga``), else None."""
    fields = {}
    for line in text.decode(path, limit=64 * 1024).text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip().lower()] = value.strip()
    study = fields.get("cancer_study_identifier", "").lower()
    if "tcga" not in study:
        return None
    acr = study.split("_")[0].upper()
    return f"TCGA-{acr}" if acr.isalpha() and len(acr) <= 8 else None


def _project_of(scan: _Scan, rec: tc.PatientRecord) -> str | None:
    """The patient's project from its own fields, else from its Biotab file's
    name, else from the cBioPortal study (``meta_study.txt``) in the folder of one
    of its files."""
    proj = rec.clinical.get("project")
    if proj:
        return str(proj).upper()
    for src in rec.sources:  # Biotab names carry the disease code
        if m := BIOTAB_NAME.match(Path(src).name.lower()):
            return f"TCGA-{m.group(1).upper()}"
    for src in rec.sources:
        for folder in Path(src).parents:
            if str(folder) in scan.studies:
                return scan.studies[str(folder)]
    code = tss_code(rec.barcode)
    # a table the user gave (newer) first; a code it lists for two studies
    # ('') decides nothing, not even through the shipped table
    proj = scan.tss.project(code) if code.upper() in scan.tss.codes else None
    if code.upper() not in scan.tss.codes:
        proj = tss.shipped().project(code)
    if proj:
        scan.from_tss += 1
    return proj


def _keep_projects(scan: _Scan, projects: tuple[str, ...]) -> None:
    """Keep the patients of ``projects``; any other project, and a patient whose
    project cannot be established, is quarantined with the reason."""
    keep = {p.upper() for p in projects}
    for b in list(scan.patients):
        rec = scan.patients[b]
        proj = _project_of(scan, rec)
        if proj is not None:
            rec.clinical["project"] = proj
        members = set(COMBINED_PROJECTS.get(proj or "", (proj,)))
        if proj is None:
            why = (
                f"project cannot be established (no project id, cancer-type "
                f"acronym or cBioPortal study in its files, and its TSS code "
                f"{tss_code(b)} is in no TSS code table: neither the GDC's of "
                f"May 2015 that OncoFed ships nor one given with --tss-table; "
                f"give the GDC's current one), so it cannot be checked against "
                f"{', '.join(sorted(keep))}"
            )
        elif members & keep:
            continue
        else:
            why = f"project {proj} is not one of {', '.join(sorted(keep))}"
        scan.quarantined.append(
            Quarantined(b, "; ".join(rec.sources), why, "project_id")
        )
        del scan.patients[b]
    if scan.from_tss:
        scan.notes.append(
            f"{scan.from_tss} patient(s) took their project from the TSS code table"
        )


def _quarantine_unlabelled(scan: _Scan) -> None:
    """Histology-only and genomics-only patients have no clinical record, so no
    label: each is quarantined with the file that named it."""
    if scan.histology:
        n_images = sum(map(len, scan.histology.values()))
        scan.sources.append({"file": f"{n_images} image files", "role": "histology"})
    for b in sorted(set(scan.histology) - set(scan.patients)):
        scan.quarantined.append(
            Quarantined(
                b,
                str(scan.histology[b][0]),
                "histology but no clinical record (no label)",
                "barcode",
            )
        )
    genomic_ids = set().union(*(set(t.features.index) for t in scan.tables))
    genomic_files = ", ".join(
        str(s["file"]) for s in scan.sources if s["role"].startswith("genomic")
    )
    for b in sorted(genomic_ids - set(scan.patients)):
        scan.quarantined.append(
            Quarantined(
                b,
                genomic_files,
                "genomic data but no clinical record (no label)",
                "barcode",
            )
        )


def _build_cases(
    scan: _Scan, opts: PrepareOptions, label_rule: LabelRule
) -> list[Case]:
    """One case per labelled patient at its tissue-source site (or the site
    map's region); small sites pooled."""
    site_map = load_site_map(opts.site_map)
    cases: list[Case] = []
    for b, rec in sorted(scan.patients.items()):
        label = label_rule(rec)
        if isinstance(label, str):
            scan.quarantined.append(
                Quarantined(b, "; ".join(rec.sources), label, "label")
            )
            continue
        tss = tss_code(b)
        site = site_map.get(tss, "unmapped") if site_map else f"tss-{tss}"
        cases.append(
            Case(
                case_id=b,
                site=slug(site),
                label=label,
                clinical={k: rec.clinical.get(k) for k in tc.COLUMNS},
                time=rec.time,
                event=rec.event,
            )
        )
    if site_map and any(c.site == "unmapped" for c in cases):
        scan.notes.append(
            f"{sum(c.site == 'unmapped' for c in cases)} patient(s) from tissue-source "
            "sites missing in the site map are in site 'unmapped'"
        )
    if note := pool_small_sites(cases, opts.min_site_cases):
        scan.notes.append(note)
    return cases


def _attach_histology(
    cases: list[Case],
    images: dict[str, list[Path]],
    staging: Staging,
    notes: list[str],
) -> list[Quarantined]:
    """Per-patient bags, Macenko-normalised with one normaliser per site fitted on
    that site's training tiles only."""
    quarantined: list[Quarantined] = []
    raw: dict[str, list] = {}
    for c in cases:
        tiles = []
        for p in sorted(images.get(c.case_id, [])):
            try:
                if p.suffix.lower() in histo.SLIDE_SUFFIXES:
                    tiles += list(histo.tile_slide(p))
                else:
                    tiles.append(histo.read_tile(p))
            except Exception as err:  # noqa: BLE001 - a bad image is quarantined
                quarantined.append(
                    Quarantined(c.case_id, str(p), f"unreadable image: {err}", "image")
                )
        if tiles:
            raw[c.case_id] = tiles
    for site in sorted({c.site for c in cases}):
        members = [c for c in cases if c.site == site and c.case_id in raw]
        if not members:
            continue
        train_tiles = [t for c in members if c.split == "train" for t in raw[c.case_id]]
        if not train_tiles:
            notes.append(
                f"{site}: no training tiles to fit a stain normaliser on; its bags "
                "are left unnormalised"
            )
        norm = histo.StainNormaliser.fit(site, train_tiles) if train_tiles else None
        for c in members:
            bag, dropped = [], 0
            for t in raw[c.case_id]:
                try:
                    bag.append(norm(t) if norm else t)
                except Exception:  # noqa: BLE001 - torchstain fails on stainless tiles
                    dropped += 1
            if dropped:
                notes.append(
                    f"{c.case_id}: {dropped} tile(s) without usable stain dropped"
                )
            if bag:
                path = staging.path(c.case_id, f"{c.case_id}-bag.npz")
                histo.save_bag(bag, path)
                c.files["histo_path"] = path
    return quarantined


def _attach_genomics(
    cases: list[Case], tables: list[tg.GenomicTable], result: ReadResult
) -> None:
    site_of = {c.case_id: c.site for c in cases}
    train = {c.case_id for c in cases if c.split == "train"}
    joined = tg.select_features(tables, site_of, train, GENOMICS_TOP_K)
    joined = joined[joined.index.isin(list(site_of))].dropna(axis=1, how="all")
    centre, scale = tg.reference_stats(joined, site_of, train)
    result.genomics_schema = {
        "features": list(joined.columns),
        "center": centre,
        "scale": scale,
    }
    for c in cases:
        if c.case_id in joined.index:
            row = joined.loc[c.case_id]
            c.genomics = {
                k: (None if pd.isna(v) else round(float(v), 5)) for k, v in row.items()
            }


class TcgaDataset(PreparableDataset):
    """A TCGA dataset entry: the shared readers with a project filter and a label
    rule; offline default: a synthetic GDC export of ``synthetic_project``."""

    def __init__(
        self,
        name: str,
        projects: tuple[str, ...],
        label_rule: LabelRule,
        synthetic_project: str,
    ) -> None:
        self.name = name
        self.projects = projects
        self.label_rule = label_rule
        self.synthetic_project = synthetic_project
        self.synthetic_version = TCGA_EXPORT_VERSION

    def read(
        self,
        root: Path,
        staging: Staging,
        opts: PrepareOptions,
        progress: Callable[[str], None],
    ) -> ReadResult:
        if opts.label_column:
            raise ConfigError(
                f"--label-column applies to imaging datasets with a clinical table; "
                f"{self.name} derives its label from the harmonised clinical record: "
                f"choose it with --label ({', '.join(LABEL_RULES)})"
            )
        rule = self.label_rule
        if opts.label:
            if opts.label not in LABEL_RULES:
                raise ConfigError(
                    f"--label {opts.label!r}: choose from {', '.join(LABEL_RULES)}"
                    f"{suggestion(opts.label, list(LABEL_RULES))}"
                )
            rule = LABEL_RULES[opts.label]
        return read_tcga(root, opts, rule, self.projects, progress, staging)

    def no_case_fix(self) -> str:
        """What to try when nothing was kept (shown with the top reasons)."""
        return LABEL_HELP

    def synthetic_source(self, out: Path, cfg: Any) -> None:
        """Offline default: a synthetic GDC export (``common.ingest.synthetic``)."""
        write_tcga_export(out, self.synthetic_project, cfg.num_sites, seed=cfg.seed)
