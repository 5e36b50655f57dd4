"""The ClientApp: local training and local evaluation at one site.

Only weights and aggregate metrics leave the site; ``num-examples`` is the number of
training samples. Metrics computed on fewer than ``min-report-n`` cases, or fewer
than ``min-report-class-n`` of a class, are withheld: the reply then carries
``num-examples``, ``suppressed = 1`` and every other metric blank (NaN). An
exception at the site never crosses the wire: the reply carries an error code and
a generic reason with a reference that the site's own log repeats next to the
details.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import secrets
from collections.abc import Callable
from typing import cast

from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Error,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp

from oncofed.client import redteam
from oncofed.client.legacy import (
    legacy_kind,
    legacy_reply,
    secure_aggregation,
    sent_arrays,
    sent_config,
)
from oncofed.client.policy import PolicyRefusal, site_policy
from oncofed.client.site import (
    pretraining_samples,
    site_data,
    site_label,
)
from oncofed.client.state import SiteState
from oncofed.common import keys
from oncofed.common.config import OncoFedConfig, from_run_config, sweep_run_config
from oncofed.common.data.prepared import open_prepared
from oncofed.common.data.site import SiteData
from oncofed.common.errors import BudgetSpent, ConfigError, DataError
from oncofed.common.ml import xgb
from oncofed.common.ml.metrics import binary_metrics
from oncofed.common.ml.models import build_model
from oncofed.common.ml.privacy import DPSGD, LEDGER, Ledger, check_budget, plan
from oncofed.common.ml.tasks import get_task
from oncofed.common.ml.training import (
    ProximalTerm,
    predict_detailed,
    resolve_device,
    seed_everything,
    task_metrics,
    train_local,
)
from oncofed.common.ml.weights import (
    arrays_to_bytes,
    bytes_to_arrays,
    load_arrays,
    named_arrays,
    norm_arrays,
    restore_norm,
    to_arrays,
)
from oncofed.common.seeds import round_seed

log = logging.getLogger(__name__)


def central_dp_clipping(msg: Message, context: Context, call_next) -> Message:
    """Run-config ``dp = "central"`` with ``dp-clipping`` 'client-fixed' or
    'client-adaptive': Flower's own clipping mod clips this site's update before
    it leaves (the server's DP wrapper sends the norm); otherwise a no-op."""
    from flwr.clientapp.mod import adaptiveclipping_mod, fixedclipping_mod

    if msg.metadata.message_type != MessageType.TRAIN:
        return call_next(msg, context)
    dp = _config(msg, context).privacy  # the run's, or its sweep entry's
    if dp.dp != "central" or not dp.dp_clipping.startswith("client-"):
        return call_next(msg, context)
    mod = (
        fixedclipping_mod if dp.dp_clipping == "client-fixed" else adaptiveclipping_mod
    )
    return mod(msg, context, call_next)


def enforce_site_policy(msg: Message, context: Context, call_next) -> Message:
    """Node config ``policy-file``: refuse a message whose run config (or sweep
    entry) breaks the site's policy (:mod:`client.policy`), before anything else
    runs; the reply names the rule and the policy's hash."""
    try:
        policy = site_policy(dict(context.node_config))
        if policy is not None:
            policy.check(_run_config(msg, context))
    except PolicyRefusal as why:
        assert policy is not None
        log.warning("Refused by this site's policy %s: %s", policy.path, why)
        site = site_label(dict(context.node_config), context.node_id)
        reason = f"site '{site}': {why} (policy sha256 {policy.sha256[:12]})"
        return Message(
            error=Error(code=keys.SITE_POLICY_REFUSED, reason=reason), reply_to=msg
        )
    except ConfigError:
        ref = secrets.token_hex(4)
        log.exception(
            "Reference %s: the site policy or the run config is unusable", ref
        )
        reason = f"run configuration refused by the site (reference {ref})"
        return Message(error=Error(code=SITE_CONFIG_ERROR, reason=reason), reply_to=msg)
    return call_next(msg, context)


# the site's policy first: a refused run reaches nothing else; then secure
# aggregation, whose key-exchange stages never reach the app
app = ClientApp(mods=[enforce_site_policy, secure_aggregation, central_dp_clipping])


LOCAL_NORM = "local-norm"  # this site's own normalisation layers (FedBN)


def _sent(msg: Message) -> ConfigRecord | None:
    """The server's ConfigRecord (the legacy record under secure aggregation)."""
    if legacy_kind(msg) is not None:
        return sent_config(msg)
    return msg.content.config_records.get(keys.CONFIG)


def _sweep_index(msg: Message) -> int | None:
    """Which entry of run-config ``sweep`` the server is training (None: no sweep)."""
    sent = _sent(msg)
    index = sent.get(keys.SWEEP_INDEX) if sent is not None else None
    return None if index is None else int(index)  # type: ignore[arg-type]


def _run_config(msg: Message, context: Context) -> OncoFedConfig:
    """The run's config, or that of the sweep entry the server asks for, as
    submitted (what the site's policy judges)."""
    return from_run_config(
        sweep_run_config(dict(context.run_config), _sweep_index(msg))
    )


def _config(msg: Message, context: Context) -> OncoFedConfig:
    """:func:`_run_config` as the site trains with it: its ``pretrained`` files
    are not opened here (the server's initial weights carry them: a site reads
    no path the run's submitter chose)."""
    cfg = _run_config(msg, context)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, pretrained=""))


def _server_round(msg: Message) -> int:
    """The round the server's ``train`` message is for (0 if it names none)."""
    sent = _sent(msg)
    value = sent.get(keys.SERVER_ROUND, 0) if sent is not None else 0
    return int(cast(int, value))


def _norm_state_key(msg: Message) -> str:
    index = _sweep_index(msg)
    return LOCAL_NORM if index is None else f"{LOCAL_NORM}-{index}"


def _setup(msg: Message, context: Context, cfg: OncoFedConfig):
    data = site_data(
        dict(context.node_config),
        cfg.data,
        masks=cfg.model.task == "segmentation",
    )
    model = build_model(
        cfg.model,
        cfg.data.image_depth,
        data.input_dims,
        private=cfg.privacy.per_example,
    )
    if legacy_kind(msg) is not None:  # secure aggregation: unnamed, in order
        arrays = named_arrays(model, sent_arrays(msg))
    else:
        arrays = msg.content[keys.ARRAYS]  # type: ignore[assignment]
    load_arrays(model, arrays)
    norm_key = _norm_state_key(msg)
    if cfg.model.norm_layers == "local" and norm_key not in context.state:
        # a resumed run's first round here: the layers this site kept on disk
        for key, saved in (
            _site_state(msg, context, data).norms(_server_round(msg)).items()
        ):
            context.state[key] = saved
    if cfg.model.norm_layers == "local" and norm_key in context.state:
        # FedBN: the site's normalisation layers replace the averaged ones
        restore_norm(model, context.state[norm_key])  # type: ignore[arg-type]
    return data, model, resolve_device(cfg.train.device)


def reportable(samples: list[dict], cfg: OncoFedConfig) -> bool:
    """Whether metrics computed on ``samples`` may leave the site: at least
    ``min-report-n`` cases and ``min-report-class-n`` of each class (survival:
    of events and of censored cases; segmentation: cases only)."""
    if len(samples) < cfg.privacy.min_report_n:
        return False
    if cfg.model.task in ("segmentation", "pretrain"):
        return True
    key = keys.EVENT if cfg.model.task == "survival" else keys.LABEL
    ones = sum(1 for s in samples if float(s[key]) == 1.0)
    return min(ones, len(samples) - ones) >= cfg.privacy.min_report_class_n


def _withhold(metrics: dict, samples: list[dict], cfg: OncoFedConfig) -> dict:
    """``metrics`` with ``suppressed = 0`` if reportable; else every metric but
    ``num-examples`` blanked (NaN) and ``suppressed = 1``. Every reply keeps the
    same keys (Flower aggregates only consistent replies), and a withheld reply's
    values, presence and NaN pattern say nothing about the site's labels."""
    if reportable(samples, cfg):
        return {**metrics, keys.SUPPRESSED: 0.0}
    return {
        **{k: float("nan") for k in metrics},
        keys.NUM_EXAMPLES: metrics[keys.NUM_EXAMPLES],
        # privacy accounting: computed from the site's size and the run config
        **{k: metrics[k] for k in (*keys.DP_KEYS, keys.UNIT_WEIGHT) if k in metrics},
        keys.SUPPRESSED: 1.0,
    }


def _reply(
    msg: Message,
    context: Context,
    data: SiteData,
    arrays: ArrayRecord | None,
    metrics: dict,
    samples: list[dict],
    cfg: OncoFedConfig,
    site: str = "",
) -> Message:
    """The reply: this site's label (``site`` overrides it: red-team
    impersonation), ``metrics`` (withheld when ``samples`` are too few,
    :func:`_withhold`) and, for training, the weights."""
    site = site or site_label(dict(context.node_config), context.node_id, data.name)
    if cfg.privacy.dp == "central":  # the server's mean weighs every site alike
        metrics = {**metrics, keys.UNIT_WEIGHT: 1.0}
    if legacy_kind(msg) is not None:  # secure aggregation's record layout
        return legacy_reply(msg, arrays, _withhold(metrics, samples, cfg), site)
    content = RecordDict(
        {
            keys.METRICS: MetricRecord(_withhold(metrics, samples, cfg)),
            keys.SITE: _site_record(site, context),
        }
    )
    if arrays is not None:
        content[keys.ARRAYS] = arrays
    return Message(content=content, reply_to=msg)


def _site_record(site: str, context: Context) -> ConfigRecord:
    """The reply's ``site`` record: the label, and the policy's hash if any."""
    policy = site_policy(dict(context.node_config))
    record = ConfigRecord({keys.SITE_ID: site})
    if policy is not None:
        record[keys.POLICY_SHA256] = policy.sha256
    return record


def _xgb_train(msg: Message, context: Context, cfg: OncoFedConfig) -> Message:
    """XGBoost baseline: grow this site's trees on top of the global ensemble."""
    data = site_data(dict(context.node_config), cfg.data)
    server_round = _server_round(msg)
    seed = round_seed(cfg.data.seed, server_round, data.name)
    global_model = arrays_to_bytes(msg.content[keys.ARRAYS])  # type: ignore[arg-type]
    samples = data.split("train")
    trees = xgb.train_round(global_model, samples, cfg.model, seed)
    y, p = xgb.predict(trees, samples)
    metrics = {
        keys.NUM_EXAMPLES: len(samples),
        keys.AUC: binary_metrics(y, p)[keys.AUC],
        keys.NUM_QUARANTINED: len(data.quarantined),
    }
    return _reply(msg, context, data, bytes_to_arrays(trees), metrics, samples, cfg)


def _xgb_evaluate(msg: Message, context: Context, cfg: OncoFedConfig) -> Message:
    data = site_data(dict(context.node_config), cfg.data)
    samples = data.split("val")
    y, p = xgb.predict(arrays_to_bytes(msg.content[keys.ARRAYS]), samples)  # type: ignore[arg-type]
    metrics = {keys.NUM_EXAMPLES: len(samples), **binary_metrics(y, p)}
    return _reply(msg, context, data, None, metrics, samples, cfg)


def _site_state(msg: Message, context: Context, data: SiteData) -> SiteState:
    """Where this site keeps its state for this run on its own disk."""
    sent = _sent(msg)
    lineage = str(sent.get(keys.RUN_LINEAGE, "")) if sent is not None else ""
    node_config = dict(context.node_config)
    return SiteState(
        node_config, lineage, site_label(node_config, context.node_id, data.name)
    )


def _dp_sgd(context: Context, cfg: OncoFedConfig, n: int, state: SiteState) -> DPSGD:
    """This round's DP-SGD: the run's plan for a site of ``n`` training cases and
    the steps the site has already taken in this run (its ledger in
    ``context.state``, or in ``state`` on disk when this Flower run is the
    resumption of an interrupted one); refused (BudgetSpent) if the round would
    overspend."""
    record = context.state.get(LEDGER)
    ledger = Ledger.from_record(record if record is not None else state.ledger())
    p = plan(n, cfg)
    check_budget(ledger, p)
    return DPSGD(p, ledger)


def _dp_metrics(dp: DPSGD) -> dict[str, float]:
    """What the site has spent so far, and what that figure is computed from."""
    p, ledger = dp.plan, dp.ledger
    return {
        keys.DP_EPSILON: ledger.epsilon(p.delta, p.accountant),
        keys.DP_DELTA: p.delta,
        keys.DP_NOISE: p.noise,
        keys.DP_SAMPLE_RATE: p.sample_rate,
        keys.DP_STEPS: float(ledger.total_steps),
    }


# error codes of a site's failed reply (Flower's own codes are below 100)
SITE_DATA_ERROR = 1001  # the site's data is missing or unusable
SITE_CONFIG_ERROR = 1002  # the run's configuration was refused at the site
SITE_BUDGET_SPENT = 1003  # the site's privacy budget is spent: it trains no more
SITE_INTERNAL_ERROR = 1099  # anything else


def guarded(handler: Callable[[Message, Context], Message]):
    """Run ``handler``; an exception becomes an error reply with a code and a
    generic reason. The exception's text (which may hold a path with a
    patient's name, or a value from a record) stays in the site's own log under
    the reference the reply quotes."""

    @functools.wraps(handler)
    def run(msg: Message, context: Context) -> Message:
        try:
            return handler(msg, context)
        except Exception as err:  # noqa: BLE001 - nothing of it crosses the wire
            ref = secrets.token_hex(4)
            log.exception("Reference %s: %s failed at this site", ref, handler.__name__)
            if isinstance(err, DataError):
                code, what = SITE_DATA_ERROR, "site data missing or unusable"
            elif isinstance(err, ConfigError):
                code, what = SITE_CONFIG_ERROR, "run configuration refused by the site"
            elif isinstance(err, BudgetSpent):
                code, what = SITE_BUDGET_SPENT, "privacy budget spent: no more training"
            else:
                code, what = SITE_INTERNAL_ERROR, "internal error"
            reason = f"{what} (reference {ref}; the details are in the site's log)"
            return Message(error=Error(code=code, reason=reason), reply_to=msg)

    return run


@app.train()
@guarded
def train(msg: Message, context: Context) -> Message:
    """Train the global model for ``local-epochs`` on the site's train split."""
    cfg = _config(msg, context)
    if cfg.model.family == "xgboost":
        return _xgb_train(msg, context, cfg)
    attack = redteam.attacks(cfg, dict(context.node_config))
    data, model, device = _setup(msg, context, cfg)
    config = _sent(msg) or ConfigRecord()
    server_round = _server_round(msg)
    samples = data.split("train")
    if attack == "label-flip":
        samples = redteam.flip_labels(samples)
    if cfg.model.task == "pretrain":  # no labels needed: the reference cohort too
        samples = pretraining_samples(dict(context.node_config), cfg.data)
    terms = []
    if keys.PROXIMAL_MU in config:  # sent by FedProx
        terms.append(ProximalTerm(model, float(cast(float, config[keys.PROXIMAL_MU]))))
    seed = round_seed(cfg.data.seed, server_round, data.name)
    seed_everything(seed)
    state = _site_state(msg, context, data)
    dp = _dp_sgd(context, cfg, len(samples), state) if cfg.privacy.per_example else None
    result = train_local(
        model, samples, cfg.train, device, seed, extra_terms=terms, dp=dp
    )
    if cfg.model.norm_layers == "local":
        context.state[_norm_state_key(msg)] = norm_arrays(model)
    primary = get_task(cfg.model.task).primary
    metrics = {
        keys.NUM_EXAMPLES: result.num_examples,
        keys.LOSS: result.loss,
        primary: float("nan"),
        keys.NUM_QUARANTINED: len(data.quarantined),
        **data.harmonise,  # harmonise-*: this site's harmonisation and its guard rails
    }
    if dp is None:
        fit = task_metrics(
            cfg.model.task,
            predict_detailed(model, samples, device, cfg.train.batch_size),
        )
        metrics[primary] = fit[primary]
    else:  # the training cases are what DP protects: no noiseless figure of them
        context.state[LEDGER] = ConfigRecord(dp.ledger.to_record())  # type: ignore[arg-type]
        metrics[keys.LOSS] = float("nan")
        metrics.update(_dp_metrics(dp))
    if dp is not None or cfg.model.norm_layers == "local":  # for a resumed run
        norms = {
            k: cast(ArrayRecord, context.state[k])
            for k in context.state.array_records
            if k.startswith(LOCAL_NORM)
        }
        state.save(server_round, context.state.config_records.get(LEDGER), norms)
    log.info(
        "%s round %d: loss %.4f on %d cases",
        data.name,
        server_round,
        result.loss,
        result.num_examples,
    )
    arrays, label = to_arrays(model), ""
    if attack in redteam.ARRAY_ATTACKS:
        sent = msg.content[keys.ARRAYS]
        arrays = redteam.poison(attack, arrays, sent, seed)  # type: ignore[arg-type]
    elif attack == "impersonate":
        sites = list(open_prepared(cfg.data).sites)
        label = redteam.impersonated(dict(context.node_config), sites)
    if attack is not None:
        log.warning(
            "%s round %d: red-team attack '%s'", data.name, server_round, attack
        )
    return _reply(msg, context, data, arrays, metrics, samples, cfg, label)


@app.evaluate()
@guarded
def evaluate(msg: Message, context: Context) -> Message:
    """Evaluate the received global model on the site's own validation split (its
    test split is not read during training)."""
    cfg = _config(msg, context)
    if cfg.model.family == "xgboost":
        return _xgb_evaluate(msg, context, cfg)
    data, model, device = _setup(msg, context, cfg)
    samples = data.split("val")
    pred = predict_detailed(model, samples, device, cfg.train.batch_size)
    metrics = {
        keys.NUM_EXAMPLES: len(samples),
        keys.LOSS: pred.loss,
        **task_metrics(cfg.model.task, pred),
    }
    return _reply(msg, context, data, None, metrics, samples, cfg)
