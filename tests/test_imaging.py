"""Imaging readers: the real liver CT DICOM slices + DICOM-SEG from ../shared/data,
and LiTS / CirrMRI600+ files written in their documented layouts."""

from __future__ import annotations

import gzip
import json
import re
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from oncofed.common.config import DataConfig
from oncofed.common.data.site import load_site
from oncofed.common.errors import ConfigError, DataError
from oncofed.common.ingest.prepare import PrepareOptions, prepare
from tests.conftest import SHARED_DATA

DCM = SHARED_DATA / "dcmqi_liver_ct3slice_seg"


def _read_nrrd(path):
    """The reference liver mask (gzip NRRD): array (z, y, x) and index->LPS affine."""
    raw = path.read_bytes()
    head, _, body = raw.partition(b"\n\n")
    fields = dict(
        line.split(": ", 1) for line in head.decode().splitlines()[1:] if ": " in line
    )
    sizes = [int(s) for s in fields["sizes"].split()]
    data = np.frombuffer(gzip.decompress(body), dtype="<i2").reshape(sizes[::-1])
    dirs = [
        [float(v) for v in d.strip("()").split(",")]
        for d in fields["space directions"].split()
    ]
    origin = [float(v) for v in fields["space origin"].strip("()").split(",")]
    affine = np.eye(4)
    affine[:3, :3] = np.array(dirs).T
    affine[:3, 3] = origin
    return data, affine


@pytest.fixture()
def crlm_root(tmp_path):
    root = tmp_path / "crlm"
    (root / "patient" / "ct").mkdir(parents=True)
    for f in (DCM / "ct-3slice").glob("*.dcm"):
        shutil.copy(f, root / "patient" / "ct" / f.name)
    shutil.copy(DCM / "liver.dcm", root / "patient" / "seg.dcm")
    # a truncated copy of a slice (pixel data cut) and a file that is not DICOM
    data = (DCM / "ct-3slice" / "02.dcm").read_bytes()
    (root / "patient" / "ct" / "04.dcm").write_bytes(data[: len(data) // 2])
    (root / "patient" / "notes.txt").write_text("scanned 2009\n")
    pd.DataFrame(
        {
            "PatientID": ["99000", "55555"],
            "PatientName": ["JANCT000", "DOE^JANE"],
            "BirthDate": ["19500101", "19600101"],
            "age": [61, 70],
            "recurrence": [1, 0],
        }
    ).to_csv(root / "clinical.csv", index=False)
    return root


def test_dicom_series_and_seg_become_one_aligned_deidentified_case(crlm_root, tmp_path):
    out = tmp_path / "out"
    report = prepare("crlm", crlm_root, out, PrepareOptions(min_site_cases=1), False)
    assert report["cases_kept"] == 1
    site = next(iter(report["sites"]))
    m = pd.read_csv(out / site / "manifest.csv", dtype=str, keep_default_na=False)
    case = m.iloc[0]
    assert re.fullmatch(r"case-[0-9a-f]{12}", case.case_id)
    ct = nib.load(out / site / case.ct_path)
    mask = nib.load(out / site / case.mask_path)
    assert ct.shape == mask.shape and sorted(ct.shape) == [3, 512, 512]
    hu = np.asarray(ct.dataobj)
    assert hu.min() < -900 and 0 < np.median(hu[np.asarray(mask.dataobj) == 1]) < 200
    # the mask lands on the same world positions as dcmqi's reference NRRD
    ref, ref_affine = _read_nrrd(DCM / "liver_seg.nrrd")
    ours = np.asarray(mask.dataobj)
    assert (ours == 1).sum() == (ref > 0).sum() == 107098
    ras_to_lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    idx = np.argwhere(ours == 1)
    world = ras_to_lps @ ct.affine @ np.c_[idx, np.ones(len(idx))].T
    ijk = np.rint(np.linalg.inv(ref_affine) @ world).astype(int)[:3]
    assert (ref[ijk[2], ijk[1], ijk[0]] > 0).all()
    # liver only, no tumour segment: label 0
    assert case.label == "0"
    # the truncated slice is quarantined, named, and the series still assembled
    bad = [q for q in report["quarantined"] if q["path"].endswith("04.dcm")]
    assert bad and bad[0]["reason"]
    # de-identified: no name, patient ID or birth date anywhere in the output
    text = "\n".join(
        p.read_text()
        for p in out.rglob("*")
        if p.suffix in (".csv", ".tsv", ".json", ".md")
    )
    for phi in ("JANCT000", "99000", "19500101", "DOE^JANE"):
        assert phi not in text
    # allow-list: age passes; recurrence is an outcome, kept only as a label
    clin = pd.read_csv(out / site / "clinical.tsv", sep="\t")
    assert list(clin.columns) == ["case_id", "age"]
    for img in (ct, mask):
        assert "99000" not in str(img.header) and "JANCT" not in str(img.header)


def test_label_column_and_pseudonyms_are_stable(crlm_root, tmp_path):
    # HCC-TACE-Seg ships its clinical data as an Excel workbook
    table = pd.read_csv(crlm_root / "clinical.csv", dtype=str)
    table.to_excel(crlm_root / "HCC-TACE-Seg_clinical_data-V2.xlsx", index=False)
    (crlm_root / "clinical.csv").unlink()
    opts = PrepareOptions(min_site_cases=1, label_column="recurrence")
    a = prepare("hcc_tace_seg", crlm_root, tmp_path / "a", opts, False)
    b = prepare("hcc_tace_seg", crlm_root, tmp_path / "b", opts, False)
    (site,) = a["sites"]
    ma = pd.read_csv(tmp_path / "a" / site / "manifest.csv", dtype=str)
    mb = pd.read_csv(tmp_path / "b" / site / "manifest.csv", dtype=str)
    assert ma.case_id.tolist() == mb.case_id.tolist()
    assert ma.label.tolist() == ["1"]
    assert a["sites"] == b["sites"]
    meta = json.loads((tmp_path / "a" / "dataset.json").read_text())
    assert meta["label_columns"] == ["recurrence"]


def _nifti(path, array, zooms):
    img = nib.Nifti1Image(array, np.diag([*zooms, 1.0]))
    nib.save(img, path)


@pytest.fixture()
def lits_root(tmp_path):
    root = tmp_path / "LiTS" / "Training Batch 1"
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for n in range(8):
        vol = rng.normal(40, 20, (32, 32, 12)).astype(np.int16)
        seg = np.zeros((32, 32, 12), np.uint8)
        seg[8:24, 8:24, 2:10] = 1
        if n % 2:
            seg[12:16, 12:16, 4:6] = 2
        zooms = (0.8, 0.8, 2.5) if n < 4 else (0.6, 0.6, 1.0)
        _nifti(root / f"volume-{n}.nii", vol, zooms)
        _nifti(root / f"segmentation-{n}.nii", seg, zooms)
    # broken cases: wrong-shape mask, mislabelled mask, truncated volume
    _nifti(
        root / "segmentation-2.nii", np.zeros((32, 32, 11), np.uint8), (0.8, 0.8, 2.5)
    )
    bad = np.zeros((32, 32, 12), np.uint8)
    bad[0, 0, 0] = 7
    _nifti(root / "segmentation-3.nii", bad, (0.8, 0.8, 2.5))
    data = (root / "volume-6.nii").read_bytes()
    (root / "volume-6.nii").write_bytes(data[: len(data) // 3])
    nib.save(
        nib.Nifti1Image(np.zeros((32, 32), np.int16), np.eye(4)), root / "volume-9.nii"
    )
    return root.parent


def test_lits_pairs_quarantine_and_load(lits_root, tmp_path, oncofed_home):
    out = tmp_path / "out"
    report = prepare("lits17", lits_root, out, PrepareOptions(min_site_cases=1), False)
    assert report["cases_kept"] == 5
    reasons = {q["path"].rsplit("/", 1)[-1]: q["reason"] for q in report["quarantined"]}
    assert "differs from image" in reasons["segmentation-2.nii"]
    assert "[7]" in reasons["segmentation-3.nii"]
    assert "volume-6.nii" in reasons
    assert "not 3-D" in reasons["volume-9.nii"]
    manifests = {
        s: pd.read_csv(out / s / "manifest.csv", dtype=str) for s in report["sites"]
    }
    assert set(report["sites"]) == {
        "medium-slices-coarse-pixels",
        "thin-slices-fine-pixels",
    }
    every = pd.concat(manifests.values())
    assert sorted(every.label.astype(int)) == [0, 0, 1, 1, 1]  # volumes 0,1,4,5,7
    assert not every.case_id.str.contains("volume").any()
    # the training loader reads a prepared site as it reads the synthetic ones
    site = next(iter(manifests))
    data = load_site(out / site, DataConfig(image_size=16, image_depth=8))
    n = sum(len(v) for v in data.splits.values())
    assert n == len(manifests[site]) and not data.quarantined
    sample = (data.split("train") or data.split("test"))[0]
    assert tuple(sample["ct"].shape) == (1, 16, 16, 8)


def test_cirrmri_layout_keeps_published_split(tmp_path):
    root = tmp_path / "CirrMRI600+"
    rng = np.random.default_rng(1)
    for seq in ("Cirrhosis_T1_3D", "Cirrhosis_T2_3D"):
        for split, n in (("train", 3), ("valid", 1), ("test", 2)):
            for kind in ("images", "masks"):
                (root / seq / split / kind).mkdir(parents=True)
            for i in range(n):
                name = f"{split}{i}.nii.gz"
                _nifti(
                    root / seq / split / "images" / name,
                    rng.normal(300, 50, (24, 24, 8)).astype(np.int16),
                    (1.4, 1.4, 5.0),
                )
                mask = np.zeros((24, 24, 8), np.uint8)
                mask[4:20, 4:20, 2:6] = 1
                _nifti(root / seq / split / "masks" / name, mask, (1.4, 1.4, 5.0))
    report = prepare(
        "cirrmri600", root, tmp_path / "out", PrepareOptions(min_site_cases=1), False
    )
    assert report["cases_kept"] == 12
    assert {s.split("-")[0] for s in report["sites"]} == {"t1w", "t2w"}
    for s in report["sites"].values():
        # the published "valid" folder is the validation split
        assert (s["train"], s["val"], s["test"]) == (3, 1, 2)
    assert any("cirrhotic" in n for n in report["notes"])


HISTO = SHARED_DATA / "histology_he"


def test_tiles_and_svs_become_stain_normalised_bags(tmp_path):
    root = tmp_path / "lihc"
    root.mkdir()
    shutil.copytree(
        HISTO / "mopadi_tcga_tiles" / "TCGA-AD-6964-01Z-00-DX1",
        root / "TCGA-AD-6964-01Z-00-DX1",
    )
    shutil.copytree(
        HISTO / "mopadi_tcga_tiles" / "TCGA-3X-AAVA-01Z-00-DX1",
        root / "TCGA-3X-AAVA-01Z-00-DX1",
    )
    (root / "TCGA-AD-A001-01Z-00-DX1").mkdir()
    shutil.copy(
        HISTO / "cmu_small_region.svs", root / "TCGA-AD-A001-01Z-00-DX1" / "s.svs"
    )
    shutil.copy(HISTO / "skimage_ihc_colon.png", root / "ihc.png")  # no barcode
    (root / "TCGA-AD-A002-01Z-00-DX1").mkdir()
    (root / "TCGA-AD-A002-01Z-00-DX1" / "tile.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    ids = ["TCGA-AD-6964", "TCGA-3X-AAVA", "TCGA-AD-A001", "TCGA-AD-A002"]
    pd.DataFrame(
        {
            "case_submitter_id": ids,
            "project_id": "TCGA-LIHC",
            "vital_status": ["Dead", "Alive", "Alive", "Dead"],
            "ajcc_pathologic_stage": ["Stage IV", "Stage I", "Stage II", "Stage III"],
        }
    ).to_csv(root / "clinical.tsv", sep="\t", index=False)
    out = tmp_path / "out"
    report = prepare(
        "tcga_lihc",
        root,
        out,
        PrepareOptions(min_site_cases=1, test_fraction=0.0),
        False,
    )
    bags = {}
    for site in report["sites"]:
        m = pd.read_csv(out / site / "manifest.csv", dtype=str, keep_default_na=False)
        for r in m.itertuples():
            if r.histo_path:
                with np.load(out / site / r.histo_path) as z:
                    bags[r.case_id] = z["tiles"]
    assert set(bags) == {"TCGA-AD-6964", "TCGA-3X-AAVA", "TCGA-AD-A001"}
    assert bags["TCGA-AD-6964"].shape == (3, 3, 224, 224)
    assert bags["TCGA-3X-AAVA"].shape[0] == 6
    assert bags["TCGA-AD-A001"].shape[0] >= 10  # tissue tiles of the SVS
    assert bags["TCGA-AD-A001"].dtype == np.uint8
    # Macenko changed the colours: the bag is not the raw tiles
    from oncofed.common.data.histology import read_tile

    raw = read_tile(next((root / "TCGA-AD-6964-01Z-00-DX1").glob("*.jpg")))
    assert not any(
        np.array_equal(raw.transpose(2, 0, 1), t) for t in bags["TCGA-AD-6964"]
    )
    assert any(f.endswith("ihc.png") for f in report["unrecognised_files"])
    bad = [q for q in report["quarantined"] if q["path"].endswith("tile.jpg")]
    assert bad and "unreadable image" in bad[0]["reason"]


def test_crc_metastasis_merges_tcga_clinical_and_crlm_ct(crlm_root, tmp_path):
    root = tmp_path / "crc"
    (root / "tcga").mkdir(parents=True)
    shutil.copy(SHARED_DATA / "tcga_coad_gdc" / "clinical.tsv", root / "tcga")
    shutil.copytree(crlm_root, root / "crlm")
    out = tmp_path / "out"
    report = prepare(
        "crc_metastasis", root, out, PrepareOptions(min_site_cases=1), False
    )
    sites = json.loads((out / "dataset.json").read_text())["sites"]
    assert any(s.startswith("tcga-tss-") for s in sites)
    assert any(s.startswith("crlm-") for s in sites)
    assert set(report["sites"]) == set(sites)
    # one schema for all sites: the TCGA clinical columns, label columns excluded
    schemas = {(out / s / "schema.json").read_text() for s in sites}
    assert len(schemas) == 1
    from oncofed.common.data.schema import load_schema

    schema = load_schema(out / sites[0])
    assert "m_stage" in schema.label_columns
    ct_site = next(s for s in sites if s.startswith("crlm-"))
    data = load_site(out / ct_site, DataConfig(image_size=16, image_depth=4))
    case = (data.split("train") + data.split("test"))[0]
    assert case["ct_present"] == 1.0 and case["clinical"].shape == (
        schema.clinical_dim,
    )
    assert (
        (out / "report.md")
        .read_text()
        .startswith("# Preparation report: crc_metastasis")
    )


def test_non_numeric_value_in_numeric_column_quarantines(crlm_root, tmp_path):
    table = pd.read_csv(crlm_root / "clinical.csv", dtype=str)
    others = pd.DataFrame({"PatientID": [str(i) for i in range(8)], "age": "50"})
    table = pd.concat([table, others], ignore_index=True)  # a numeric column
    table.loc[0, "age"] = "sixty-one"
    table.to_csv(crlm_root / "clinical.csv", index=False)
    with pytest.raises(DataError) as err:  # nothing kept: an error, not a report
        prepare("crlm", crlm_root, tmp_path / "o", PrepareOptions(), False)
    assert "no case kept" in str(err.value)
    assert "'sixty-one' is not a number" in str(err.value)


def test_clinical_columns_pass_only_by_allow_list(crlm_root, tmp_path):
    """Columns a spreadsheet adds pass only if the allow-list names them; what an
    anonymiser's deny-regex missed never reaches clinical.tsv or schema.json."""
    table = pd.read_csv(crlm_root / "clinical.csv", dtype=str)
    table["Hospital"] = "St Elsewhere"
    table["Referring physician"] = "Dr Quinn"
    table["Surgeon"] = "Mr Sawbones"
    table["NHS Number"] = "943 476 5919"
    table["Postcode"] = "SW1A 1AA"
    table["Initials"] = "JQ"
    table["Notes"] = "seen in clinic 3"
    table["DOD"] = "2012-03-04"
    table["Child-Pugh"] = "A"
    table["AFP"] = "12.5"
    table["age"] = "95"
    table.to_csv(crlm_root / "clinical.csv", index=False)
    out = tmp_path / "out"
    opts = PrepareOptions(min_site_cases=1, label_column="recurrence")
    report = prepare("crlm", crlm_root, out, opts, False)
    site = next(iter(report["sites"]))
    clin = pd.read_csv(out / site / "clinical.tsv", sep="\t")
    assert set(clin.columns) == {"case_id", "age", "recurrence", "Child-Pugh", "AFP"}
    assert clin["age"].tolist() == [90]  # over 89: reported as 90 (90 or older)
    text = "\n".join(
        p.read_text() for p in out.rglob("*") if p.suffix in (".csv", ".tsv", ".json")
    )
    for value in ("St Elsewhere", "Quinn", "Sawbones", "943 476 5919", "SW1A",
                  "seen in clinic", "2012-03-04"):  # fmt: skip
        assert value not in text, value
    assert any("allow-list" in n and "Hospital" in n for n in report["notes"])


def test_label_column_and_root_mistakes_are_named(crlm_root, lits_root, tmp_path):
    opts = PrepareOptions(min_site_cases=1, label_column="Recurrence")
    with pytest.raises(DataError, match="missing.*Did you mean 'recurrence'"):
        prepare("crlm", crlm_root, tmp_path / "a", opts, False)
    with pytest.raises(DataError, match="is a file, not a folder"):
        prepare("crlm", crlm_root / "clinical.csv", tmp_path / "b", opts, False)
    # LiTS has no clinical table: refused before any case is built
    with pytest.raises(ConfigError, match="no clinical table"):
        prepare("lits17", lits_root, tmp_path / "c", opts, False)


def test_declared_image_size_is_checked_before_decoding(tmp_path, monkeypatch):
    """A small file that declares a large image is refused from its header."""
    import tifffile
    from PIL import Image

    from oncofed.common.data.histology import read_tile
    from oncofed.common.data.limits import ImageTooLarge

    monkeypatch.setenv("ONCOFED_MAX_IMAGE_BYTES", str(1024**2))  # 1 MiB
    big = np.zeros((1200, 1200, 3), np.uint8)
    Image.fromarray(big).save(tmp_path / "big.png")
    tifffile.imwrite(tmp_path / "big.tif", big, compression="zlib")
    assert (tmp_path / "big.tif").stat().st_size < 100_000  # small on disk
    for name in ("big.png", "big.tif"):
        with pytest.raises(ImageTooLarge, match="above the 1 MiB cap"):
            read_tile(tmp_path / name)
    small = np.zeros((100, 100, 3), np.uint8)
    Image.fromarray(small).save(tmp_path / "small.png")
    assert read_tile(tmp_path / "small.png").shape == (224, 224, 3)
    # NIfTI: the header's shape x dtype decides, before the data is read
    vol = nib.Nifti1Image(np.zeros((128, 128, 32), np.float32), np.eye(4))
    nib.save(vol, tmp_path / "ct.nii.gz")
    from oncofed.common.ingest.imaging import check_nifti_pair

    with pytest.raises(ImageTooLarge):
        check_nifti_pair(tmp_path / "ct.nii.gz", None, {0, 1, 2})


def test_prepared_nifti_is_written_afresh_without_header_text(lits_root, tmp_path):
    """A scanner or converter leaves names in ``descrip`` and extensions; the
    prepared NIfTI carries voxels and geometry only."""
    src = next(lits_root.rglob("volume-0.nii"))
    loaded = nib.load(src)  # memory-mapped: copy before writing over it
    img = nib.Nifti1Image(np.array(loaded.dataobj), loaded.affine, loaded.header)
    img.header["descrip"] = b"DOE^JANE 19500101"
    img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"MRN 12345"))
    nib.save(img, src)
    out = tmp_path / "out"
    prepare("lits17", lits_root, out, PrepareOptions(min_site_cases=1), False)
    written = list(out.rglob("*.nii.gz"))
    assert written
    for p in written:
        im = nib.load(p)
        assert b"DOE" not in im.header["descrip"].tobytes()
        assert len(im.header.extensions) == 0
    ours = [p for p in written if "image" in p.name]
    assert any(
        np.array_equal(np.asarray(nib.load(p).dataobj), np.asarray(img.dataobj))
        for p in ours
    )
