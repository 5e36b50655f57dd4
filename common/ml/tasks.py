"""What a learning task is: its metrics, the primary one, its log line and table.

One object per task (``classification``, ``survival``, ``segmentation``) in the
``TASKS`` registry replaces ``if task == ...`` branches in evaluation, the server's
log and the per-site table. The loss stays with the model family
(:meth:`common.ml.models.multimodal.MultimodalNet.training_loss`), which is built for
one task.

Every task can bootstrap an interval of its primary metric on one evaluation set
(``primary_interval``): the run's summary gives the test figure of the selected
model with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from oncofed.common import keys
from oncofed.common.ml.metrics import (
    binary_metrics,
    bootstrap_indices,
    percentile_interval,
    resampled_metrics,
    survival_metrics,
)
from oncofed.common.registry import Registry


def cox_loss(
    risk: torch.Tensor, time: torch.Tensor, event: torch.Tensor
) -> torch.Tensor:
    """Negative Cox partial log-likelihood (Breslow handling of ties), mean over
    events; cases with an unknown time are left out. Written here: none of our
    libraries has a torch Cox loss (lifelines fits Cox models, not networks).

    For each event i: risk_i - log sum_{j: t_j >= t_i} exp(risk_j).
    """
    ok = torch.isfinite(time) & torch.isfinite(event)
    risk, time, event = risk[ok], time[ok], event[ok]
    if event.sum() == 0:
        return risk.sum() * 0.0  # no event in the batch: no information, no NaN
    order = torch.argsort(time, descending=True)
    r, e = risk[order], event[order]
    # running log-sum-exp over the risk set (everyone with a time >= t_i)
    log_risk_set = torch.logcumsumexp(r, dim=0)
    # Breslow ties: a tied group shares the risk set of its first (longest) member
    t = time[order]
    last_of_tie = torch.searchsorted(-t, -t, right=True) - 1
    log_risk_set = log_risk_set[last_of_tie]
    return -((r - log_risk_set) * e).sum() / e.sum()


@dataclass(frozen=True)
class Task:
    """Base of every task. ``primary`` picks the best round (on validation) and
    heads the logs; ``label`` is how people write it; ``columns`` are the per-site
    table's (header, metric key) pairs."""

    name: str
    primary: str
    label: str
    columns: tuple[tuple[str, str], ...]
    needs_masks: bool = False  # the samples carry their label maps
    by_subset: bool = False  # metrics per available-modality subset are meaningful
    augment: bool = True  # MONAI augmentation of the CT is allowed

    def metrics(self, pred) -> dict[str, float]:  # type: ignore[no-untyped-def]
        """Every metric of this task on one prediction pass (NaN if undefined)."""
        raise NotImplementedError

    def loss(
        self,
        logits: torch.Tensor,
        batch: dict[str, torch.Tensor],
        present: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Training loss of ``logits`` (B,) on ``batch``; with ``present`` (B,)
        only over the cases flagged 1 (an auxiliary head's modality present)."""
        raise NotImplementedError

    def round_line(self, m: dict[str, float]) -> str:
        """The metrics part of a round's log line."""
        raise NotImplementedError

    def primary_interval(
        self,
        pred,
        n_resamples: int = 1000,
        seed: int = 0,  # type: ignore[no-untyped-def]
    ) -> tuple[float, float]:
        """Percentile bootstrap 95 % interval of the primary metric over cases."""
        return math.nan, math.nan


class Classification(Task):
    def loss(
        self,
        logits: torch.Tensor,
        batch: dict[str, torch.Tensor],
        present: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Binary cross-entropy, mean over the (present) cases."""
        labels = batch[keys.LABEL].float()
        if present is None:
            return F.binary_cross_entropy_with_logits(logits, labels)
        per_case = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
        return (per_case * present).sum() / present.sum().clamp(min=1.0)

    def metrics(self, pred) -> dict[str, float]:  # type: ignore[no-untyped-def]
        return binary_metrics(pred.labels, pred.probs)

    def round_line(self, m: dict[str, float]) -> str:
        return (
            f"AUC {m[keys.AUC]:.3f}  acc {m[keys.ACCURACY]:.3f}  F1 {m[keys.F1]:.3f}  "
            f"sens {m[keys.SENSITIVITY]:.3f}  spec {m[keys.SPECIFICITY]:.3f}  "
            f"Brier {m[keys.BRIER]:.3f}"
        )

    def primary_interval(
        self,
        pred,
        n_resamples: int = 1000,
        seed: int = 0,  # type: ignore[no-untyped-def]
    ) -> tuple[float, float]:
        if len(pred.labels) == 0:
            return math.nan, math.nan
        idx = bootstrap_indices(len(pred.labels), n_resamples, seed)
        return percentile_interval(
            resampled_metrics(pred.labels, pred.probs, idx)[keys.AUC]
        )


class Survival(Task):
    def loss(
        self,
        logits: torch.Tensor,
        batch: dict[str, torch.Tensor],
        present: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Cox partial likelihood over the (present) cases; an auxiliary head with
        fewer than 2 present cases adds nothing."""
        time, event = batch[keys.TIME].float(), batch[keys.EVENT].float()
        if present is None:
            return cox_loss(logits, time, event)
        keep = present > 0
        if int(keep.sum()) < 2:
            return logits.sum() * 0.0
        return cox_loss(logits[keep], time[keep], event[keep])

    def metrics(self, pred) -> dict[str, float]:  # type: ignore[no-untyped-def]
        return survival_metrics(pred.times, pred.events, pred.logits)

    def round_line(self, m: dict[str, float]) -> str:
        return (
            f"C-index {m[keys.C_INDEX]:.3f}  Cox loss {m[keys.LOSS]:.3f}  "
            f"{m[keys.N_EVENTS]:.0f} events"
        )

    def primary_interval(
        self,
        pred,
        n_resamples: int = 1000,
        seed: int = 0,  # type: ignore[no-untyped-def]
    ) -> tuple[float, float]:
        if pred.times is None or len(pred.times) < 2:
            return math.nan, math.nan
        idx = bootstrap_indices(len(pred.times), n_resamples, seed)
        values = np.array(
            [
                survival_metrics(pred.times[i], pred.events[i], pred.logits[i])[
                    keys.C_INDEX
                ]
                for i in idx
            ]
        )
        return percentile_interval(values)


class Segmentation(Task):
    """Dice per case and global as LiTS reports it; AUC etc. of the
    tumour-presence score against the case label. No interval: Dice counts exist
    only for cases with a label map, so they do not resample with the cases. The
    loss is the UNet's own (Dice + cross-entropy on the label maps,
    :mod:`oncofed.common.ml.models.segmentation`); augmentation is off because it
    would move the CT without its label map."""

    def metrics(self, pred) -> dict[str, float]:  # type: ignore[no-untyped-def]
        from oncofed.common.ml.models.segmentation import DICE_KEYS, dice_metrics

        out = binary_metrics(pred.labels, pred.probs)
        if pred.seg_counts is not None:
            out.update(dice_metrics(pred.seg_counts))
        else:
            out.update(dict.fromkeys(DICE_KEYS, float("nan")))
        return out

    def round_line(self, m: dict[str, float]) -> str:
        return (
            f"Dice liver {m['dice-liver']:.3f} (global {m['dice-liver-global']:.3f})  "
            f"tumour {m['dice-tumour']:.3f} (global {m['dice-tumour-global']:.3f}) | "
            f"tumour-presence AUC {m[keys.AUC]:.3f}"
        )


class Pretrain(Task):
    """Models Genesis restoration (:mod:`oncofed.common.ml.models.genesis`): the
    network's output per case is its restoration error on a fixed distortion;
    the primary metric is the PSNR of the mean error (higher is better, so the
    best round is chosen as for the other tasks). Labels are not used."""

    def metrics(self, pred) -> dict[str, float]:  # type: ignore[no-untyped-def]
        from oncofed.common.ml.models.genesis import restoration_metrics

        errors = pred.logits if pred.logits is not None else np.zeros(0)
        return restoration_metrics(np.asarray(errors, dtype=float))

    def round_line(self, m: dict[str, float]) -> str:
        return (
            f"restoration PSNR {m['restore-psnr']:.2f} dB (MSE {m['restore-mse']:.5f})"
        )


TASKS: Registry[Task] = Registry("task")


@TASKS.register("classification")
def _classification() -> Task:
    return Classification(
        "classification",
        keys.AUC,
        "AUC",
        (
            ("AUC", keys.AUC),
            ("acc", keys.ACCURACY),
            ("F1", keys.F1),
            ("sens", keys.SENSITIVITY),
            ("spec", keys.SPECIFICITY),
        ),
        by_subset=True,
    )


@TASKS.register("survival")
def _survival() -> Task:
    return Survival(
        "survival",
        keys.C_INDEX,
        "C-index",
        (("C-index", keys.C_INDEX), ("events", keys.N_EVENTS)),
    )


@TASKS.register("segmentation")
def _segmentation() -> Task:
    return Segmentation(
        "segmentation",
        "dice-tumour-global",
        "global tumour Dice",
        (
            ("Dice-L", "dice-liver"),
            ("Dice-T", "dice-tumour"),
            ("DiceT-gl", "dice-tumour-global"),
            ("AUC", keys.AUC),
        ),
        needs_masks=True,
        augment=False,
    )


@TASKS.register("pretrain")
def _pretrain() -> Task:
    return Pretrain(
        "pretrain",
        "restore-psnr",
        "restoration PSNR (dB)",
        (("PSNR", "restore-psnr"), ("MSE", "restore-mse")),
        augment=False,  # the distortions are the task's own
    )


def get_task(name: str) -> Task:
    """The task object for run-config ``task``."""
    return TASKS.create(name)
