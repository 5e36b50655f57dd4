"""``oncofed``: the command line. Federated runs themselves start with ``flwr run``.

Subcommands: ``generate`` (write the synthetic virtual hospitals), ``show`` (print a
run's metrics from its run store), ``config`` (every run-config key with its
default), ``prepare`` (a dataset into site folders), ``export`` (ONNX), ``ablate``
(modalities x fusion x local/pooled/federated with confidence intervals).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import __version__


def _generate(args: argparse.Namespace) -> int:
    from common.config import DataConfig
    from common.datasets import open_dataset
    from common.datasets.synthetic import SyntheticSpec, write_atomically

    if args.out:
        spec = SyntheticSpec(num_sites=args.num_sites, seed=args.seed)
        root = write_atomically(spec, Path(args.out).resolve())
    else:
        root = open_dataset(DataConfig(num_sites=args.num_sites, seed=args.seed)).root
    print(root)
    return 0


def _show(args: argparse.Namespace) -> int:
    from common.store import RUN_STORE, TEST, VAL, RunStore

    path = Path(args.run_dir)
    path = path / RUN_STORE if path.is_dir() else path
    if not path.is_file():
        print(f"{path}: no run store here (expected {RUN_STORE})", file=sys.stderr)
        return 2
    store = RunStore(path)
    g = store.global_frame()
    if g.empty:
        print("no global metrics recorded yet")
        return 0
    val, test = g[g.split == VAL], g[g.split == TEST]
    print("Server-side validation per round (chooses the model):")
    main = val[~val.metric.str.contains("@")]
    print(
        main.pivot_table(index="round", columns="metric", values="value")
        .round(3)
        .to_string()
    )
    extra = val[val.metric.str.contains("@") & (val["round"] == val["round"].max())]
    if not extra.empty:
        print(
            f"\nRound {int(val['round'].max())} by available modalities "
            "(metric@subset) and mean fusion weight per modality (weight@m):"
        )
        print(extra.set_index("metric")["value"].round(3).to_string())
    selected = {r: store.selected_round(r) for r in store.runs().run_id}
    if not test.empty:
        chosen = ", ".join(str(r) for r in selected.values() if r is not None)
        print(
            f"\nTest set (read once, after training): the selected round "
            f"({chosen}) and the last round:"
        )
        main = test[~test.metric.str.contains("@")]
        print(
            main.pivot_table(index="round", columns="metric", values="value")
            .round(3)
            .to_string()
        )
    s = store.site_frame()
    ev = s[s.phase == "evaluate"]
    if not ev.empty:
        last = ev[ev["round"] == ev["round"].max()]
        print(
            f"\nPer-site evaluation, round {int(last['round'].max())} "
            "(local validation splits):"
        )
        print(
            last.pivot_table(index="site", columns="metric", values="value")
            .round(3)
            .to_string()
        )
    return 0


def _config(args: argparse.Namespace) -> int:
    from common.config import KEYS, OncoFedConfig, from_run_config

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


def _prepare(args: argparse.Namespace) -> int:
    from common.datasets.prepare import PrepareOptions, prepare
    from common.errors import OncoFedError

    opts = PrepareOptions(
        partition=args.partition,
        num_sites=args.num_sites,
        alpha=args.alpha,
        seed=args.seed,
        test_fraction=args.test_fraction,
        val_fraction=args.val_fraction,
        site_map=args.site_map,
        min_site_cases=args.min_site_cases,
        label_column=args.label_column,
    )
    out = Path(args.out).resolve()
    try:
        if args.root is None:
            if not args.dataset.startswith("synthetic"):
                print(
                    f"oncofed prepare: --root is required for {args.dataset}",
                    file=sys.stderr,
                )
                return 2
            from common.config import DataConfig
            from common.datasets import open_dataset

            args.root = open_dataset(DataConfig(dataset=args.dataset)).root
        report = prepare(args.dataset, Path(args.root), out, opts, not args.quiet)
    except OncoFedError as err:
        print(f"oncofed prepare: {err}", file=sys.stderr)
        return 2
    print(
        f"{report['cases_kept']} case(s) in {len(report['sites'])} site(s); "
        f"{report['cases_quarantined']} patient(s) and "
        f"{report['files_quarantined']} entr(y/ies) quarantined"
    )
    for site, info in report["sites"].items():
        print(
            f"  {site:<28} {info['cases']:>5} cases ({info['train']} train, "
            f"{info['val']} validation, {info['test']} test)"
        )
    print(f"report: {out / 'report.md'}")
    print(f"prepared dataset: {out}")
    return 0


def _export(args: argparse.Namespace) -> int:

    from common.data.site import load_site
    from common.datasets import open_dataset
    from common.export import export_onnx, max_abs_difference
    from common.models import load_checkpoint
    from common.training import make_loader

    run_dir = Path(args.run_dir)
    ckpt_path = run_dir / "checkpoints" / f"{args.checkpoint}.pt"
    if not ckpt_path.is_file():
        print(f"{ckpt_path}: no checkpoint (is this a run directory?)", file=sys.stderr)
        return 2
    model, cfg, ckpt = load_checkpoint(ckpt_path)
    # the parity check reads validation cases: exporting never touches the test set
    val = load_site(open_dataset(cfg.data).server_val_dir, cfg.data, ("val",))
    batch = next(iter(make_loader(val.split("val")[:16], 16, shuffle=False)))
    out = export_onnx(model, batch, args.out)
    diff = max_abs_difference(model, out, batch)
    chosen = "chosen by " + ckpt["selected_by"] if "selected_by" in ckpt else ""
    print(
        f"wrote {out} (round {ckpt['round']} model{', ' + chosen if chosen else ''})"
        f"; ONNX Runtime vs PyTorch on {len(batch['label'])} server validation "
        f"cases: max |difference| {diff:.2e}"
    )
    return 0 if diff <= 1e-4 else 1


def _ablate(args: argparse.Namespace) -> int:
    import shlex

    from common.ablation import AblationOptions, run_ablation
    from common.ablation.plan import parse_overrides

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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="oncofed",
        description="OncoFed: federated multimodal liver-cancer detection. "
        "Start a federated run with: flwr run simulations/lits_sites --stream",
    )
    p.add_argument("--version", action="version", version=f"oncofed {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    g = sub.add_parser(
        "generate",
        help="write the synthetic virtual hospitals (cached) and print the folder",
        description="Write the seeded synthetic hospitals in real formats (NIfTI CT "
        "+ LiTS label maps, clinical TSV, manifests). Without --out they go to the "
        "cache ($ONCOFED_HOME/data) that runs use.",
    )
    g.add_argument("--out", help="write here instead of the cache")
    g.add_argument("--num-sites", type=int, default=7, help="virtual hospitals (7)")
    g.add_argument("--seed", type=int, default=2024, help="master seed (2024)")
    g.set_defaults(func=_generate)

    s = sub.add_parser(
        "show",
        help="print a run's metrics from its run store",
        description="Print per-round server-side metrics and the last per-site "
        "table of a run directory (or its run.sqlite).",
    )
    s.add_argument("run_dir", help="run directory, as the run's last log line says")
    s.set_defaults(func=_show)

    from common.datasets import DATASETS, _import_builtin

    _import_builtin()
    pr = sub.add_parser(
        "prepare",
        help="turn a dataset's source files into per-site folders plus a report",
        description="Read a dataset as downloaded (files recognised by content), "
        "split it into sites (natural split by default), and write one folder per "
        "site with manifest.csv, plus report.json and report.md listing cases per "
        "site x modality x label, missingness and every quarantined file with its "
        "reason. Bad files never stop it; an unusable --root does.",
    )
    pr.add_argument(
        "dataset",
        choices=DATASETS.names(),
        metavar="DATASET",
        help="one of: " + ", ".join(DATASETS.names()),
    )
    pr.add_argument(
        "--root",
        help="the dataset's download folder (synthetic: a folder from 'oncofed "
        "generate --out'; default: the cached hospitals)",
    )
    pr.add_argument("--out", required=True, help="output folder (new or empty)")
    pr.add_argument(
        "--partition",
        default="natural",
        choices=("natural", "dirichlet", "quantity"),
        help="natural sites (default), Dirichlet label skew, or "
        "Dirichlet quantity skew",
    )
    pr.add_argument(
        "--num-sites",
        type=int,
        default=5,
        help="sites for dirichlet/quantity partitions (5)",
    )
    pr.add_argument(
        "--alpha",
        type=float,
        default=0.5,
        help="Dirichlet concentration; smaller = more skew (0.5)",
    )
    pr.add_argument("--seed", type=int, default=2024, help="seed (2024)")
    pr.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        help="per-site test share where the dataset has no split (0.2)",
    )
    pr.add_argument(
        "--val-fraction",
        type=float,
        default=0.15,
        help="per-site validation share, carved from the non-test cases; it "
        "chooses models, the test split only scores them (0.15)",
    )
    pr.add_argument(
        "--site-map",
        help="CSV with 'TSS Code' and 'Region' columns "
        "grouping TCGA tissue-source sites into regions",
    )
    pr.add_argument(
        "--min-site-cases",
        type=int,
        default=20,
        help="natural sites smaller than this are pooled (20)",
    )
    pr.add_argument(
        "--label-column",
        help="imaging datasets: take the binary label from this column "
        "of the clinical table instead of the tumour mask",
    )
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    pr.set_defaults(func=_prepare)

    ex = sub.add_parser(
        "export",
        help="export a run's model to ONNX and check it against PyTorch",
        description="Write the run's validation-selected (or last) global model as "
        "ONNX for CPU deployment with ONNX Runtime, then compare ONNX Runtime with "
        "PyTorch on server validation cases (exit 1 if any probability differs by "
        "more than 1e-4).",
    )
    ex.add_argument("run_dir", help="run directory, as the run's last log line says")
    ex.add_argument("--out", required=True, help="the .onnx file to write")
    ex.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        default="best",
        help="which global model: best = the round with the best validation "
        "metric (default), last = the last round",
    )
    ex.set_defaults(func=_export)

    ab = sub.add_parser(
        "ablate",
        help="modalities x fusion x local/pooled/federated, with 95%% CIs",
        description="Train each single modality and early, late and "
        "cross-attention fusion, each site alone, all sites pooled and as a real "
        "Flower federation; score all on the same test set with paired bootstrap "
        "95 % intervals (AUC, F1, accuracy); add leave-one-site-out external "
        "validation. Writes OUT/ablation.csv, ablation.md and ablation.png "
        "(rewritten after every model, so an interrupted run keeps its results).",
    )
    ab.add_argument(
        "--scenario",
        default="lits_sites",
        help="a Flower app under simulations/ or an app folder (lits_sites)",
    )
    ab.add_argument("--out", required=True, help="output folder")
    ab.add_argument(
        "--rounds",
        type=int,
        help="federated rounds (8); local-only "
        "and pooled models train rounds x local-epochs epochs",
    )
    ab.add_argument("--local-epochs", type=int, help="(2)")
    ab.add_argument(
        "--regimes",
        default="local,pooled,federated",
        help="comma-separated subset of local,pooled,federated (all three)",
    )
    ab.add_argument(
        "--fusions",
        default="concat,late_mean,transformer",
        help="fusion heads to compare: early (concat), late (late_mean, "
        "late_stacked), cross-attention (transformer); default "
        "concat,late_mean,transformer",
    )
    ab.add_argument(
        "--loso",
        default="pooled",
        choices=("pooled", "federated", "none"),
        help="leave-one-site-out models train pooled on the other sites (default, "
        "fast), as a Flower federation of the other sites, or not at all",
    )
    ab.add_argument(
        "--loso-arms",
        default="best",
        choices=("best", "all"),
        help="leave-one-site-out for the best single-modality and best fusion "
        "arm (default) or for every arm",
    )
    ab.add_argument(
        "--bootstrap", type=int, default=1000, help="bootstrap resamples (1000)"
    )
    ab.add_argument(
        "--connection",
        help="Flower connection for the federated runs (default: the local simulation)",
    )
    ab.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a run-config key of the scenario, e.g. --set "
        "learning-rate=0.003 (repeatable)",
    )
    ab.set_defaults(func=_ablate)

    c = sub.add_parser(
        "config",
        help="list every run-config key with its default, or check a preset",
        description="List the run-config keys accepted by --run-config, or check "
        "a TOML preset (Flower refuses an unknown key without naming it; this "
        "names it and suggests the closest).",
    )
    c.add_argument("--check", metavar="TOML", help="validate this preset file")
    c.set_defaults(func=_config)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from common.errors import OncoFedError

    try:
        return int(args.func(args))
    except OncoFedError as err:
        print(f"oncofed: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
