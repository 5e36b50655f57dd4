"""Strategy registry (Flower's own strategies) and the recording wrapper.

``RecordingStrategy`` wraps any registered strategy: it writes every site's reply
metrics to the run store (keyed by run, round and site) and then hands the replies
to the wrapped strategy, so aggregation is exactly Flower's. It only fixes their
order (by site name): Flower sums the replies in arrival order, and floating-point
sums in another order differ in the last bits, which training can amplify into a
different model. Sorted, the same sites' updates give the same global model
whichever site finished first.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.app.typing import MetricRecordValues
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAdam, FedAvg, FedProx, FedXgbBagging, Strategy

from oncofed.common import keys
from oncofed.common.config import FederationConfig
from oncofed.common.registry import Registry
from oncofed.common.tracking.store import RunStore

log = logging.getLogger(__name__)

STRATEGIES: Registry[Strategy] = Registry("strategy")


def nan_aware_mean(records: list[RecordDict], weighting_key: str) -> MetricRecord:
    """Sample-weighted mean of each metric over the replies that define it.

    Flower's default turns the whole mean into NaN when one site cannot compute a
    metric (e.g. AUC on a one-class test split); here that site is left out, as
    is a site whose metrics were withheld (``suppressed``: it sent none).
    """
    sums: dict[str, float] = {}
    weights: dict[str, float] = {}
    total = 0.0
    for rd in records:
        metrics = next(iter(rd.metric_records.values()))
        w = _scalar(metrics[weighting_key])
        total += w
        for k, v in metrics.items():
            if k in (weighting_key, keys.SUPPRESSED) or isinstance(v, list):
                continue
            if math.isnan(float(v)):
                continue
            sums[k] = sums.get(k, 0.0) + w * float(v)
            weights[k] = weights.get(k, 0.0) + w
    out: dict[str, MetricRecordValues] = {
        k: sums[k] / weights[k] for k in sums if weights[k] > 0
    }
    out[weighting_key] = total
    return MetricRecord(out)


def _scalar(value: MetricRecordValues) -> float:
    if isinstance(value, list):
        raise TypeError(f"expected a number, got a list of {len(value)}")
    return float(value)


def _common(cfg: FederationConfig) -> dict:
    return {
        "fraction_train": cfg.fraction_train,
        "fraction_evaluate": cfg.fraction_evaluate,
        "min_train_nodes": cfg.min_sites,
        "min_evaluate_nodes": cfg.min_sites if cfg.fraction_evaluate > 0 else 0,
        "min_available_nodes": cfg.min_sites,
        "train_metrics_aggr_fn": nan_aware_mean,
        "evaluate_metrics_aggr_fn": nan_aware_mean,
    }


@STRATEGIES.register("fedavg")
def fedavg(cfg: FederationConfig) -> Strategy:
    return FedAvg(**_common(cfg))


@STRATEGIES.register("fedprox")
def fedprox(cfg: FederationConfig) -> Strategy:
    return FedProx(proximal_mu=cfg.proximal_mu, **_common(cfg))


@STRATEGIES.register("fedxgb_bagging")
def fedxgb_bagging(cfg: FederationConfig) -> Strategy:
    """Flower's XGBoost bagging: every site's new trees join the global ensemble."""
    return FedXgbBagging(**_common(cfg))


@STRATEGIES.register("fedadam")
def fedadam(cfg: FederationConfig) -> Strategy:
    return FedAdam(eta=cfg.server_learning_rate, **_common(cfg))


def _site_of(msg: Message) -> str:
    site = msg.content.config_records.get(keys.SITE)
    return str(site[keys.SITE_ID]) if site else f"node-{msg.metadata.src_node_id}"


def _reply_order(msg: Message) -> tuple[int, str, int]:
    node = int(msg.metadata.src_node_id)
    return (1, "", node) if msg.has_error() else (0, _site_of(msg), node)


class RecordingStrategy(Strategy):
    """Delegates to ``inner`` and records each site's reply metrics."""

    def __init__(self, inner: Strategy, store: RunStore, run_id: str) -> None:
        self.inner = inner
        self.store = store
        self.run_id = run_id
        self.last_site_metrics: dict[str, dict[str, dict[str, float]]] = {}

    def _record(self, rnd: int, phase: str, replies: Iterable[Message]) -> list:
        replies = sorted(replies, key=_reply_order)
        for msg in replies:
            if msg.has_error():
                log.warning(
                    "Round %d %s: node %s failed: %s",
                    rnd,
                    phase,
                    msg.metadata.src_node_id,
                    msg.error.reason,
                )
                continue
            metrics = {
                k: _scalar(v)
                for k, v in next(iter(msg.content.metric_records.values())).items()
                if not isinstance(v, list)
            }
            site = _site_of(msg)
            self.store.log_site(
                self.run_id, rnd, site, str(msg.metadata.src_node_id), phase, metrics
            )
            self.last_site_metrics.setdefault(phase, {})[site] = metrics
        return replies

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.inner.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]):
        replies = self._record(server_round, "train", replies)
        return self.inner.aggregate_train(server_round, replies)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]):
        replies = self._record(server_round, "evaluate", replies)
        return self.inner.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        self.inner.summary()
