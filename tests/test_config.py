"""Typed config: defaults, the one mapping from Flower keys, rejected keys."""

import tomllib
from pathlib import Path

import pytest

from oncofed.common.config import KEYS, OncoFedConfig, from_run_config
from oncofed.common.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_empty_run_config_gives_defaults():
    assert from_run_config({}) == OncoFedConfig()


def test_values_are_mapped_and_converted():
    cfg = from_run_config(
        {"num-server-rounds": "3", "learning-rate": 1, "strategy": "fedprox"}
    )
    assert cfg.federation.num_server_rounds == 3
    assert cfg.train.learning_rate == 1.0
    assert cfg.federation.strategy == "fedprox"


def test_unknown_key_is_named_with_a_suggestion():
    with pytest.raises(
        ConfigError, match=r"'num-server-round'.*Did you mean 'num-server-rounds'"
    ):
        from_run_config({"num-server-round": 2})


def test_wrong_type_names_key_and_fix():
    with pytest.raises(ConfigError, match=r"'local-epochs' = 'two'.*int"):
        from_run_config({"local-epochs": "two"})


def test_relative_run_dir_is_rejected():
    with pytest.raises(ConfigError, match="run-dir"):
        from_run_config({"run-dir": "runs/here"})


def test_resolved_config_round_trips():
    cfg = from_run_config({"seed": 7, "modalities": "ct"})
    assert from_run_config(cfg.to_flat()) == cfg


SCENARIO_KEYS = {
    "dataset",
    "ct-roi",  # a scenario whose cases carry liver masks crops CT to the liver
    "image-size",  # and a liver crop needs fewer voxels than the whole abdomen
    "modalities",
    "task",
    "num-server-rounds",
    "local-epochs",
    "batch-size",
    "learning-rate",
}


@pytest.mark.parametrize("app", sorted((ROOT / "simulations").glob("*/pyproject.toml")))
def test_app_declares_every_key_with_our_defaults(app):
    """Flower only lets --run-config override keys the app declares."""
    declared = tomllib.loads(app.read_text())["tool"]["flwr"]["app"]["config"]
    assert set(declared) == set(KEYS)
    defaults = OncoFedConfig().to_flat()
    differing = {k for k in declared if declared[k] != defaults[k]}
    # a scenario may choose its data, task, modalities and training, nothing else
    assert differing <= SCENARIO_KEYS, f"unexpected app defaults: {differing}"
    from_run_config(declared)  # and its values are valid


@pytest.mark.parametrize("preset", sorted((ROOT / "configs").glob("*.toml")))
def test_presets_only_use_known_keys(preset):
    from_run_config(tomllib.loads(preset.read_text()))


def test_unknown_modality_is_refused_at_the_boundary():
    with pytest.raises(ConfigError, match="Did you mean 'clinical'"):
        from_run_config({"modalities": "ct,clinicl"})


def test_sweep_entries_resolve_or_are_refused_by_entry():
    from oncofed.common.config import parse_sweep, sweep_run_config

    base = {"sweep": "fusion=concat modalities=ct; fusion=transformer", "seed": 3}
    cfg = from_run_config(base)
    assert parse_sweep(cfg.run.sweep) == [
        {"fusion": "concat", "modalities": "ct"},
        {"fusion": "transformer"},
    ]
    entry = from_run_config(sweep_run_config(base, 1))
    assert (entry.model.fusion, entry.data.seed, entry.run.sweep) == (
        "transformer",
        3,
        "",
    )
    assert sweep_run_config(base, None) == base
    for bad, says in (
        ("fusion=concat; fuson=late_mean", "entry 2: Unknown run-config key 'fuson'"),
        ("local-epochs=two", "entry 1: Run-config key 'local-epochs'"),
        ("fusion", "'fusion' is not key=value"),
        ("sweep=x", "cannot itself set 'sweep'"),
    ):
        with pytest.raises(ConfigError, match=says):
            from_run_config({"sweep": bad})
    with pytest.raises(ConfigError, match="sweep entry 5 requested"):
        sweep_run_config(base, 5)
