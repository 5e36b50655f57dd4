"""Server-side evaluation of the global model after every round, with checkpoints."""

from __future__ import annotations

import time
from logging import INFO
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, MetricRecord
from flwr.common.logger import log

from common import keys, xgb
from common.config import OncoFedConfig
from common.data.site import SiteData
from common.metrics import binary_metrics, primary_metric
from common.models import build_model
from common.store import RunStore
from common.training import (
    Predictions,
    predict_detailed,
    resolve_device,
    task_metrics,
)
from common.weights import arrays_to_bytes, load_arrays

BEST = "best.pt"
LAST = "last.pt"


MIN_SUBSET_CASES = 5


def breakdown(pred: Predictions, subsets: bool = True) -> dict[str, float]:
    """Metrics per available-modality subset (``auc@ct+clinical``, ``n@ct``, ...)
    for subsets with at least ``MIN_SUBSET_CASES`` cases, and the mean per-sample
    modality weight of the fusion head (``weight@ct``) when it has weights."""
    out: dict[str, float] = {}
    which = np.array(pred.subsets)
    for s in sorted(set(pred.subsets)) if subsets else []:
        idx = which == s
        if idx.sum() < MIN_SUBSET_CASES or len(set(pred.probs[idx])) == 0:
            continue
        m = binary_metrics(pred.labels[idx], pred.probs[idx])
        name = s or "none"
        out[f"n@{name}"] = float(idx.sum())
        for k in (keys.AUC, keys.ACCURACY, keys.F1):
            out[f"{k}@{name}"] = m[k]
    if pred.weights is not None:
        for j, mod in enumerate(pred.modalities):
            out[f"weight@{mod}"] = float(pred.weights[:, j].mean())
    return out


class ServerEvaluator:
    """``evaluate_fn`` for ``Strategy.start``: metrics on the held-out test set.

    Writes global metrics to the run store, saves ``last.pt`` every round and
    ``best.pt`` whenever the test AUC improves.
    """

    def __init__(
        self,
        cfg: OncoFedConfig,
        test: SiteData,
        store: RunStore,
        run_id: str,
        ckpt_dir: Path,
        num_rounds: int,
    ) -> None:
        self.cfg = cfg
        self.samples = test.split("test")
        self.store = store
        self.run_id = run_id
        self.ckpt_dir = ckpt_dir
        self.num_rounds = num_rounds
        self.device = resolve_device(cfg.train.device)
        self.input_dims = test.input_dims
        self.model = self.build()
        self.primary = primary_metric(cfg.model.task)
        self.best_score = -1.0  # best value of the primary metric (AUC, C-index, Dice)
        self.best_round = -1
        self.history: list[dict[str, float]] = []
        self._t0 = time.time()

    def build(self) -> Any:
        return build_model(self.cfg.model, self.cfg.data.image_depth, self.input_dims)

    def evaluate(self, arrays: ArrayRecord) -> dict[str, float]:
        """Metrics of the global model in ``arrays`` on the server test set."""
        load_arrays(self.model, arrays)
        pred = predict_detailed(self.model, self.samples, self.device, 64)
        task = self.cfg.model.task
        metrics = {keys.LOSS: pred.loss, **task_metrics(task, pred)}
        metrics.update(breakdown(pred, subsets=task == "classification"))
        return metrics  # segmentation: Dice from task_metrics, AUC of presence

    def state(self) -> Any:
        return {k: v.cpu() for k, v in self.model.state_dict().items()}

    def __call__(self, server_round: int, arrays: ArrayRecord) -> MetricRecord:
        """Evaluate the global model of ``server_round``; log, store, checkpoint."""
        metrics = self.evaluate(arrays)
        task = self.cfg.model.task
        metrics[keys.NUM_EXAMPLES] = len(self.samples)
        metrics[keys.ELAPSED] = time.time() - self._t0
        self.store.log_global(self.run_id, server_round, metrics)
        self.history.append({"round": server_round, **metrics})
        ckpt = {
            "round": server_round,
            "state_dict": self.state(),
            "metrics": metrics,
            "config": self.cfg.to_flat(),
            "input_dims": self.input_dims,
        }
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        torch.save(ckpt, self.ckpt_dir / LAST)
        score = metrics[self.primary]
        if score == score and score > self.best_score:  # NaN never becomes best
            self.best_score, self.best_round = score, server_round
            torch.save(ckpt, self.ckpt_dir / BEST)
        if task == "segmentation":
            log(
                INFO,
                "OncoFed | round %d/%d | test Dice liver %.3f (global %.3f)  tumour "
                "%.3f (global %.3f) | tumour-presence AUC %.3f | n=%d | %.0f s",
                server_round,
                self.num_rounds,
                metrics["dice-liver"],
                metrics["dice-liver-global"],
                metrics["dice-tumour"],
                metrics["dice-tumour-global"],
                metrics[keys.AUC],
                len(self.samples),
                time.time() - self._t0,
            )
            return MetricRecord(metrics)
        if task == "survival":
            log(
                INFO,
                "OncoFed | round %d/%d | test C-index %.3f  Cox loss %.3f | n=%d, "
                "%d events | %.0f s",
                server_round,
                self.num_rounds,
                metrics[keys.C_INDEX],
                metrics[keys.LOSS],
                len(self.samples),
                int(metrics[keys.N_EVENTS]),
                time.time() - self._t0,
            )
            return MetricRecord(metrics)
        log(
            INFO,
            "OncoFed | round %d/%d | test AUC %.3f  acc %.3f  F1 %.3f  sens %.3f  "
            "spec %.3f  Brier %.3f | n=%d | %.0f s",
            server_round,
            self.num_rounds,
            metrics[keys.AUC],
            metrics[keys.ACCURACY],
            metrics[keys.F1],
            metrics[keys.SENSITIVITY],
            metrics[keys.SPECIFICITY],
            metrics[keys.BRIER],
            len(self.samples),
            time.time() - self._t0,
        )
        return MetricRecord(metrics)


class XgbEvaluator(ServerEvaluator):
    """The same server-side evaluation for the XGBoost baseline; the checkpoint's
    ``state_dict`` is the global ensemble as XGBoost JSON bytes."""

    def build(self) -> Any:
        self.ensemble = b""
        return None

    def evaluate(self, arrays: ArrayRecord) -> dict[str, float]:
        self.ensemble = arrays_to_bytes(arrays)
        y, p = xgb.predict(self.ensemble, self.samples)
        return {keys.LOSS: float("nan"), **binary_metrics(y, p)}

    def state(self) -> Any:
        return self.ensemble
