"""Scanner harmonisation (run-config harmonise): the scanner-shift scenario, the
CycleGAN's networks, the guard rails, and sites loaded through each method."""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from oncofed.common.config import from_run_config
from oncofed.common.data.harmonise import load_reference
from oncofed.common.data.site import load_site
from oncofed.common.errors import ConfigError
from oncofed.common.ingest.synthetic import generate
from oncofed.common.ingest.synthetic.generator import SyntheticSpec
from oncofed.common.keys import CT, MASK
from oncofed.common.ml.cyclegan import (
    CycleGAN,
    PatchDiscriminator,
    ResnetGenerator,
    Trainer,
)
from oncofed.common.ml.harmonise import (
    LESION,
    LIVER,
    guard_rails,
    load_harmonised,
    report_keys,
    rescaled,
    yardstick,
)
from oncofed.common.ml.models import build_model
from tests.conftest import ROOT, SMALL_SITES
from tests.test_federation import _flwr_run, _superlink
from tests.test_privacy import ACCOUNTING, AGGREGATES, COUNTS

SHIFT = {"dataset": "synthetic_scanner_shift", "ct-roi": "liver", "image-size": 32}


@pytest.fixture(scope="module")
def shifted(tmp_path_factory):
    """A small scanner-shift dataset: 4 sites (site-03 has MRI-like contrast)."""
    out = tmp_path_factory.mktemp("shift") / "d"
    spec = SyntheticSpec(
        num_sites=4, cases_per_site=16, test_cases_per_site=4, scenario="scanner-shift"
    )
    generate(spec, out)
    return out


def _liver_lesion_hu(site_dir):
    """Mean HU of liver and of lesion voxels over a site's positive cases."""
    m = pd.read_csv(site_dir / "manifest.csv", keep_default_na=False)
    liver, lesion = [], []
    for r in m[(m.label == 1) & (m.ct_path != "")].itertuples():
        ct = nib.load(site_dir / r.ct_path).get_fdata()
        seg = nib.load(site_dir / r.mask_path).get_fdata()
        liver.append(ct[seg == 1].mean())
        if (seg == 2).sum() > 50:
            lesion.append(ct[seg == 2].mean())
    return float(np.mean(liver)), float(np.mean(lesion))


def test_scanner_shift_sites_differ_and_share_one_reference_cohort(shifted):
    meta = json.loads((shifted / "dataset.json").read_text())
    assert meta["name"] == "synthetic_scanner_shift"
    profiles = {p["index"]: p for p in meta["profiles"]}
    assert profiles[3]["mri_like"] and not profiles[0]["mri_like"]
    assert {p["slice_mm"] for p in profiles.values()} >= {1.0, 2.5, 5.0}
    offsets = [p["hu_offset"] for p in profiles.values()]
    assert max(offsets) - min(offsets) >= 200  # beyond the default's +-40 HU
    # a CT site's lesions are darker than its liver; the MRI-like site's brighter
    liver, lesion = _liver_lesion_hu(shifted / "site-00")
    assert lesion < liver - 30
    liver, lesion = _liver_lesion_hu(shifted / "site-03")
    assert lesion > liver + 30
    # every site and the server hold the same public cohort, without labels
    ref = [shifted / s / "reference" for s in ("site-00", "site-02", "server-test")]
    manifests = [(r / "manifest.csv").read_text() for r in ref]
    assert manifests[0] == manifests[1] == manifests[2]
    assert "label" not in manifests[0].splitlines()[0]
    first = pd.read_csv(ref[0] / "manifest.csv").ct_path[0]
    assert (ref[0] / first).read_bytes() == (ref[1] / first).read_bytes()
    # the server's sets come from the reference scanner
    assert meta["reference_scanner"]["hu_offset"] == 0.0
    server_liver, _ = _liver_lesion_hu(shifted / "server-test" / "site-01")
    ref_liver = np.mean(
        [
            nib.load(ref[0] / r.ct_path)
            .get_fdata()[nib.load(ref[0] / r.mask_path).get_fdata() == 1]
            .mean()
            for r in pd.read_csv(ref[0] / "manifest.csv").itertuples()
        ]
    )
    assert abs(server_liver - ref_liver) < 10
    site_liver, _ = _liver_lesion_hu(shifted / "site-01")
    assert abs(site_liver - ref_liver) > 50


def test_cyclegan_networks_keep_shapes_and_a_step_lowers_the_loss():
    torch.manual_seed(0)
    batch = torch.rand(4, 1, 32, 32) * 2 - 1
    g, d = ResnetGenerator(), PatchDiscriminator()
    assert g(batch).shape == batch.shape
    assert g(batch).abs().max() <= 1
    assert d(batch).shape[:2] == (4, 1) and d(batch).shape[2] >= 2
    trainer = Trainer(CycleGAN())
    site, ref = batch, torch.tanh(batch * 3)
    before = trainer.generator_loss(site, ref)[0].item()
    for _ in range(3):
        trainer.step(site, ref)
    after = trainer.generator_loss(site, ref)[0].item()
    assert after < before


def test_cyclegan_fedd_is_refused_with_why_it_went():
    """Federating CycleGAN's reference-side discriminator was measured and did not
    help; a run config that still asks for it is told so, by name."""
    with pytest.raises(ConfigError, match="'cyclegan-fedd' was removed"):
        from_run_config({**SHIFT, "harmonise": "cyclegan-fedd"})
    with pytest.raises(ConfigError, match="harmonise-rounds"):
        from_run_config({**SHIFT, "harmonise-rounds": 4})


def _reference_and_site(shifted):
    cfg = from_run_config({**SHIFT, "harmonise": "zscore"}).data
    reference, bad = load_reference(shifted / "site-00", cfg)
    assert len(reference) == 24 and not bad
    site = load_site(shifted / "site-01", cfg, ("train",), masks=True, hu=True)
    scans = [{CT: s[CT], MASK: s[MASK]} for s in site.split("train") if s["ct_present"]]
    return reference, scans


def test_guard_rails_trip_on_a_generator_that_erases_lesions(shifted):
    reference, scans = _reference_and_site(shifted)
    ref = yardstick(reference)
    assert ref.detector is not None
    assert any(bool((s[MASK] == LESION).any()) for s in scans)

    def eraser(ct, seg):  # paints every lesion over with the liver around it
        out = rescaled(ct, seg, ref).clone()
        out[seg == LESION] = out[seg == LIVER].mean()
        return out

    erased = guard_rails(eraser, scans, ref)
    assert erased["harmonise-ok"] == 0.0
    assert erased["harmonise-cnr-after"] < 0.5 * erased["harmonise-cnr-before"]
    drop = (
        erased["harmonise-detector-lesion-before"]
        - erased["harmonise-detector-lesion-after"]
    )
    assert drop > 0.15
    kept = guard_rails(lambda ct, seg: rescaled(ct, seg, ref), scans, ref)
    assert kept["harmonise-ok"] == 1.0


@pytest.mark.parametrize("method", ["histogram", "zscore"])
def test_sites_load_through_a_harmoniser_onto_the_window(shifted, method):
    cfg = from_run_config({**SHIFT, "harmonise": method}).data
    data = load_harmonised(shifted / "site-01", cfg, ("train", "val"))
    cts = torch.stack([s[CT] for s in data.split("train") if s["ct_present"]])
    assert 0.0 <= float(cts.min()) and float(cts.max()) <= 1.0
    assert MASK not in data.split("train")[0]
    assert set(data.harmonise) == set(report_keys(method))
    # the MRI-like site: a monotonic mapping keeps its lesions bright, so the
    # contrast guard rail sends it back to no harmonisation
    mri = load_harmonised(shifted / "site-03", cfg, ("train",))
    assert mri.harmonise["harmonise-fallback"] == 1.0
    assert mri.harmonise["harmonise-cnr-after"] < 0
    server = load_harmonised(
        shifted / "server-val", cfg, ("val",), reference_domain=True
    )
    assert server.split("val") and server.harmonise == {}


def test_a_site_that_falls_back_is_fed_exactly_what_none_feeds(shifted):
    """A method's comparison with none must hold nothing but its mapping: a site
    whose guard rails fail (site-03, MRI-like, under histogram matching) and the
    server's sets under a method the server does not apply (CycleGAN) reach the
    model bit for bit as with harmonise = 'none' (the HU window comes after the
    resampling on both paths)."""
    cfg = from_run_config({**SHIFT, "harmonise": "histogram"}).data
    none = dataclasses.replace(cfg, harmonise="none")
    fell_back = load_harmonised(shifted / "site-03", cfg, ("train", "val"))
    assert fell_back.harmonise["harmonise-fallback"] == 1.0
    server = load_harmonised(
        shifted / "server-val",
        dataclasses.replace(cfg, harmonise="cyclegan"),
        ("val",),
        reference_domain=True,
    )
    for got, folder in ((fell_back, "site-03"), (server, "server-val")):
        plain = load_site(shifted / folder, none, tuple(got.splits))
        for split, samples in got.splits.items():
            assert samples and len(samples) == len(plain.split(split))
            for a, b in zip(samples, plain.split(split), strict=True):
                assert torch.equal(a[CT], b[CT]), (folder, split)


def test_a_hu_harmoniser_is_never_skipped_silently(shifted):
    cfg = from_run_config({**SHIFT, "harmonise": "histogram"}).data
    with pytest.raises(ConfigError, match="load_harmonised"):
        load_site(shifted / "site-01", cfg)
    with pytest.raises(ConfigError, match="ct-roi"):
        from_run_config({"harmonise": "cyclegan", "ct-roi": "none"})
    fedbn = from_run_config({"harmonise": "fedbn"})
    assert fedbn.model.norm_layers == "local"
    none = dataclasses.replace(cfg, harmonise="none")
    assert load_harmonised(shifted / "site-01", none, ("train",)).harmonise == {}


@pytest.mark.slow
def test_cyclegan_federation_records_each_sites_harmonisation(
    processes, tmp_path, small_dataset
):
    _superlink(processes, simulation=True)
    run_root = tmp_path / "runs"
    log = _flwr_run(
        processes,
        "oncofed-test",
        f"num-server-rounds=2 num-sites={SMALL_SITES} local-epochs=1 "
        "harmonise='cyclegan' harmonise-steps=20 "
        f"run-dir='{run_root}'",
        "--federation-config",
        f"num-supernodes={SMALL_SITES}",
        app=ROOT / "simulations" / "scanner_shift_sites",
    )
    assert "OncoFed | round 2/2" in log, log[-4000:]
    (store,) = run_root.glob("*/run.sqlite")
    with sqlite3.connect(store) as db:
        rows = db.execute(
            "SELECT site, metric, value FROM site_metrics WHERE phase = 'train' "
            "AND round = 1 AND metric LIKE 'harmonise-%'"
        ).fetchall()
        (status,) = db.execute("SELECT status FROM runs").fetchone()
        held = db.execute("SELECT kind, record, key, phase FROM reply_keys").fetchall()
        (config,) = db.execute("SELECT config_json FROM runs").fetchone()
    assert status == "finished"
    # the wire: model weights, counts and aggregates only; nothing of a CycleGAN
    cfg = from_run_config(json.loads(config))
    plain = dataclasses.replace(cfg.data, harmonise="none")
    dims = load_site(small_dataset.site_dir(0), plain).input_dims
    weights = set(build_model(cfg.model, cfg.data.image_depth, dims).state_dict())
    allowed = COUNTS | ACCOUNTING | AGGREGATES | set(report_keys("cyclegan"))
    assert held
    for kind, record, key, _phase in held:
        if kind == "arrays":
            assert key in weights, key
        elif kind == "metrics":
            assert key in allowed, key
        else:
            assert (record, key) == ("site", "site-id")
    sites = {s for s, _, _ in rows}
    assert len(sites) == SMALL_SITES
    per_site = {(s, m): v for s, m, v in rows}
    for site in sites:
        assert per_site[(site, "harmonise-train-s")] > 0
        assert per_site[(site, "harmonise-fallback")] in (0.0, 1.0)


def test_harmonise_preview_draws_before_and_after(shifted, tmp_path, capsys):
    from oncofed.common.cli import main

    out = tmp_path / "preview.png"
    code = main(
        ["harmonise-preview", str(shifted / "site-03"), "--out", str(out),
         "--method", "zscore", "--cases", "2"]
    )  # fmt: skip
    assert code == 0
    assert out.stat().st_size > 5_000 and out.read_bytes()[:4] == b"\x89PNG"
    # the MRI-like site: z-scoring cannot undo its contrast, and says so
    assert "failed: falls back to none" in capsys.readouterr().out


def test_tissue_gap_measures_the_hu_shift_per_tissue():
    """The domain-gap figure: 0 for the reference's own scans, the offset for a
    scanner that adds a constant, NaN for a tissue a set does not have."""
    from oncofed.common.ml.harmonise import tissue_gap, yardstick

    rng = torch.Generator().manual_seed(0)
    scans = []
    for k in range(6):
        seg = torch.zeros(1, 16, 16, 8, dtype=torch.uint8)
        seg[:, 2:14, 2:14, 1:7] = 1
        if k % 2:
            seg[:, 6:10, 6:10, 3:5] = 2
        ct = 60 + 10 * torch.randn(1, 16, 16, 8, generator=rng)
        ct[seg == 2] -= 40
        scans.append({"ct": ct, "mask": seg})
    ref = yardstick(scans)
    same = tissue_gap(scans, ref)
    assert same["liver"] == pytest.approx(0.0, abs=1e-6)
    assert same["lesion"] == pytest.approx(0.0, abs=1e-6)
    shifted = tissue_gap([{**s, "ct": s["ct"] + 100} for s in scans], ref)
    assert shifted["liver"] == pytest.approx(100.0, abs=1.0)
    assert shifted["lesion"] == pytest.approx(100.0, abs=1.0)
    lesion_free = [s for s in scans if not (s["mask"] == 2).any()]
    assert math.isnan(tissue_gap(lesion_free, ref)["lesion"])
