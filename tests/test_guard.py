"""Crafted site replies on real Flower messages: each bad one is rejected with its
reason in the run store, the round aggregates the rest, and a reply never writes
another site's rows (server.guard through RecordingStrategy)."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Error,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.supercore.task_identity import TaskIdentity

from oncofed.common import keys
from oncofed.common.config import FederationConfig
from oncofed.common.tracking.store import RunStore
from oncofed.server.guard import ReplyGuard
from oncofed.server.strategies import STRATEGIES, RecordingStrategy

SITES = [f"site-{i:02d}" for i in range(7)]
GLOBAL = {
    "w": np.zeros((16, 8), np.float32),
    "b": np.zeros(8, np.float32),
}


@pytest.fixture(autouse=True)
def serverapp_identity(monkeypatch):
    for attr, value in (("_run_id", 1), ("_task_id", 1), ("_node_id", 0)):
        monkeypatch.setattr(TaskIdentity, attr, value)


class Grid:
    """What the strategy asks the grid during a round: the connected nodes (a
    stand-in for the one call; the replies below are real Flower messages)."""

    def __init__(self, nodes):
        self.nodes = list(nodes)

    def get_node_ids(self):
        return self.nodes


def reply(i: int, rnd: int = 1, **change) -> Message:
    """Site ``i``'s honest train reply (a small step from the global model), with
    ``change`` applied: arrays=, metrics=, site=, n=."""
    rng = np.random.default_rng(100 * rnd + i)
    arrays = {
        k: v + 0.01 * rng.standard_normal(v.shape).astype(np.float32)
        for k, v in GLOBAL.items()
    }
    arrays = change.get("arrays", lambda a: a)(arrays)
    metrics = {keys.NUM_EXAMPLES: change.get("n", 20 + i), keys.LOSS: 0.5}
    metrics = change.get("metrics", lambda m: m)(metrics)
    content = RecordDict(
        {
            keys.ARRAYS: ArrayRecord(
                {k: Array(np.asarray(v)) for k, v in arrays.items()}
            ),
            keys.METRICS: MetricRecord(metrics),
            keys.SITE: ConfigRecord({keys.SITE_ID: change.get("site", SITES[i])}),
        }
    )
    instruction = Message(RecordDict(), dst_node_id=100 + i, message_type="train")
    return Message(content, reply_to=instruction)


def strategy(tmp_path, name="fedavg", **fed):
    cfg = FederationConfig(**fed)
    store = RunStore(tmp_path / "run.sqlite")
    guard = ReplyGuard.from_config(cfg, store, "r", structural=True)
    s = RecordingStrategy(
        STRATEGIES.create(name, cfg=cfg), store, "r", guard=guard, min_sites=2
    )
    grid = Grid(100 + i for i in range(7))
    return s, store, grid


def run_round(s, grid, rnd, replies):
    s.configure_train(
        rnd, ArrayRecord({k: Array(v) for k, v in GLOBAL.items()}), ConfigRecord(), grid
    )
    return s.aggregate_train(rnd, replies)


def _nan(a):
    a["w"][0, 0] = np.nan
    return a


def _inf(a):
    a["b"][1] = np.inf
    return a


CRAFTED = {
    "nan": (dict(arrays=_nan), "NaN or Inf"),
    "inf": (dict(arrays=_inf), "NaN or Inf"),
    "shape": (
        dict(arrays=lambda a: {**a, "w": np.zeros((8, 16), np.float32)}),
        "shape",
    ),
    "missing key": (dict(arrays=lambda a: {"w": a["w"]}), "lack"),
    "extra key": (dict(arrays=lambda a: {**a, "evil": np.ones(3, np.float32)}), "add"),
    "dtype": (dict(arrays=lambda a: {**a, "b": a["b"].astype(np.int32)}), "dtype"),
    "huge norm": (
        dict(arrays=lambda a: {k: v * 1000 + 1 for k, v in a.items()}),
        "update norm",
    ),
    "huge num-examples": (dict(n=1e12), "num-examples"),
    "negative num-examples": (dict(n=-5), "num-examples"),
    "fractional num-examples": (dict(n=2.5), "num-examples"),
    "another site's label": (dict(site="site-01"), "answered as 'site-03' before"),
    "bad label": (dict(site="../../etc"), "site label"),
    "infinite metric": (
        dict(metrics=lambda m: {**m, keys.LOSS: float("inf")}),
        "infinite",
    ),
    "extra metric": (dict(metrics=lambda m: {**m, "leak": 1.0}), "metric keys differ"),
}


@pytest.mark.parametrize("kind", list(CRAFTED))
def test_a_crafted_reply_is_rejected_with_its_reason_and_the_round_goes_on(
    tmp_path, kind
):
    change, reason = CRAFTED[kind]
    s, store, grid = strategy(tmp_path)
    s2, store2, grid2 = strategy(tmp_path / "attacked")
    for one in (s, s2):  # a clean first round: every site known by its node
        run_round(one, grid, 1, [reply(i) for i in range(7)])
    clean, _ = run_round(s, grid, 2, [reply(i, 2) for i in range(7)])
    # in round 2 site 03 sends the crafted reply; the others are the same
    attacked = [reply(i, 2) for i in range(7) if i != 3] + [reply(3, 2, **change)]
    arrays, _ = run_round(s2, grid2, 2, attacked)
    assert arrays is not None, "the round ended without a model"
    events = store2.reply_events("r")
    assert len(events) == 1, events
    event = events.iloc[0]
    assert event["outcome"] == "rejected"
    assert reason in event["reason"], event["reason"]
    assert event["node_id"] == "103"
    # the rejected reply is recorded under its own node, never the claimed site
    rows = store2.site_frame("r")
    assert set(rows[rows["round"] == 2]["site"]) == set(SITES) - {"site-03"}
    assert (rows[rows["site"] == "site-01"]["node_id"] == "101").all()
    # the global model is the mean of the six honest sites, finite
    for k in GLOBAL:
        assert np.isfinite(arrays[k].numpy()).all()
    assert not np.allclose(arrays["w"].numpy(), clean["w"].numpy())


def test_the_run_store_keeps_the_honest_sites_model_exactly(tmp_path):
    """Rejecting site 03 gives the FedAvg of the other six, bit for bit."""
    s, _, grid = strategy(tmp_path)
    six = [reply(i) for i in range(7) if i != 3]
    want, _ = run_round(s, grid, 1, six)
    s2, _, grid2 = strategy(tmp_path / "b")
    got, _ = run_round(s2, grid2, 1, [*six, reply(3, arrays=_nan)])
    np.testing.assert_array_equal(want["w"].numpy(), got["w"].numpy())


def test_num_examples_may_not_grow_after_the_first_round(tmp_path):
    s, store, grid = strategy(tmp_path)
    run_round(s, grid, 1, [reply(i) for i in range(7)])
    run_round(s, grid, 2, [reply(i, 2) for i in range(6)] + [reply(6, 2, n=500)])
    events = store.reply_events("r")
    assert list(events["round"]) == [2]
    assert "first round" in events.iloc[0]["reason"]


def test_a_node_cannot_change_its_label_between_rounds(tmp_path):
    s, store, grid = strategy(tmp_path)
    run_round(s, grid, 1, [reply(i) for i in range(7)])
    run_round(
        s, grid, 2, [reply(i, 2) for i in range(6)] + [reply(6, 2, site="site-99")]
    )
    assert "answered as 'site-06' before" in store.reply_events("r").iloc[0]["reason"]


def test_a_label_moves_only_when_its_node_is_gone(tmp_path):
    """A site whose SuperNode restarted (new node id) keeps its name; a node
    claiming a connected site's name does not get it."""
    s, store, grid = strategy(tmp_path)
    run_round(s, grid, 1, [reply(i) for i in range(7)])
    grid.nodes.remove(106)
    moved = reply(6, 2)  # site-06's reply, now from node 200
    instruction = Message(RecordDict(), dst_node_id=200, message_type="train")
    rejoined = Message(moved.content, reply_to=instruction)
    run_round(s, grid, 2, [reply(i, 2) for i in range(6)] + [rejoined])
    assert store.reply_events("r").empty
    rows = store.site_frame("r")
    assert set(rows[(rows["round"] == 2) & (rows["site"] == "site-06")]["node_id"]) == {
        "200"
    }


def test_a_new_node_cannot_take_a_connected_sites_label(tmp_path):
    s, store, grid = strategy(tmp_path)
    run_round(s, grid, 1, [reply(i) for i in range(7)])
    grid.nodes.append(300)
    instruction = Message(RecordDict(), dst_node_id=300, message_type="train")
    impostor = Message(reply(1, 2).content, reply_to=instruction)
    run_round(s, grid, 2, [reply(i, 2) for i in range(7)] + [impostor])
    event = store.reply_events("r").iloc[0]
    assert (event["site"], event["node_id"]) == ("node-300", "300")
    assert "belongs to node 101" in event["reason"]
    rows = store.site_frame("r")
    assert set(rows[rows["site"] == "site-01"]["node_id"]) == {"101"}


def test_two_nodes_claiming_one_unbound_label_get_neither(tmp_path):
    s, store, grid = strategy(tmp_path)
    run_round(s, grid, 1, [reply(i) for i in range(6)] + [reply(6, site="site-00")])
    events = store.reply_events("r")
    assert sorted(events["node_id"]) == ["100", "106"]
    assert all("also claimed" in r for r in events["reason"])


def test_too_few_accepted_replies_keep_the_global_model(tmp_path):
    s, store, grid = strategy(tmp_path)
    arrays, _ = run_round(s, grid, 1, [reply(0), reply(1, arrays=_nan)])
    assert arrays is None  # Flower keeps the previous global model
    events = store.reply_events("r")
    assert list(events["outcome"]).count("rejected") == 1
    # the five nodes asked that never answered are recorded too
    assert sorted(events[events["outcome"] == "failed"]["node_id"]) == [
        str(100 + i) for i in range(2, 7)
    ]


def test_error_replies_are_recorded_as_failed_with_the_site_policy_named(tmp_path):
    s, store, grid = strategy(tmp_path)
    run_round(s, grid, 1, [reply(i) for i in range(7)])
    replies = [reply(i, 2) for i in range(5)]
    for i, code, why in ((5, 1004, "dp must be 'sample'"), (6, 1099, "internal error")):
        instruction = Message(RecordDict(), dst_node_id=100 + i, message_type="train")
        replies.append(Message(Error(code=code, reason=why), reply_to=instruction))
    arrays, _ = run_round(s, grid, 2, replies)
    assert arrays is not None
    events = store.reply_events("r").set_index("site")
    assert events.loc["site-05", "outcome"] == "failed"
    assert events.loc["site-05", "reason"].startswith("refused by site policy: dp must")
    assert "internal error" in events.loc["site-06", "reason"]


def test_update_clip_scales_a_large_update_onto_the_bound(tmp_path):
    s, store, grid = strategy(tmp_path, update_clip=True)
    big = reply(3, arrays=lambda a: {k: v * 1000 + 1 for k, v in a.items()})
    arrays, _ = run_round(s, grid, 1, [reply(i) for i in range(7) if i != 3] + [big])
    event = store.reply_events("r").iloc[0]
    assert event["outcome"] == "clipped"
    assert np.abs(arrays["w"].numpy()).max() < 1.0  # the x1000 step did not land


@pytest.mark.parametrize(
    "name", ["fedmedian", "fedtrimmedavg", "krum", "multikrum", "bulyan"]
)
def test_robust_strategies_shrug_off_one_scaled_update_that_passes_the_guard(
    tmp_path, name
):
    """With the norm bound off, one x50 update drags FedAvg far; Flower's robust
    strategies stay near the honest mean."""
    scaled = reply(3, arrays=lambda a: {k: v * 50 for k, v in a.items()})
    replies = [reply(i) for i in range(7) if i != 3]
    honest = np.mean(
        [np.asarray(r.content[keys.ARRAYS]["w"].numpy()) for r in replies], axis=0
    )
    dist = {}
    for strat in ("fedavg", name):
        s, _, grid = strategy(tmp_path / strat, strat, update_norm_bound=0.0)
        arrays, _ = run_round(s, grid, 1, [*replies, scaled])
        dist[strat] = float(np.abs(arrays["w"].numpy() - honest).max())
    assert dist[name] < dist["fedavg"] / 5, dist


def test_secure_aggregation_replies_are_screened_too(tmp_path):
    """SecAgg+ (Flower's legacy workflow): the server cannot see a site's
    update, but each reply's label and metrics pass the same guard before they
    are recorded, failures are recorded, and a sum that is not finite leaves the
    global model as it was."""
    from types import SimpleNamespace

    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters

    from oncofed.server.secure import SecureRecording
    from oncofed.server.strategies import SiteLog

    store = RunStore(tmp_path / "run.sqlite")
    guard = ReplyGuard(store, "r", masked=True, connected=lambda: [101, 102, 103])
    s = SecureRecording(SiteLog(store, "r"), guard, min_available_clients=1)
    ok = Status(code=Code.OK, message="")

    def result(node, label, weights, n=10, **metrics):
        params = ndarrays_to_parameters([np.full(3, weights, np.float32)])
        sent = {"num-examples": float(n), "loss": 0.5, "site-id": label, **metrics}
        return SimpleNamespace(node_id=node), FitRes(ok, params, n, sent)

    good = [result(101, "site-01", 1.0), result(102, "site-02", 3.0)]
    params, _ = s.aggregate_fit(1, good, [])
    assert params is not None
    # round 2: an impostor, a bad metric, a failure; the sum still aggregates
    bad = [
        result(101, "site-01", 1.0),
        result(103, "site-02", 1.0),  # another node claiming site-02
        result(102, "site-02", 1.0, n=10**12),
    ]
    failed = (
        SimpleNamespace(node_id=104),
        FitRes(Status(code=Code.FIT_NOT_IMPLEMENTED, message=""), None, 0, {}),
    )
    params, _ = s.aggregate_fit(2, bad, [failed])
    assert params is not None
    events = store.reply_events("r")
    reasons = dict(zip(events["node_id"], events["reason"], strict=True))
    assert "label 'site-02' belongs to node 102" in reasons["103"]
    assert "max-site-examples" in reasons["102"]
    assert "failed" in reasons["104"]
    rows = store.site_frame("r")
    assert set(rows[rows["round"] == 2]["site"]) == {"site-01"}
    # round 3: the unmasked sum holds NaN: refused, the model stays
    params, _ = s.aggregate_fit(3, [result(101, "site-01", float("nan"))], [])
    assert params is None
    assert "NaN or Inf" in store.reply_events("r").iloc[-1]["reason"]
