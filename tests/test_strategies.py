"""Server-side aggregation with Flower's own FedAvg, on real Flower messages."""

from __future__ import annotations

import random

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from oncofed.common import keys
from oncofed.common.config import FederationConfig
from oncofed.common.tracking.store import RunStore
from oncofed.server.strategies import STRATEGIES, RecordingStrategy

SITES = [f"site-{i:02d}" for i in range(7)]


@pytest.fixture(autouse=True)
def serverapp_identity(monkeypatch):
    """Messages take their run and node from the process, as in a ServerApp."""
    for attr, value in (("_run_id", 1), ("_task_id", 1), ("_node_id", 0)):
        monkeypatch.setattr(TaskIdentity, attr, value)


def _replies(order: list[int]) -> list[Message]:
    """One train reply per site, as the client sends it, in the given order."""
    rng = np.random.default_rng(0)
    weights = {s: rng.standard_normal((64, 32)).astype(np.float32) for s in SITES}
    out = []
    for i in order:
        site = SITES[i]
        instruction = Message(RecordDict(), dst_node_id=100 + i, message_type="train")
        content = RecordDict(
            {
                keys.ARRAYS: ArrayRecord({"w": Array(weights[site])}),
                keys.METRICS: MetricRecord({keys.NUM_EXAMPLES: 10 + 3 * i}),
                keys.SITE: ConfigRecord({keys.SITE_ID: site}),
            }
        )
        out.append(Message(content, reply_to=instruction))
    return out


def _aggregate(strategy, order: list[int]) -> np.ndarray:
    arrays, _ = strategy.aggregate_train(1, _replies(order))
    return arrays["w"].numpy()


def test_global_model_does_not_depend_on_which_site_answered_first(tmp_path):
    """Flower sums replies in arrival order; the same updates arriving in another
    order must still give a bit-identical global model, or runs are not
    reproducible."""
    orders = [list(range(7))]
    for seed in range(5):
        order = list(range(7))
        random.Random(seed).shuffle(order)
        orders.append(order)

    plain = STRATEGIES.get("fedavg")(FederationConfig())
    raw = [_aggregate(plain, o) for o in orders]
    assert any(not np.array_equal(raw[0], r) for r in raw[1:]), (
        "FedAvg alone already ignores the order: this test no longer shows anything"
    )

    store = RunStore(tmp_path / "run.sqlite")
    recording = RecordingStrategy(plain, store, "run-1")
    ours = [_aggregate(recording, o) for o in orders]
    for o, r in zip(orders[1:], ours[1:], strict=True):
        assert np.array_equal(ours[0], r), f"arrival order {o} changed the model"
    np.testing.assert_allclose(ours[0], raw[0], rtol=1e-5, atol=1e-6)
    sites = set(store.site_frame("run-1")["site"])
    assert sites == set(SITES)
