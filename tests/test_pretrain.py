"""Federated Models Genesis (task ``pretrain``) and label fractions: the
distortions, the restoration loss, the encoder checkpoint a classifier loads."""

from __future__ import annotations

import json
import sqlite3

import pandas as pd
import pytest
import torch

from oncofed.common.config import ModelConfig
from oncofed.common.ml.models import build_model
from oncofed.common.ml.models.genesis import GenesisNet, distort
from tests.conftest import ROOT, SMALL_SITES
from tests.test_federation import _flwr_run, _superlink


def _volumes(n: int = 4) -> torch.Tensor:
    """Smooth CT-like volumes in [0, 1]: a bright blob in a darker field."""
    g = torch.linspace(-1, 1, 16)
    xx, yy, zz = torch.meshgrid(g, g, torch.linspace(-1, 1, 8), indexing="ij")
    out = []
    for k in range(n):
        r2 = (xx - 0.1 * k) ** 2 + yy**2 + zz**2
        out.append(0.3 + 0.5 * torch.exp(-3 * r2))
    return torch.stack(out)[:, None].float()


def test_distortions_change_the_volume_and_repeat_by_seed():
    x = _volumes()
    a, b = distort(x, [1, 2, 3, 4]), distort(x, [1, 2, 3, 4])
    assert torch.equal(a, b)
    assert a.shape == x.shape and 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    changed = (a - x).abs().flatten(1).mean(1)
    assert (changed > 1e-3).sum() >= 3, changed  # 9 in 10 get a cut-out or curve
    assert not torch.equal(distort(x, [5, 6, 7, 8]), a)


def test_restoration_loss_falls_with_training():
    torch.manual_seed(0)
    model = build_model(ModelConfig(task="pretrain", modalities="ct"), 8)
    assert isinstance(model, GenesisNet)
    x, seeds = _volumes(), [11, 12, 13, 14]
    restored = model.restore(x)
    assert restored.shape == x.shape
    before = float(model.errors(x, seeds).mean())
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(15):
        loss = model.errors(x, seeds).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(model.errors(x, seeds).mean()) < 0.7 * before


def test_label_subset_is_stratified_seeded_and_keeps_every_class():
    from oncofed.common.data.site import label_subset

    samples = [{"case_id": f"c{i}", "label": float(i < 6)} for i in range(40)]
    kept = label_subset(samples, 0.1, seed=3)
    assert sum(s["label"] for s in kept) == 1  # ceil(0.1 * 6)
    assert len(kept) - 1 == 4  # ceil(0.1 * 34)
    assert kept == label_subset(samples, 0.1, seed=3)
    assert kept != label_subset(samples, 0.1, seed=4)
    assert label_subset(samples, 1.0, seed=3) == samples


def test_pretrain_config_refuses_other_modalities_and_labels():
    from oncofed.common.config import from_run_config
    from oncofed.common.errors import ConfigError

    with pytest.raises(ConfigError, match="set modalities = 'ct'"):
        from_run_config({"task": "pretrain", "modalities": "ct,clinical"})
    with pytest.raises(ConfigError, match="leave label-fraction at 1"):
        from_run_config({"task": "pretrain", "modalities": "ct", "label-fraction": 0.5})


@pytest.mark.slow
def test_federated_pretraining_writes_an_encoder_a_classifier_loads(
    processes, tmp_path, capsys
):
    """Two rounds of Models Genesis over the scanner-shift sites (with their
    public reference cohort), then a classification run that starts from the
    exported encoder (harmonised by z-score), then that model scored at a site
    as a new hospital would: its own harmoniser, the global model unchanged."""
    _superlink(processes, simulation=True)
    app = ROOT / "simulations" / "scanner_shift_sites"
    common = f"num-sites={SMALL_SITES} local-epochs=1 modalities='ct'"
    pre = tmp_path / "pretrain"
    log = _flwr_run(
        processes, "oncofed-test",
        f"task='pretrain' num-server-rounds=2 {common} run-dir='{pre}'",
        "--federation-config", f"num-supernodes={SMALL_SITES}", app=app,
    )  # fmt: skip
    assert "CT encoder of round" in log, log[-4000:]
    (encoder,) = pre.glob("*/checkpoints/ct-encoder.pt")
    (store,) = pre.glob("*/run.sqlite")
    with sqlite3.connect(store) as db:
        (selected,) = db.execute("SELECT selected_round FROM runs").fetchone()
        psnr = db.execute(
            "SELECT round, value FROM global_metrics WHERE split = 'val' "
            "AND metric = 'restore-psnr' ORDER BY round"
        ).fetchall()
        sites = db.execute(
            "SELECT COUNT(DISTINCT site) FROM site_metrics WHERE phase = 'train' "
            "AND metric = 'restore-psnr'"
        ).fetchone()[0]
    assert selected in (1, 2)  # the untrained round 0 is never the result
    assert [r for r, _ in psnr] == [0, 1, 2]
    assert sites == SMALL_SITES
    state = torch.load(encoder, weights_only=True)
    fine = tmp_path / "finetune"
    log = _flwr_run(
        processes, "oncofed-test",
        f"num-server-rounds=1 {common} pretrained='ct={encoder}' "
        f"harmonise='zscore' run-dir='{fine}'",
        "--federation-config", f"num-supernodes={SMALL_SITES}", app=app,
    )  # fmt: skip
    assert "OncoFed | round 1/1" in log, log[-4000:]
    (store,) = fine.glob("*/run.sqlite")
    with sqlite3.connect(store) as db:
        status, config = db.execute("SELECT status, config_json FROM runs").fetchone()
    assert status == "finished"
    assert str(encoder) in config
    # what the server and every site build from that config: the exported encoder
    model = build_model(ModelConfig(modalities="ct", pretrained=f"ct={encoder}"), 16)
    loaded = model.encoders["ct"].state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    # the new-hospital path: oncofed score on one site folder
    from oncofed.common.cli import main
    from oncofed.common.config import from_run_config
    from oncofed.common.ingest import ensure_prepared

    cfg = from_run_config(json.loads(config))
    site = ensure_prepared(cfg.data).site_dir(2)
    (best,) = fine.glob("*/checkpoints/best.pt")
    out = tmp_path / "scores.csv"
    capsys.readouterr()
    assert main(["score", str(site), "--checkpoint", str(best), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "harmonisation 'zscore' fitted at this site" in said
    assert "AUC" in said
    scores = pd.read_csv(out)
    manifest = pd.read_csv(site / "manifest.csv")
    assert len(scores) == len(manifest)
    assert scores.probability.between(0, 1).all()
