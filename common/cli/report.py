"""``oncofed report``: a run's or an ablation's summary as PDF and/or HTML."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add(sub: argparse._SubParsersAction) -> None:
    """Register the subcommand on the ``oncofed`` parser."""
    p = sub.add_parser(
        "report",
        help="write a run's (or an ablation's) report as PDF and/or HTML",
        description="The summary a clinical partner reads: selection and test "
        "figures, metric charts, ROC / calibration / confusion, per-site and "
        "fairness tables, modality weights, privacy and epsilon per site, "
        "quarantine, and a model card. FOLDER is a run folder (run.sqlite) or an "
        "'oncofed ablate' output folder (ablation.csv).",
    )
    p.add_argument("folder", help="run folder or 'oncofed ablate' output folder")
    p.add_argument("--out", help="PDF to write (default FOLDER/report.pdf)")
    p.add_argument("--html", help="also (or only, with --no-pdf) write this HTML file")
    p.add_argument("--no-pdf", action="store_true", help="write the HTML only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from oncofed.common.reporting.report import write

    folder = Path(args.folder)
    if not folder.is_dir():
        print(f"oncofed report: {folder} is not a folder", file=sys.stderr)
        return 2
    pdf = None if args.no_pdf else Path(args.out or folder / "report.pdf")
    html = Path(args.html) if args.html else None
    if pdf is None and html is None:
        print("oncofed report: --no-pdf needs --html FILE", file=sys.stderr)
        return 2
    try:
        write(folder, pdf, html)
    except (FileNotFoundError, ValueError) as err:
        print(f"oncofed report: {err}", file=sys.stderr)
        return 2
    for out in (pdf, html):
        if out is not None:
            print(f"wrote {out}")
    return 0
