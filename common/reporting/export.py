"""Runs into the experiment trackers labs already use: MLflow and TensorBoard.

``Tracker`` follows a live run (run-config ``tracking = "mlflow" |
"tensorboard"``): after every server-side round it logs what the run store holds
that it has not logged yet, and at the end the selected model. ``export_run``
does the same for a finished run (``oncofed export-runs``). Both log:

* the resolved config (MLflow params; a TensorBoard text entry);
* every global metric per round (``val/auc``, ``test/auc``, ``privacy/dp-epsilon``;
  step = round);
* every site metric per round (``site/site-00/evaluate/auc``);
* the selected round and ``checkpoints/best.pt`` (an MLflow artifact; a copy next
  to the TensorBoard event files).

MLflow writes a local SQLite store (``DIR/mlflow.db``, artifacts in
``DIR/artifacts``), which MLflow's UI and client read: ``mlflow ui
--backend-store-uri sqlite:///DIR/mlflow.db``. TensorBoard writes event files
under ``DIR/<run name>``: ``tensorboard --logdir DIR``. Both come with the optional
extra ``pip install 'oncofed[tracking]'``; without it the run says so and stops
before round 1.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from oncofed.common.errors import ConfigError
from oncofed.common.reporting.runview import RunView, load_run

TRACKERS = ("none", "mlflow", "tensorboard")
EXPERIMENT = "oncofed"
BEST = Path("checkpoints") / "best.pt"
_NAME = re.compile(r"[^A-Za-z0-9_\-./ ]")


def require(kind: str) -> None:
    """Raise a :class:`ConfigError` naming the extra when ``kind``'s library is
    not installed."""
    module = {"mlflow": "mlflow", "tensorboard": "tensorboard"}.get(kind)
    if module is None:
        return
    try:
        __import__(module)
    except ImportError as err:
        raise ConfigError(
            f"tracking = '{kind}' needs the '{module}' package, which is not "
            f"installed: pip install 'oncofed[tracking]' (or set tracking = 'none')"
        ) from err


def metric_name(*parts: str) -> str:
    """A tracker-safe metric name: ``val``, ``auc@ct+clinical`` ->
    ``val/auc_ct_clinical``."""
    return "/".join(_NAME.sub("_", p.replace("@", "_")) for p in parts)


def rows(view: RunView) -> list[tuple[str, int, float]]:
    """(name, round, value) of every defined metric of the run, global and per site."""
    out = []
    for r in view.globals.itertuples(index=False):
        if r.value is not None and r.value == r.value:
            out.append((metric_name(r.split, r.metric), int(r.round), float(r.value)))
    for r in view.sites.itertuples(index=False):
        if r.value is not None and r.value == r.value:
            name = metric_name("site", r.site, r.phase, r.metric)
            out.append((name, int(r.round), float(r.value)))
    return out


class _Sink:
    """One tracker's run: params once, metrics any time, the model at the end."""

    def params(self, config: dict[str, Any]) -> None: ...
    def metrics(self, items: list[tuple[str, int, float]]) -> None: ...
    def finish(self, view: RunView) -> None: ...


class _MlflowSink(_Sink):
    def __init__(self, out: Path, run_name: str) -> None:
        import mlflow

        out.mkdir(parents=True, exist_ok=True)
        self.uri = f"sqlite:///{(out / 'mlflow.db').resolve()}"
        self.client = mlflow.MlflowClient(tracking_uri=self.uri)
        exp = self.client.get_experiment_by_name(EXPERIMENT)
        exp_id = (
            exp.experiment_id
            if exp is not None
            else self.client.create_experiment(
                EXPERIMENT, artifact_location=(out / "artifacts").resolve().as_uri()
            )
        )
        self.run_id = self.client.create_run(exp_id, run_name=run_name).info.run_id

    def params(self, config: dict[str, Any]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(
            self.run_id,
            params=[Param(k, str(v)[:6000]) for k, v in sorted(config.items())],
        )

    def metrics(self, items: list[tuple[str, int, float]]) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(n, v, now, step) for n, step, v in items]
        for i in range(0, len(batch), 900):  # MLflow takes up to 1000 per batch
            self.client.log_batch(self.run_id, metrics=batch[i : i + 900])

    def finish(self, view: RunView) -> None:
        if view.selected_round is not None:
            self.client.set_tag(self.run_id, "selected_round", str(view.selected_round))
        best = view.run_dir / BEST
        if best.is_file():
            self.client.log_artifact(self.run_id, str(best), "model")
        status = "FINISHED" if view.status == "finished" else "FAILED"
        self.client.set_terminated(self.run_id, status)


class _TensorboardSink(_Sink):
    def __init__(self, out: Path, run_name: str) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.dir = out / run_name
        self.writer = SummaryWriter(log_dir=str(self.dir))

    def params(self, config: dict[str, Any]) -> None:
        text = "\n".join(f"    {k} = {v}" for k, v in sorted(config.items()))
        self.writer.add_text("config", text, 0)

    def metrics(self, items: list[tuple[str, int, float]]) -> None:
        for name, step, value in items:
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def finish(self, view: RunView) -> None:
        best = view.run_dir / BEST
        if best.is_file():
            shutil.copyfile(best, self.dir / "best.pt")
        self.writer.add_text(
            "selected model",
            f"round {view.selected_round} (by validation {view.label}); "
            f"status {view.status}; weights: best.pt beside these event files",
            view.rounds_done,
        )
        self.writer.close()


def _sink(kind: str, out: Path, run_name: str) -> _Sink:
    require(kind)
    if kind == "mlflow":
        return _MlflowSink(out, run_name)
    if kind == "tensorboard":
        return _TensorboardSink(out, run_name)
    raise ConfigError(f"tracking must be one of {', '.join(TRACKERS)}, not {kind!r}")


class Tracker:
    """Follows one live run into ``kind``'s store under ``out``."""

    def __init__(self, kind: str, run_dir: Path, out: Path) -> None:
        self.run_dir = run_dir
        self.sink = _sink(kind, out, run_dir.name)
        self.logged: set[tuple[str, int]] = set()
        self.started = False

    def sync(self) -> RunView:
        """Log what the run store holds that was not logged yet."""
        view = load_run(self.run_dir)
        if not self.started:
            self.sink.params(view.config)
            self.started = True
        new = [r for r in rows(view) if (r[0], r[1]) not in self.logged]
        self.sink.metrics(new)
        self.logged.update((n, s) for n, s, _ in new)
        return view

    def finish(self) -> None:
        self.sink.finish(self.sync())


def export_run(run_dir: Path, kind: str, out: Path) -> int:
    """A finished run into ``kind``'s store under ``out``; the number of values."""
    tracker = Tracker(kind, run_dir, out)
    tracker.finish()
    return len(tracker.logged)
