"""``oncofed ablate``: modalities x fusion x local / pooled / federated."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add(sub: argparse._SubParsersAction) -> None:
    """Register the subcommand on the ``oncofed`` parser."""
    p = sub.add_parser(
        "ablate",
        help="modalities x fusion x local/pooled/federated, with 95%% CIs",
        description="Train each single modality and early, late and "
        "cross-attention fusion, each site alone, all sites pooled and as a real "
        "Flower federation; score all on the same test set with paired bootstrap "
        "95 % intervals (AUC, F1, accuracy); add leave-one-site-out external "
        "validation. Writes OUT/ablation.csv, ablation.md and ablation.png "
        "(rewritten after every model, so an interrupted run keeps its results).",
    )
    p.add_argument(
        "--scenario",
        default="lits_sites",
        help="a Flower app under simulations/ or an app folder (lits_sites)",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--rounds",
        type=int,
        help="federated rounds (8); local-only "
        "and pooled models train rounds x local-epochs epochs",
    )
    p.add_argument("--local-epochs", type=int, help="(2)")
    p.add_argument(
        "--regimes",
        default="local,same-size-mix,pooled,federated",
        help="comma-separated subset of local, same-size-mix (per site: a model "
        "trained on as many cases as that site has, drawn from every site), pooled, "
        "federated (default: all four)",
    )
    p.add_argument(
        "--fusions",
        default="concat,late_mean,transformer",
        help="fusion heads to compare: early (concat), late (late_mean, "
        "late_stacked), cross-attention (transformer); default "
        "concat,late_mean,transformer",
    )
    p.add_argument(
        "--loso",
        default="pooled",
        choices=("pooled", "federated", "none"),
        help="leave-one-site-out models train pooled on the other sites (default, "
        "fast), as a Flower federation of the other sites, or not at all",
    )
    p.add_argument(
        "--loso-arms",
        default="best",
        help="leave-one-site-out for the best single-modality and best fusion "
        "arm (default), for every arm (all), or for the arms named, comma-"
        "separated, by modality or fusion head (e.g. ct,clinical,concat)",
    )
    p.add_argument(
        "--bootstrap", type=int, default=1000, help="bootstrap resamples (1000)"
    )
    p.add_argument(
        "--connection",
        help="Flower connection for the federated runs (default: the local simulation)",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a run-config key of the scenario, e.g. --set "
        "learning-rate=0.003 (repeatable)",
    )
    p.add_argument(
        "--seeds",
        help="comma-separated run-config seeds, e.g. 2024,2025,2026: one ablation "
        "per seed (OUT/seed-<s>/), then OUT/ablation.md with mean ± sd over seeds "
        "and, per finding, in how many seeds it wins (default: the scenario's one "
        "seed)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import shlex

    from oncofed.common.experiments.ablation import AblationOptions, run_ablation
    from oncofed.common.experiments.ablation.plan import parse_overrides

    budget = {"rounds": args.rounds, "local_epochs": args.local_epochs}
    opts = AblationOptions(
        scenario=args.scenario,
        out=Path(args.out).resolve(),
        **{k: v for k, v in budget.items() if v is not None},  # else the defaults
        regimes=tuple(r.strip() for r in args.regimes.split(",") if r.strip()),
        fusions=tuple(f.strip() for f in args.fusions.split(",") if f.strip()),
        loso=args.loso,
        loso_arms=args.loso_arms,
        bootstrap=args.bootstrap,
        connection=args.connection or "",
        overrides=parse_overrides(args.set or []),
        command=shlex.join(["oncofed", *sys.argv[1:]]),
        seeds=_seeds(args.seeds),
    )
    try:
        report = run_ablation(opts)
    except KeyboardInterrupt:
        print(
            f"\noncofed ablate: interrupted; what finished is in {opts.out}",
            file=sys.stderr,
        )
        return 130
    print(f"\n{report.read_text().split('## AUC')[0].strip()}\n")
    print(f"report: {report}\ntable:  {report.with_suffix('.csv')}")
    return 0


def _seeds(text: str | None) -> tuple[int, ...]:
    from oncofed.common.errors import ConfigError

    if not text:
        return ()
    try:
        seeds = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise ConfigError(
            f"--seeds {text!r}: expected comma-separated integers, e.g. 2024,2025,2026"
        ) from None
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {text!r}: a seed is listed twice")
    return seeds
