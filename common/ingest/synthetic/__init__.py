"""``synthetic``: seeded virtual hospitals in real formats (the embedded default).

As a scenario's default it is written once per site count and seed by
:func:`oncofed.common.ingest.ensure_prepared` (the ServerApp before round 1, or
``oncofed generate``) and reused; a folder written by another generator version is
made again. ``oncofed generate --out DIR`` writes it anywhere (under a temporary
name, renamed when complete).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from oncofed.common.config import DataConfig
from oncofed.common.data.prepared import DATASET_JSON, SERVER_FOLDERS
from oncofed.common.errors import DataError
from oncofed.common.ingest import DATASETS
from oncofed.common.ingest.synthetic.generator import (
    SiteProfile,
    SyntheticSpec,
    reference_profile,
    site_profiles,
    write_cases,
)
from oncofed.common.ingest.synthetic.histology_tiles import add_histology

log = logging.getLogger(__name__)

NAME = "synthetic"
MULTIMODAL_NAME = "synthetic_multimodal"
# shares of each site's cases in its local test and validation splits
SITE_SPLITS = (0.25, 0.15)
# seed streams of the server's held-out sets (site cases use stream 1)
SERVER_STREAMS = {"test": 2, "val": 3}
REFERENCE_STREAM = 4  # the public reference cohort (scanner-shift)
REFERENCE_DIR = "reference"  # in each site folder: the unlabelled public cohort
REFERENCE_CASES = 24


# control scenarios (see generator.py): the same hospitals minus one built-in effect
CONTROLS = {
    "synthetic_shared_signal": "shared-signal",
    "synthetic_iid_sites": "iid-sites",
    # not a control: harder scanner differences and a public reference cohort
    "synthetic_scanner_shift": "scanner-shift",
}


def spec_from_config(cfg: DataConfig) -> SyntheticSpec:
    return SyntheticSpec(
        num_sites=cfg.num_sites,
        seed=cfg.seed,
        histology=cfg.dataset == MULTIMODAL_NAME,
        scenario=CONTROLS.get(cfg.dataset, "default"),
    )


def generate(spec: SyntheticSpec, out: Path) -> Path:
    """Write every site and the server's validation and test sets of ``spec``
    into ``out``."""
    profiles = site_profiles(spec)
    for p in profiles:
        rng = np.random.default_rng([spec.seed, p.index, 1])
        write_cases(out / p.name, p, spec, p.n_cases, rng, SITE_SPLITS, "case-")
    # server's held-out sets: the same number of fresh cases from every site (in
    # scanner-shift: as many from the reference scanner)
    shift = spec.scenario == "scanner-shift"
    for split, folder in SERVER_FOLDERS.items():
        for p in profiles:
            rng = np.random.default_rng([spec.seed, p.index, SERVER_STREAMS[split]])
            write_cases(
                out / folder / p.name,
                reference_profile(spec, p.index) if shift else p,
                spec,
                spec.test_cases_per_site,
                rng,
                split,
                f"{split}-{p.index:02d}-",
            )
    if spec.histology:
        for p in profiles:
            held_out = [out / f / p.name for f in SERVER_FOLDERS.values()]
            add_histology(out / p.name, held_out, p.index, spec.seed)
    if shift:  # every site and the server hold the same public cohort
        for folder_name in [p.name for p in profiles] + list(SERVER_FOLDERS.values()):
            write_reference(out / folder_name / REFERENCE_DIR, spec)
    for folder in SERVER_FOLDERS.values():
        _merge_server_folder(out / folder, [p.name for p in profiles])
    _write_split_report(out, [p.name for p in profiles])
    meta = {
        "name": _name_of(spec),
        "sites": [p.name for p in profiles],
        "spec": spec.to_dict(),
        "profiles": [vars(p) for p in profiles],
    }
    if shift:
        meta["reference_scanner"] = vars(reference_profile(spec))
    (out / DATASET_JSON).write_text(json.dumps(meta, indent=2))
    return out


def write_reference(folder: Path, spec: SyntheticSpec) -> None:
    """The public reference cohort as one site holds it: ``REFERENCE_CASES``
    scans of the reference scanner with their liver/tumour label maps and a
    manifest without labels (the same files at every site, as every hospital
    downloads the same public dataset)."""
    import pandas as pd

    ref: SiteProfile = reference_profile(spec)
    rng = np.random.default_rng([spec.seed, ref.index, REFERENCE_STREAM])
    manifest = write_cases(folder, ref, spec, REFERENCE_CASES, rng, "train", "ref-")
    (folder / "clinical.tsv").unlink()
    keep = [c for c in manifest.columns if c in ("case_id", "ct_path", "mask_path")]
    pd.DataFrame(manifest[keep]).to_csv(folder / "manifest.csv", index=False)


def _write_split_report(out: Path, sites: list[str]) -> None:
    """``report.json``: cases per site and split (train / val / test) and per
    label, and the sizes of the server's validation and test sets."""
    import pandas as pd

    report: dict[str, dict] = {"sites": {}, "server": {}}
    for site in sites:
        m = pd.read_csv(out / site / "manifest.csv", dtype=str)
        report["sites"][site] = {
            "cases": len(m),
            **{
                split: int((m.split == split).sum())
                for split in ("train", "val", "test")
            },
            "labels": {k: int(v) for k, v in m.label.value_counts().items()},
        }
    for split, folder in SERVER_FOLDERS.items():
        m = pd.read_csv(out / folder / "manifest.csv", dtype=str)
        report["server"][split] = {"folder": folder, "cases": len(m)}
    (out / "report.json").write_text(json.dumps(report, indent=2))


def _name_of(spec: SyntheticSpec) -> str:
    if spec.histology:
        return MULTIMODAL_NAME
    by_scenario = {v: k for k, v in CONTROLS.items()}
    return by_scenario.get(spec.scenario, NAME)


def _merge_server_folder(test_dir: Path, sites: list[str]) -> None:
    """One manifest and one clinical table for a server folder (validation or
    test)."""
    import pandas as pd

    manifests, clinicals = [], []
    for s in sites:
        m = pd.read_csv(test_dir / s / "manifest.csv", keep_default_na=False)
        for col in ("ct_path", "mask_path", "histo_path"):
            if col in m.columns:
                m[col] = [f"{s}/{v}" if v else "" for v in m[col]]
        manifests.append(m)
        clinicals.append(pd.read_csv(test_dir / s / "clinical.tsv", sep="\t"))
    pd.concat(manifests).to_csv(test_dir / "manifest.csv", index=False)
    pd.concat(clinicals).to_csv(
        test_dir / "clinical.tsv", sep="\t", index=False, na_rep=""
    )


class SyntheticDataset:
    """``synthetic`` (CT + clinical) or ``synthetic_multimodal`` (+ H&E bags)."""

    def __init__(self, name: str = NAME) -> None:
        self.name = name

    def default_version(self, cfg: DataConfig) -> str:
        return f"generator-v{spec_from_config(cfg).version}"

    def make_default(self, cfg: DataConfig, out: Path) -> None:
        """Generate the hospitals of ``cfg``'s spec into ``out``."""
        generate(spec_from_config(cfg), out)

    def read(self, root: Path, staging, opts, progress):  # type: ignore[no-untyped-def]
        """The generated hospitals under ``root`` as source files (for ``oncofed
        prepare synthetic --partition ...``): every site case, files copied."""
        import shutil as sh

        import pandas as pd

        from oncofed.common.ingest.prepare import Case, ReadResult

        meta_path = root / DATASET_JSON
        if not meta_path.is_file():
            raise DataError(
                root,
                "--root",
                "no generated hospitals here",
                "run 'oncofed generate --out DIR' and pass that DIR",
            )
        meta = json.loads(meta_path.read_text())
        cases = []
        for site in meta["sites"]:
            progress(site)
            d = root / site
            m = pd.read_csv(d / "manifest.csv", dtype=str, keep_default_na=False)
            clin = pd.read_csv(
                d / "clinical.tsv", sep="\t", dtype=str, keep_default_na=False
            ).set_index("case_id")
            for r in m.to_dict("records"):
                files = {}
                for col in ("ct_path", "mask_path", "histo_path"):
                    if r.get(col):
                        dst = staging.path(
                            f"{site}-{r['case_id']}",
                            f"{site}-{col[:-5]}-{Path(r[col]).name}",
                        )
                        sh.copyfile(d / r[col], dst)
                        files[col] = dst
                cases.append(
                    Case(
                        case_id=f"{site}-{r['case_id']}",
                        site=site,
                        label=int(r["label"]),
                        clinical=dict(clin.loc[r["case_id"]])
                        if r["case_id"] in clin.index
                        else None,
                        files=files,
                        split=r["split"] if opts.partition == "natural" else None,
                    )
                )
        from oncofed.common.data.clinical import COLUMNS

        return ReadResult(
            cases=cases,
            sources=[{"file": str(meta_path), "role": "generated hospitals"}],
            clinical_columns=[c.name for c in COLUMNS],
            clinical_schema=[],  # empty schema = the fixed HCC encoding
            notes=[
                "the server-val and server-test folders are the unions of the "
                "sites' validation and test splits"
            ],
        )


def write_atomically(spec: SyntheticSpec, root: Path) -> Path:
    """Generate into a temporary sibling, then rename it into place."""
    root.parent.mkdir(parents=True, exist_ok=True)
    log.info("Generating synthetic hospitals into %s (one time)", root)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        generate(spec, tmp)
        os.rename(tmp, root)
    except OSError:
        if not (root / DATASET_JSON).is_file():  # not another process winning
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


@DATASETS.register(NAME)
def _create() -> SyntheticDataset:
    return SyntheticDataset(NAME)


@DATASETS.register(MULTIMODAL_NAME)
def _create_multimodal() -> SyntheticDataset:
    """CT + clinical + H&E bags with per-site stain differences (hcc_multimodal)."""
    return SyntheticDataset(MULTIMODAL_NAME)


def _register_control(name: str) -> None:
    @DATASETS.register(name)
    def _create() -> SyntheticDataset:
        return SyntheticDataset(name)


for _control in CONTROLS:  # the control scenarios, each a dataset of its own
    _register_control(_control)
