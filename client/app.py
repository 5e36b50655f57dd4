"""The ClientApp: local training and local evaluation at one site.

Only weights and aggregate metrics leave the site; ``num-examples`` is the number of
training samples.
"""

from __future__ import annotations

import logging
from typing import cast

from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp

from oncofed.client.site import site_data
from oncofed.common import keys
from oncofed.common.config import OncoFedConfig, from_run_config, sweep_run_config
from oncofed.common.ml import xgb
from oncofed.common.ml.metrics import binary_metrics
from oncofed.common.ml.models import build_model
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
    norm_arrays,
    restore_norm,
    to_arrays,
)
from oncofed.common.seeds import round_seed

log = logging.getLogger(__name__)
app = ClientApp()


LOCAL_NORM = "local-norm"  # this site's own normalisation layers (FedBN)


def _sweep_index(msg: Message) -> int | None:
    """Which entry of run-config ``sweep`` the server is training (None: no sweep)."""
    sent = msg.content.config_records.get(keys.CONFIG)
    index = sent.get(keys.SWEEP_INDEX) if sent is not None else None
    return None if index is None else int(index)  # type: ignore[arg-type]


def _config(msg: Message, context: Context) -> OncoFedConfig:
    """The run's config, or that of the sweep entry the server asks for."""
    return from_run_config(
        sweep_run_config(dict(context.run_config), _sweep_index(msg))
    )


def _server_round(msg: Message) -> int:
    """The round the server's ``train`` message is for (0 if it names none)."""
    value = msg.content.config_records[keys.CONFIG].get(keys.SERVER_ROUND, 0)
    return int(cast(int, value))


def _norm_state_key(msg: Message) -> str:
    index = _sweep_index(msg)
    return LOCAL_NORM if index is None else f"{LOCAL_NORM}-{index}"


def _setup(msg: Message, context: Context, cfg: OncoFedConfig):
    data = site_data(
        dict(context.node_config), cfg.data, masks=cfg.model.task == "segmentation"
    )
    model = build_model(cfg.model, cfg.data.image_depth, data.input_dims)
    arrays: ArrayRecord = msg.content[keys.ARRAYS]  # type: ignore[assignment]
    load_arrays(model, arrays)
    norm_key = _norm_state_key(msg)
    if cfg.model.norm_layers == "local" and norm_key in context.state:
        # FedBN: the site's normalisation layers replace the averaged ones
        restore_norm(model, context.state[norm_key])  # type: ignore[arg-type]
    return data, model, resolve_device(cfg.train.device)


def _reply(msg: Message, site: str, arrays: ArrayRecord | None, metrics: dict):
    content = RecordDict(
        {
            keys.METRICS: MetricRecord(metrics),
            keys.SITE: ConfigRecord({keys.SITE_ID: site}),
        }
    )
    if arrays is not None:
        content[keys.ARRAYS] = arrays
    return Message(content=content, reply_to=msg)


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
    return _reply(msg, data.name, bytes_to_arrays(trees), metrics)


def _xgb_evaluate(msg: Message, context: Context, cfg: OncoFedConfig) -> Message:
    data = site_data(dict(context.node_config), cfg.data)
    samples = data.split("val")
    y, p = xgb.predict(arrays_to_bytes(msg.content[keys.ARRAYS]), samples)  # type: ignore[arg-type]
    metrics = {keys.NUM_EXAMPLES: len(samples), **binary_metrics(y, p)}
    return _reply(msg, data.name, None, metrics)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the global model for ``local-epochs`` on the site's train split."""
    cfg = _config(msg, context)
    if cfg.model.family == "xgboost":
        return _xgb_train(msg, context, cfg)
    data, model, device = _setup(msg, context, cfg)
    config = msg.content.config_records[keys.CONFIG]
    server_round = _server_round(msg)
    samples = data.split("train")
    terms = []
    if keys.PROXIMAL_MU in config:  # sent by FedProx
        terms.append(ProximalTerm(model, float(cast(float, config[keys.PROXIMAL_MU]))))
    seed = round_seed(cfg.data.seed, server_round, data.name)
    seed_everything(seed)
    result = train_local(model, samples, cfg.train, device, seed, extra_terms=terms)
    if cfg.model.norm_layers == "local":
        context.state[_norm_state_key(msg)] = norm_arrays(model)
    fit = task_metrics(
        cfg.model.task, predict_detailed(model, samples, device, cfg.train.batch_size)
    )
    primary = get_task(cfg.model.task).primary
    metrics = {
        keys.NUM_EXAMPLES: result.num_examples,
        keys.LOSS: result.loss,
        primary: fit[primary],
        keys.NUM_QUARANTINED: len(data.quarantined),
    }
    log.info(
        "%s round %d: loss %.4f on %d cases",
        data.name,
        server_round,
        result.loss,
        result.num_examples,
    )
    return _reply(msg, data.name, to_arrays(model), metrics)


@app.evaluate()
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
    return _reply(msg, data.name, None, metrics)
