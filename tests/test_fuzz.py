"""Fuzzing the prepared-folder readers: no damaged file crashes a site, and every
manifest row is read or set aside with its line and reason (never lost)."""

from __future__ import annotations

import pytest

from oncofed.common.config import DataConfig
from oncofed.common.data.site import load_site
from oncofed.common.experiments.fuzz import MUTATIONS, fuzz_folder, mutate, site_reader
from oncofed.common.ingest.prepare import PrepareOptions, prepare
from tests.test_recognition import GENES, N, _gdc_clinical, _xena_hiseq

TARGETS = ["manifest.csv", "clinical.tsv", "genomics.tsv", "schema.json"]


@pytest.fixture(scope="module")
def tabular_site(tmp_path_factory):
    """One prepared TCGA site with clinical and genomic rows (30 patients)."""
    import numpy as np

    tmp = tmp_path_factory.mktemp("fuzz")
    root = tmp / "dl"
    _gdc_clinical(root)
    _xena_hiseq(root, np.random.default_rng(0).uniform(0, 9, (len(GENES), N)))
    out = tmp / "prepared"
    prepare("tcga_lihc", root, out, PrepareOptions(min_site_cases=1, num_sites=1,
            partition="quantity", alpha=100.0), False)  # fmt: skip
    (site,) = [p for p in out.iterdir() if (p / "manifest.csv").is_file()
               and p.name.startswith("site")]  # fmt: skip
    return site


def test_every_mutation_changes_the_file():
    import numpy as np

    rng = np.random.default_rng(0)
    data = b"case_id,label\na,1\nb,0\n"
    for kind in MUTATIONS:
        assert mutate(data, kind, rng) != data, kind


def test_clean_site_reads_every_row(tabular_site):
    data = load_site(tabular_site, DataConfig(dataset="tcga_lihc"))
    assert not data.quarantined
    assert sum(len(v) for v in data.splits.values()) == N


def test_fuzzed_site_files_never_crash_and_never_lose_a_row(tabular_site):
    reader = site_reader(DataConfig(dataset="tcga_lihc"))
    report = fuzz_folder(tabular_site, TARGETS, reader, cases=300, seed=7)
    assert report.tried == 300
    assert report.outcomes["crashed"] == 0, report.examples
    assert report.outcomes["lost"] == 0, report.examples
    # the harness can tell: damage is found and set aside, not only refused
    assert report.outcomes["quarantined"] > 30
    assert report.outcomes["read"] > 0


def test_a_merged_clinical_row_quarantines_both_cases_by_line(tabular_site, tmp_path):
    import shutil

    site = tmp_path / tabular_site.name
    shutil.copytree(tabular_site, site)
    text = (site / "clinical.tsv").read_text().split("\n")
    merged = [text[0], text[1] + text[2], *text[3:]]
    (site / "clinical.tsv").write_text("\n".join(merged))
    data = load_site(site, DataConfig(dataset="tcga_lihc"))
    first, second = data.quarantined  # neither case loads without its clinical row
    assert first.path.endswith("clinical.tsv") and "line 2" in first.reason
    assert "fields" in first.reason
    assert "has no row" in second.reason
    loaded = sum(len(v) for v in data.splits.values())
    assert loaded + len(data.quarantined) == N


def test_a_repeated_clinical_line_is_named_though_no_case_is_lost(
    tabular_site, tmp_path
):
    import shutil

    site = tmp_path / tabular_site.name
    shutil.copytree(tabular_site, site)
    lines = (site / "clinical.tsv").read_text().splitlines()
    (site / "clinical.tsv").write_text("\n".join([*lines, lines[3]]) + "\n")
    data = load_site(site, DataConfig(dataset="tcga_lihc"))
    assert sum(len(v) for v in data.splits.values()) == N  # first copy used
    (q,) = data.quarantined
    assert f"line {len(lines) + 1}" in q.reason and "duplicate" in q.reason


@pytest.mark.parametrize(
    "kind", ["gdc", "cbioportal", "nifti", "dicom", "excel", "flamby", "slides"]
)
def test_damaged_downloads_never_crash_prepare(kind, tmp_path):
    """``oncofed prepare`` on a damaged download finishes or refuses clearly."""
    from oncofed.common.experiments.fuzz import (
        cbioportal_download,
        dicom_download,
        flamby_download,
        nifti_download,
        prepare_reader,
        slide_download,
    )
    from oncofed.common.ingest.synthetic.tcga_export import write_tcga_export
    from tests.conftest import SHARED_DATA

    dataset = {"gdc": "tcga_lihc", "cbioportal": "tcga_lihc", "nifti": "lits17",
               "dicom": "crlm", "excel": "crlm",
               "flamby": "tcga_brca_flamby",
               "slides": "tcga_coad_read"}[kind]  # fmt: skip
    if kind in ("gdc", "cbioportal"):
        raw = write_tcga_export(tmp_path / "raw", num_sites=2, patients_per_site=15)
        folder = raw if kind == "gdc" else cbioportal_download(raw, tmp_path / "cb")
    elif kind == "nifti":
        folder = nifti_download(tmp_path / "lits")
    elif kind == "flamby":
        folder = flamby_download(SHARED_DATA, tmp_path / "flamby")
    elif kind == "slides":
        folder = slide_download(SHARED_DATA, tmp_path / "slides")
    else:
        folder = dicom_download(SHARED_DATA, tmp_path / "crlm", excel=kind == "excel")
    files = sorted(p.name for p in folder.iterdir() if p.is_file())
    label = None
    if kind == "slides":  # the tiles and the slide are damaged, not the table
        files = [f for f in files if not f.endswith(".tsv")]
        label = "os-event"
    report = fuzz_folder(
        folder, files, prepare_reader(tmp_path, dataset, label), cases=12, seed=3
    )
    assert report.tried == 12
    assert report.outcomes["crashed"] == 0, report.examples
