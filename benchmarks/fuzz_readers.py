"""Fuzz the readers: damaged files must never crash a reader or lose a row.

Two readers, each on files damaged one at a time by the seeded mutator of
``common/experiments/fuzz.py`` (flipped / deleted bytes, stray quotes and
delimiters, merged and split rows, duplicated lines, truncation, non-UTF-8):

* ``load_site``, on one prepared TCGA site folder (``manifest.csv``,
  ``clinical.tsv``, ``genomics.tsv``, ``schema.json``): every manifest row must be
  loaded or set aside with its file, line and reason ("lost" counts rows that are
  neither, and cases loaded without data their manifest promises);
* ``oncofed prepare tcga_lihc``, on a raw GDC-style export (``clinical.tsv`` and an
  expression matrix): it must finish or refuse with a clear error ("lost" is not
  defined for it: a damaged clinical row is a patient quarantined or not read).

Both start from the synthetic TCGA export (``common/ingest/synthetic``): the
damage, not the content, is under test.

    python benchmarks/fuzz_readers.py --cases 10000 --json /tmp/fuzz.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from oncofed.common.config import DataConfig
from oncofed.common.experiments.fuzz import (
    OUTCOMES,
    FuzzReport,
    cbioportal_download,
    dicom_download,
    flamby_download,
    fuzz_folder,
    nifti_download,
    prepare_reader,
    site_reader,
    slide_download,
)
from oncofed.common.ingest.prepare import PrepareOptions, prepare
from oncofed.common.ingest.synthetic.tcga_export import write_tcga_export

SITE_FILES = ["manifest.csv", "clinical.tsv", "genomics.tsv", "schema.json"]
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _row(name: str, r: FuzzReport) -> str:
    return (
        f"| {name} | {r.tried} | "
        + " | ".join(str(r.outcomes[o]) for o in OUTCOMES)
        + " |"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=10000, help="load_site cases (10000)")
    ap.add_argument(
        "--prepare-cases", type=int, default=500,
        help="oncofed prepare cases per download (500; each prepares a folder)",
    )  # fmt: skip
    ap.add_argument("--seed", type=int, default=2024, help="mutator seed (2024)")
    ap.add_argument("--json", help="also write the counts here")
    args = ap.parse_args()
    logging.getLogger("oncofed").setLevel(logging.ERROR)  # one line per case: too many
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="oncofed-fuzz-bench-") as t:
        tmp = Path(t)
        raw = write_tcga_export(tmp / "raw", num_sites=2, patients_per_site=30)
        prepared = tmp / "prepared"
        prepare("tcga_lihc", raw, prepared, PrepareOptions(min_site_cases=1), False)
        site = next(
            p
            for p in sorted(prepared.iterdir())
            if (p / "manifest.csv").is_file() and "server" not in p.name
        )
        reader = site_reader(DataConfig(dataset="tcga_lihc"))
        with tqdm(total=args.cases, desc="load_site", unit="case") as bar:
            site_report = fuzz_folder(
                site, SITE_FILES, reader, args.cases, args.seed,
                lambda k: bar.update(1),
            )  # fmt: skip
        downloads = [
            ("prepare tcga_lihc (GDC)", "tcga_lihc", raw),
            ("prepare tcga_lihc (cBioPortal)", "tcga_lihc",
             cbioportal_download(raw, tmp / "cbio")),
            ("prepare lits17 (NIfTI)", "lits17", nifti_download(tmp / "lits")),
            ("prepare crlm (DICOM)", "crlm", dicom_download(SHARED, tmp / "crlm")),
            ("prepare crlm (DICOM, Excel table)", "crlm",
             dicom_download(SHARED, tmp / "crlm-xlsx", excel=True)),
            ("prepare tcga_brca_flamby (FLamby CSVs)", "tcga_brca_flamby",
             flamby_download(SHARED, tmp / "flamby")),
            ("prepare tcga_coad_read (tiles and an SVS slide)", "tcga_coad_read",
             slide_download(SHARED, tmp / "slides")),
        ]  # fmt: skip
        reports: list[tuple[str, FuzzReport]] = [("load_site", site_report)]
        for k, (name, dataset, folder) in enumerate(downloads):
            if folder is None:
                print(f"{name}: ../shared/data not beside the checkout; skipped")
                continue
            files = sorted(p.name for p in folder.iterdir() if p.is_file())
            label = None
            if "slide" in name:  # images damaged, not the table; no AJCC stage
                files = [f for f in files if not f.endswith(".tsv")]
                label = "os-event"
            n = args.prepare_cases
            with tqdm(total=n, desc=name, unit="case") as bar:
                r = fuzz_folder(
                    folder, files, prepare_reader(tmp, dataset, label), n,
                    args.seed + 1 + k, lambda _: bar.update(1),
                )  # fmt: skip
            reports.append((f"{name}: {', '.join(files)}", r))
    lines = [
        "| reader | tried | " + " | ".join(OUTCOMES) + " |",
        "|---|---:|" + "---:|" * len(OUTCOMES),
        *[_row(name, r) for name, r in reports],
    ]
    print("\n".join(lines))
    for name, r in reports:
        for outcome, examples in r.examples.items():
            for e in examples:
                print(f"{name} {outcome}: {e}")
    print(
        f"{platform.machine()}, {os.cpu_count()} CPU cores, Python "
        f"{platform.python_version()}; {(time.time() - started) / 60:.1f} min"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    name: {
                        "tried": r.tried,
                        "outcomes": dict(r.outcomes),
                        "by_mutation": {k: dict(v) for k, v in r.by_mutation.items()},
                        "examples": r.examples,
                    }
                    for name, r in reports
                },
                indent=2,
            )
        )
    bugs = sum(r.outcomes["crashed"] + r.outcomes["lost"] for _, r in reports)
    return 1 if bugs else 0


if __name__ == "__main__":
    sys.exit(main())
