"""Server-side evaluation of the global model: validation after every round picks
the model, the test set scores the picked one (and the last) once, at the end.

After every round (and once before the first) the global model is scored on the
server's validation set; ``best.pt`` is the model of the round with the best
validation primary metric (AUC, C-index, global tumour Dice), ``last.pt`` the last
round's. Only when training is over does :meth:`ServerEvaluator.finish` score those
two models on the test set, so nothing about the test cases can steer training,
checkpoint selection or early stopping.
"""

from __future__ import annotations

import math
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass
from logging import INFO, WARNING
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, MetricRecord
from flwr.app.typing import MetricRecordValues
from flwr.common.logger import log

from oncofed.common import keys
from oncofed.common.config import OncoFedConfig
from oncofed.common.ml import xgb
from oncofed.common.ml.metrics import binary_metrics
from oncofed.common.ml.models import build_model
from oncofed.common.ml.tasks import get_task
from oncofed.common.ml.training import Predictions, predict_detailed, resolve_device
from oncofed.common.ml.weights import arrays_to_bytes, load_arrays, save_atomic
from oncofed.common.reporting.export import Tracker
from oncofed.common.tracking.store import TEST, VAL, RunStore

BEST = "best.pt"
LAST = "last.pt"
CT_ENCODER = "ct-encoder.pt"  # task 'pretrain': the selected round's CT encoder
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


@dataclass(frozen=True)
class Selection:
    """The validation-selected model and what the test set says of it.

    ``round`` is the selected round (``by_validation`` False when no round had a
    defined validation metric and the last round stands in); ``test`` and
    ``test_interval`` (bootstrap 95 %) are the primary metric of that model on the
    test set; ``last_round``/``last_test`` the same for the last round's model."""

    label: str
    round: int
    by_validation: bool
    validation: float
    test: float
    test_interval: tuple[float, float]
    last_round: int
    last_test: float

    def line(self) -> str:
        """The run's summary, e.g. ``best validation AUC 0.860 at round 7; test AUC
        of that model 0.850 [0.790, 0.910]; last round (8) test AUC 0.840``."""
        lo, hi = self.test_interval
        chosen = (
            f"best validation {self.label} {self.validation:.3f} at round {self.round}"
            if self.by_validation
            else f"no round had a defined validation {self.label}: the last round "
            f"({self.round}) stands in"
        )
        return (
            f"{chosen}; test {self.label} of that model {self.test:.3f} "
            f"[{lo:.3f}, {hi:.3f}]; last round ({self.last_round}) test "
            f"{self.label} {self.last_test:.3f}"
        )


class SafeTracker:
    """An experiment tracker that never stops the run: a failure is logged once
    and the tracker is switched off."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker: Tracker | None = tracker

    def _call(self, what: str) -> None:
        if self.tracker is None:
            return
        try:
            getattr(self.tracker, what)()
        except Exception as err:  # a tracker's disk or library must not cost the run
            log(WARNING, "OncoFed | tracking stopped: %r", err)
            self.tracker = None

    def sync(self) -> None:
        self._call("sync")

    def finish(self) -> None:
        self._call("finish")


class ServerEvaluator:
    """``evaluate_fn`` for ``Strategy.start``: the validation set every round,
    checkpoints, and (in :meth:`finish`) the test set for the selected model.

    Parameters
    ----------
    val, test : the server's validation and test samples.
    """

    def __init__(
        self,
        cfg: OncoFedConfig,
        val: list[dict],
        test: list[dict],
        input_dims: dict[str, int],
        store: RunStore,
        run_id: str,
        ckpt_dir: Path,
        num_rounds: int,
    ) -> None:
        self.cfg = cfg
        self.val, self.test = val, test
        self.input_dims = input_dims
        self.store = store
        self.run_id = run_id
        self.ckpt_dir = ckpt_dir
        self.num_rounds = num_rounds
        self.device = resolve_device(cfg.train.device)
        self.task = get_task(cfg.model.task)
        self.primary = self.task.primary
        self.model = self.build()
        self.best_score = -math.inf  # best validation value of the primary metric
        self.best_round = -1
        self.best_state: Any = None
        self.last_round = -1
        self.last_state: Any = None
        self.tracker: SafeTracker | None = None  # run-config tracking
        self._t0 = time.time()

    # -- what differs between model families
    def build(self) -> Any:
        return build_model(
            self.cfg.model,
            self.cfg.data.image_depth,
            self.input_dims,
            private=self.cfg.privacy.per_example,
        )

    def state_of(self, arrays: ArrayRecord) -> Any:
        """A self-contained copy of the global model in ``arrays``."""
        load_arrays(self.model, arrays)
        return {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    def predict(self, state: Any, samples: list[dict]) -> Predictions:
        self.model.load_state_dict(state)
        return predict_detailed(self.model, samples, self.device, 64)

    def score(self, pred: Predictions) -> dict[str, float]:
        metrics = {keys.LOSS: pred.loss, **self.task.metrics(pred)}
        metrics.update(breakdown(pred, subsets=self.task.by_subset))
        return metrics

    def _score(self, rnd: int, split: str, pred: Predictions) -> dict[str, float]:
        """:meth:`score`, or, when the model's outputs are not finite (a model
        that overflowed, e.g. under heavy central-DP noise), every metric
        undefined: such a round is stored as NaN and never selected, and the run
        goes on."""
        outputs = np.asarray(pred.probs, dtype=float)
        if outputs.size == 0 or np.isfinite(outputs).all():
            return self.score(pred)
        log(
            WARNING,
            "OncoFed | round %d: the global model's %s outputs are not finite "
            "(NaN/Inf): its metrics are undefined",
            rnd,
            split,
        )
        return {keys.LOSS: math.nan, self.primary: math.nan}

    def keep(
        self, rnd: int, split: str, pred: Predictions, metrics: dict
    ) -> tuple[float, float]:
        """Store ``metrics`` with the primary metric's percentile bootstrap 95 %
        interval (``auc-lo`` / ``auc-hi``; 1,000 resamples on the test set, 200 on
        validation) and, for a binary task, each case's probability (the
        dashboard's and report's ROC, calibration and confusion panels); return
        the interval."""
        lo = hi = math.nan
        if not math.isnan(metrics.get(self.primary, math.nan)):
            lo, hi = self.task.primary_interval(
                pred,
                n_resamples=1000 if split == TEST else 200,
                seed=self.cfg.data.seed,
            )
        metrics = {**metrics, f"{self.primary}-lo": lo, f"{self.primary}-hi": hi}
        self.store.log_global(self.run_id, rnd, metrics, split)
        if self.task.name == "classification":
            self.store.log_predictions(self.run_id, rnd, split, pred.labels, pred.probs)
        return lo, hi

    def elapsed(self) -> float:
        """Seconds of training so far (a resumed run counts the earlier part)."""
        return time.time() - self._t0

    def shift_clock(self, elapsed: float) -> None:
        """Continue a resumed run's clock from ``elapsed`` seconds."""
        self._t0 = time.time() - elapsed

    # -- every round
    def __call__(self, server_round: int, arrays: ArrayRecord) -> MetricRecord:
        """Score the global model of ``server_round`` on the validation set; log,
        store, checkpoint."""
        state = self.state_of(arrays)
        pred = self.predict(state, self.val)
        metrics = self._score(server_round, VAL, pred)
        metrics[keys.NUM_EXAMPLES] = len(self.val)
        metrics[keys.ELAPSED] = self.elapsed()
        self.keep(server_round, VAL, pred, metrics)
        ckpt = {
            "round": server_round,
            "state_dict": state,
            "metrics": metrics,
            "selected_by": f"validation {self.primary}",
            "config": self.cfg.to_flat(),
            "input_dims": self.input_dims,
        }
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        save_atomic(ckpt, self.ckpt_dir / LAST)
        self.last_round, self.last_state = server_round, state
        score = metrics[self.primary]
        if self.task.name == "pretrain" and server_round == 0:
            score = math.nan  # the untrained encoder is no pretraining result
        if score == score and score > self.best_score:  # NaN never becomes best
            self.best_score, self.best_round = score, server_round
            self.best_state = state
            save_atomic(ckpt, self.ckpt_dir / BEST)
        log(
            INFO,
            "OncoFed | round %d/%d | validation %s | n=%d | %.0f s",
            server_round,
            self.num_rounds,
            self.task.round_line(defaultdict(lambda: math.nan, metrics)),
            len(self.val),
            time.time() - self._t0,
        )
        if self.tracker is not None:
            self.tracker.sync()
        return MetricRecord(dict[str, MetricRecordValues](metrics))

    # -- once, at the end
    def finish(self) -> Selection | None:
        """Score the selected and the last round's model on the test set (the only
        time the test set is read), store both and the selected round, and return
        the summary; None if no round was evaluated."""
        if self.last_state is None:
            return None
        by_validation = self.best_round >= 0
        if not by_validation:
            log(
                WARNING,
                "OncoFed | no round had a defined validation %s (one-class or empty "
                "validation set?): the last round's model is taken",
                self.task.label,
            )
            self.best_round, self.best_state = self.last_round, self.last_state
            shutil.copyfile(self.ckpt_dir / LAST, self.ckpt_dir / BEST)
        self.store.select_round(self.run_id, self.best_round)
        if self.task.name == "pretrain":
            self.export_encoder()
        scored: dict[int, tuple[dict[str, float], tuple[float, float]]] = {}
        for rnd, state in (
            (self.best_round, self.best_state),
            (self.last_round, self.last_state),
        ):
            if rnd in scored:
                continue
            pred = self.predict(state, self.test)
            metrics = self._score(rnd, TEST, pred)
            metrics[keys.NUM_EXAMPLES] = len(self.test)
            scored[rnd] = (metrics, self.keep(rnd, TEST, pred, metrics))
        best_metrics, best_interval = scored[self.best_round]
        return Selection(
            label=self.task.label,
            round=self.best_round,
            by_validation=by_validation,
            validation=self.best_score,
            test=best_metrics[self.primary],
            test_interval=best_interval,
            last_round=self.last_round,
            last_test=scored[self.last_round][0][self.primary],
        )

    def export_encoder(self) -> Path:
        """Task ``pretrain``: the selected round's CT encoder as a plain state
        dict, which run-config ``pretrained = "ct=PATH"`` loads for fine-tuning."""
        self.model.load_state_dict(self.best_state)
        path = self.ckpt_dir / CT_ENCODER
        save_atomic(self.model.encoder.state_dict(), path)
        log(
            INFO,
            "OncoFed | CT encoder of round %d (validation %s %.2f) saved: fine-tune "
            'with run-config pretrained = "ct=%s"',
            self.best_round,
            self.task.label,
            self.best_score,
            path,
        )
        return path


class XgbEvaluator(ServerEvaluator):
    """The same evaluation for the XGBoost baseline; the checkpoint's
    ``state_dict`` is the global ensemble as XGBoost JSON bytes."""

    def build(self) -> Any:
        return None

    def state_of(self, arrays: ArrayRecord) -> Any:
        return arrays_to_bytes(arrays)

    def predict(self, state: Any, samples: list[dict]) -> Predictions:
        y, p = xgb.predict(state, samples)
        return Predictions(y, p, float("nan"), None, [], ())

    def score(self, pred: Predictions) -> dict[str, float]:
        return {keys.LOSS: float("nan"), **binary_metrics(pred.labels, pred.probs)}
