"""CUDA path: the same training loop and model on the GPU (skipped without CUDA).

The device comes from ONCOFED_TEST_DEVICE (default ``cuda``).
"""

import dataclasses
import os

import numpy as np
import pytest
import torch

from oncofed.common.config import OncoFedConfig
from oncofed.common.data.site import load_site
from oncofed.common.ml.models import build_model
from oncofed.common.ml.models.encoders import INPUT_KIND
from oncofed.common.ml.training import (
    predict,
    resolve_device,
    seed_everything,
    train_local,
)

DEVICE = os.environ.get("ONCOFED_TEST_DEVICE", "cuda")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def test_auto_picks_cuda():
    assert resolve_device("auto").type == "cuda"


@pytest.mark.parametrize(
    "encoder", [n for n, kind in INPUT_KIND.items() if kind == "volume"]
)
def test_train_and_predict_on_gpu_match_cpu_shapes(small_dataset, encoder):
    cfg = OncoFedConfig()
    cfg = dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, image_encoder=encoder)
    )
    data = load_site(small_dataset.site_dir(0), cfg.data)
    seed_everything(0)
    model = build_model(cfg.model, cfg.data.image_depth, data.input_dims)
    device = torch.device(DEVICE)
    result = train_local(model, data.split("train"), cfg.train, device, seed=0)
    assert next(model.parameters()).device.type == "cuda"
    assert result.loss == result.loss  # not NaN
    y, p, loss = predict(model, data.split("test"), device, 16)
    assert len(p) == len(data.split("test")) and loss == loss
    # the trained model predicts the same on the CPU as on the GPU
    _, p_cpu, _ = predict(model, data.split("test"), torch.device("cpu"), 16)
    assert np.abs(p - p_cpu).max() < 1e-3


def test_histology_transformer_and_cox_on_gpu(small_dataset):
    """The attention-MIL bag encoder, the fusion transformer and the Cox loss on
    CUDA (a bag per case made of random tiles; time = label-dependent)."""
    cfg = OncoFedConfig()
    cfg = dataclasses.replace(
        cfg,
        model=dataclasses.replace(
            cfg.model,
            modalities="ct,clinical,histology",
            fusion="transformer",
            task="survival",
        ),
    )
    data = load_site(small_dataset.site_dir(0), cfg.data)
    g = torch.Generator().manual_seed(0)
    for s in data.split("train"):
        s["histology"] = torch.randint(0, 256, s["histology"].shape, generator=g).to(
            torch.uint8
        )
        s["histology_present"] = 1.0
        s["time"], s["event"] = 100.0 + 50 * (1 - s["label"]), 1.0
    model = build_model(cfg.model, cfg.data.image_depth, data.input_dims)
    result = train_local(model, data.split("train"), cfg.train, torch.device(DEVICE), 0)
    assert result.loss == result.loss
    assert model.modality_weights() is not None
