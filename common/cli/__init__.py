"""``oncofed``: the command line. Federated runs themselves start with ``flwr run``.

Subcommands: ``generate`` (write the synthetic virtual hospitals), ``show`` (print a
run's metrics from its run store), ``config`` (every run-config key with its
default), ``prepare`` (a dataset into site folders), ``export`` (ONNX), ``ablate``
(modalities x fusion x local/pooled/federated with confidence intervals),
``dashboard`` (runs in the browser, live), ``report`` (PDF / HTML),
``export-runs`` (MLflow / TensorBoard), ``harmonise-preview`` (before/after CT),
``resume`` (an interrupted run), ``certs`` (a consortium's TLS certificates and
SuperNode keys), ``score`` (a global model on one site's data).
"""

from __future__ import annotations

import argparse
import sys

from oncofed.common import __version__
from oncofed.common.cli import (
    ablate,
    certs,
    config_keys,
    dashboard,
    export,
    export_runs,
    generate,
    harmonise_preview,
    prepare,
    report,
    resume,
    score,
    show,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="oncofed",
        description="OncoFed: federated multimodal liver-cancer detection. "
        "Start a federated run with: flwr run simulations/lits_sites --stream",
    )
    p.add_argument("--version", action="version", version=f"oncofed {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for command in (
        generate,
        show,
        dashboard,
        report,
        prepare,
        export,
        export_runs,
        ablate,
        resume,
        config_keys,
        certs,
        harmonise_preview,
        score,
    ):
        command.add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from oncofed.common.errors import OncoFedError

    try:
        return int(args.func(args))
    except OncoFedError as err:
        print(f"oncofed: {err}", file=sys.stderr)
        return 2
