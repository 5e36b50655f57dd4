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
from flwr.serverapp.strategy import (
    Bulyan,
    FedAdam,
    FedAvg,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    FedXgbBagging,
    Krum,
    MultiKrum,
    Strategy,
)

from oncofed.common import keys
from oncofed.common.config import FederationConfig, PrivacyConfig
from oncofed.common.registry import Registry
from oncofed.common.tracking.store import PRIVACY, RunStore
from oncofed.server.guard import ReplyGuard, Screened

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
def fedavg(cfg: FederationConfig, weighted_by_key: str = keys.NUM_EXAMPLES) -> Strategy:
    return FedAvg(weighted_by_key=weighted_by_key, **_common(cfg))


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


# Robust aggregation: Flower's own Byzantine-resilient strategies


@STRATEGIES.register("fedmedian")
def fedmedian(cfg: FederationConfig) -> Strategy:
    """Coordinate-wise median of the sites' weights (Yin et al. 2018)."""
    return FedMedian(**_common(cfg))


@STRATEGIES.register("fedtrimmedavg")
def fedtrimmedavg(cfg: FederationConfig) -> Strategy:
    """Coordinate-wise mean after cutting ``trim-fraction`` of the largest and of
    the smallest values (Yin et al. 2018)."""
    return FedTrimmedAvg(beta=cfg.trim_fraction, **_common(cfg))


@STRATEGIES.register("krum")
def krum(cfg: FederationConfig) -> Strategy:
    """The one site update closest to its n - f - 2 nearest others (Blanchard et
    al. 2017); f = ``byzantine-sites``."""
    return Krum(num_malicious_nodes=cfg.byzantine_sites, **_common(cfg))


@STRATEGIES.register("multikrum")
def multikrum(cfg: FederationConfig, sites: int = 0) -> Strategy:
    """The mean of the n - f best Krum-scored updates (n: the run's ``sites``)."""
    n = max(1, max(sites, cfg.min_sites) - cfg.byzantine_sites)
    return MultiKrum(
        num_malicious_nodes=cfg.byzantine_sites, num_nodes_to_select=n, **_common(cfg)
    )


@STRATEGIES.register("bulyan")
def bulyan(cfg: FederationConfig) -> Strategy:
    """Multi-Krum selection, then a trimmed mean around the coordinate-wise
    median (El Mhamdi et al. 2018); needs 4 f + 3 replies a round."""
    return Bulyan(num_malicious_nodes=cfg.byzantine_sites, **_common(cfg))


def central_dp(inner: Strategy, dp: PrivacyConfig, sites: int) -> Strategy:
    """Site-level DP (run-config ``dp = "central"``): Flower's own wrapper around
    ``inner`` (a FedAvg weighting every site alike) clips each site's update to
    ``dp-clipping-norm`` (at the server, or at the site by the ClientApp's
    clipping mod) and adds Gaussian noise of ``dp-noise-multiplier`` x the
    clipping norm / ``sites`` to the mean. The adaptive variants move the norm
    towards the median update norm; their noise multiplier covers both the
    update and the noisy count of clipped sites (Andrew et al. 2021)."""
    from flwr.serverapp.strategy import (
        DifferentialPrivacyClientSideAdaptiveClipping,
        DifferentialPrivacyClientSideFixedClipping,
        DifferentialPrivacyServerSideAdaptiveClipping,
        DifferentialPrivacyServerSideFixedClipping,
    )

    z, norm = dp.dp_noise_multiplier, dp.dp_clipping_norm
    if dp.dp_clipping.endswith("fixed"):
        fixed = {
            "server-fixed": DifferentialPrivacyServerSideFixedClipping,
            "client-fixed": DifferentialPrivacyClientSideFixedClipping,
        }[dp.dp_clipping]
        return fixed(inner, z, norm, sites)
    adaptive = {
        "server-adaptive": DifferentialPrivacyServerSideAdaptiveClipping,
        "client-adaptive": DifferentialPrivacyClientSideAdaptiveClipping,
    }[dp.dp_clipping]
    # the noisy count of clipped sites gets noise std z: the update's own noise
    # is then z / sqrt(3/4), and both together are a Gaussian mechanism with z
    return adaptive(inner, z, sites, initial_clipping_norm=norm, clipped_count_stddev=z)


def central_epsilon(dp: PrivacyConfig, rounds: int) -> float:
    """Epsilon at ``dp-delta`` of ``rounds`` releases of the noisy mean, each a
    Gaussian mechanism of noise multiplier ``dp-noise-multiplier`` on one site's
    clipped update (RDP accountant; no credit taken for sampling sites)."""
    from oncofed.common.ml.privacy import epsilon_of

    return epsilon_of([(dp.dp_noise_multiplier, 1.0, rounds)], dp.dp_delta, "rdp")


def held(msg: Message) -> list[tuple[str, str, str]]:
    """(record name, kind, key) of everything a reply holds."""
    content = msg.content
    return [
        (name, kind, key)
        for kind, records in (
            ("arrays", content.array_records),
            ("metrics", content.metric_records),
            ("config", content.config_records),
        )
        for name, record in records.items()
        for key in record.keys()
    ]


class SiteLog:
    """Each site's reply metrics, written to the run store (and what the reply
    held, names only) and the last of each phase kept for the final table."""

    def __init__(self, store: RunStore, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.last: dict[str, dict[str, dict[str, float]]] = {}

    def record(
        self,
        rnd: int,
        phase: str,
        site: str,
        node: str,
        metrics: dict[str, float],
        held: list[tuple[str, str, str]],
    ) -> None:
        self.store.log_site(self.run_id, rnd, site, node, phase, metrics)
        self.store.log_reply_keys(self.run_id, rnd, site, phase, held)
        self.last.setdefault(phase, {})[site] = metrics


class RecordingStrategy(Strategy):
    """Delegates to ``inner`` and records each site's reply metrics."""

    def __init__(
        self,
        inner: Strategy,
        store: RunStore,
        run_id: str,
        central: PrivacyConfig | None = None,
        guard: ReplyGuard | None = None,
        min_sites: int = 1,
    ) -> None:
        self.inner = inner
        self.store = store
        self.run_id = run_id
        self.sites = SiteLog(store, run_id)
        self.central = central  # dp 'central': account each noisy release
        self.releases = 0
        self.guard = guard or ReplyGuard(store, run_id)
        self.policies: dict[str, str] = {}  # site -> policy hash last recorded
        self.min_sites = min_sites
        # a resumed run: Flower counts rounds from 1 again, its rounds go on
        # from the last complete one (round seeds, FedAdam's bias correction)
        self.offset = 0

    def record_replies(
        self, rnd: int, phase: str, replies: Iterable[Message]
    ) -> list[Message]:
        """Screen the replies (server.guard), record those that pass, and return
        them sorted by site."""
        passed: list[Screened] = self.guard.screen(rnd, phase, replies)
        passed.sort(key=lambda s: (s.site, int(s.node)))
        for s in passed:
            metrics = {
                k: _scalar(v)
                for k, v in s.msg.content.metric_records[keys.METRICS].items()
                if not isinstance(v, list)
            }
            self.sites.record(rnd, phase, s.site, s.node, metrics, held(s.msg))
            if s.policy and self.policies.get(s.site) != s.policy:
                self.policies[s.site] = s.policy  # recorded once per version
                self.store.log_site_policy(self.run_id, rnd, s.site, s.node, s.policy)
        return [s.msg for s in passed]

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        server_round += self.offset
        self.guard.expect(arrays)
        self.guard.connected = grid.get_node_ids
        messages = list(self.inner.configure_train(server_round, arrays, config, grid))
        self.guard.sent(server_round, "train", messages)
        return messages

    def aggregate_train(self, server_round: int, replies: Iterable[Message]):
        server_round += self.offset
        replies = self.record_replies(server_round, "train", replies)
        if len(replies) < self.min_sites:
            log.warning(
                "Round %d: %d accepted update(s), min-sites is %d: the global model "
                "stays as it was",
                server_round,
                len(replies),
                self.min_sites,
            )
            return None, None
        arrays, metrics = self.inner.aggregate_train(server_round, replies)
        if self.central is not None and arrays is not None:
            self._account(server_round)
        return arrays, metrics

    def _account(self, server_round: int) -> None:
        """dp 'central': the run's epsilon after this round's noisy release,
        with what it is computed from, in the run store (split 'privacy')."""
        assert self.central is not None
        self.releases += 1
        eps = central_epsilon(self.central, self.releases)
        norm = float(
            getattr(self.inner, "clipping_norm", self.central.dp_clipping_norm)
        )
        self.store.log_global(
            self.run_id,
            server_round,
            {
                keys.DP_EPSILON: eps,
                keys.DP_DELTA: self.central.dp_delta,
                keys.DP_NOISE: self.central.dp_noise_multiplier,
                keys.DP_CLIPPING_NORM: norm,
                keys.DP_RELEASES: float(self.releases),
            },
            split=PRIVACY,
        )
        log.info(
            "Round %d: central DP, site-level epsilon %.3f at delta %g after %d "
            "noisy release(s)",
            server_round,
            eps,
            self.central.dp_delta,
            self.releases,
        )

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        server_round += self.offset
        messages = list(
            self.inner.configure_evaluate(server_round, arrays, config, grid)
        )
        self.guard.sent(server_round, "evaluate", messages)
        return messages

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]):
        server_round += self.offset
        replies = self.record_replies(server_round, "evaluate", replies)
        return self.inner.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        self.inner.summary()
