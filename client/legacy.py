"""Secure aggregation (run-config ``secure-aggregation = true``) at the site.

Flower 1.41 runs SecAgg+ only through its legacy workflow API
(``SecAggPlusWorkflow`` on the server, ``secaggplus_mod`` here). Its messages
carry the legacy records: ``fitins.parameters`` / ``fitins.config`` in, a
``FitRes`` out (``evaluateins`` / ``EvaluateRes`` for evaluation), with the
weights as an unnamed list in the model's own tensor order. This module reads and
writes that layout for :mod:`client.app`; Flower's ``secaggplus_mod`` then masks
the reply's weights before they leave, and the server only ever unmasks their sum.
"""

from __future__ import annotations

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message
from flwr.common import (
    Code,
    EvaluateRes,
    FitRes,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
from flwr.compat.common import recorddict_compat as compat

FIT, EVALUATE = "fitins", "evaluateins"


def legacy_kind(msg: Message) -> str | None:
    """``fitins`` or ``evaluateins`` for a legacy-workflow message, else None."""
    for kind in (FIT, EVALUATE):
        if f"{kind}.parameters" in msg.content.array_records:
            return kind
    return None


def sent_config(msg: Message) -> ConfigRecord | None:
    """The server's ConfigRecord of a legacy message."""
    kind = legacy_kind(msg)
    return None if kind is None else msg.content.config_records[f"{kind}.config"]


def sent_arrays(msg: Message) -> list:
    """The global weights of a legacy message, as an unnamed list."""
    kind = legacy_kind(msg)
    assert kind is not None
    return parameters_to_ndarrays(
        compat.arrayrecord_to_parameters(
            msg.content.array_records[f"{kind}.parameters"], keep_input=True
        )
    )


def legacy_reply(
    msg: Message, arrays: ArrayRecord | None, metrics: dict, site: str
) -> Message:
    """``metrics`` (already withheld where too few cases) and, for training, the
    weights as the legacy ``FitRes`` / ``EvaluateRes`` records."""
    ok = Status(code=Code.OK, message="")
    n = int(metrics["num-examples"])
    sent: dict[str, bool | bytes | float | int | str] = {
        **{k: float(v) for k, v in metrics.items()},
        "site-id": site,
    }
    if arrays is not None:
        # SecAgg+ masks arrays of one dimension or more: a scalar goes as (1,)
        params = ndarrays_to_parameters(
            [np.atleast_1d(a) for a in arrays.to_numpy_ndarrays()]
        )
        content = compat.fitres_to_recorddict(FitRes(ok, params, n, sent), False)
    else:
        loss = float(metrics.get("loss", float("nan")))
        content = compat.evaluateres_to_recorddict(EvaluateRes(ok, loss, n, sent))
    return Message(content=content, reply_to=msg)


def secure_aggregation(msg: Message, context: Context, call_next) -> Message:
    """Flower's ``secaggplus_mod`` for the messages of a SecAgg+ round (they carry
    its configuration record); every other message passes through."""
    from flwr.client.mod import secaggplus_mod

    if RECORD_KEY_CONFIGS in msg.content.config_records:
        return secaggplus_mod(msg, context, call_next)
    return call_next(msg, context)
