"""``harmonise = "cyclegan-fedd"``: the rounds before round 1 in which the sites
train their CycleGANs and the server averages their reference-side
discriminators.

Each round the server sends the consortium's discriminator (message type
``train.harmonise``); every site replaces its own with it, trains
``harmonise-steps / harmonise-rounds`` CycleGAN updates on its own scans and the
public reference cohort, keeps everything else of its CycleGAN in its Flower
context (never sent), and replies with its discriminator, weighted by its number
of training slices. That discriminator has seen reference slices and the site's
generated-reference slices, never a site slice. The replies pass the run's
:class:`~oncofed.server.guard.ReplyGuard` (phase ``harmonise``: shapes, dtypes,
finiteness, update norm) and are averaged by Flower's FedAvg. The sites then map
their scans with the generators they trained, and the task's rounds begin.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from logging import INFO, WARNING

from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from oncofed.common import keys
from oncofed.common.config import OncoFedConfig
from oncofed.common.ml.cyclegan import initial_d_ref, steps_in_round
from oncofed.server.strategies import RecordingStrategy

MESSAGE_TYPE = f"train.{keys.HARMONISE}"


def federate_discriminator(
    grid: Grid,
    cfg: OncoFedConfig,
    strategy: RecordingStrategy,
    to_sites: ConfigRecord,
) -> None:
    """The ``harmonise-rounds`` rounds (run store: phase ``harmonise``, rounds
    1..R, each site's cycle loss and slices; reply events as in training)."""
    data = cfg.data
    arrays = ArrayRecord(initial_d_ref(data.seed))
    fedavg = FedAvg(arrayrecord_key=keys.ARRAYS, weighted_by_key=keys.NUM_EXAMPLES)
    guard = strategy.guard
    guard.connected = grid.get_node_ids
    for rnd in range(1, data.harmonise_rounds + 1):
        t0 = time.time()
        steps = steps_in_round(data.harmonise_steps, data.harmonise_rounds, rnd)
        config = ConfigRecord(
            {**dict(to_sites), keys.SERVER_ROUND: rnd, keys.HARMONISE_STEPS: steps}
        )
        messages = [
            Message(
                RecordDict({keys.ARRAYS: arrays, keys.CONFIG: config}),
                dst_node_id=node,
                message_type=MESSAGE_TYPE,
            )
            for node in grid.get_node_ids()
        ]
        guard.expect(arrays)
        guard.sent(rnd, keys.HARMONISE, messages)
        replies: Iterable[Message] = grid.send_and_receive(
            messages, timeout=cfg.federation.round_timeout
        )
        passed = strategy.record_replies(rnd, keys.HARMONISE, replies)
        if len(passed) < cfg.federation.min_sites:
            log(
                WARNING,
                "OncoFed | harmonise round %d/%d: %d accepted discriminator(s), "
                "min-sites is %d: the discriminator stays as it was",
                rnd, data.harmonise_rounds, len(passed), cfg.federation.min_sites,
            )  # fmt: skip
            continue
        aggregated, _ = fedavg.aggregate_train(rnd, passed)
        if aggregated is not None:
            arrays = aggregated
        log(
            INFO,
            "OncoFed | harmonise round %d/%d: %d site(s), %d CycleGAN updates each, "
            "%.0f s",
            rnd, data.harmonise_rounds, len(passed), steps, time.time() - t0,
        )  # fmt: skip
