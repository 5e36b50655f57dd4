"""CUDA path: the same training loop and model on the GPU (skipped without CUDA).

The device comes from ONCOFED_TEST_DEVICE (default ``cuda``).
"""

import dataclasses
import os

import pytest
import torch

from common.config import OncoFedConfig
from common.data.site import load_site
from common.metrics import binary_metrics
from common.models import build_model
from common.training import predict, resolve_device, seed_everything, train_local

DEVICE = os.environ.get("ONCOFED_TEST_DEVICE", "cuda")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def test_auto_picks_cuda():
    assert resolve_device("auto").type == "cuda"


@pytest.mark.parametrize("encoder", ["tiny3d", "resnet10_3d", "resnet18_25d"])
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
    assert 0.0 <= binary_metrics(y, p)["accuracy"] <= 1.0
