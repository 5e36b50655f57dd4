"""``oncofed harmonise-preview``: a site's CT slices before and after
harmonisation, with the liver contour, for the site's own eyes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add(sub: argparse._SubParsersAction) -> None:
    """Register the subcommand on the ``oncofed`` parser."""
    p = sub.add_parser(
        "harmonise-preview",
        help="a site's CT before/after harmonisation, as a PNG (stays at the site)",
        description="Fit a harmonisation method on the site's training scans and "
        "its reference/ cohort, as a federated run would, and draw a few of its "
        "scans' middle slices before and after, with the liver contour and the "
        "guard-rail verdict. The picture shows patient images: keep it at the site.",
    )
    p.add_argument("site_dir", help="a prepared site folder holding reference/")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument(
        "--method", default="histogram", help="histogram, zscore or cyclegan"
    )
    p.add_argument("--cases", type=int, default=4, help="scans to show (4)")
    p.add_argument("--image-size", type=int, default=32, help="grid side (32)")
    p.add_argument("--steps", type=int, default=1500, help="cyclegan updates (1500)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from oncofed.common.config import from_run_config
    from oncofed.common.ml.harmonise import preview

    site = Path(args.site_dir)
    if not (site / "manifest.csv").is_file():
        print(f"oncofed harmonise-preview: {site} is not a prepared site folder",
              file=sys.stderr)  # fmt: skip
        return 2
    cfg = from_run_config(
        {
            "harmonise": args.method,
            "ct-roi": "liver",
            "image-size": args.image_size,
            "harmonise-steps": args.steps,
        }
    ).data
    verdict = preview(site, cfg, Path(args.out), args.cases)
    print(f"wrote {args.out}: {verdict}")
    return 0
