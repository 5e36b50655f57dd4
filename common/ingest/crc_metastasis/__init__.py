"""``crc_metastasis``: colorectal cancer with liver metastasis, sites holding
different modalities.

Two kinds of hospital in one federation, as in the seeds' CRC scenario:

* **clinical sites**: TCGA-COAD/READ patients (clinical records only), one site per
  tissue-source site, label = distant metastasis at diagnosis (``tcga_coad_read``);
* **imaging sites**: CRLM-style patients with a portal-venous CT (and the clinical
  fields they share with TCGA: age, sex), label = liver metastasis visible on the
  segmentation (``crlm``).

Every site uses the TCGA clinical schema (columns a site lacks are missing values,
with their indicators), so one model serves both kinds and learns a stand-in
embedding for the modality a site does not have.

``data-root`` (or ``oncofed prepare crc_metastasis --root``) is a folder with two
sub-folders: ``tcga/`` (a GDC / cBioPortal download) and ``crlm/`` (a TCIA CRLM
download). Without ``data-root``, a synthetic stand-in: a synthetic GDC export for
the clinical sites and synthetic CT hospitals for the imaging sites.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from oncofed.common.data.prepared import DATASET_JSON, SERVER_FOLDERS
from oncofed.common.data.schema import SCHEMA_JSON, Schema
from oncofed.common.errors import DataError
from oncofed.common.ingest import DATASETS
from oncofed.common.ingest.prepare import (
    MANIFEST,
    REPORT_JSON,
    REPORT_MD,
    PreparableDataset,
    PrepareOptions,
    ReadResult,
    Staging,
    audit_report,
    prepare,
    report_markdown,
)
from oncofed.common.ingest.tcga import clinical as tc

NAME = "crc_metastasis"
SYNTHETIC_VERSION = 2  # 2: validation splits


class CrcMetastasis(PreparableDataset):
    name = NAME

    def read(
        self,
        root: Path,
        staging: Staging,
        opts: PrepareOptions,
        progress: Callable[[str], None],
    ) -> ReadResult:
        raise DataError(
            root,
            "--root",
            "crc_metastasis merges two prepared sources",
            "use prepare_merged (oncofed prepare does this)",
        )

    def prepare_merged(
        self, root: Path, out: Path, opts: PrepareOptions, show_progress: bool
    ) -> dict[str, Any]:
        """Prepare ``root/tcga`` and ``root/crlm`` and merge them into ``out``."""
        parts = {}
        for sub, dataset in (("tcga", "tcga_coad_read"), ("crlm", "crlm")):
            if not (root / sub).is_dir():
                raise DataError(
                    root / sub,
                    "--root",
                    "folder not found",
                    "give a folder with sub-folders tcga/ (GDC download) and crlm/ "
                    "(TCIA CRLM download)",
                )
            parts[sub] = prepare(
                dataset, root / sub, out / f"_{sub}", opts, show_progress
            )
        merge_prepared(out, [(s, out / f"_{s}") for s in parts])
        report = {
            "dataset": NAME,
            "partition": parts["tcga"]["partition"],
            "cases_kept": sum(r["cases_kept"] for r in parts.values()),
            "cases_quarantined": sum(r["cases_quarantined"] for r in parts.values()),
            "entries_quarantined": sum(
                r["entries_quarantined"] for r in parts.values()
            ),
            "sites": {
                f"{p}-{s}": v for p, r in parts.items() for s, v in r["sites"].items()
            },
            "quarantined": [q for r in parts.values() for q in r["quarantined"]],
            "sources": [s for r in parts.values() for s in r["sources"]],
            "unrecognised_files": [
                f for r in parts.values() for f in r["unrecognised_files"]
            ],
            "notes": [n for r in parts.values() for n in r["notes"]],
        }
        audit_report(report)
        (out / REPORT_JSON).write_text(json.dumps(report, indent=2, default=str))
        (out / REPORT_MD).write_text(report_markdown(report))
        for sub in parts:
            shutil.rmtree(out / f"_{sub}")
        return report

    def default_version(self, cfg: Any) -> str:
        return f"crc-synthetic-v{SYNTHETIC_VERSION}"

    def make_default(self, cfg: Any, out: Path) -> None:
        """Clinical-only sites from a synthetic GDC export (read by the
        tcga_coad_read reader) merged with synthetic CT hospitals."""
        from oncofed.common.config import DataConfig
        from oncofed.common.ingest import ensure_prepared
        from oncofed.common.ingest.synthetic.tcga_export import write_tcga_export

        n_clin = max(1, cfg.num_sites - cfg.num_sites // 2)
        n_ct = max(1, cfg.num_sites - n_clin)
        work = out.parent
        write_tcga_export(work / "raw-tcga", "TCGA-COAD", n_clin, seed=cfg.seed)
        prepare(
            "tcga_coad_read",
            work / "raw-tcga",
            work / "_tcga",
            PrepareOptions(seed=cfg.seed, min_site_cases=1),
            False,
        )
        ct = ensure_prepared(DataConfig(num_sites=n_ct, seed=cfg.seed + 1))
        merge_prepared(out, [("tcga", work / "_tcga"), ("ct", ct.root)])


def merge_prepared(out: Path, parts: list[tuple[str, Path]]) -> dict[str, Any]:
    """Copy the sites of several prepared folders into ``out`` as ``<part>-<site>``
    with one shared schema (the TCGA clinical schema; the metastasis label columns
    excluded), and server-val / server-test folders that are the unions of theirs."""
    out.mkdir(parents=True, exist_ok=True)
    schema = Schema(
        dataset=NAME, clinical=tuple(tc.SCHEMA), label_columns=("stage", "m_stage")
    )
    sites = []
    for prefix, src in parts:
        meta = json.loads((src / DATASET_JSON).read_text())
        for site in meta["sites"]:
            name = f"{prefix}-{site}"
            shutil.copytree(src / site, out / name, dirs_exist_ok=True)
            (out / name / SCHEMA_JSON).write_text(schema.to_json())
            sites.append(name)
    for folder in SERVER_FOLDERS.values():
        _merge_held_out(out / folder, [(p, src / folder) for p, src in parts])
        (out / folder / SCHEMA_JSON).write_text(schema.to_json())
    meta = {"name": NAME, "sites": sites, "parts": [p for p, _ in parts]}
    (out / DATASET_JSON).write_text(json.dumps(meta, indent=2))
    return {"sites": sites}


def _merge_held_out(dst: Path, parts: list[tuple[str, Path]]) -> None:
    """One server folder (``server-val`` or ``server-test``) from the parts' own."""
    dst.mkdir(parents=True, exist_ok=True)
    manifests, clinicals = [], []
    for prefix, held in parts:
        m = pd.read_csv(held / MANIFEST, dtype=str, keep_default_na=False)
        for col in ("ct_path", "mask_path", "histo_path"):
            if col in m.columns:
                m[col] = [_rebase(v, prefix) for v in m[col]]
        if any(v and not v.startswith("../") for v in m["ct_path"]):
            # files inside the part's own server folder: copy them along
            for child in held.iterdir():
                if child.is_dir():
                    shutil.copytree(
                        child, dst / prefix / child.name, dirs_exist_ok=True
                    )
        manifests.append(m)
        if (held / "clinical.tsv").is_file():
            clinicals.append(pd.read_csv(held / "clinical.tsv", sep="\t", dtype=str))
    pd.concat(manifests).to_csv(dst / MANIFEST, index=False)
    pd.concat(clinicals).to_csv(dst / "clinical.tsv", sep="\t", index=False)


def _rebase(value: str, prefix: str) -> str:
    """A server-folder path of part ``prefix`` as seen from the merged folder."""
    if not value:
        return ""
    if value.startswith("../"):  # prepared layout: ../<site>/<file>
        site, rest = value[3:].split("/", 1)
        return f"../{prefix}-{site}/{rest}"
    return f"{prefix}/{value}"  # a file inside the part's own server folder


@DATASETS.register(NAME)
def _create() -> CrcMetastasis:
    return CrcMetastasis()
