"""``oncofed prepare``: a dataset's source files into prepared site folders."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add(sub: argparse._SubParsersAction) -> None:
    """Register the subcommand on the ``oncofed`` parser."""
    from oncofed.common.ingest import DATASETS, _import_builtin

    _import_builtin()
    p = sub.add_parser(
        "prepare",
        help="turn a dataset's source files into per-site folders plus a report",
        description="Read a dataset as downloaded (files recognised by content), "
        "split it into sites (natural split by default), and write one folder per "
        "site with manifest.csv, plus report.json and report.md listing cases per "
        "site x modality x label, missingness and every quarantined file with its "
        "reason. Bad files never stop it; an unusable --root does.",
    )
    p.add_argument(
        "dataset",
        choices=DATASETS.names(),
        metavar="DATASET",
        help="one of: " + ", ".join(DATASETS.names()),
    )
    p.add_argument(
        "--root",
        help="the dataset's download folder (synthetic: a folder from 'oncofed "
        "generate --out'; default: the cached hospitals)",
    )
    p.add_argument("--out", required=True, help="output folder (new or empty)")
    p.add_argument(
        "--partition",
        default="natural",
        choices=("natural", "dirichlet", "quantity"),
        help="natural sites (default), Dirichlet label skew, or "
        "Dirichlet quantity skew",
    )
    p.add_argument(
        "--num-sites",
        type=int,
        default=5,
        help="sites for dirichlet/quantity partitions (5)",
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=0.5,
        help="Dirichlet concentration; smaller = more skew (0.5)",
    )
    p.add_argument("--seed", type=int, default=2024, help="seed (2024)")
    p.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        help="per-site test share where the dataset has no split (0.2)",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.15,
        help="per-site validation share, carved from the non-test cases; it "
        "chooses models, the test split only scores them (0.15)",
    )
    p.add_argument(
        "--site-map",
        help="CSV with 'TSS Code' and 'Region' columns "
        "grouping TCGA tissue-source sites into regions",
    )
    p.add_argument(
        "--tss-table",
        help="TCGA: the GDC's tissue-source-site code table (columns TSS Code, "
        "Source Site, Study Name, BCR; from gdc.cancer.gov, TCGA code tables), "
        "which gives the project of patients whose files name none; a table "
        "inside --root is found by itself; either overrides the GDC table of May "
        "2015 that OncoFed ships",
    )
    p.add_argument(
        "--min-site-cases",
        type=int,
        default=20,
        help="natural sites smaller than this are pooled (20)",
    )
    p.add_argument(
        "--label-column",
        help="imaging datasets: take the binary label from this column "
        "of the clinical table instead of the tumour mask",
    )
    p.add_argument(
        "--label",
        help="TCGA datasets: the binary label: stage-3-4 (AJCC stage III-IV; "
        "tcga, tcga_lihc), m1 (distant metastasis; tcga_coad_read), os-event (died "
        "during follow-up) or os-5y (died within 5 years)",
    )
    p.add_argument(
        "--allow-burned-in",
        action="store_true",
        help="DICOM: keep series whose BurnedInAnnotation is YES (text in the "
        "pixels; quarantined by default) after checking them yourself",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from oncofed.common.errors import OncoFedError
    from oncofed.common.ingest.prepare import PrepareOptions, prepare

    opts = PrepareOptions(
        partition=args.partition,
        num_sites=args.num_sites,
        alpha=args.alpha,
        seed=args.seed,
        test_fraction=args.test_fraction,
        val_fraction=args.val_fraction,
        site_map=args.site_map,
        tss_table=args.tss_table,
        min_site_cases=args.min_site_cases,
        label_column=args.label_column,
        label=args.label,
        allow_burned_in=args.allow_burned_in,
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
            from oncofed.common.config import DataConfig
            from oncofed.common.ingest import ensure_prepared

            args.root = ensure_prepared(DataConfig(dataset=args.dataset)).root
        report = prepare(args.dataset, Path(args.root), out, opts, not args.quiet)
    except OncoFedError as err:
        print(f"oncofed prepare: {err}", file=sys.stderr)
        return 2
    print(
        f"{report['cases_kept']} case(s) in {len(report['sites'])} site(s); "
        f"{report['cases_quarantined']} patient(s) and "
        f"{report['entries_quarantined']} entr(y/ies) quarantined"
    )
    for site, info in report["sites"].items():
        print(
            f"  {site:<28} {info['cases']:>5} cases ({info['train']} train, "
            f"{info['val']} validation, {info['test']} test)"
        )
    print(f"report: {out / 'report.md'}")
    print(f"prepared dataset: {out}")
    return 0
