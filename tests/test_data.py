"""Sample dicts from a site folder; bad cases quarantined, the rest go on."""

import gzip

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from oncofed.common.config import DataConfig
from oncofed.common.data.site import load_site
from oncofed.common.errors import DataError
from oncofed.common.keys import CLINICAL, CT, LABEL, present_key

CFG = DataConfig(num_sites=3)


def _manifest(site):
    return pd.read_csv(site / "manifest.csv", keep_default_na=False, dtype=str)


def test_samples_have_fixed_shapes_and_flags(site_copy):
    data = load_site(site_copy, CFG)
    assert not data.quarantined
    sample = data.split("train")[0]
    assert tuple(sample[CT].shape) == (
        1,
        CFG.image_size,
        CFG.image_size,
        CFG.image_depth,
    )
    assert 0.0 <= float(sample[CT].min()) and float(sample[CT].max()) <= 1.0
    assert sample[CLINICAL].shape == (24,)
    assert sample[LABEL] in (0.0, 1.0)
    assert sample[present_key(CT)] in (0.0, 1.0)


def _first_ct(site):
    m = _manifest(site)
    row = m[(m.ct_path != "") & (m.split == "train")].iloc[0]
    return row.case_id, site / row.ct_path


def test_truncated_nifti_is_quarantined_with_file_named(site_copy):
    n_before = len(load_site(site_copy, CFG).split("train"))
    case, path = _first_ct(site_copy)
    path.write_bytes(path.read_bytes()[:300])
    data = load_site(site_copy, CFG)
    assert [q.case_id for q in data.quarantined] == [case]
    assert str(path) == data.quarantined[0].path
    assert len(data.split("train")) == n_before - 1


def test_wrong_shape_nifti_is_quarantined(site_copy):
    case, path = _first_ct(site_copy)
    nib.save(nib.Nifti1Image(np.zeros((64, 64), np.int16), np.eye(4)), path)
    data = load_site(site_copy, CFG)
    assert [q.case_id for q in data.quarantined] == [case]
    assert "shape" in data.quarantined[0].reason


def test_missing_file_is_quarantined(site_copy):
    case, path = _first_ct(site_copy)
    path.unlink()
    data = load_site(site_copy, CFG)
    assert [q.case_id for q in data.quarantined] == [case]


def test_non_numeric_lab_value_names_column(site_copy):
    tsv = site_copy / "clinical.tsv"
    table = pd.read_csv(tsv, sep="\t", dtype=str, keep_default_na=False)
    case = table.case_id.iloc[0]
    table.loc[0, "afp_ng_ml"] = "high"
    table.to_csv(tsv, sep="\t", index=False)
    data = load_site(site_copy, CFG)
    assert [q.case_id for q in data.quarantined] == [case]
    assert "afp_ng_ml" in data.quarantined[0].reason
    assert data.quarantined[0].path == str(tsv)


def test_duplicate_case_id_keeps_first(site_copy):
    m = _manifest(site_copy)
    pd.concat([m, m.iloc[[0]]]).to_csv(site_copy / "manifest.csv", index=False)
    data = load_site(site_copy, CFG)
    assert len(data.quarantined) == 1
    assert "duplicate" in data.quarantined[0].reason


def test_missing_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="manifest.csv.*not found"):
        load_site(tmp_path, CFG)


def test_case_without_ct_gets_absent_flag(site_copy):
    m = _manifest(site_copy)
    m.loc[0, "ct_path"] = ""
    m.to_csv(site_copy / "manifest.csv", index=False)
    data = load_site(site_copy, CFG)
    first = {s["case_id"]: s for v in data.splits.values() for s in v}[m.case_id[0]]
    assert first[present_key(CT)] == 0.0
    assert float(first[CT].abs().sum()) == 0.0


def test_gzip_corruption_in_the_middle(site_copy):
    case, path = _first_ct(site_copy)
    raw = bytearray(gzip.decompress(path.read_bytes()))
    path.write_bytes(gzip.compress(bytes(raw[: len(raw) // 2])))
    data = load_site(site_copy, CFG)
    assert [q.case_id for q in data.quarantined] == [case]


def test_mice_is_fitted_on_the_train_split_only(site_copy):
    """MICE fills gaps from correlated columns; changing test rows cannot change
    how train rows are filled, while changing train rows does."""
    from oncofed.common.data.clinical import COLUMNS

    clin = pd.read_csv(
        site_copy / "clinical.tsv", sep="\t", dtype=str, keep_default_na=False
    )
    manifest = pd.read_csv(site_copy / "manifest.csv", dtype=str)
    split = dict(zip(manifest.case_id, manifest.split, strict=True))
    ast = [c.name for c in COLUMNS].index("ast_u_l")
    # blank AST for a third of the patients: MICE should predict it from ALT
    blank = clin.case_id[::3]
    clin.loc[clin.case_id.isin(blank), "ast_u_l"] = ""
    clin.to_csv(site_copy / "clinical.tsv", sep="\t", index=False)
    cfg = DataConfig(image_size=16, image_depth=4, imputation="mice")
    ref = load_site(site_copy, DataConfig(image_size=16, image_depth=4))
    mice = load_site(site_copy, cfg)

    def filled(data, split_name):
        return {
            s["case_id"]: float(s[CLINICAL][ast])
            for s in data.split(split_name)
            if s["case_id"] in set(blank) and s[present_key(CLINICAL)]
        }

    f_ref, f_mice = filled(ref, "train"), filled(mice, "train")
    assert f_ref and all(v == 0.0 for v in f_ref.values())  # reference fill
    assert len({round(v, 4) for v in f_mice.values()}) > 1  # per-patient estimates
    assert all(
        s[CLINICAL][len(COLUMNS) + ast] == 1.0
        for s in mice.split("train")
        if s["case_id"] in f_mice
    )  # the indicator still says "imputed"
    # perturb only test rows: train imputations unchanged
    test_ids = [c for c, s in split.items() if s == "test"]
    clin.loc[clin.case_id.isin(test_ids), "alt_u_l"] = "900"
    clin.to_csv(site_copy / "clinical.tsv", sep="\t", index=False)
    assert filled(load_site(site_copy, cfg), "train") == pytest.approx(f_mice)
    # perturb train rows: imputations move
    train_ids = [c for c, s in split.items() if s == "train"]
    clin.loc[clin.case_id.isin(train_ids[:10]), "alt_u_l"] = "900"
    clin.to_csv(site_copy / "clinical.tsv", sep="\t", index=False)
    assert filled(load_site(site_copy, cfg), "train") != pytest.approx(f_mice)


# ---------------------------------------------------------------- ct-roi = liver

ROI = DataConfig(num_sites=3, ct_roi="liver")


def _liver_fraction(data) -> float:
    masks = [s["mask"] for s in data.split("train") if s["mask_present"]]
    return float(np.mean([float((m > 0).float().mean()) for m in masks]))


def test_liver_roi_fills_the_grid_with_liver(site_copy):
    """Cropped to the liver, the liver fills a large part of the model's input grid
    (an ellipsoid fills at most pi/6 of its box); the whole scan shows it small.
    CT and label map stay voxel-aligned."""
    whole = load_site(site_copy, CFG, masks=True)
    liver = load_site(site_copy, ROI, masks=True)
    assert not liver.quarantined
    assert _liver_fraction(whole) < 0.15
    assert _liver_fraction(liver) > 0.3
    sample = next(s for s in liver.split("train") if s["mask_present"])
    assert tuple(sample[CT].shape) == tuple(sample["mask"].shape)
    assert tuple(sample[CT].shape) == (
        1,
        ROI.image_size,
        ROI.image_size,
        ROI.image_depth,
    )
    # aligned: liver voxels are brighter (~60 HU) than the fat around the liver box
    ct, m = sample[CT][0], sample["mask"][0] > 0
    assert float(ct[m].mean()) > float(ct[~m].mean())
    # without masks=True the classifier gets the same cropped CT
    plain = load_site(site_copy, ROI)
    same = next(s for s in plain.split("train") if s["case_id"] == sample["case_id"])
    assert np.allclose(same[CT].numpy(), sample[CT].numpy())


def _first_mask(site):
    m = _manifest(site)
    row = m[(m.mask_path != "") & (m.split == "train")].iloc[0]
    return row.case_id, site / row.mask_path, m


def test_liver_roi_quarantines_a_case_without_mask(site_copy):
    case, _, manifest = _first_mask(site_copy)
    manifest.loc[manifest.case_id == case, "mask_path"] = ""
    manifest.to_csv(site_copy / "manifest.csv", index=False)
    n_before = len(load_site(site_copy, ROI).split("train"))
    assert n_before > 0
    data = load_site(site_copy, ROI)
    assert [q.case_id for q in data.quarantined] == [case]
    assert "ct-roi" in data.quarantined[0].reason
    assert "mask_path" in data.quarantined[0].reason
    assert (
        len(load_site(site_copy, CFG).split("train")) == n_before + 1
    )  # 'none' keeps it


def test_liver_roi_quarantines_a_mask_on_another_grid_or_empty(site_copy):
    case, path, manifest = _first_mask(site_copy)
    img = nib.load(path)
    nib.save(nib.Nifti1Image(np.ones((20, 20, 5), np.uint8), img.affine), path)
    data = load_site(site_copy, ROI)
    assert [q.case_id for q in data.quarantined] == [case]
    assert data.quarantined[0].path == str(path)
    assert "(20, 20, 5)" in data.quarantined[0].reason  # both shapes named
    # an empty label map: nothing to crop to
    nib.save(nib.Nifti1Image(np.zeros(img.shape, np.uint8), img.affine), path)
    data = load_site(site_copy, ROI)
    assert [q.case_id for q in data.quarantined] == [case]
    assert "no liver voxel" in data.quarantined[0].reason
    assert data.quarantined[0].path == str(path)
    assert not load_site(site_copy, CFG).quarantined  # ct-roi 'none' never reads it


def test_building_the_ct_loader_prints_no_gpu_codec_noise(caplog):
    """MONAI's DICOM reader warns about a missing GPU codec whenever a loader is
    built; we read NIfTI, so a site load must not print it (every other warning
    still would)."""
    import warnings

    from oncofed.common.data.transforms import ct_mask_transforms, ct_transforms

    caplog.set_level("WARNING")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ct_transforms(DataConfig())
        ct_mask_transforms(DataConfig())
    noise = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    assert not [m for m in noise if "nvImageCodec" in m], noise
