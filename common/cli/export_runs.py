"""``oncofed export-runs``: finished runs into MLflow or TensorBoard."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add(sub: argparse._SubParsersAction) -> None:
    """Register the subcommand on the ``oncofed`` parser."""
    p = sub.add_parser(
        "export-runs",
        help="log finished runs to a local MLflow store or TensorBoard files",
        description="Log every run folder at or under RUN_DIR (config, per-round "
        "global and per-site metrics, the selected model) to a local MLflow store "
        "(DIR/mlflow.db; view with: mlflow ui --backend-store-uri "
        "sqlite:///DIR/mlflow.db) or to TensorBoard event files (view with: "
        "tensorboard --logdir DIR). Needs pip install 'oncofed[tracking]'.",
    )
    p.add_argument("run_dir", help="a run folder, or a folder of run folders")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--mlflow", metavar="DIR", help="MLflow store folder")
    where.add_argument("--tensorboard", metavar="DIR", help="TensorBoard log folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from oncofed.common.reporting.export import export_run, require
    from oncofed.common.reporting.runview import find_runs

    kind, out = (
        ("mlflow", args.mlflow) if args.mlflow else ("tensorboard", args.tensorboard)
    )
    require(kind)  # a ConfigError naming the extra when it is missing
    runs = find_runs(Path(args.run_dir))
    if not runs:
        print(
            f"oncofed export-runs: no run folder at or under {args.run_dir}",
            file=sys.stderr,
        )
        return 2
    for run_dir in runs:
        n = export_run(run_dir, kind, Path(out))
        print(f"{run_dir.name}: {n} values -> {kind} {out}")
    return 0
