"""Survival task: the Cox loss, the C-index, and a Cox model that learns."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from oncofed.common.config import ModelConfig
from oncofed.common.ml.metrics import survival_metrics
from oncofed.common.ml.models import build_model
from oncofed.common.ml.models.multimodal import cox_loss


def _partial_likelihood(risk, time, event):
    """Direct Breslow negative log partial likelihood, mean over events."""
    total = 0.0
    for i in np.flatnonzero(event):
        at_risk = time >= time[i]
        total += risk[i] - math.log(np.exp(risk[at_risk]).sum())
    return -total / event.sum()


@pytest.mark.parametrize("ties", [False, True])
def test_cox_loss_is_the_breslow_partial_likelihood(ties):
    rng = np.random.default_rng(0)
    time = rng.integers(1, 6, 40).astype(float) if ties else rng.uniform(1, 100, 40)
    event = (rng.random(40) < 0.6).astype(float)
    risk = rng.normal(0, 1, 40)
    got = cox_loss(*(torch.tensor(a) for a in (risk, time, event)))
    assert float(got) == pytest.approx(_partial_likelihood(risk, time, event), rel=1e-9)


def test_cox_loss_without_events_or_times_is_zero_not_nan():
    risk = torch.randn(5, requires_grad=True)
    assert float(cox_loss(risk, torch.ones(5), torch.zeros(5))) == 0.0
    nan_t = torch.tensor([float("nan")] * 5)
    assert float(cox_loss(risk, nan_t, torch.ones(5))) == 0.0


def test_c_index_by_lifelines():
    t = np.array([1.0, 2.0, 3.0, 4.0])
    e = np.ones(4)
    assert survival_metrics(t, e, -t)["c-index"] == 1.0  # higher risk, earlier
    assert survival_metrics(t, e, t)["c-index"] == 0.0
    assert math.isnan(survival_metrics(t, np.zeros(4), t)["c-index"])


def test_a_cox_model_learns_a_hazard():
    """Exponential survival with a hazard driven by two features: a clinical MLP
    with the Cox head ranks held-out patients well after a short training."""
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    n, d = 400, 24
    x = rng.normal(0, 1, (n, d)).astype(np.float32)
    hazard = np.exp(1.2 * x[:, 0] - 0.8 * x[:, 1])
    t_event = rng.exponential(1 / hazard)
    t_cens = rng.exponential(2.0, n)
    time = np.minimum(t_event, t_cens)
    event = (t_event <= t_cens).astype(np.float32)
    cfg = dataclasses.replace(
        ModelConfig(embed_dim=16), modalities="clinical", task="survival"
    )
    model = build_model(cfg, 8)
    batch = {
        "clinical": torch.from_numpy(x),
        "clinical_present": torch.ones(n),
        "time": torch.from_numpy(time),
        "event": torch.from_numpy(event),
    }
    train, test = slice(0, 300), slice(300, n)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(150):
        model.train()
        part = {k: v[train] for k, v in batch.items()}
        loss, _ = model.training_loss(part, part["event"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        risk = model({k: v[test] for k, v in batch.items()}).numpy()
    c = survival_metrics(time[test], event[test], risk)["c-index"]
    oracle = survival_metrics(time[test], event[test], np.log(hazard[test]))["c-index"]
    assert c > 0.65 and c > oracle - 0.1, (c, oracle)
