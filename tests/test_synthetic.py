"""The synthetic virtual hospitals: real formats, deterministic, site differences."""

import hashlib
import json

import nibabel as nib
import numpy as np
import pandas as pd

from oncofed.common.config import DataConfig
from oncofed.common.ingest import ensure_prepared
from oncofed.common.ingest.synthetic import SyntheticSpec, generate
from oncofed.common.ingest.synthetic.generator import CLINICAL_COLUMNS


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            if p.suffix == ".gz":  # gzip headers carry no mtime in nibabel, but be safe
                h.update(np.asarray(nib.load(p).dataobj).tobytes())
            else:
                h.update(p.read_bytes())
    return h.hexdigest()


def test_same_spec_writes_same_content(tmp_path):
    spec = SyntheticSpec(num_sites=2, cases_per_site=12, test_cases_per_site=4)
    a, b = generate(spec, tmp_path / "a"), generate(spec, tmp_path / "b")
    assert _digest(a) == _digest(b)
    other = generate(
        SyntheticSpec(num_sites=2, cases_per_site=12, test_cases_per_site=4, seed=1),
        tmp_path / "c",
    )
    assert _digest(other) != _digest(a)


def test_ct_is_hounsfield_and_labels_follow_lits(small_dataset):
    site = small_dataset.site_dir(0)
    manifest = pd.read_csv(site / "manifest.csv", keep_default_na=False)
    row = manifest[(manifest.label == 1) & (manifest.ct_path != "")].iloc[0]
    ct = nib.load(site / row.ct_path)
    seg = np.asarray(nib.load(site / row.mask_path).dataobj)
    vol = np.asarray(ct.dataobj)
    assert vol.min() <= -900  # air
    assert vol.max() >= 300  # bone
    assert set(np.unique(seg)) == {0, 1, 2}
    liver = vol[seg == 1].mean()
    assert 20 < liver < 140  # parenchyma in HU (site offset/gain included)
    neg = manifest[(manifest.label == 0) & (manifest.ct_path != "")].iloc[0]
    assert 2 not in np.unique(np.asarray(nib.load(site / neg.mask_path).dataobj))


def test_clinical_table_has_columns_and_missingness(small_dataset):
    tables = [
        pd.read_csv(small_dataset.site_dir(i) / "clinical.tsv", sep="\t")
        for i in range(len(small_dataset.sites))
    ]
    allrows = pd.concat(tables)
    assert list(allrows.columns) == ["case_id", *CLINICAL_COLUMNS]
    assert allrows["afp_ng_ml"].isna().any() or allrows["inr"].isna().any()
    assert allrows["age"].notna().all()


def test_sites_differ_like_hospitals(small_dataset):
    meta = json.loads((small_dataset.root / "dataset.json").read_text())
    profiles = meta["profiles"]
    assert len({round(p["hu_offset"]) for p in profiles}) == len(profiles)
    assert len({p["n_cases"] for p in profiles}) > 1
    prevalences = [
        pd.read_csv(small_dataset.site_dir(i) / "manifest.csv").label.mean()
        for i in range(len(profiles))
    ]
    assert max(prevalences) - min(prevalences) > 0.05
    manifests = [
        pd.read_csv(small_dataset.site_dir(i) / "manifest.csv", keep_default_na=False)
        for i in range(len(profiles))
    ]
    assert any((m.ct_path == "").any() for m in manifests)  # a site lacks some CT
    assert any((m.has_clinical == 0).any() for m in manifests)


def test_cache_is_reused_not_regenerated(small_dataset):
    marker = small_dataset.root / "dataset.json"
    before = marker.stat().st_mtime_ns
    again = ensure_prepared(DataConfig(num_sites=len(small_dataset.sites)))
    assert again.root == small_dataset.root
    assert marker.stat().st_mtime_ns == before


def test_synthetic_is_one_more_preparable_dataset(small_dataset, tmp_path):
    """`oncofed prepare synthetic` reads the generated hospitals like any source:
    the natural split keeps sites and splits; Dirichlet re-partitions every case."""
    import pandas as pd

    from oncofed.common.data.site import load_site
    from oncofed.common.ingest.prepare import PrepareOptions, prepare

    natural = prepare(
        "synthetic", small_dataset.root, tmp_path / "n", PrepareOptions(), False
    )
    for site in small_dataset.sites:
        src = pd.read_csv(small_dataset.root / site / "manifest.csv")
        assert natural["sites"][site]["train"] == (src.split == "train").sum()
        assert natural["sites"][site]["test"] == (src.split == "test").sum()
    skew = prepare(
        "synthetic",
        small_dataset.root,
        tmp_path / "d",
        PrepareOptions(partition="dirichlet", num_sites=2, alpha=0.5),
        False,
    )
    assert skew["cases_kept"] == natural["cases_kept"]
    site = next(iter(skew["sites"]))
    data = load_site(tmp_path / "d" / site, DataConfig(image_size=16, image_depth=4))
    assert not data.quarantined and data.input_dims["clinical"] == 24


def test_every_site_has_a_validation_split_recorded_in_the_report(small_dataset):
    """Validation chooses models: every site has one with both classes, the server
    has its own validation set beside its test set, and report.json says so."""
    import json

    import pandas as pd

    report = json.loads((small_dataset.root / "report.json").read_text())
    for site in small_dataset.sites:
        m = pd.read_csv(small_dataset.root / site / "manifest.csv", dtype=str)
        val = m[m.split == "val"]
        assert set(val.label) == {"0", "1"}, site
        assert report["sites"][site]["val"] == len(val)
        assert report["sites"][site]["train"] == int((m.split == "train").sum())
    for split, folder in (("val", "server-val"), ("test", "server-test")):
        m = pd.read_csv(small_dataset.root / folder / "manifest.csv", dtype=str)
        assert set(m.split) == {split}
        assert report["server"][split]["cases"] == len(m) > 0
    val_ids = set(pd.read_csv(small_dataset.root / "server-val/manifest.csv").case_id)
    test_ids = set(pd.read_csv(small_dataset.root / "server-test/manifest.csv").case_id)
    assert not val_ids & test_ids
