"""The local training loop, shared by sites, the server's evaluation and benchmarks.

The loop is open to options: ``extra_terms`` are callables ``term(model) -> scalar``
added to the loss (FedProx's proximal term today; a privacy engine or an adaptation
step plug in the same way).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from monai.data import Dataset
from torch import nn
from torch.utils.data import DataLoader

from oncofed.common.config import TrainConfig
from oncofed.common.data.augment import train_augmentation
from oncofed.common.keys import CT, EVENT, LABEL, MASK, TIME, present_key
from oncofed.common.ml.tasks import get_task

if TYPE_CHECKING:
    from oncofed.common.ml.privacy import DPSGD

LossTerm = Callable[[nn.Module], torch.Tensor]


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    return torch.Generator().manual_seed(seed)


def make_loader(
    samples: Sequence[dict],
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    transform: Callable | None = None,
) -> DataLoader:
    data: Any = (
        list(samples) if transform is None else Dataset(list(samples), transform)
    )
    return DataLoader(
        data,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=torch.Generator().manual_seed(seed) if shuffle else None,
    )


def _to(batch: dict, device: torch.device) -> dict:
    return {
        k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v)
        for k, v in batch.items()
    }


class ProximalTerm:
    """FedProx: ``mu / 2 * ||w - w_global||^2`` over trainable parameters."""

    def __init__(self, model: nn.Module, mu: float) -> None:
        self.mu = mu
        self.anchor = [p.detach().clone() for p in model.parameters()]

    def __call__(self, model: nn.Module) -> torch.Tensor:
        total = torch.stack(
            [
                ((p - a) ** 2).sum()
                for p, a in zip(model.parameters(), self.anchor, strict=True)
            ]
        ).sum()
        return 0.5 * self.mu * total


@dataclass
class TrainResult:
    loss: float  # mean training loss over the last epoch
    num_examples: int  # samples (not batches) seen per epoch


def train_local(
    model: nn.Module,
    samples: Sequence[dict],
    cfg: TrainConfig,
    device: torch.device,
    seed: int,
    epochs: int | None = None,
    extra_terms: Sequence[LossTerm] = (),
    dp: DPSGD | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``samples`` for ``epochs`` (default local-epochs).

    ``dp``: example-level DP-SGD (:class:`common.ml.privacy.DPSGD`): Opacus
    wraps model, optimiser and loader (Poisson-sampled batches; each case's
    gradient clipped, noise added), and the plain model is left trained."""
    model.to(device).train()
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
    )
    # augmentation moves the CT only: a segmentation label map would not follow
    task = get_task(getattr(model, "task", "classification"))
    transform = train_augmentation(seed) if cfg.augment and task.augment else None
    loader = make_loader(samples, cfg.batch_size, True, seed, transform)
    if dp is not None:  # Opacus' hooks sit on the model's own layers
        opt, loader = dp.wrap(model, opt, loader)
    last = float("nan")
    try:
        for _ in range(epochs or cfg.local_epochs):
            total, n = 0.0, 0
            for batch in loader:
                batch = _to(batch, device)
                # the family's own loss (fused + auxiliary terms), see MultimodalNet
                loss, logits = model.training_loss(  # type: ignore[operator]
                    batch, batch[LABEL].float()
                )
                for term in extra_terms:
                    loss = loss + term(model)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if dp is None and cfg.max_grad_norm > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                opt.step()  # DP-SGD: also when Poisson sampling drew no case
                if len(logits):
                    total += float(loss.detach()) * len(logits)
                    n += len(logits)
            last = total / max(n, 1)
    finally:
        if dp is not None:
            dp.close()
    return TrainResult(loss=last, num_examples=len(samples))


@torch.no_grad()
def predict(
    model: nn.Module, samples: Sequence[dict], device: torch.device, batch_size: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """Labels, probabilities and mean BCE loss of ``model`` on ``samples``."""
    d = predict_detailed(model, samples, device, batch_size)
    return d.labels, d.probs, d.loss


@dataclass
class Predictions:
    """What a prediction pass yields beyond the probabilities: the per-sample
    modality weights of the fusion head (None if it has none) and each sample's
    available-modality subset (e.g. ``ct+clinical``)."""

    labels: np.ndarray
    probs: np.ndarray
    loss: float
    weights: np.ndarray | None
    subsets: list[str]
    modalities: tuple[str, ...]
    logits: np.ndarray | None = None
    times: np.ndarray | None = None
    events: np.ndarray | None = None
    seg_counts: Any = None  # segmentation: per-case Dice counts (B, 2, 3)


@torch.no_grad()
def predict_detailed(
    model: nn.Module, samples: Sequence[dict], device: torch.device, batch_size: int
) -> Predictions:
    model.to(device).eval()
    mods = tuple(getattr(model, "modalities", ()))
    ys, ps, ws, subsets, total = [], [], [], [], 0.0
    zs, ts, es, counts = [], [], [], []
    task = get_task(getattr(model, "task", "classification"))
    loss_fn = nn.BCEWithLogitsLoss(reduction="sum")
    for batch in make_loader(samples, batch_size, shuffle=False):
        batch = _to(batch, device)
        logits = model(batch)
        total += float(loss_fn(logits, batch[LABEL].float()))
        zs.append(logits.double().cpu().numpy())
        if task.needs_masks:  # segmentation: Dice counts against the label maps
            from oncofed.common.ml.models.segmentation import dice_counts

            keep = batch[present_key(MASK)] > 0
            if bool(keep.any()):
                pred_mask = model.segment(batch[CT][keep]).argmax(1)  # type: ignore[operator]
                counts.append(dice_counts(pred_mask, batch[MASK][keep][:, 0]).cpu())
        ts.append(batch[TIME].double().cpu().numpy())
        es.append(batch[EVENT].double().cpu().numpy())
        ys.append(batch[LABEL].cpu().numpy())
        # float64: float32 sigmoid ties at 1.0 for logits > 17 and AUC would suffer
        ps.append(torch.sigmoid(logits.double()).cpu().numpy())
        get_weights = getattr(model, "modality_weights", None)
        w = get_weights() if callable(get_weights) else None
        if w is not None:
            ws.append(w.cpu().numpy())
        flags = [batch[present_key(m)].cpu().numpy() > 0 for m in mods]
        for i in range(len(logits)):
            subsets.append(
                "+".join(m for m, f in zip(mods, flags, strict=True) if f[i])
            )
    if not ys:
        return Predictions(np.zeros(0), np.zeros(0), float("nan"), None, [], mods)
    loss = total / max(len(samples), 1)
    logits_all, times, events = map(np.concatenate, (zs, ts, es))
    if task.name == "survival":  # the evaluation loss is the task's own
        batch_all = {TIME: torch.from_numpy(times), EVENT: torch.from_numpy(events)}
        loss = float(task.loss(torch.from_numpy(logits_all), batch_all))
    elif task.name == "pretrain":  # the output is each case's restoration error
        loss = float(np.mean(logits_all))
    return Predictions(
        np.concatenate(ys),
        np.concatenate(ps),
        loss,
        np.concatenate(ws) if ws and len(ws) == len(ys) else None,
        subsets,
        mods,
        logits_all,
        times,
        events,
        torch.cat(counts) if counts else None,
    )


def task_metrics(task: str, pred: Predictions) -> dict[str, float]:
    """Every metric of run-config ``task`` on ``pred`` (see :mod:`common.ml.tasks`)."""
    from oncofed.common.ml.tasks import get_task

    return get_task(task).metrics(pred)
