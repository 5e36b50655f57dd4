"""DICOM series are grouped by the standard's identifiers (PS3.3): PatientID,
then StudyInstanceUID; never by luck. Built from the real 3-slice liver CT in
``../shared/data`` with header fields set as anonymisers and scanners set them."""

from __future__ import annotations

import shutil

import pydicom
import pytest
from pydicom.uid import generate_uid

from oncofed.common.errors import DataError
from oncofed.common.ingest.prepare import PrepareOptions, prepare
from tests.conftest import SHARED_DATA

DCM = SHARED_DATA / "dcmqi_liver_ct3slice_seg"
SLICES = sorted((DCM / "ct-3slice").glob("*.dcm"))
OPTS = PrepareOptions(min_site_cases=1)


def write_series(folder, patient_id="", study=None, sex="F", birth="19500101",
                 slices=SLICES, edit=None):  # fmt: skip
    """A copy of the liver series with new UIDs and the given patient fields."""
    folder.mkdir(parents=True)
    study, series = study or generate_uid(), generate_uid()
    for k, src in enumerate(slices):
        ds = pydicom.dcmread(src)
        ds.PatientID, ds.PatientSex, ds.PatientBirthDate = patient_id, sex, birth
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if edit:
            edit(ds, k)
        ds.save_as(folder / f"{k:02d}.dcm")
    return series


def with_labelled_case(root):
    """The original series and its DICOM-SEG: one case whose label the mask
    decides (the copies above have no mask, so each is one patient quarantined
    for want of a label, which is how they are counted)."""
    shutil.copytree(DCM / "ct-3slice", root / "original")
    shutil.copy(DCM / "liver.dcm", root / "original-seg.dcm")
    return root


def _kept(report) -> int:
    """Patients found: the labelled case plus one entry per unlabelled patient."""
    unlabelled = {
        q["case_id"] for q in report["quarantined"] if "no tumour mask" in q["reason"]
    }
    return report["cases_kept"] - 1 + len(unlabelled)


def _reasons(report) -> str:
    return " | ".join(q["reason"] for q in report["quarantined"])


def test_blank_patient_ids_are_not_merged(tmp_path):
    root = tmp_path / "dl"
    write_series(root / "a", patient_id="")
    write_series(root / "b", patient_id="ANONYMOUS")
    report = prepare("crlm", with_labelled_case(root), tmp_path / "out", OPTS, False)
    assert _kept(report) == 2  # two studies, two patients
    cited = {q["path"] for q in report["quarantined"] if "no tumour" in q["reason"]}
    assert cited == {str(root / "a"), str(root / "b")}  # the source, not a temp file


def test_a_shared_patient_id_of_different_people_splits_by_study(tmp_path):
    root = tmp_path / "dl"
    write_series(root / "a", patient_id="HCC_001", sex="F", birth="19500101")
    write_series(root / "b", patient_id="HCC_001", sex="M", birth="19620304")
    same = tmp_path / "same"
    study = generate_uid()
    write_series(same / "a", patient_id="HCC_002", study=study)
    write_series(same / "b", patient_id="HCC_002", study=study)
    assert _kept(prepare("crlm", with_labelled_case(root), tmp_path / "o1", OPTS,
                         False)) == 2  # fmt: skip
    one = prepare("crlm", with_labelled_case(same), tmp_path / "o2", OPTS, False)
    assert _kept(one) == 1  # one patient, two series: one case, the other named
    assert any("other series not used" in n for n in one["notes"])


def test_modality_burned_in_and_bad_uid_are_quarantined_with_reasons(tmp_path):
    root = tmp_path / "dl"
    write_series(root / "ct", patient_id="P1")

    def mr(ds, k):
        ds.Modality = "MR"

    def burned(ds, k):
        ds.BurnedInAnnotation = "YES"

    write_series(root / "mr", patient_id="P2", edit=mr)
    write_series(root / "burned", patient_id="P3", edit=burned)

    def bad_uid(ds, k):
        if k == 1:
            ds.SeriesInstanceUID = "1.2.3.x9!"

    write_series(root / "baduid", patient_id="P4", edit=bad_uid)
    shutil.copy(SLICES[0], root / "DICOMDIR")  # an index file: skipped quietly
    report = prepare("crlm", with_labelled_case(root), tmp_path / "out", OPTS, False)
    why = _reasons(report)
    assert "modality MR is not accepted by this dataset (CT)" in why
    assert "BurnedInAnnotation = YES" in why
    assert "is not a valid UID" in why
    assert "DICOMDIR" not in " ".join(q["path"] for q in report["quarantined"])
    allowed = PrepareOptions(min_site_cases=1, allow_burned_in=True)
    again = prepare("crlm", root, tmp_path / "out2", allowed, False)  # same root
    assert _kept(again) == _kept(report) + 1


def test_next_series_is_tried_when_the_first_cannot_be_assembled(tmp_path):
    root = tmp_path / "dl"

    def irregular(ds, k):  # slices not on a regular grid: highdicom refuses
        if k == 2:
            pos = [float(v) for v in ds.ImagePositionPatient]
            ds.ImagePositionPatient = [pos[0], pos[1], pos[2] + 7.3]

    write_series(root / "a", patient_id="P1", edit=irregular)
    write_series(root / "b", patient_id="P1", slices=SLICES[:2])
    report = prepare("crlm", with_labelled_case(root), tmp_path / "out", OPTS, False)
    assert _kept(report) == 1
    assert any("trying the next" in n for n in report["notes"])


def test_segmentation_without_its_series_is_quarantined(tmp_path):
    root = tmp_path / "dl"
    write_series(root / "ct", patient_id="P1")
    seg = pydicom.dcmread(DCM / "liver.dcm")
    seg.ReferencedSeriesSequence[0].SeriesInstanceUID = generate_uid()  # absent
    seg.SOPInstanceUID = generate_uid()
    seg.file_meta.MediaStorageSOPInstanceUID = seg.SOPInstanceUID
    seg.save_as(root / "orphan-seg.dcm")
    report = prepare("crlm", with_labelled_case(root), tmp_path / "out", OPTS, False)
    assert "which is not under --root" in _reasons(report)


def test_nothing_usable_is_an_error_not_an_empty_folder(tmp_path):
    root = tmp_path / "dl"

    def mr(ds, k):
        ds.Modality = "MR"

    write_series(root / "mr", patient_id="P2", edit=mr)
    with pytest.raises(DataError, match="not accepted by this dataset"):
        prepare("crlm", root, tmp_path / "out", OPTS, False)
