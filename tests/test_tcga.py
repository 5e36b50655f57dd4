"""TCGA readers on the real exports in ../shared/data plus files written in the same
formats: natural splits, both GDC schemas, cBioPortal, genomics, quarantine."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from oncofed.common.errors import DataError
from oncofed.common.ingest.prepare import PrepareOptions, prepare
from tests.conftest import SHARED_DATA

BRCA = SHARED_DATA / "flamby_tcga_brca"
COAD = SHARED_DATA / "tcga_coad_gdc" / "clinical.tsv"
FLAMBY_COUNTS = [(248, 63), (156, 40), (164, 42), (129, 33), (129, 33), (40, 11)]
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
BARCODE = re.compile(r"^TCGA-[A-Z0-9]{2}-[A-Z0-9]{4}$")


def _manifests(out):
    meta = json.loads((out / "dataset.json").read_text())
    return {
        s: pd.read_csv(out / s / "manifest.csv", dtype=str, keep_default_na=False)
        for s in meta["sites"]
    }


def _all_text(out) -> str:
    return "\n".join(
        p.read_text()
        for p in out.rglob("*")
        if p.suffix in (".csv", ".tsv", ".json", ".md")
    )


def test_brca_natural_split_reproduces_flamby_counts(tmp_path):
    out = tmp_path / "brca"
    report = prepare("tcga_brca_flamby", BRCA, out, PrepareOptions(), False)
    manifests = _manifests(out)
    sites = sorted(manifests)
    assert len(sites) == 6
    # FLamby's train part is ours split into train and validation (about 15 %
    # of each region's cases, per label); its test part is kept as it is
    split = {s: manifests[s].split for s in sites}
    counts = [
        ((split[s] == "train").sum() + (split[s] == "val").sum(),
         (split[s] == "test").sum())
        for s in sites
    ]  # fmt: skip
    assert counts == FLAMBY_COUNTS
    for s in sites:
        n_val, n_all = (split[s] == "val").sum(), len(split[s])
        assert 0 < n_val and abs(n_val - 0.15 * n_all) <= 2, (s, n_val, n_all)
    # FLamby's region order: Northeast, South, West, Midwest, Europe, Canada
    assert [s.split("-", 2)[2] for s in sites] == [
        "northeast",
        "south",
        "west",
        "midwest",
        "europe",
        "canada",
    ]
    # the 8 patients FLamby's split leaves out are quarantined, with the reason
    assert report["cases_quarantined"] == 8
    assert all("train_test_split" in q["reason"] for q in report["quarantined"])
    m = manifests[sites[0]]
    assert set(m.event) <= {"0", "1"} and (m.time != "").all()


def test_coad_gdc_one_row_per_patient_split_by_tss(tmp_path):
    out = tmp_path / "coad"
    report = prepare("tcga_coad_read", COAD.parent, out, PrepareOptions(), False)
    raw = pd.read_csv(COAD, sep="\t", dtype=str)
    patients = set(raw["cases.submitter_id"])
    manifests = _manifests(out)
    kept = pd.concat(manifests.values())
    # every patient accounted for: kept once or quarantined with a reason
    assert kept.case_id.is_unique
    quarantined = {q["case_id"] for q in report["quarantined"]}
    assert set(kept.case_id) | quarantined == patients
    assert not set(kept.case_id) & quarantined
    assert all(q["reason"] for q in report["quarantined"])
    # sites are tissue-source sites (barcode characters 6-7), small ones pooled
    for site, m in manifests.items():
        if site.startswith("tss-"):
            assert {c[5:7].lower() for c in m.case_id} == {site[4:]}
    # stage and vital status per patient, as the export says
    clin = pd.concat(
        pd.read_csv(out / s / "clinical.tsv", sep="\t", dtype=str) for s in manifests
    ).set_index("case_id")
    assert clin.loc["TCGA-AA-3488", "project"] == "TCGA-COAD"
    # the patient of our H&E tiles has MX and no stage: quarantined, saying why
    why = {q["case_id"]: q["reason"] for q in report["quarantined"]}
    assert "metastasis status unknown" in why["TCGA-AD-6964"]
    first = raw[raw["cases.submitter_id"] == "TCGA-AA-3488"]
    assert first["demographic.vital_status"].iloc[0] == "Dead"
    row = kept.set_index("case_id").loc["TCGA-AA-3488"]
    assert row.event == "1" and row.label == "1"  # stage IV, M1 in the export
    assert clin.loc["TCGA-AA-3488", "stage"] == "IV"
    # no identifiers beyond the barcode
    assert all(BARCODE.match(c) for c in kept.case_id)
    text = _all_text(out)
    assert not UUID.search(text)
    for col in ("days_to_birth", "year_of_birth", "cases.case_id"):
        assert col not in text


def _undotted(frame: pd.DataFrame) -> pd.DataFrame:
    """The older GDC schema: no table prefixes, case_submitter_id."""
    keep = {}
    for c in frame.columns:
        if c == "cases.submitter_id":
            keep[c] = "case_submitter_id"
        elif c.split(".", 1)[0] in (
            "demographic",
            "diagnoses",
            "project",
        ) and not c.endswith("submitter_id"):
            keep[c] = c.split(".", 1)[1]
    return frame[list(keep)].rename(columns=keep)


def test_old_and_new_gdc_schemas_agree(tmp_path):
    raw = pd.read_csv(COAD, sep="\t", dtype=str, keep_default_na=False)
    raw = raw[
        raw["cases.submitter_id"].isin(sorted(set(raw["cases.submitter_id"]))[:80])
    ]
    (tmp_path / "new").mkdir()
    (tmp_path / "old").mkdir()
    raw.to_csv(tmp_path / "new" / "clinical.tsv", sep="\t", index=False)
    _undotted(raw).to_csv(tmp_path / "old" / "export.txt", sep="\t", index=False)
    a = prepare(
        "tcga_coad_read",
        tmp_path / "new",
        tmp_path / "a",
        PrepareOptions(min_site_cases=1),
        False,
    )
    b = prepare(
        "tcga_coad_read",
        tmp_path / "old",
        tmp_path / "b",
        PrepareOptions(min_site_cases=1),
        False,
    )
    ma = pd.concat(_manifests(tmp_path / "a").values()).sort_values("case_id")
    mb = pd.concat(_manifests(tmp_path / "b").values()).sort_values("case_id")
    assert len(ma) > 50
    pd.testing.assert_frame_equal(ma.reset_index(drop=True), mb.reset_index(drop=True))
    assert a["cases_quarantined"] == b["cases_quarantined"]


CBIO_PATIENT = """#Patient Identifier\tSex\tDiagnosis Age\tStage\tOS Status\tOS (Months)
#Identifier to uniquely define a patient.\tSex\tAge\tStage\tStatus\tMonths
#STRING\tSTRING\tNUMBER\tSTRING\tSTRING\tNUMBER
#1\t1\t1\t1\t1\t1
PATIENT_ID\tSEX\tAGE\tAJCC_PATHOLOGIC_TUMOR_STAGE\tOS_STATUS\tOS_MONTHS
TCGA-DD-A1EB\tMale\t61\tSTAGE IIIA\t1:DECEASED\t12.5
TCGA-DD-A1EC\tFemale\t[Not Available]\tSTAGE I\t0:LIVING\t40.1
TCGA-ZZ-12\tMale\t50\tSTAGE II\t0:LIVING\t3
TCGA-DD-A1EC\tFemale\t55\tSTAGE I\t0:LIVING\t40.1
TCGA-BC-A10Q\tMale\t70\t[Discrepancy]\t0:LIVING\t8
"""
CBIO_SAMPLE = """#Patient Identifier\tSample Identifier\tCancer Type Detailed
#x\tx\tx
#STRING\tSTRING\tSTRING
#1\t1\t1
PATIENT_ID\tSAMPLE_ID\tCANCER_TYPE_DETAILED
TCGA-DD-A1EB\tTCGA-DD-A1EB-01\tHepatocellular Carcinoma
"""


# cBioPortal's study metadata file (key: value lines, as its file-format docs)
META_STUDY = """type_of_cancer: {acr}
cancer_study_identifier: {acr}_tcga
name: Study (TCGA, Firehose Legacy)
description: TCGA study
short_name: {acr} (TCGA)
"""


def test_cbioportal_files_with_hash_headers(tmp_path):
    root = tmp_path / "cbio"
    root.mkdir()
    (root / "meta_study.txt").write_text(META_STUDY.format(acr="lihc"))
    (root / "data_clinical_patient.txt").write_text(CBIO_PATIENT)
    (root / "data_clinical_sample.txt").write_text(CBIO_SAMPLE)
    (root / "README").write_text("downloaded from cBioPortal\n")
    report = prepare(
        "tcga_lihc", root, tmp_path / "out", PrepareOptions(min_site_cases=1), False
    )
    kept = pd.concat(_manifests(tmp_path / "out").values()).set_index("case_id")
    assert kept.loc["TCGA-DD-A1EB", "label"] == "1"  # stage III
    assert kept.loc["TCGA-DD-A1EB", "event"] == "1"
    assert float(kept.loc["TCGA-DD-A1EB", "time"]) == pytest.approx(
        12.5 * 30.4375, 0.01
    )
    assert kept.loc["TCGA-DD-A1EC", "label"] == "0"
    reasons = {(q["case_id"], q["reason"]) for q in report["quarantined"]}
    assert ("TCGA-DD-A1EC", "patient listed twice") in reasons
    assert any("TCGA-ZZ-12" in r for _, r in reasons)  # malformed barcode
    assert ("TCGA-BC-A10Q", "AJCC stage missing") in reasons
    assert any(f.endswith("README") for f in report["unrecognised_files"])
    clin = pd.read_csv(tmp_path / "out" / "tss-dd" / "clinical.tsv", sep="\t")
    assert (
        clin.set_index("case_id").loc["TCGA-DD-A1EB", "histology"]
        == "Hepatocellular Carcinoma"
    )


def test_project_comes_from_the_files_and_an_unknown_project_is_never_kept(
    tmp_path,
):
    """Older cBioPortal layouts have no cancer-type column: the study's
    ``meta_study.txt`` decides; another study's patients, and patients whose
    project nothing establishes, are quarantined with that reason."""
    from oncofed.common.errors import DataError

    paad = tmp_path / "paad"
    paad.mkdir()
    (paad / "meta_study.txt").write_text(META_STUDY.format(acr="paad"))
    (paad / "data_clinical_patient.txt").write_text(CBIO_PATIENT)
    with pytest.raises(DataError, match="project TCGA-PAAD is not one of TCGA-LIHC"):
        prepare("tcga_lihc", paad, tmp_path / "o1", PrepareOptions(), False)
    bare = tmp_path / "bare"
    bare.mkdir()
    # TSS codes in no table (the GDC's has no A0 or D0)
    unknown = CBIO_PATIENT.replace("TCGA-DD-", "TCGA-A0-").replace(
        "TCGA-BC-", "TCGA-D0-"
    )
    (bare / "data_clinical_patient.txt").write_text(unknown)
    with pytest.raises(DataError, match="project cannot be established"):
        prepare("tcga_lihc", bare, tmp_path / "o2", PrepareOptions(), False)
    # the any-project dataset has no filter: the same files are read
    report = prepare(
        "tcga", bare, tmp_path / "o3", PrepareOptions(min_site_cases=1), False
    )
    assert report["cases_kept"] == 2
    # a combined cBioPortal study counts for each of its projects
    coadread = tmp_path / "coadread"
    coadread.mkdir()
    (coadread / "meta_study.txt").write_text(META_STUDY.format(acr="coadread"))
    (coadread / "data_clinical_patient.txt").write_text(CBIO_PATIENT)
    report = prepare(
        "tcga_coad_read", coadread, tmp_path / "o4",
        PrepareOptions(min_site_cases=1, label="stage-3-4"), False,
    )  # fmt: skip
    assert report["cases_kept"] == 2


# GDC's tissue-source-site code table, in its published columns
TSS_TABLE = (
    "TSS Code,Source Site,Study Name,BCR\r\n"
    "DD,Mayo Clinic - Rochester,Liver hepatocellular carcinoma,NCH\r\n"
    "BC,University of Pittsburgh,Pancreatic adenocarcinoma,NCH\r\n"
    "Q1,Somewhere,Not a TCGA study,NCH\r\n"
    "???,Broken row,Liver hepatocellular carcinoma,NCH\r\n"
)
TSS_PATIENTS = (
    CBIO_PATIENT.replace("TCGA-ZZ-12\tMale\t50", "TCGA-XY-A0A0\tMale\t50")
    + "TCGA-I0-A0A0\tFemale\t44\tSTAGE II\t0:LIVING\t9\n"
)  # XY: TGCT; I0: none


def test_tss_code_table_gives_the_project_when_the_files_name_none(tmp_path):
    """A cBioPortal layout without cancer type or study metadata: a TSS code
    table the user gives (with --tss-table, or lying in --root, re-saved with a
    BOM and CRLF) decides each patient's project, the GDC table OncoFed ships
    decides the codes it does not list, and a code in neither leaves the patient
    quarantined, never kept."""
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "data_clinical_patient.txt").write_text(TSS_PATIENTS)
    table = tmp_path / "tissueSourceSite.csv"
    table.write_bytes(b"\xef\xbb\xbf" + TSS_TABLE.encode())
    opts = PrepareOptions(min_site_cases=1, tss_table=str(table))
    report = prepare("tcga_lihc", bare, tmp_path / "o1", opts, False)
    reasons = {q["case_id"]: q["reason"] for q in report["quarantined"]}
    assert report["cases_kept"] == 2  # the two TCGA-DD patients
    assert "project TCGA-PAAD is not one of TCGA-LIHC" in reasons["TCGA-BC-A10Q"]
    # not in the user's table: the shipped GDC table says testicular (TGCT)
    assert "project TCGA-TGCT is not one of TCGA-LIHC" in reasons["TCGA-XY-A0A0"]
    assert "TSS code I0 is in no TSS code table" in reasons["TCGA-I0-A0A0"]
    notes = "\n".join(report["notes"])
    assert "took their project from the TSS code table" in notes
    assert "1 row(s) without a two-character TSS code left out" in notes
    assert "not TCGA studies left out (Not a TCGA study)" in notes
    # the same table inside --root is recognised by its columns
    shutil.copy(table, bare / "tss.csv")
    report = prepare(
        "tcga_lihc", bare, tmp_path / "o2", PrepareOptions(min_site_cases=1), False
    )
    assert report["cases_kept"] == 2
    roles = {Path(s["file"]).name: s["role"] for s in report["sources"]}
    assert roles["tss.csv"] == "tss-table"
    # without the user's table the shipped one decides: BC is a liver site there
    (bare / "tss.csv").unlink()
    report = prepare(
        "tcga_lihc", bare, tmp_path / "o3", PrepareOptions(min_site_cases=1), False
    )
    reasons = {q["case_id"]: q["reason"] for q in report["quarantined"]}
    assert "project" not in reasons.get("TCGA-BC-A10Q", "")
    assert "project TCGA-TGCT is not one of TCGA-LIHC" in reasons["TCGA-XY-A0A0"]
    assert "give the GDC's current one" in reasons["TCGA-I0-A0A0"]
    # a table without the published columns is refused naming the column
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("Code,Site\nDD,Mayo\n")
    with pytest.raises(DataError, match="TSS Code"):
        prepare(
            "tcga_lihc", bare, tmp_path / "o4",
            PrepareOptions(tss_table=str(wrong)), False,
        )  # fmt: skip


def _genomics_root(tmp_path, n=30):
    rng = np.random.default_rng(0)
    root = tmp_path / "lihc"
    root.mkdir()
    ids = [f"TCGA-{'DD' if i % 2 else 'BC'}-A{i:03d}" for i in range(n)]
    clinical = pd.DataFrame(
        {
            "case_submitter_id": ids,
            "project_id": "TCGA-LIHC",
            "vital_status": ["Dead" if i % 3 == 0 else "Alive" for i in range(n)],
            "days_to_death": [str(100 + i) if i % 3 == 0 else "'--" for i in range(n)],
            "days_to_last_follow_up": [str(400 + i) for i in range(n)],
            "ajcc_pathologic_stage": [
                "Stage IIIA" if i % 2 else "Stage I" for i in range(n)
            ],
            "gender": "male",
            "age_at_index": "60",
            "days_to_birth": "-21900",
        }
    )
    clinical.to_csv(root / "clinical.tsv", sep="\t", index=False)
    genes = [f"ENSG{i:011d}" for i in range(300)]
    samples = [f"{p}-01A-11R-A00Z-07" for p in ids[:20]] + [
        f"{ids[0]}-11A-01R-A00Z-07",
        "TCGA-XX-BAD",
    ]
    counts = pd.DataFrame(rng.poisson(20, (300, len(samples))), columns=samples)
    counts.insert(0, "gene_id", genes)
    counts.to_csv(root / "expression_counts.tsv", sep="\t", index=False)
    probes = [f"cg{i:08d}" for i in range(50)]
    meth = pd.DataFrame(rng.uniform(0, 1, (len(ids[:10]), 50)), columns=probes)
    meth.insert(0, "sample", [f"{p}-01A" for p in ids[:10]])
    meth.to_csv(root / "methylation_samples_by_probes.csv", index=False)
    seg = pd.DataFrame(
        {
            "ID": [f"{p}-01A-11D" for p in ids[:8] for _ in range(2)],
            "chrom": ["1", "2"] * 8,
            "loc.start": [1, 1] * 8,
            "loc.end": [1000, 5000] * 8,
            "num.mark": 50,
            "seg.mean": rng.normal(0, 0.3, 16).round(3),
        }
    )
    seg.to_csv(root / "segments.seg.txt", sep="\t", index=False)
    (root / "extra_genome_only.tsv").write_text(
        "gene_id\tTCGA-DD-Z999-01A\n"
        + "".join(f"ENSG{i:011d}\t{i}\n" for i in range(25))
    )
    return root, ids


def test_genomics_matrices_any_orientation(tmp_path):
    root, ids = _genomics_root(tmp_path)
    report = prepare(
        "tcga_lihc", root, tmp_path / "out", PrepareOptions(min_site_cases=1), False
    )
    roles = sorted(s["role"] for s in report["sources"])
    assert roles == [
        "gdc-clinical",
        "genomic: cnv",
        "genomic: expression",
        "genomic: expression",
        "genomic: methylation",
    ]
    out = tmp_path / "out"
    genomics = pd.concat(
        pd.read_csv(p, sep="\t") for p in out.glob("tss-*/genomics.tsv")
    )
    genomics = genomics.set_index("case_id")
    assert len(genomics) == 20
    kinds = {c.split(":")[0] for c in genomics.columns}
    assert kinds == {"expression", "methylation", "cnv"}
    assert sum(c.startswith("expression:") for c in genomics.columns) == 256
    # expression is log2(count + 1); methylation betas unchanged in [0, 1]
    expr = genomics.filter(like="expression:")
    assert expr.max().max() < 10
    meth = genomics.filter(like="methylation:").dropna()
    assert len(meth) == 10 and meth.min().min() >= 0 and meth.max().max() <= 1
    reasons = " ".join(q["reason"] for q in report["quarantined"])
    assert "'TCGA-XX-BAD' is not a valid TCGA barcode" in reasons
    assert "TCGA-DD-Z999" in {q["case_id"] for q in report["quarantined"]}
    assert any("normal-tissue" in n for n in report["notes"])
    assert "days_to_birth" not in _all_text(out)


def test_partitioners_are_seeded_and_keep_every_case(tmp_path):
    for partition in ("dirichlet", "quantity"):
        opts = PrepareOptions(partition=partition, num_sites=4, alpha=0.3, seed=7)
        a = prepare("tcga_brca_flamby", BRCA, tmp_path / f"{partition}-a", opts, False)
        b = prepare("tcga_brca_flamby", BRCA, tmp_path / f"{partition}-b", opts, False)
        assert a["sites"] == b["sites"]
        assert sum(s["cases"] for s in a["sites"].values()) == 1088
        sizes = sorted(s["cases"] for s in a["sites"].values())
        assert len(sizes) == 4 and sizes[0] < sizes[-1]
        if partition == "dirichlet":  # label skew: event rates differ between sites
            rates = [
                int(s["labels"].get("1", 0)) / s["cases"] for s in a["sites"].values()
            ]
            assert max(rates) - min(rates) > 0.1


def test_sites_with_a_common_name_prefix_get_their_own_split():
    """Two hospitals with the same case ids and labels must not get the same
    test patients just because their names start alike."""
    from oncofed.common.ingest.prepare import Case, assign_splits

    cases = [
        Case(case_id=f"p{i:02d}", site=site, label=i % 2)
        for site in ("hospital-north", "hospital-south")
        for i in range(20)
    ]
    assign_splits(cases, test_fraction=0.3, seed=0)
    test = {
        site: {c.case_id for c in cases if c.site == site and c.split == "test"}
        for site in ("hospital-north", "hospital-south")
    }
    assert len(test["hospital-north"]) == len(test["hospital-south"]) == 6
    assert test["hospital-north"] != test["hospital-south"]


def test_unusable_root_stops_with_one_sentence(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="folder is empty"):
        prepare("tcga_lihc", empty, tmp_path / "o1", PrepareOptions(), False)
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "notes.txt").write_text("hello\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "oncofed.common.cli",
            "prepare",
            "tcga_coad_read",
            "--root",
            str(wrong),
            "--out",
            str(tmp_path / "o2"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no TCGA clinical or genomic file recognised" in lines[0]


def test_truncated_file_is_quarantined_and_rest_goes_on(tmp_path):
    root = tmp_path / "coad"
    root.mkdir()
    raw = COAD.read_bytes()
    (root / "clinical.tsv").write_bytes(raw)
    # a second export cut mid-line, plus a binary file with a text suffix
    (root / "clinical_part2.tsv").write_bytes(raw[: len(raw) // 3])
    (root / "broken.tsv").write_bytes(b"\x00\xff\x00garbage")
    report = prepare("tcga_coad_read", root, tmp_path / "out", PrepareOptions(), False)
    assert report["cases_kept"] > 350


# ---------------------------------------------------------------- property-based

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from oncofed.common.ingest.tcga import clinical as tc  # noqa: E402
from oncofed.common.ingest.tcga.barcode import patient_barcode, tss_code  # noqa: E402

ALNUM = st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


@given(
    tss=st.text(ALNUM, min_size=2, max_size=2),
    pid=st.text(ALNUM, min_size=4, max_size=4),
    tail=st.sampled_from(["", "-01A", "-11B-01R-A00Z-07", ".01A.11R", "-01"]),
    lower=st.booleans(),
)
def test_barcode_parser_round_trips(tss, pid, tail, lower):
    text = f"TCGA-{tss}-{pid}{tail}"
    text = text.lower() if lower else text
    assert patient_barcode(text) == f"TCGA-{tss}-{pid}"
    assert tss_code(patient_barcode(text)) == tss


@given(st.text(max_size=20))
def test_barcode_parser_never_crashes_and_rejects_non_tcga(text):
    out = patient_barcode(text)
    assert out is None or (out.startswith("TCGA-") and len(out) == 12)


@given(
    roman=st.sampled_from(["I", "II", "III", "IV"]),
    sub=st.sampled_from(["", "A", "B", "C"]),
    case=st.sampled_from([str.upper, str.lower, str.title]),
)
def test_stage_normalisation(roman, sub, case):
    assert tc.normalise_stage(case(f"Stage {roman}{sub}")) == roman
    assert tc.normalise_stage("Stage X") is None


@given(
    letter=st.sampled_from("TNM"),
    n=st.integers(0, 4),
    sub=st.sampled_from(["", "a", "b"]),
    prefix=st.sampled_from(["", "p", "c"]),
)
def test_tnm_normalisation(letter, n, sub, prefix):
    assert tc.normalise_tnm(f"{prefix}{letter}{n}{sub}", letter) == f"{letter}{n}"
    assert tc.normalise_tnm(f"{letter}X", letter) is None


@settings(max_examples=30, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 9),  # patient
            st.sampled_from(["Alive", "Dead", "'--"]),
            st.sampled_from(["Stage I", "Stage IIIB", "'--", "Stage IV"]),
            st.one_of(st.just("'--"), st.integers(0, 5000).map(str)),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_gdc_reader_accounts_for_every_patient(tmp_path_factory, rows):
    """Any mix of repeated rows: one record or one quarantine entry per patient,
    and the longest follow-up wins."""
    path = tmp_path_factory.mktemp("gdc") / "clinical.tsv"
    pd.DataFrame(
        [
            {
                "cases.submitter_id": f"TCGA-AB-{p:04d}",
                "demographic.vital_status": v,
                "diagnoses.ajcc_pathologic_stage": s,
                "diagnoses.days_to_last_follow_up": f,
            }
            for p, v, s, f in rows
        ]
    ).to_csv(path, sep="\t", index=False)
    records, quarantined = tc.read_gdc_clinical(path)
    patients = {f"TCGA-AB-{p:04d}" for p, *_ in rows}
    assert set(records) | {q.case_id for q in quarantined} == patients
    assert not set(records) & {q.case_id for q in quarantined}
    for b, rec in records.items():
        ups = [int(f) for p, _, _, f in rows if f"TCGA-AB-{p:04d}" == b and f != "'--"]
        if rec.vital_status != "dead" and ups:
            assert rec.time == max(ups)


def _gdc_json_from_tsv(frame: pd.DataFrame) -> list[dict]:
    """The same patients as GDC's JSON export nests them."""
    cases = []
    for pid, rows in frame.groupby("cases.submitter_id"):
        first = rows.iloc[0]

        def part(prefix, row):
            return {
                c.split(".", 1)[1]: (None if v == "'--" else v)
                for c, v in row.items()
                if c.startswith(prefix + ".")
            }

        cases.append(
            {
                "case_id": first["cases.case_id"],
                "submitter_id": pid,
                "project": {"project_id": first["project.project_id"]},
                "demographic": part("demographic", first),
                "diagnoses": [part("diagnoses", r) for _, r in rows.iterrows()],
            }
        )
    return cases


def test_gdc_json_export_matches_the_tsv(tmp_path):
    raw = pd.read_csv(COAD, sep="\t", dtype=str, keep_default_na=False)
    keep = sorted(set(raw["cases.submitter_id"]))[:60]
    raw = raw[raw["cases.submitter_id"].isin(keep)]
    (tmp_path / "tsv").mkdir()
    (tmp_path / "json").mkdir()
    raw.to_csv(tmp_path / "tsv" / "clinical.tsv", sep="\t", index=False)
    opts = PrepareOptions(min_site_cases=1)
    prepare("tcga_coad_read", tmp_path / "tsv", tmp_path / "a", opts, False)
    ma = pd.concat(_manifests(tmp_path / "a").values()).set_index("case_id")
    alive = ma.index[ma.event == "0"][0]
    (tmp_path / "json" / "clinical.cases_selection.json").write_text(
        json.dumps(_gdc_json_from_tsv(raw))
    )
    # GDC's side tables come along in the same download: exposure (project id in
    # its first column, not a genomic matrix) and follow_up (longer follow-up)
    pd.DataFrame(
        {
            "project.project_id": "TCGA-COAD",
            "cases.submitter_id": [alive],
            "exposures.alcohol_history": ["Not Reported"],
        }
    ).to_csv(tmp_path / "json" / "exposure.tsv", sep="\t", index=False)
    pd.DataFrame(
        {
            "project.project_id": "TCGA-COAD",
            "cases.submitter_id": [alive],
            "follow_ups.days_to_follow_up": ["9999"],
        }
    ).to_csv(tmp_path / "json" / "follow_up.tsv", sep="\t", index=False)
    b = prepare("tcga_coad_read", tmp_path / "json", tmp_path / "b", opts, False)
    roles = {s["role"] for s in b["sources"]}
    assert roles == {"gdc-json", "gdc-other"}
    mb = pd.concat(_manifests(tmp_path / "b").values()).set_index("case_id")
    ma, mb = ma.sort_index(), mb.sort_index()
    assert list(ma.index) == list(mb.index) and len(ma) > 40
    assert (ma.label == mb.label).all() and (ma.event == mb.event).all()
    assert float(mb.loc[alive, "time"]) == 9999  # alive: the longer follow-up
    assert not UUID.search(_all_text(tmp_path / "b"))


BIOTAB = """bcr_patient_uuid\tbcr_patient_barcode\tgender\tvital_status\tdays_to_death\tdays_to_last_followup\tajcc_pathologic_tumor_stage\tage_at_initial_pathologic_diagnosis
bcr_patient_uuid\tbcr_patient_barcode\tgender\tvital_status\tdeath_days_to\tlast_contact_days_to\tajcc_pathologic_tumor_stage\tage_at_initial_pathologic_diagnosis
CDE_ID:\tCDE_ID:2003301\tCDE_ID:2200604\tCDE_ID:5\tCDE_ID:3165475\tCDE_ID:3008273\tCDE_ID:3203222\tCDE_ID:2006657
5d4c4e6a-0000-4a1b-8c1d-000000000001\tTCGA-DD-A4NA\tMALE\tDead\t400\t[Not Applicable]\tStage IIIA\t61
5d4c4e6a-0000-4a1b-8c1d-000000000002\tTCGA-DD-A4NB\tFEMALE\tAlive\t[Not Applicable]\t1200\tStage I\t55
5d4c4e6a-0000-4a1b-8c1d-000000000003\tTCGA-DD-A4NC\tMALE\tAlive\t[Not Applicable]\t300\t[Not Available]\t70
"""  # noqa: E501


def test_legacy_biotab_clinical_file(tmp_path):
    root = tmp_path / "biotab"
    root.mkdir()
    (root / "nationwidechildrens.org_clinical_patient_lihc.txt").write_text(BIOTAB)
    report = prepare(
        "tcga_lihc", root, tmp_path / "out", PrepareOptions(min_site_cases=1), False
    )
    kept = pd.concat(_manifests(tmp_path / "out").values()).set_index("case_id")
    assert kept.loc["TCGA-DD-A4NA", "label"] == "1"
    assert kept.loc["TCGA-DD-A4NA", "time"] == "400.0"
    assert kept.loc["TCGA-DD-A4NB", "time"] == "1200.0"
    why = {q["case_id"]: q["reason"] for q in report["quarantined"]}
    assert why == {"TCGA-DD-A4NC": "AJCC stage missing"}  # header rows not patients
    assert not UUID.search(_all_text(tmp_path / "out"))


def test_gzipped_matrix_is_recognised(tmp_path):
    import gzip as gz

    root, ids = _genomics_root(tmp_path)
    data = (root / "expression_counts.tsv").read_bytes()
    (root / "expression_counts.tsv").unlink()
    (root / "expression_counts.tsv.gz").write_bytes(gz.compress(data))
    report = prepare(
        "tcga_lihc", root, tmp_path / "out", PrepareOptions(min_site_cases=1), False
    )
    assert any(
        s["file"].endswith(".tsv.gz") and s["role"] == "genomic: expression"
        for s in report["sources"]
    )


def test_non_numeric_age_quarantines_the_patient(tmp_path):
    raw = pd.read_csv(COAD, sep="\t", dtype=str, keep_default_na=False)
    raw.loc[raw["cases.submitter_id"] == "TCGA-AA-3488", "demographic.age_at_index"] = (
        "fifty-eight"
    )
    (tmp_path / "r").mkdir()
    raw.to_csv(tmp_path / "r" / "clinical.tsv", sep="\t", index=False)
    report = prepare(
        "tcga_coad_read", tmp_path / "r", tmp_path / "o", PrepareOptions(), False
    )
    why = {q["case_id"]: (q["field"], q["reason"]) for q in report["quarantined"]}
    assert why["TCGA-AA-3488"] == ("age_at_index", "'fifty-eight' is not a number")
    assert report["cases_kept"] == 395  # one fewer than the clean export


def test_any_cohort_site_map_and_unused_cbioportal_tables(tmp_path):
    """The generic ``tcga`` entry keeps every project; a FLamby-style site map groups
    tissue-source sites into regions; cBioPortal timeline tables are recognised and
    left alone."""
    root = tmp_path / "download"
    root.mkdir()
    shutil.copy(COAD, root / "clinical.tsv")
    (root / "data_timeline_treatment.txt").write_text(
        "PATIENT_ID\tSTART_DATE\tEVENT_TYPE\nTCGA-AA-3488\t0\tTREATMENT\n"
        "TCGA-AA-3488\t30\tTREATMENT\n"
    )
    centers = pd.read_csv(BRCA / "centers.csv", dtype=str)
    centers = centers[~centers["TSS Code"].isin(["CM", "D5"])]  # left unmapped
    extra = pd.DataFrame({"TSS Code": ["AA", "A6"], "Region": ["Germany", "Germany"]})
    site_map = tmp_path / "map.csv"
    pd.concat([centers, extra]).to_csv(site_map, index=False)
    report = prepare(
        "tcga",
        root,
        tmp_path / "out",
        PrepareOptions(site_map=str(site_map), min_site_cases=1),
        False,
    )
    raw = pd.read_csv(COAD, sep="\t", dtype=str)
    patients = set(raw["cases.submitter_id"])
    kept = pd.concat(_manifests(tmp_path / "out").values())
    quarantined = {q["case_id"] for q in report["quarantined"]}
    assert set(kept.case_id) | quarantined == patients
    assert report["cases_quarantined"] == len(patients) - len(kept)
    assert "germany" in report["sites"]
    assert "unmapped" in report["sites"]  # the TSS codes the map lacks
    assert any("site map" in n for n in report["notes"])
    roles = {s["role"] for s in report["sources"]}
    assert roles == {"gdc-clinical"} | {"cbioportal-other"}


@pytest.mark.parametrize(
    "dataset,root", [("tcga_coad_read", COAD.parent), ("tcga_brca_flamby", BRCA)]
)
def test_mice_fills_numeric_gaps_of_a_real_prepared_dataset(tmp_path, dataset, root):
    """imputation='mice' on a schema dataset (real GDC / FLamby files): it used to
    assume the synthetic HCC layout and crash with an IndexError. Blank a numeric
    column for some training patients: MICE gives them per-patient estimates (the
    reference fill gives 0), the indicator still says "missing", and every other
    feature is left as encoded."""
    from oncofed.common.config import from_run_config
    from oncofed.common.data.prepared import PreparedDataset
    from oncofed.common.data.schema import load_schema
    from oncofed.common.data.site import load_site

    out = tmp_path / dataset
    prepare(dataset, root, out, PrepareOptions(), False)
    ds = PreparedDataset.open(out)
    site = max(ds.sites, key=lambda s: len(_manifests(out)[s]))
    site_dir = out / site
    schema = load_schema(site_dir)
    column = next(
        c.name
        for c in schema.clinical
        if c.kind == "numeric" and c.name not in schema.label_columns
    )
    value, indicator = schema.numeric_slots()[0]
    clin = pd.read_csv(
        site_dir / "clinical.tsv", sep="\t", dtype=str, keep_default_na=False
    )
    train = set(_manifests(out)[site].query("split == 'train'").case_id)
    blank = [c for c in clin.case_id if c in train][::3]
    clin.loc[clin.case_id.isin(blank), column] = ""
    clin.to_csv(site_dir / "clinical.tsv", sep="\t", index=False)

    def load(imputation):
        cfg = from_run_config(
            {"dataset": dataset, "data-root": str(out), "imputation": imputation}
        )
        data = load_site(site_dir, cfg.data)
        return {s["case_id"]: s["clinical"] for s in data.split("train")}

    ref, mice = load("reference"), load("mice")
    assert blank and set(blank) <= set(mice)
    assert all(float(ref[c][value]) == 0.0 for c in blank)
    estimates = {round(float(mice[c][value]), 4) for c in blank}
    assert len(estimates) > 1, estimates
    assert all(float(mice[c][indicator]) == 1.0 for c in blank)
    for c in mice:  # only the blanked values moved
        moved = (mice[c] != ref[c]).nonzero().flatten().tolist()
        assert moved == ([value] if c in blank else []), (c, moved)


def test_flamby_bad_cell_quarantines_one_patient_not_the_run(tmp_path):
    import shutil

    root = tmp_path / "brca"
    shutil.copytree(BRCA, root)
    frame = pd.read_csv(root / "brca.csv", dtype=str, keep_default_na=False)
    frame.loc[4, "T"] = "12x"  # one unreadable survival time
    frame.loc[8, "E"] = "2"  # an event that is not 0/1
    frame.to_csv(root / "brca.csv", index=False)
    report = prepare(
        "tcga_brca_flamby", root, tmp_path / "out", PrepareOptions(), False
    )
    assert report["cases_kept"] == 1088 - 2
    reasons = [q["reason"] for q in report["quarantined"]]
    assert any("'12x' is not a number" in r for r in reasons)
    assert any("E = '2'" in r for r in reasons)


def test_flamby_damaged_line_quarantines_its_patient_by_line(tmp_path):
    """A stray delimiter in one line of brca.csv (as an editor leaves it) costs
    that patient only, quarantined with the file's line number."""
    root = tmp_path / "brca"
    shutil.copytree(BRCA, root)
    (root / "brca.csv").chmod(0o644)
    lines = (root / "brca.csv").read_text().split("\n")
    lines[5] = lines[5] + ",extra"  # line 6: one field too many
    (root / "brca.csv").write_text("\n".join(lines))
    report = prepare(
        "tcga_brca_flamby", root, tmp_path / "out", PrepareOptions(), False
    )
    assert report["cases_kept"] == 1088 - 1
    (bad,) = [q for q in report["quarantined"] if "line 6" in q["reason"]]
    assert bad["path"].endswith("brca.csv")


def test_report_counts_agree_and_the_audit_catches_a_disagreement(tmp_path):
    """Every prepare checks its report's counts against each other; the check
    fails on a report whose sites do not add up."""
    from oncofed.common.ingest.prepare import audit_report

    report = prepare("tcga_coad_read", COAD.parent, tmp_path / "o",
                     PrepareOptions(label="os-event"), False)  # fmt: skip
    audit_report(report)  # prepare already ran it; the figures below are its
    assert report["cases_kept"] == sum(s["cases"] for s in report["sites"].values())
    assert report["entries_quarantined"] == len(report["quarantined"])
    broken = json.loads(json.dumps(report))
    next(iter(broken["sites"].values()))["test"] += 1
    with pytest.raises(RuntimeError, match="train \\+ val \\+ test != cases"):
        audit_report(broken)
    broken = json.loads(json.dumps(report))
    broken["cases_kept"] += 1
    with pytest.raises(RuntimeError, match="do not add up to cases_kept"):
        audit_report(broken)
