"""Example-level differential privacy (run-config dp = 'sample'): Opacus' DP-SGD at
every site, epsilon accounted over the whole run, and refusals where it cannot hold."""

from __future__ import annotations

import dataclasses
import sqlite3

import pytest
import torch
from torch import nn

from oncofed.common.config import from_run_config
from oncofed.common.errors import BudgetSpent, ConfigError
from oncofed.common.ml.models import build_model
from oncofed.common.ml.privacy import (
    DPSGD,
    Ledger,
    check_budget,
    check_private,
    conv3d_per_case,
    dp_problem,
    epsilon_of,
    plan,
)
from oncofed.common.ml.training import make_loader, resolve_device, train_local
from tests.conftest import SMALL_SITES
from tests.test_federation import _flwr_run, _superlink

DP = {"dp": "sample", "image-size": 32, "num-server-rounds": 3, "local-epochs": 1}


def _site(small_dataset, cfg):
    from oncofed.common.data.site import load_site

    return load_site(small_dataset.site_dir(0), cfg.data)


def test_noise_is_planned_to_spend_the_budget_at_the_last_round():
    cfg = from_run_config(DP)
    p = plan(40, cfg)  # 40 cases, batch 8: q = 1/5, 5 steps a round
    assert (p.sample_rate, p.steps_per_round, p.planned_steps) == (0.2, 5, 15)
    ledger = Ledger()
    spent = []
    for _ in range(3):
        check_budget(ledger, p)
        ledger = ledger.add(p.noise, p.sample_rate, p.steps_per_round)
        spent.append(ledger.epsilon(p.delta, p.accountant))
    assert spent == sorted(spent)
    assert 0.97 * 3.0 <= spent[-1] <= 3.0  # spent, and not exceeded
    with pytest.raises(BudgetSpent, match="privacy budget spent"):
        check_budget(ledger, p)  # a fourth round would overspend: refused
    # more budget, less noise; the ledger survives Flower's ConfigRecord round trip
    assert plan(40, from_run_config({**DP, "dp-epsilon": 8.0})).noise < p.noise
    assert Ledger.from_record(ledger.to_record()) == ledger


def test_delta_must_be_below_one_over_n():
    with pytest.raises(ConfigError, match="dp-delta"):
        plan(40, from_run_config({**DP, "dp-delta": 0.05}))


@pytest.mark.parametrize(
    "extra, key",
    [
        ({"model-family": "xgboost", "strategy": "fedxgb_bagging"}, "model-family"),
        ({"task": "survival", "modalities": "clinical"}, "task"),
        ({"contrastive-weight": 0.1}, "contrastive-weight"),
        ({"strategy": "fedprox"}, "strategy"),
        ({"sweep": "fusion=concat; fusion=transformer"}, "sweep"),
    ],
)
def test_dp_is_refused_where_it_cannot_hold(extra, key):
    with pytest.raises(ConfigError, match=key):
        from_run_config({**DP, **extra})
    from_run_config({**extra, "dp": "off"} if key != "sweep" else extra)


def test_a_sweep_entry_cannot_switch_dp_on():
    with pytest.raises(ConfigError, match="entry 2"):
        from_run_config({"sweep": "fusion=concat; dp=sample"})


def _no_dropout(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    return model


@pytest.mark.parametrize("fusion", ["concat", "transformer", "late_stacked"])
def test_per_case_gradients_are_each_cases_own(small_dataset, fusion):
    """Opacus' per-case gradient of every parameter (the learned stand-in and
    modality embeddings included) equals the gradient of that case alone."""
    from opacus import GradSampleModule

    cfg = from_run_config({**DP, "fusion": fusion, "modality-dropout": 0.0})
    site = _site(small_dataset, cfg)
    samples = site.split("train")[:3]
    samples[1] = {**samples[1], "ct_present": torch.tensor(0.0)}  # a missing CT
    torch.manual_seed(0)
    model = _no_dropout(
        build_model(cfg.model, cfg.data.image_depth, site.input_dims, private=True)
    ).train()
    batch = next(iter(make_loader(samples, 3, shuffle=False)))
    assert dp_problem(model, batch) is None  # and it leaves no hooks behind
    wrapped = GradSampleModule(model)
    loss, _ = model.training_loss(batch, batch["label"].float())
    loss.backward()
    per_case = {
        n: p.grad_sample.clone() for n, p in model.named_parameters() if p.requires_grad
    }
    wrapped.remove_hooks()
    assert any(n.startswith("missing.") for n in per_case)
    for i in range(3):
        model.zero_grad()
        one = next(iter(make_loader(samples[i : i + 1], 1, shuffle=False)))
        loss, _ = model.training_loss(one, one["label"].float())
        loss.backward()
        for name, p in model.named_parameters():
            if p.requires_grad:
                # the batch loss is a mean over 3 cases: Opacus scales it back
                torch.testing.assert_close(
                    per_case[name][i], p.grad, atol=1e-5, rtol=1e-4, msg=name
                )


@pytest.mark.parametrize(
    "kw",
    [
        {"kernel_size": 3, "stride": 2, "padding": 1, "bias": False},
        {"kernel_size": 3, "stride": 1, "padding": 2, "dilation": 2},
        {"kernel_size": (1, 3, 2), "stride": (2, 1, 1), "padding": 0},
        {"kernel_size": 3, "padding": 1, "groups": 2},
        {"kernel_size": 3, "padding": "same"},
        {"kernel_size": 1, "stride": 2},
    ],
)
def test_conv3d_per_case_gradients_are_opacus_own(kw):
    """The grouped-convolution per-case gradient of a Conv3d equals Opacus' own
    (unfold) one, and the gradient of each case alone."""
    from opacus.grad_sample.conv import compute_conv_grad_sample

    torch.manual_seed(0)
    layer = nn.Conv3d(4, 6, **kw)
    x = torch.randn(5, 4, 9, 8, 7)
    out = layer(x)
    grad_out = torch.randn_like(out)
    ours = conv3d_per_case(layer, x, grad_out)
    theirs = compute_conv_grad_sample(layer, [x], grad_out)
    assert ours.keys() == theirs.keys()
    for p in ours:
        torch.testing.assert_close(ours[p], theirs[p], atol=1e-5, rtol=1e-4)
    layer(x[2:3]).backward(grad_out[2:3])
    torch.testing.assert_close(ours[layer.weight][2], layer.weight.grad)


def test_dp_training_records_its_steps_and_sends_a_plain_model(small_dataset):
    cfg = from_run_config(DP)
    site = _site(small_dataset, cfg)
    samples = site.split("train")
    model = build_model(cfg.model, cfg.data.image_depth, site.input_dims, private=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    p = plan(len(samples), cfg)
    dp = DPSGD(p, Ledger())
    train_local(model, samples, cfg.train, resolve_device("cpu"), 1, dp=dp)
    assert dp.ledger.steps == [p.steps_per_round]
    assert set(model.state_dict()) == set(before)  # no Opacus wrapper's prefix
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model._forward_hooks and all(
        not m._forward_hooks for m in model.modules()
    )


def test_a_model_dp_cannot_train_is_refused_naming_those_it_can(small_dataset):
    cfg = from_run_config({**DP, "image-encoder": "ghostnet_25d"})
    site = _site(small_dataset, cfg)
    with pytest.raises(ConfigError, match="ghostnet_25d") as err:
        check_private(cfg, site.split("train"), site.input_dims)
    assert "tiny3d" in str(err.value) and "resnet10_3d" in str(err.value)
    tiny = dataclasses.replace(cfg.model, image_encoder="tiny3d")
    check_private(
        dataclasses.replace(cfg, model=tiny), site.split("train"), site.input_dims
    )


@pytest.mark.slow
def test_dp_run_records_each_sites_epsilon_every_round(
    processes, small_dataset, tmp_path
):
    """The issue's check on the small dataset: every site reports its epsilon
    every round, never decreasing, at most dp-epsilon at the end, and equal to
    an Opacus accountant recomputed from what the run store recorded."""
    _superlink(processes, simulation=True)
    run_root = tmp_path / "runs"
    log = _flwr_run(
        processes,
        "oncofed-test",
        f"num-server-rounds=3 num-sites={SMALL_SITES} local-epochs=1 dp='sample' "
        f"dp-epsilon=3.0 min-report-n=1 min-report-class-n=0 run-dir='{run_root}'",
        "--federation-config",
        f"num-supernodes={SMALL_SITES}",
    )
    assert "OncoFed | round 3/3" in log, log[-4000:]
    with sqlite3.connect(next(run_root.glob("*/run.sqlite"))) as db:
        rows = db.execute(
            "SELECT site, round, metric, value FROM site_metrics WHERE phase='train'"
        ).fetchall()
    got: dict = {}
    for site, rnd, metric, value in rows:
        got.setdefault(site, {}).setdefault(rnd, {})[metric] = value
    assert len(got) == SMALL_SITES
    for site, rounds in got.items():
        assert sorted(rounds) == [1, 2, 3], site
        eps = [rounds[r]["dp-epsilon"] for r in (1, 2, 3)]
        assert eps == sorted(eps) and eps[-1] <= 3.0, (site, eps)
        history, done = [], 0
        for r in (1, 2, 3):
            m = rounds[r]
            steps = int(m["dp-steps"]) - done
            done = int(m["dp-steps"])
            history.append((m["dp-noise-multiplier"], m["dp-sample-rate"], steps))
            again = epsilon_of(history, m["dp-delta"], "prv")
            assert again == pytest.approx(m["dp-epsilon"], rel=0.01), (site, r)
        # the training cases are what DP protects: no noiseless figure of them
        assert rounds[3]["auc"] is None and rounds[3]["loss"] is None


@pytest.mark.slow
def test_secure_aggregation_gives_fedavgs_model_from_masked_updates_only(
    processes, small_dataset, tmp_path
):
    """SecAgg+ with DP-SGD: the same global model as the same run without
    SecAgg+ (within its quantisation), while every reply the server received
    held its weights only as a masked vector (no array record with a weight)."""
    _superlink(processes, simulation=True)
    models = {}
    for secure in ("true", "false"):
        run_root = tmp_path / f"secure-{secure}"
        log = _flwr_run(
            processes,
            "oncofed-test",
            f"num-server-rounds=1 num-sites={SMALL_SITES} local-epochs=1 "
            f"dp='sample' secure-aggregation={secure} run-dir='{run_root}'",
            "--federation-config",
            f"num-supernodes={SMALL_SITES}",
        )
        assert "OncoFed | round 1/1" in log, log[-4000:]
        (ckpt,) = run_root.glob("*/checkpoints/last.pt")
        models[secure] = torch.load(ckpt, weights_only=True)["state_dict"]
        with sqlite3.connect(next(run_root.glob("*/run.sqlite"))) as db:
            held = db.execute(
                "SELECT phase, record, kind, key FROM reply_keys"
            ).fetchall()
            eps = db.execute(
                "SELECT COUNT(*) FROM site_metrics WHERE metric = 'dp-epsilon'"
            ).fetchone()[0]
        assert eps == SMALL_SITES  # each site's epsilon reached the run store
        arrays = [h for h in held if h[2] == "arrays"]
        if secure == "true":
            assert not arrays, arrays  # no weight ever arrived unmasked
            assert (
                "secagg",
                "secaggplus_configs",
                "config",
                "masked_params",
            ) in held
        else:
            assert arrays  # without SecAgg+ the server holds each site's weights
    secure, plain = models["true"], models["false"]
    assert set(secure) == set(plain)
    diff = max(
        float((secure[k].double() - plain[k].double()).abs().max()) for k in plain
    )
    assert diff < 2e-4, diff  # quantised to 2^22 levels over +-8 x weight share
