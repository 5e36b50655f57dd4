"""Model selection never looks at the test set.

The server's evaluator (what Flower calls after every round) scores each round's
global model on the validation set, picks the round, and reads the test set once at
the end. Shuffling the test labels must change the reported test figure and nothing
else: not the selected round, not ``best.pt``, not what ``oncofed export`` takes.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from oncofed.common.cli import main as oncofed
from oncofed.common.config import OncoFedConfig, from_run_config
from oncofed.common.data.site import load_site
from oncofed.common.ml.models import build_model
from oncofed.common.ml.training import seed_everything, train_local
from oncofed.common.ml.weights import to_arrays
from oncofed.common.tracking.store import RunStore
from oncofed.server.evaluation import BEST, ServerEvaluator
from tests.conftest import SMALL_SITES

ROUNDS = 4


@pytest.fixture(scope="module")
def setting(small_dataset):
    """A small config on the 3-site dataset, the server's validation and test
    sets, and a sequence of global models (one more epoch on site-00 each)."""
    cfg = from_run_config(
        {"num-sites": SMALL_SITES, "image-size": 16, "image-depth": 8}
    )
    val = load_site(small_dataset.server_val_dir, cfg.data, ("val",))
    test = load_site(small_dataset.server_test_dir, cfg.data, ("test",))
    train = load_site(small_dataset.site_dir(0), cfg.data, ("train",))
    seed_everything(0)
    model = build_model(cfg.model, cfg.data.image_depth, val.input_dims)
    rounds = [to_arrays(model)]
    for r in range(ROUNDS):
        train_local(model, train.split("train"), cfg.train, torch.device("cpu"), r, 1)
        rounds.append(to_arrays(model))
    return cfg, val, test, rounds


def _permuted(samples: list[dict], seed: int) -> list[dict]:
    labels = np.random.default_rng(seed).permutation([s["label"] for s in samples])
    return [{**s, "label": float(y)} for s, y in zip(samples, labels, strict=True)]


def _federate(cfg: OncoFedConfig, val, test: list[dict], rounds, run_dir):
    """What the ServerApp does with the evaluator, without the sites."""
    run_dir.mkdir(parents=True)
    store = RunStore(run_dir / "run.sqlite")
    store.start_run("r", run_dir.name, cfg.to_flat())
    ev = ServerEvaluator(
        cfg,
        val.split("val"),
        test,
        val.input_dims,
        store,
        "r",
        run_dir / "checkpoints",
        ROUNDS,
    )
    for r, arrays in enumerate(rounds):
        ev(r, arrays)
    return ev.finish(), store


def test_permuted_test_labels_change_nothing_but_the_test_figure(
    setting, tmp_path, capsys
):
    cfg, val, test, rounds = setting
    runs = {
        "true": _federate(cfg, val, test.split("test"), rounds, tmp_path / "true"),
        "shuffled": _federate(
            cfg, val, _permuted(test.split("test"), 1), rounds, tmp_path / "shuffled"
        ),
    }
    (a, store_a), (b, store_b) = runs["true"], runs["shuffled"]
    assert a is not None and b is not None
    # the same round is chosen, by the same validation value ...
    assert a.round == b.round and a.validation == b.validation
    assert store_a.selected_round("r") == store_b.selected_round("r") == a.round
    val_auc = store_a.global_frame().query("split == 'val' and metric == 'auc'")
    assert a.validation == pytest.approx(val_auc.value.max())
    # ... and the test figure is the only thing the shuffle moved
    assert a.test != b.test
    best = {
        k: torch.load(tmp_path / k / "checkpoints" / BEST, weights_only=True)
        for k in runs
    }
    assert best["true"]["round"] == best["shuffled"]["round"] == a.round
    for name, tensor in best["true"]["state_dict"].items():
        assert torch.equal(tensor, best["shuffled"]["state_dict"][name]), name
    # oncofed export takes that model by default, whatever the test labels say
    for k in runs:
        assert (
            oncofed(["export", str(tmp_path / k), "--out", str(tmp_path / f"{k}.onnx")])
            == 0
        )
        said = capsys.readouterr().out
        assert f"(round {a.round} model, chosen by validation auc)" in said, said


def test_summary_line_names_validation_round_and_both_test_figures(setting, tmp_path):
    cfg, val, test, rounds = setting
    sel, store = _federate(cfg, val, test.split("test"), rounds, tmp_path / "run")
    line = sel.line()
    assert line.startswith(
        f"best validation AUC {sel.validation:.3f} at round {sel.round};"
    )
    lo, hi = sel.test_interval
    assert lo <= sel.test <= hi and lo < hi
    assert f"test AUC of that model {sel.test:.3f} [{lo:.3f}, {hi:.3f}]" in line
    assert line.endswith(f"last round ({ROUNDS}) test AUC {sel.last_test:.3f}")
    tested = set(store.global_frame().query("split == 'test'")["round"])
    assert tested == {sel.round, ROUNDS}


def test_undefined_validation_metric_falls_back_to_the_last_round(setting, tmp_path):
    """A one-class validation set gives no AUC: the last round is taken, and the
    summary says so instead of claiming a validation choice."""
    cfg, val, test, rounds = setting
    one_class = dataclasses.replace(
        val, splits={"val": [{**s, "label": 1.0} for s in val.split("val")]}
    )
    sel, store = _federate(cfg, one_class, test.split("test"), rounds, tmp_path / "r")
    assert sel.round == ROUNDS and not sel.by_validation
    assert "no round had a defined validation AUC" in sel.line()
    assert (tmp_path / "r" / "checkpoints" / BEST).is_file()


def test_a_round_whose_model_overflows_is_scored_undefined_and_the_run_goes_on(
    setting, tmp_path
):
    """A global model whose outputs are not finite (what heavy central-DP noise
    can make) gets undefined metrics, is never selected, and the evaluator goes
    on to the next round and to the test set."""
    from flwr.app import Array, ArrayRecord

    cfg, val, test, rounds = setting
    broken = ArrayRecord(
        {k: Array(np.full(a.shape, np.inf, np.float32)) for k, a in rounds[2].items()}
    )
    sel, store = _federate(
        cfg, val, test.split("test"), [*rounds[:2], broken, *rounds[3:]],
        tmp_path / "r",
    )  # fmt: skip
    assert sel is not None and sel.round != 2
    val_auc = store.global_frame().query("split == 'val' and metric == 'auc'")
    assert val_auc.set_index("round").value.isna().tolist() == [
        False, False, True, False, False
    ]  # fmt: skip
