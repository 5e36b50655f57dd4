"""Light deployment: a trained GhostNet-based model exported to ONNX runs in ONNX
Runtime with the same outputs as PyTorch (within 1e-4)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import torch

from oncofed.common.config import OncoFedConfig
from oncofed.common.data.site import load_site
from oncofed.common.ml.export import export_onnx, max_abs_difference
from oncofed.common.ml.models import build_model
from oncofed.common.ml.training import make_loader, resolve_device, train_local


def test_trained_ghostnet_model_matches_in_onnx_runtime(small_dataset, tmp_path):
    base = OncoFedConfig()
    cfg = dataclasses.replace(
        base,
        model=dataclasses.replace(
            base.model, image_encoder="ghostnet_25d", embed_dim=32
        ),
        train=dataclasses.replace(base.train, local_epochs=1, augment=False),
    )
    site = load_site(small_dataset.site_dir(1), cfg.data)
    model = build_model(cfg.model, cfg.data.image_depth, site.input_dims)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_local(model, site.split("train"), cfg.train, resolve_device("cpu"), seed=1)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.eval()
    path = export_onnx(
        model,
        next(iter(make_loader(site.split("test"), 4, False))),
        tmp_path / "ghostnet.onnx",
    )
    assert path.stat().st_size > 100_000
    # every test case, in one batch of another size than the export example
    batch = next(iter(make_loader(site.split("test"), 64, False)))
    assert max_abs_difference(model, path, batch) <= 1e-4
    # a case missing a modality goes through the learned stand-in in ONNX too
    batch["clinical_present"][0] = 0.0
    batch["ct_present"][1] = 0.0
    assert max_abs_difference(model, path, batch) <= 1e-4
    # and the CLI does the same from a run's checkpoint
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save(
        {
            "round": 3,
            "state_dict": model.state_dict(),
            "config": cfg.to_flat() | {"num-sites": len(small_dataset.sites)},
            "input_dims": site.input_dims,
        },
        run / "checkpoints" / "best.pt",
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "oncofed.common.cli",
            "export",
            str(run),
            "--out",
            str(tmp_path / "cli.onnx"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "max |difference|" in proc.stdout and (tmp_path / "cli.onnx").is_file()
