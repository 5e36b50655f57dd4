"""``oncofed config``: list the run-config keys, or check a preset."""

from __future__ import annotations

import argparse
from pathlib import Path


def add(sub: argparse._SubParsersAction) -> None:
    """Register the subcommand on the ``oncofed`` parser."""
    p = sub.add_parser(
        "config",
        help="list every run-config key with its default, or check a preset",
        description="List the run-config keys accepted by --run-config, or check "
        "a TOML preset (Flower refuses an unknown key without naming it; this "
        "names it and suggests the closest).",
    )
    p.add_argument("--check", metavar="TOML", help="validate this preset file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from oncofed.common.config import KEYS, OncoFedConfig, from_run_config

    if args.check:
        import tomllib

        from_run_config(tomllib.loads(Path(args.check).read_text()))
        print(f"{args.check}: every key is known and every value valid")
        return 0
    default = OncoFedConfig()
    for key, (section, f) in sorted(KEYS.items()):
        value = getattr(getattr(default, section), f.name)
        print(f"{key:<22} {value!r:<14} {f.metadata['doc']}")
    return 0
