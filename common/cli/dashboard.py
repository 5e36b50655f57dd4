"""``oncofed dashboard``: the runs under a folder in the browser, live."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add(sub: argparse._SubParsersAction) -> None:
    """Register the subcommand on the ``oncofed`` parser."""
    p = sub.add_parser(
        "dashboard",
        help="watch runs in the browser (server-side evaluation dashboard)",
        description="Serve a read-only dashboard over every run folder under "
        "RUNS_DIR: the runs table, and per run its global and per-site curves, "
        "fairness, ROC / calibration / confusion, modality weights, DP epsilon, "
        "quarantine, config and data provenance. Panels refresh every 2 s. Works "
        "offline. Binding beyond 127.0.0.1 needs --token or --token-file.",
    )
    p.add_argument(
        "runs_dir",
        nargs="?",
        help="folder holding run folders (default: ONCOFED_HOME's runs folder)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    p.add_argument("--port", type=int, default=8050, help="port (8050)")
    p.add_argument("--token", help="required on every request (needed off loopback)")
    p.add_argument("--token-file", help="read the token from this file instead")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from oncofed.common.paths import default_runs_dir
    from oncofed.common.reporting.dashboard import read_token, serve

    root = Path(args.runs_dir) if args.runs_dir else default_runs_dir()
    if not root.is_dir():
        print(f"oncofed dashboard: {root} is not a folder", file=sys.stderr)
        return 2
    try:
        token = read_token(args.token, args.token_file)
        print(
            f"OncoFed dashboard over {root}: http://{args.host}:{args.port}/"
            + ("?token=..." if token else ""),
            flush=True,
        )
        serve(root, args.host, args.port, token)
    except (PermissionError, ValueError, OSError) as err:
        print(f"oncofed dashboard: {err}", file=sys.stderr)
        return 2
    return 0
