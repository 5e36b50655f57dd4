"""Secure aggregation (run-config ``secure-aggregation = true``): SecAgg+.

Flower 1.41 runs SecAgg+ only through its legacy workflow API, so this run
drives ``DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(...))`` with a legacy
FedAvg instead of the Message-API strategy. Each site masks its weighted update
(``num-examples`` x weights, quantised within +/- ``clipping_range``) with
pairwise masks agreed through Diffie-Hellman key exchange and secret sharing; the
server adds the masked vectors and removes the masks of the sum only. It never
holds one site's unmasked update: what the legacy strategy's ``aggregate_fit``
receives is the unmasked *sum*, handed to it once per replying site.

Each site's metrics (already withheld below ``min-report-n``) still reach the
server in the clear; the reply guard checks their label and metrics
(:class:`SecureRecording`: its update it cannot see) before they go to the run
store as usual; the server-side
evaluation, checkpoints and model selection are the same as in
:mod:`server.app`.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server.strategy import FedAvg
from flwr.serverapp import Grid

from oncofed.common import keys
from oncofed.common.config import OncoFedConfig
from oncofed.common.tracking.store import RunStore
from oncofed.server.guard import FAILED, REJECTED, ReplyGuard
from oncofed.server.strategies import SiteLog, held

log = logging.getLogger(__name__)

# every sampled site shares its key with every other (SecAgg); a mask is rebuilt
# when 2/3 of them answer: fine for hospital-sized federations
NUM_SHARES = 1.0
RECONSTRUCTION_THRESHOLD = 0.67


class AuditGrid:
    """``grid`` recording what every reply the server receives holds: record
    names and keys (never values) in the run store's ``reply_keys`` under phase
    ``secagg``. Arrays a SecAgg+ site masked leave as an empty ArrayRecord (the
    masked vector travels as bytes in the ``secaggplus`` ConfigRecord), so no
    weight name appears there: the audit shows that no unmasked update arrived."""

    def __init__(self, grid: Grid, store: RunStore, run_id: str) -> None:
        self._grid = grid
        self._store = store
        self._run_id = run_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> Any:
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        for msg in replies:
            if msg.has_content():
                rnd = int(msg.metadata.group_id or 0)
                node = f"node-{msg.metadata.src_node_id}"
                self._store.log_reply_keys(self._run_id, rnd, node, "secagg", held(msg))
        return replies


def _scalars(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if k != keys.SITE_ID}


def as_message(node_id: int, phase: str, metrics: dict) -> Message:
    """A legacy (FitRes / EvaluateRes) reply as the reply Message the guard
    screens: its metrics, and its label as a ``site`` record. Its update is
    masked: there are no weights to screen."""
    label = metrics.get(keys.SITE_ID)
    content = RecordDict(
        {keys.METRICS: MetricRecord({k: v for k, v in metrics.items()
                                     if k != keys.SITE_ID})}
    )  # fmt: skip
    if label is not None:
        content[keys.SITE] = ConfigRecord({keys.SITE_ID: label})
    kind = MessageType.TRAIN if phase == "train" else MessageType.EVALUATE
    asked = Message(RecordDict(), dst_node_id=int(node_id), message_type=kind)
    return Message(content, reply_to=asked)


class SecureRecording(FedAvg):
    """The legacy FedAvg of the SecAgg+ workflow, recording each reply's
    metrics as :class:`server.strategies.RecordingStrategy` does, after the
    reply guard's label and metric checks (a reply that fails them is recorded
    as rejected and its metrics are not stored; its masked update is already
    inside the sum, which SecAgg+ bounds: each value clipped to +/- 8, each
    weight to 1,000 examples). Sites that failed are recorded; an unmasked sum
    that is not finite is refused and the global model stays as it was."""

    def __init__(self, sites: SiteLog, guard: ReplyGuard, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sites = sites
        self.guard = guard

    def _record(self, rnd: int, phase: str, results: list) -> None:
        by_node = {str(proxy.node_id): res for proxy, res in results}
        msgs = [as_message(p.node_id, phase, dict(r.metrics)) for p, r in results]
        for s in self.guard.screen(rnd, phase, msgs):
            metrics = _scalars(by_node[s.node].metrics)
            held = [("metrics", "metrics", k) for k in by_node[s.node].metrics]
            self.sites.record(rnd, phase, s.site, s.node, metrics, held)

    def _failed(self, rnd: int, phase: str, failures: list) -> None:
        for failure in failures:
            if isinstance(failure, BaseException):
                node, why = "-", f"{type(failure).__name__}"
            else:
                proxy, res = failure
                node, why = str(proxy.node_id), f"status {res.status.code.name}"
            site = self.guard.label_of_node.get(node, f"node-{node}")
            self.guard.record_event(rnd, phase, site, node, FAILED, f"failed ({why})")

    def aggregate_fit(self, server_round, results, failures):  # type: ignore[no-untyped-def]
        self._record(server_round, "train", results)
        self._failed(server_round, "train", failures)
        for _, res in results:
            res.metrics = {}
        params, metrics = super().aggregate_fit(server_round, results, failures)
        if params is not None and not all(
            np.isfinite(a).all() for a in parameters_to_ndarrays(params)
        ):
            self.guard.record_event(
                server_round, "train", "all", "-", REJECTED,
                "the unmasked sum holds NaN or Inf: the global model stays as it was",
            )  # fmt: skip
            return None, {}
        return params, metrics

    def aggregate_evaluate(self, server_round, results, failures):  # type: ignore[no-untyped-def]
        self._record(server_round, "evaluate", results)
        self._failed(server_round, "evaluate", failures)
        return None, {}


def federate_secure(
    grid: Grid,
    context: Context,
    cfg: OncoFedConfig,
    evaluator: Any,
    store: RunStore,
    run_id: str,
    initial: ArrayRecord,
    to_sites: dict,
    guard: ReplyGuard,
) -> SiteLog:
    """Run ``num-server-rounds`` rounds of FedAvg under SecAgg+; returns the
    sites' log (its last metrics feed the final per-site table)."""
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

    names = list(initial.keys())
    # the sites send scalars as (1,): back to the model's own shapes
    shapes = [a.shape for a in initial.to_numpy_ndarrays()]
    fed = cfg.federation
    sites = SiteLog(store, run_id)

    def named(ndarrays: list[np.ndarray]) -> ArrayRecord:
        arrays = (
            Array(np.asarray(a).reshape(shape))
            for a, shape in zip(ndarrays, shapes, strict=True)
        )
        return ArrayRecord(dict(zip(names, arrays, strict=True)))

    def evaluate(server_round: int, ndarrays: list, _config: dict):
        metrics = evaluator(server_round, named(ndarrays))
        if metrics is None:
            return None
        return float(metrics.get(keys.LOSS, float("nan"))), dict(metrics)

    def sent(server_round: int) -> dict:
        return {**to_sites, keys.SERVER_ROUND: server_round}

    strategy = SecureRecording(
        sites,
        guard,
        fraction_fit=fed.fraction_train,
        fraction_evaluate=fed.fraction_evaluate,
        min_fit_clients=fed.min_sites,
        min_evaluate_clients=fed.min_sites if fed.fraction_evaluate > 0 else 0,
        min_available_clients=fed.min_sites,
        evaluate_fn=evaluate,
        on_fit_config_fn=sent,
        on_evaluate_config_fn=sent,
        initial_parameters=ndarrays_to_parameters(
            [np.atleast_1d(a) for a in initial.to_numpy_ndarrays()]
        ),
    )
    legacy = LegacyContext(
        context,
        config=ServerConfig(
            num_rounds=fed.num_server_rounds, round_timeout=fed.round_timeout
        ),
        strategy=strategy,
    )
    workflow = DefaultWorkflow(
        fit_workflow=SecAggPlusWorkflow(
            num_shares=NUM_SHARES,
            reconstruction_threshold=RECONSTRUCTION_THRESHOLD,
            timeout=fed.round_timeout,
        )
    )
    guard.connected = grid.get_node_ids  # who may still hold a label
    workflow(AuditGrid(grid, store, run_id), legacy)  # type: ignore[arg-type]
    return sites
