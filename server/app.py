"""The ServerApp: FedAvg (or FedProx / FedAdam) over the sites, a server-side
validation after every round, the test set once at the end, and everything saved to
the run directory::

    RUN_DIR/<timestamp>-run<id>/config.json     resolved config
    RUN_DIR/<timestamp>-run<id>/run.sqlite      run store (see common.tracking.store)
    RUN_DIR/<timestamp>-run<id>/checkpoints/    best.pt (validation-selected),
                                                last.pt, resume.pt (what
                                                run-config resume-from needs:
                                                server.resume)
    RUN_DIR/<timestamp>-run<id>/provenance.json the data: dataset, synthetic or
                                                not, and the preparation's
                                                report.json (cases per site,
                                                split and label; quarantine)

With run-config ``sweep``, every entry trains in turn and gets its own
``RUN_DIR/<timestamp>-run<id>-sweep<k>/`` (k from 0) with the same contents.
"""

from __future__ import annotations

import json
import time
from functools import lru_cache
from logging import ERROR, INFO, WARNING
from pathlib import Path

from flwr.app import ConfigRecord, Context
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp

from oncofed.common import code_version, keys
from oncofed.common.config import (
    DataConfig,
    OncoFedConfig,
    from_run_config,
    parse_sweep,
    sweep_label,
    sweep_run_config,
)
from oncofed.common.data.prepared import PreparedDataset, open_prepared
from oncofed.common.data.site import SiteData
from oncofed.common.errors import ConfigError
from oncofed.common.ingest import ensure_prepared
from oncofed.common.ingest.prepare import REPORT_JSON
from oncofed.common.ml.harmonise import load_harmonised
from oncofed.common.ml.models import build_model
from oncofed.common.ml.privacy import check_private
from oncofed.common.ml.tasks import get_task
from oncofed.common.ml.training import seed_everything
from oncofed.common.ml.weights import bytes_to_arrays, to_arrays
from oncofed.common.paths import data_roots, default_runs_dir, run_root
from oncofed.common.reporting.export import Tracker
from oncofed.common.tracking.store import RUN_STORE, RunStore
from oncofed.server.evaluation import SafeTracker, ServerEvaluator, XgbEvaluator
from oncofed.server.guard import ReplyGuard
from oncofed.server.resume import Resumed, RoundEnd, RunLock, reopen
from oncofed.server.secure import federate_secure
from oncofed.server.strategies import (
    STRATEGIES,
    RecordingStrategy,
    central_dp,
)

app = ServerApp()


def _under_run_root(
    path: Path, key: str, value: str, fix: str, data: bool = False
) -> Path:
    """``path`` resolved (``..`` and links followed); ConfigError naming the
    run-config key unless it lies under the operator's run root
    (:func:`common.paths.run_root`), or, with ``data``, under one of the
    operator's data roots (:func:`common.paths.data_roots`)."""
    resolved = path.resolve()
    allowed = data_roots() if data else [run_root()]
    if not any(resolved.is_relative_to(root) for root in allowed):
        what = "data roots" if data else "run root"
        shown = ", ".join(str(r) for r in allowed)
        raise ConfigError(
            f"Run-config key '{key}' = {value!r} lies outside the {what} the "
            f"operator set ({shown}). Fix: {fix}."
        )
    return resolved


def check_data_root(cfg: OncoFedConfig) -> None:
    """Run-config ``data-root`` (a folder the run's submitter names, which the
    ServerApp opens for its validation and test sets) must lie under one of the
    operator's data roots."""
    if cfg.data.data_root:
        _under_run_root(
            Path(cfg.data.data_root),
            "data-root",
            cfg.data.data_root,
            "use a prepared folder under them, or ask the operator to add its "
            "parent to ONCOFED_DATA_ROOT where the SuperLink runs (the local "
            "simulation's SuperLink: 'ONCOFED_DATA_ROOT=/parent make setup' "
            "restarts it with that setting)",
            data=True,
        )


def make_run_dir(cfg: OncoFedConfig, run_id: str) -> Path:
    """``run-dir`` (or the default) / ``<timestamp>-run<id>``, refused unless it
    lies under the operator's run root."""
    root = _under_run_root(
        Path(cfg.run.run_dir) if cfg.run.run_dir else default_runs_dir(),
        "run-dir",
        cfg.run.run_dir,
        "give a folder under it, or ask the operator to set ONCOFED_RUN_ROOT "
        "where the SuperLink runs",
    )
    run_dir = root / f"{time.strftime('%Y%m%d-%H%M%S')}-run{run_id}"
    run_dir.mkdir(parents=True, exist_ok=False)
    return run_dir


def site_table(
    last: dict[str, dict[str, float]], task: str = "classification"
) -> list[str]:
    """Final per-site table, one line per site (local validation split)."""
    w = max([10, *(len(s) + 2 for s in last)])
    cols = get_task(task).columns
    head = f"{'n':>5}" + "".join(f"{name:>9}" for name, _ in cols)
    lines = [f"{'site':<{w}}{head}"]
    for site in sorted(last):
        m = last[site]
        n = f"{site:<{w}}{int(m.get(keys.NUM_EXAMPLES, 0)):>5}"
        if m.get(keys.SUPPRESSED):  # the site withheld its metrics: too few cases
            lines.append(f"{n}  suppressed (fewer cases than min-report-n / -class-n)")
            continue
        lines.append(n + "".join(f"{m.get(k, float('nan')):>9.3f}" for _, k in cols))
    return lines


@lru_cache(maxsize=4)  # sweep entries over the same data share the loaded sets
def server_set(data: DataConfig, split: str, masks: bool) -> SiteData:
    """The server's validation (``split='val'``) or test set."""
    folder = open_prepared(data).server_dir(split)
    held = load_harmonised(
        folder, data, splits=(split,), masks=masks, reference_domain=True
    )
    if held.quarantined:
        log(
            WARNING,
            "OncoFed | %d server %s case(s) quarantined",
            len(held.quarantined),
            split,
        )
    return held


@app.main()
def main(grid: Grid, context: Context) -> None:
    """One model, or every entry of ``sweep`` one after the other (each gets its own
    run directory, run-store run and checkpoints, as if it were a run of its own;
    the sites keep their loaded data between entries)."""
    run_config = dict(context.run_config)
    cfg = from_run_config(run_config)
    entries = parse_sweep(cfg.run.sweep)
    if not entries:
        train_model(grid, context, cfg, str(context.run_id), None)
        return
    failed = []
    for k, overrides in enumerate(entries):
        log(
            INFO,
            "OncoFed | sweep entry %d/%d: %s",
            k + 1,
            len(entries),
            " ".join(f"{a}={b}" for a, b in overrides.items()) or "(run defaults)",
        )
        entry_cfg = from_run_config(sweep_run_config(run_config, k))
        try:
            run_id = f"{context.run_id}-{sweep_label(k)}"
            train_model(grid, context, entry_cfg, run_id, k)
        except Exception as err:  # one entry failing must not cost the others
            log(ERROR, "OncoFed | sweep entry %d failed: %r", k + 1, err)
            failed.append(k + 1)
    if failed:
        raise RuntimeError(f"sweep entries {failed} of {len(entries)} failed")


def train_model(
    grid: Grid,
    context: Context,
    cfg: OncoFedConfig,
    run_id: str,
    sweep_index: int | None,
) -> None:
    """Federate one model: initial weights, ``num-server-rounds`` rounds of the
    strategy, server-side evaluation and checkpoints after each. With
    ``resume-from``, an interrupted run's folder is reopened instead and its
    remaining rounds are run (:mod:`server.resume`)."""
    resumed: Resumed | None = None
    if cfg.run.resume_from:
        folder = _under_run_root(
            Path(cfg.run.resume_from),
            "resume-from",
            cfg.run.resume_from,
            "give a run folder under it",
        )
        lock = RunLock(folder)  # refused while another ServerApp serves it
        try:
            resumed, cfg = reopen(cfg, folder, str(context.run_id))
        except BaseException:
            lock.release()
            raise
        run_dir, run_id, store = resumed.run_dir, resumed.run_id, resumed.store
        log(
            INFO,
            "OncoFed | resuming run %s after round %d of %d",
            run_id,
            resumed.state.round,
            cfg.federation.num_server_rounds,
        )
    else:
        run_dir = make_run_dir(cfg, run_id)
        lock = RunLock(run_dir)
        (run_dir / "config.json").write_text(json.dumps(cfg.to_flat(), indent=2))
        store = RunStore(run_dir / RUN_STORE)
        store.start_run(run_id, run_dir.name, cfg.to_flat())
    log(INFO, "OncoFed | run directory: %s", run_dir)
    status = "failed"
    tracker = None
    try:
        tracker = _tracker(cfg, run_dir)
        _federate(
            grid, context, cfg, store, run_id, run_dir, sweep_index, tracker, resumed
        )
        status = "finished"
    finally:
        store.finish_run(run_id, status)
        if tracker is not None:
            tracker.finish()
        lock.release()
    log(INFO, "OncoFed | run directory: %s", run_dir)


def _tracker(cfg: OncoFedConfig, run_dir: Path) -> SafeTracker | None:
    """run-config ``tracking``: the run also logged to MLflow or TensorBoard in
    the run folder (refused before round 1 when the extra is not installed)."""
    kind = cfg.run.tracking
    if kind == "none":
        return None
    tracker = SafeTracker(Tracker(kind, run_dir, run_dir / kind))
    log(INFO, "OncoFed | tracking: %s in %s", kind, run_dir / kind)
    return tracker


def _federate(
    grid: Grid,
    context: Context,
    cfg: OncoFedConfig,
    store: RunStore,
    run_id: str,
    run_dir: Path,
    sweep_index: int | None,
    tracker: SafeTracker | None = None,
    resumed: Resumed | None = None,
) -> None:
    """Prepare (the embedded default only), evaluate, federate, report."""
    # the sites apply the same sweep entry to their own copy of the run config
    # (and where each site keeps its own state for this run: client.state)
    to_sites = ConfigRecord(
        {keys.RUN_LINEAGE: run_id}
        if sweep_index is None
        else {keys.SWEEP_INDEX: sweep_index, keys.RUN_LINEAGE: run_id}
    )
    check_data_root(cfg)
    # the one preparation step at run time: a scenario's embedded synthetic
    # default is written (once, cached) before round 1, so the sites find it
    dataset = ensure_prepared(cfg.data)
    if resumed is None:
        write_provenance(cfg, dataset, run_dir)
    evaluator, input_dims = _evaluator(cfg, store, run_id, run_dir)
    evaluator.tracker = tracker
    if cfg.privacy.per_example:  # refuse a model DP-SGD cannot train, now
        check_private(cfg, evaluator.val, input_dims)
    strategy = _strategy(cfg, store, run_id, len(dataset.sites))
    rounds = cfg.federation.num_server_rounds
    log(
        INFO,
        "OncoFed | strategy: %s (%s), %d rounds",
        cfg.federation.strategy,
        type(strategy.inner).__name__,
        rounds,
    )
    _warn_if_too_few_nodes(grid, cfg, len(dataset.sites))
    round_end = RoundEnd(evaluator, strategy, resumed)  # validation, resume.pt
    if resumed is None:
        initial = _initial_arrays(cfg, input_dims)
    else:
        initial = resumed.state.global_arrays()
    sites = strategy.sites
    if cfg.privacy.secure_aggregation:  # SecAgg+: Flower's legacy workflow
        log(
            INFO, "OncoFed | secure aggregation: SecAgg+ (the server unmasks sums only)"
        )
        sites = federate_secure(
            grid, context, cfg, evaluator, store, run_id, initial, dict(to_sites),
            strategy.guard,
        )  # fmt: skip
    elif rounds > round_end.offset:
        round_end.restore_random_state()  # resumed: as the last round left them
        strategy.start(
            grid=grid,
            initial_arrays=initial,
            num_rounds=rounds - round_end.offset,  # Flower counts them from 1
            timeout=cfg.federation.round_timeout,
            train_config=to_sites,
            evaluate_config=to_sites,
            evaluate_fn=round_end,
        )
    _log_site_table(sites.last.get("evaluate", {}), cfg)
    selection = evaluator.finish()  # the only time the test set is read
    if selection is not None:
        log(INFO, "OncoFed | %s", selection.line())


def write_provenance(
    cfg: OncoFedConfig, dataset: PreparedDataset, run_dir: Path
) -> None:
    """``provenance.json``: what the run trained and was scored on, for the
    dashboard and the report's model card."""
    report_path = dataset.root / REPORT_JSON
    try:
        report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    except (OSError, ValueError) as err:  # the run goes on without it
        log(WARNING, "OncoFed | %s unreadable (%s): no provenance", report_path, err)
        report = {}
    provenance = {
        "dataset": cfg.data.dataset,
        "synthetic": not cfg.data.data_root,  # the embedded default is generated
        "sites": list(dataset.sites),
        "code": code_version(),
        "preparation": report,
    }
    (run_dir / "provenance.json").write_text(json.dumps(provenance, indent=2))


def _strategy(
    cfg: OncoFedConfig, store: RunStore, run_id: str, sites: int
) -> RecordingStrategy:
    """The run's strategy (dp 'central': inside Flower's DP wrapper, every site
    weighted alike), recording every reply."""
    fed = cfg.federation
    guard = ReplyGuard.from_config(
        fed, store, run_id, structural=cfg.model.family != "xgboost"
    )
    guard.masked = cfg.privacy.secure_aggregation  # no update in the clear
    if cfg.privacy.dp != "central":
        extra = {"sites": sites} if fed.strategy == "multikrum" else {}
        inner = STRATEGIES.create(fed.strategy, cfg=fed, **extra)
        return RecordingStrategy(
            inner, store, run_id, guard=guard, min_sites=fed.min_sites
        )
    fedavg = STRATEGIES.create("fedavg", cfg=fed, weighted_by_key=keys.UNIT_WEIGHT)
    expected = max(fed.min_sites, int(sites * fed.fraction_train))
    return RecordingStrategy(
        central_dp(fedavg, cfg.privacy, expected),
        store,
        run_id,
        cfg.privacy,
        guard=guard,
        min_sites=fed.min_sites,
    )


def _evaluator(
    cfg: OncoFedConfig, store: RunStore, run_id: str, run_dir: Path
) -> tuple[ServerEvaluator, dict[str, int]]:
    """The server-side evaluator over the validation and test sets, and the
    tabular input sizes the model is built with."""
    masks = get_task(cfg.model.task).needs_masks
    val = server_set(cfg.data, "val", masks)
    test = server_set(cfg.data, "test", masks)
    kind = XgbEvaluator if cfg.model.family == "xgboost" else ServerEvaluator
    evaluator = kind(
        cfg,
        val.split("val"),
        test.split("test"),
        test.input_dims,
        store,
        run_id,
        run_dir / "checkpoints",
        cfg.federation.num_server_rounds,
    )
    return evaluator, test.input_dims


def _initial_arrays(cfg: OncoFedConfig, input_dims: dict[str, int]):
    """The global model of round 0: the same for the same config (seeded)."""
    if cfg.model.family == "xgboost":
        return bytes_to_arrays(b"")
    for modality, file in cfg.model.pretrained_files.items():
        _under_run_root(
            Path(file),
            "pretrained",
            f"{modality}={file}",
            "copy the encoder under it (a pretraining run writes "
            "checkpoints/ct-encoder.pt there)",
        )
    seed_everything(cfg.data.seed)
    return to_arrays(
        build_model(
            cfg.model,
            cfg.data.image_depth,
            input_dims,
            private=cfg.privacy.per_example,
        )
    )


def _warn_if_too_few_nodes(grid: Grid, cfg: OncoFedConfig, n_sites: int) -> None:
    nodes = len(list(grid.get_node_ids()))
    if nodes < n_sites:
        log(
            WARNING,
            "OncoFed | %d SuperNode(s) connected but dataset '%s' has %d sites: "
            "only the first %d train. In simulation, set the site count once with "
            "'flwr federation simulation-config --num-supernodes %d' (make setup "
            "does this for the default 7).",
            nodes,
            cfg.data.dataset,
            n_sites,
            nodes,
            n_sites,
        )


def _log_site_table(evaluated: dict[str, dict[str, float]], cfg: OncoFedConfig) -> None:
    if not evaluated:
        log(INFO, "OncoFed | no per-site evaluation (fraction-evaluate = 0)")
        return
    log(
        INFO,
        "OncoFed | per-site evaluation after round %d (local validation splits):",
        cfg.federation.num_server_rounds,
    )
    for line in site_table(evaluated, cfg.model.task):
        log(INFO, "OncoFed |   %s", line)
