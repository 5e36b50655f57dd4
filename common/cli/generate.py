"""``oncofed generate``: write synthetic hospitals, or a scenario's embedded default.

Without ``--out`` it writes what a run with no ``data-root`` opens (the cached
embedded default of ``--dataset`` for that site count and seed); the ServerApp
would otherwise write it before round 1.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add(sub: argparse._SubParsersAction) -> None:
    """Register the subcommand on the ``oncofed`` parser."""
    p = sub.add_parser(
        "generate",
        help="write the synthetic virtual hospitals (cached) and print the folder",
        description="Write the seeded synthetic hospitals in real formats (NIfTI CT "
        "+ LiTS label maps, clinical TSV, manifests), or any scenario's embedded "
        "default (--dataset). Without --out they go to the cache "
        "($ONCOFED_HOME/data) that runs with no data-root open.",
    )
    p.add_argument(
        "--dataset",
        default="synthetic",
        help="whose embedded default to write (synthetic); with --out: synthetic "
        "or synthetic_multimodal",
    )
    p.add_argument("--out", help="write here instead of the cache")
    p.add_argument("--num-sites", type=int, default=7, help="virtual hospitals (7)")
    p.add_argument("--seed", type=int, default=2024, help="master seed (2024)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from oncofed.common.config import DataConfig
    from oncofed.common.ingest import ensure_prepared
    from oncofed.common.ingest.synthetic import (
        MULTIMODAL_NAME,
        SyntheticSpec,
        write_atomically,
    )

    if args.out:
        spec = SyntheticSpec(
            num_sites=args.num_sites,
            seed=args.seed,
            histology=args.dataset == MULTIMODAL_NAME,
        )
        root = write_atomically(spec, Path(args.out).resolve())
    else:
        cfg = DataConfig(dataset=args.dataset, num_sites=args.num_sites, seed=args.seed)
        root = ensure_prepared(cfg).root
    print(root)
    return 0
