"""A barcode-keyed table is genomic only by its feature names; outcome, time,
date, identity and free-text columns never become features; nothing kept is an
error that says what to try.

The files are written in the layouts their publishers document (UCSC Xena's
TCGA survival and HiSeqV2 tables, cBioPortal's z-score matrices, the GDC
clinical TSV), not by our own writer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from oncofed.common.cli import main
from oncofed.common.errors import ConfigError, DataError
from oncofed.common.ingest.columns import never_feature
from oncofed.common.ingest.prepare import PrepareOptions, prepare
from oncofed.common.ingest.tcga.genomics import feature_id_kind

N = 30
IDS = [f"TCGA-{'DD' if i % 2 else 'BC'}-A{i:03d}" for i in range(N)]
OPTS = PrepareOptions(min_site_cases=1)
GENES = ["TP53", "AFP", "GPC3", "ALB", "APOA1", "C1orf112", "HLA-DRB1", "ID1",
         "NOTCH1", "MKI67", "EPCAM", "KRT19", "CDKN2A", "CTNNB1", "AXIN1", "TERT",
         "ARID1A", "ARID2", "RB1", "PTEN", "MYC", "VEGFA", "FGF19", "CCND1",
         "MET"]  # fmt: skip


def _gdc_clinical(root, stage=True):
    """A GDC portal clinical.tsv (undotted schema, ``'--`` for missing)."""
    frame = pd.DataFrame(
        {
            "case_id": [f"uuid-{i}" for i in range(N)],
            "case_submitter_id": IDS,
            "project_id": "TCGA-LIHC",
            "age_at_index": "61",
            "gender": "female",
            "vital_status": ["Dead" if i % 3 == 0 else "Alive" for i in range(N)],
            "days_to_death": [str(200 + i) if i % 3 == 0 else "'--" for i in range(N)],
            "days_to_last_follow_up": [str(2500 + i) for i in range(N)],
            "ajcc_pathologic_stage": [
                ("Stage IIIA" if i % 2 else "Stage I") if stage else "'--"
                for i in range(N)
            ],
        }
    )
    root.mkdir(exist_ok=True)
    frame.to_csv(root / "clinical.tsv", sep="\t", index=False)


def _genomics_text(out) -> str:
    return "\n".join(p.read_text() for p in out.glob("*/genomics.tsv"))


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("OS.time", "outcome"), ("OS_MONTHS", "outcome"), ("vital_status", "outcome"),
        ("DFS_STATUS", "outcome"), ("days_to_death", "outcome"),
        ("days_to_last_follow_up", "time"), ("follow up", "time"),
        ("year_of_birth", "date"), ("DOD", "date"), ("Date of surgery", "date"),
        ("NHS Number", "identity"), ("Postcode", "identity"),
        ("Initials", "identity"), ("patient_id", "identity"),
        ("Hospital", "institution"), ("Referring physician", "institution"),
        ("Surgeon", "institution"),
        ("Notes", "free text"), ("Comment", "free text"),
        ("_EVENT", "xena internal"), ("_TIME_TO_EVENT", "xena internal"),
    ],
)  # fmt: skip
def test_never_feature_families(name, family):
    assert never_feature(name) == family


@pytest.mark.parametrize(
    "name", ["TP53", "ID1", "NOTCH1", "C1orf112", "HLA-DRB1", "age", "sex", "stage"]
)
def test_genes_and_clinical_features_are_not_on_the_never_list(name):
    assert never_feature(name) is None


def test_feature_names_of_genomic_matrices():
    assert feature_id_kind("ENSG00000141510.16") == "ensembl"
    assert feature_id_kind("7157") == "entrez"
    assert feature_id_kind("cg00000029") == "probe"
    assert feature_id_kind("chr17:7565097-7590856") == "segment"
    assert feature_id_kind("17p13.1") == "segment"
    assert feature_id_kind("A1BG|1") == "symbol"
    assert feature_id_kind("?|100130426") == "entrez"
    for clinical in ("OS", "OS.time", "_EVENT", "Age", "vital_status", "os_months"):
        assert feature_id_kind(clinical) is None, clinical


def test_xena_survival_table_next_to_gdc_export_is_not_genomics(tmp_path):
    """UCSC Xena's TCGA survival table (``sample``, ``_PATIENT``, ``OS``,
    ``OS.time``, ...) is keyed by sample barcodes; it must not become features."""
    root = tmp_path / "dl"
    _gdc_clinical(root)
    rng = np.random.default_rng(0)
    xena = pd.DataFrame(
        {
            "sample": [f"{b}-01" for b in IDS],
            "_PATIENT": IDS,
            "OS": rng.integers(0, 2, N),
            "OS.time": rng.integers(10, 3000, N),
            "DSS": rng.integers(0, 2, N),
            "DSS.time": rng.integers(10, 3000, N),
            "PFI": rng.integers(0, 2, N),
            "PFI.time": rng.integers(10, 3000, N),
        }
    )
    xena.to_csv(root / "TCGA-LIHC.survival.tsv", sep="\t", index=False)
    pheno = pd.DataFrame(
        {
            "sampleID": [f"{b}-01" for b in IDS],
            "_EVENT": rng.integers(0, 2, N),
            "_TIME_TO_EVENT": rng.integers(10, 3000, N),
            "days_to_birth": -rng.integers(15000, 30000, N),
            "age_at_initial_pathologic_diagnosis": rng.integers(30, 80, N),
        }
    )
    pheno.to_csv(root / "LIHC_clinicalMatrix", sep="\t", index=False)
    out = tmp_path / "out"
    report = prepare("tcga_lihc", root, out, OPTS, False)
    roles = {s["file"].split("/")[-1]: s for s in report["sources"]}
    for name in ("TCGA-LIHC.survival.tsv", "LIHC_clinicalMatrix"):
        assert roles[name]["role"] == "not used", roles[name]
        assert "not a genomic matrix" in roles[name]["why"]
    assert report["cases_kept"] == N
    assert not list(out.glob("*/genomics.tsv")) or "OS" not in _genomics_text(out)
    md = (out / "report.md").read_text()
    assert "## Input files" in md
    assert "| not used |" in md and "| gdc-clinical |" in md


def test_users_own_clinical_sheet_keyed_by_barcode_is_not_genomics(tmp_path):
    """Lower-case headers, a BOM, a few columns: never read as expression."""
    root = tmp_path / "dl"
    _gdc_clinical(root)
    sheet = pd.DataFrame(
        {
            "patient": IDS,
            "os_months": np.arange(N) * 2.5,
            "vital status": ["dead"] * N,
            "afp": np.arange(N) * 10.0,
            "hospital": "St Elsewhere",
        }
    )
    (root / "my_patients.csv").write_text(
        "\ufeff" + sheet.to_csv(index=False), encoding="utf-8"
    )
    out = tmp_path / "out"
    report = prepare("tcga_lihc", root, out, OPTS, False)
    (used,) = [s for s in report["sources"] if s["file"].endswith("my_patients.csv")]
    assert used["role"] == "not used"
    assert "St Elsewhere" not in (out / "report.md").read_text() + _genomics_text(out)
    assert not list(out.glob("*/genomics.tsv"))


def _xena_hiseq(root, values):
    """Xena's HiSeqV2 layout: ``sample`` then one column per sample barcode, one
    row per gene symbol."""
    frame = pd.DataFrame(values, columns=[f"{b}-01" for b in IDS])
    frame.insert(0, "sample", GENES[: len(frame)])
    frame.to_csv(root / "HiSeqV2", sep="\t", index=False)


def test_expression_already_on_a_log_scale_is_not_logged_again(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "dl"
    _gdc_clinical(root)
    logged = rng.uniform(0, 16, (len(GENES), N)).round(4)  # log2(RSEM + 1)
    _xena_hiseq(root, logged)
    out = tmp_path / "out"
    report = prepare("tcga_lihc", root, out, OPTS, False)
    (src,) = [s for s in report["sources"] if s["file"].endswith("HiSeqV2")]
    assert src == {**src, "role": "genomic: expression", "why": "already log scale"}
    genomics = pd.concat(
        pd.read_csv(p, sep="\t", index_col="case_id")
        for p in out.glob("*/genomics.tsv")
    )
    # stored as given: TP53 of the first patient equals the file's value
    assert genomics.loc[IDS[0], "expression:TP53"] == pytest.approx(logged[0, 0])
    assert any("already on a log scale" in n for n in report["notes"])


def test_linear_counts_are_logged_and_the_report_says_so(tmp_path):
    rng = np.random.default_rng(2)
    root = tmp_path / "dl"
    _gdc_clinical(root)
    _xena_hiseq(root, rng.poisson(12, (len(GENES), N)))  # small whole counts
    report = prepare("tcga_lihc", root, tmp_path / "out", OPTS, False)
    (src,) = [s for s in report["sources"] if s["file"].endswith("HiSeqV2")]
    assert src["why"] == "log2(x + 1) applied"


def test_cbioportal_zscores_are_not_logged(tmp_path):
    """cBioPortal ``data_mrna_seq_v2_rsem_zscores_ref_all_samples.txt``:
    ``Hugo_Symbol``, ``Entrez_Gene_Id``, then one column per sample."""
    rng = np.random.default_rng(3)
    root = tmp_path / "dl"
    _gdc_clinical(root)
    z = pd.DataFrame(
        rng.normal(0, 1, (len(GENES), N)).round(4), columns=[f"{b}-01" for b in IDS]
    )
    z.insert(0, "Entrez_Gene_Id", range(1, len(GENES) + 1))
    z.insert(0, "Hugo_Symbol", GENES)
    z.to_csv(
        root / "data_mrna_seq_v2_rsem_zscores_ref_all_samples.txt",
        sep="\t",
        index=False,
    )
    report = prepare("tcga_lihc", root, tmp_path / "out", OPTS, False)
    (src,) = [s for s in report["sources"] if s["file"].endswith("samples.txt")]
    assert src["role"] == "genomic: expression" and src["why"] == "already log scale"


def test_nothing_kept_fails_with_the_reasons_and_the_labels_to_try(tmp_path, capsys):
    root = tmp_path / "dl"
    _gdc_clinical(root, stage=False)  # a cohort without AJCC stage
    with pytest.raises(DataError) as err:
        prepare("tcga_lihc", root, tmp_path / "out", OPTS, False)
    text = str(err.value)
    assert "no case kept" in text and f"AJCC stage missing ({N})" in text
    assert "--label os-event" in text and "os-5y" in text
    assert not (tmp_path / "out" / "report.json").exists()
    rc = main(["prepare", "tcga_lihc", "--root", str(root), "--out",
               str(tmp_path / "cli"), "--quiet"])  # fmt: skip
    assert rc != 0
    assert "no case kept" in capsys.readouterr().err
    # the suggested label works on the same files
    opts = PrepareOptions(min_site_cases=1, label="os-event")
    report = prepare("tcga_lihc", root, tmp_path / "out2", opts, False)
    assert report["cases_kept"] == N
    labels = sum(int(s["labels"].get("1", 0)) for s in report["sites"].values())
    assert labels == len([i for i in range(N) if i % 3 == 0])  # the dead
    five = prepare(
        "tcga_lihc", root, tmp_path / "out3",
        PrepareOptions(min_site_cases=1, label="os-5y"), False,
    )  # fmt: skip
    assert five["cases_kept"] == N  # dead within 5 y or followed past 5 y


def test_label_choices_are_checked_up_front(tmp_path):
    root = tmp_path / "dl"
    _gdc_clinical(root)
    with pytest.raises(ConfigError, match="os-event"):
        prepare("tcga_lihc", root, tmp_path / "o", PrepareOptions(label="os_event"))
    with pytest.raises(ConfigError, match="--label-column applies to imaging"):
        prepare("tcga_lihc", root, tmp_path / "o2", PrepareOptions(label_column="x"))


def _cbio_patients(root, name="data_clinical_patient.txt"):
    """cBioPortal's patient file: four ``#`` rows (display name, description,
    datatype, priority), then the tab-separated header and one row per patient."""
    cols = ["PATIENT_ID", "OS_STATUS", "OS_MONTHS", "AGE", "SEX",
            "AJCC_PATHOLOGIC_TUMOR_STAGE"]  # fmt: skip
    meta = [
        "#" + "\t".join(["Patient Identifier", "Overall Survival Status",
                         "Overall Survival (Months)", "Age", "Sex", "Stage"]),
        "#" + "\t".join(["Identifier"] * len(cols)),
        "#" + "\t".join(["STRING", "STRING", "NUMBER", "NUMBER", "STRING", "STRING"]),
        "#" + "\t".join(["1"] * len(cols)),
    ]  # fmt: skip
    rows = [
        "\t".join([b, "1:DECEASED" if i % 3 == 0 else "0:LIVING", f"{10 + i}.5",
                   str(40 + i), "Male", "STAGE IIIB" if i % 2 else "STAGE II"])
        for i, b in enumerate(IDS)
    ]  # fmt: skip
    root.mkdir(exist_ok=True)
    (root / name).write_text("\n".join([*meta, "\t".join(cols), *rows]) + "\n")
    (root / "meta_study.txt").write_text(
        "type_of_cancer: lihc\ncancer_study_identifier: lihc_tcga\n"
        "name: Liver Hepatocellular Carcinoma (TCGA)\n"
    )


def _resaved(src, dst, how):
    """``src``'s files re-saved as a user would: the same content, another form."""
    import gzip

    dst.mkdir()
    for f in src.iterdir():
        text = f.read_text()
        if f.name == "meta_study.txt":  # cBioPortal's metadata, kept as it is
            (dst / f.name).write_text(text)
            continue
        lines = text.splitlines()
        name = f.name
        if how == "bom":
            (dst / name).write_bytes(b"\xef\xbb\xbf" + text.encode())
        elif how == "utf16":
            (dst / name).write_text(text, encoding="utf-16")
        elif how == "crlf":
            (dst / name).write_bytes(text.replace("\n", "\r\n").encode())
        elif how == "gzip":
            (dst / (name + ".gz")).write_bytes(gzip.compress(text.encode()))
        elif how in ("comma", "semicolon"):
            d = "," if how == "comma" else ";"
            frame = pd.read_csv(f, sep="\t", dtype=str, keep_default_na=False,
                                comment=None, header=None)  # fmt: skip
            stem = name.rsplit(".", 1)[0] if "." in name else name
            frame.to_csv(dst / f"{stem}.csv", sep=d, header=False, index=False)
        elif how == "case":  # header case flipped (GDC upper, cBioPortal lower)
            head = next(i for i, ln in enumerate(lines) if not ln.startswith("#"))
            lines[head] = lines[head].swapcase() if "HiSeq" not in name else lines[head]
            (dst / name).write_text("\n".join(lines) + "\n")
        elif how == "excel":  # opened and saved by a spreadsheet
            frame = pd.read_csv(f, sep="\t", dtype=str, keep_default_na=False,
                                header=None)  # fmt: skip
            stem = name.rsplit(".", 1)[0] if "." in name else name
            frame.to_excel(dst / f"{stem}.xlsx", header=False, index=False)
        elif how == "r-write-table":  # row names, header one cell short
            if name == "HiSeqV2":
                (dst / name).write_text(text)
                continue
            head = next(i for i, ln in enumerate(lines) if not ln.startswith("#"))
            body = [f"{k + 1}\t{ln}" for k, ln in enumerate(lines[head + 1 :])]
            (dst / name).write_text("\n".join([*lines[: head + 1], *body]) + "\n")


@pytest.mark.parametrize(
    "how", ["bom", "utf16", "crlf", "gzip", "comma", "semicolon", "case",
            "r-write-table", "excel"],
)  # fmt: skip
def test_a_resaved_file_reads_the_same_as_the_original(tmp_path, how):
    rng = np.random.default_rng(4)
    for kind in ("gdc", "cbio"):
        src = tmp_path / f"{kind}-src"
        if kind == "gdc":
            _gdc_clinical(src)
        else:
            _cbio_patients(src)
        _xena_hiseq(src, rng.uniform(0, 16, (len(GENES), N)).round(3))
        original = prepare("tcga_lihc", src, tmp_path / f"{kind}-a", OPTS, False)
        _resaved(src, tmp_path / f"{kind}-{how}", how)
        again = prepare(
            "tcga_lihc", tmp_path / f"{kind}-{how}", tmp_path / f"{kind}-b", OPTS, False
        )
        assert again["cases_kept"] == original["cases_kept"] == N, (kind, how)
        assert again["sites"] == original["sites"], (kind, how)
        roles = sorted(s["role"] for s in again["sources"])
        assert roles == sorted(s["role"] for s in original["sources"]), (kind, how)


def test_cbioportal_seg_file_is_read_as_copy_number(tmp_path):
    """cBioPortal ``*.seg``: ID, chrom, loc.start, loc.end, num.mark, seg.mean."""
    root = tmp_path / "dl"
    _gdc_clinical(root)
    rows = [
        f"{b}-01\t{c}\t1\t{1000 * c}\t10\t{0.1 * (i % 5):.2f}"
        for i, b in enumerate(IDS)
        for c in (1, 2, 3)
    ]
    (root / "data_cna_hg19.seg").write_text(
        "ID\tchrom\tloc.start\tloc.end\tnum.mark\tseg.mean\n" + "\n".join(rows) + "\n"
    )
    report = prepare("tcga_lihc", root, tmp_path / "out", OPTS, False)
    (src,) = [s for s in report["sources"] if s["file"].endswith(".seg")]
    assert src["role"] == "genomic: cnv"
    assert "cnv:chr2" in _genomics_text(tmp_path / "out")


def test_gdc_json_exports_without_a_top_level_barcode(tmp_path):
    """GDC portal JSON exports of 2019 and 2022 carry the barcode only in nested
    records' ``submitter_id`` (``TCGA-XX-XXXX_demographic``, ``..._diagnosis``)."""
    import json

    cases = []
    for i, b in enumerate(IDS[:12]):
        case = {
            "case_id": f"0000-{i}",
            "project": {"project_id": "TCGA-LIHC"},
            "demographic": {
                "submitter_id": f"{b}_demographic",
                "gender": "male",
                "vital_status": "Dead" if i % 3 == 0 else "Alive",
                "days_to_death": 300 + i if i % 3 == 0 else None,
                "year_of_birth": 1950,
            },
            "diagnoses": [
                {
                    "submitter_id": f"{b}_diagnosis",
                    "tumor_stage": "stage iiia" if i % 2 else "stage i",  # pre-2020
                    "age_at_diagnosis": 22000 + i,
                    "days_to_last_follow_up": 900 + i,
                }
            ],
            "exposures": [{"submitter_id": f"{b}_exposure", "alcohol_history": "Yes"}],
        }
        if i >= 6:  # the 2022 layout moved the demographic barcode away
            case["demographic"].pop("submitter_id")
        cases.append(case)
    root = tmp_path / "dl"
    root.mkdir()
    (root / "clinical.cases_selection.2019-05-01.json").write_text(json.dumps(cases))
    report = prepare("tcga_lihc", root, tmp_path / "out", OPTS, False)
    assert report["cases_kept"] == 12
    stages = sum(int(s["labels"].get("1", 0)) for s in report["sites"].values())
    assert stages == 6  # tumor_stage read as the stage
