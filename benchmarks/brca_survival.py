"""Federated survival on FLamby's Fed-TCGA-BRCA (6 regions), against a pooled Cox.

One invocation:

1. ``oncofed prepare tcga_brca_flamby`` on FLamby's files (default
   ``../shared/data/flamby_tcga_brca``): FLamby's 6 regions and train/test split.
2. Pooled baseline: lifelines ``CoxPHFitter`` (ridge penalty ``--penalizer``) on all
   training rows, C-index on each region's test set.
3. Federated: ``flwr run simulations/tcga_brca_sites`` (6 simulated SuperNodes,
   FedAvg, Cox head on the clinical MLP), the *last* round's model; C-index on each
   region's test split (read here, after the run; sites evaluate on validation).

Both train on the training split only (validation, 15 % carved from FLamby's
training part, is left out of both).

FLamby's benchmark metric is the mean over the 6 regional test sets; it is printed
for both, next to FLamby's published figures for the same split. The simulation
site count of the local SuperLink is set to 6 for the run and back to 7 (OncoFed's
default) afterwards.

    python benchmarks/brca_survival.py --json /tmp/brca.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from oncofed.common.ingest.prepare import PrepareOptions, prepare
from oncofed.common.ml.metrics import survival_metrics

ROOT = Path(__file__).resolve().parents[1]

FLAMBY_RESULTS = {"pooled": 0.676, "FedAvg": 0.732, "best strategy": 0.815}


def pooled_cox(prepared: Path, sites: list[str], penalizer: float) -> dict[str, float]:
    from lifelines import CoxPHFitter

    frames = []
    for s in sites:
        m = pd.read_csv(prepared / s / "manifest.csv")
        c = pd.read_csv(prepared / s / "clinical.tsv", sep="\t")
        frames.append(m.merge(c, on="case_id").assign(site=s))
    data = pd.concat(frames)
    features = [c for c in c.columns if c != "case_id"]
    train = data[data.split == "train"]
    keep = [f for f in features if train[f].std() > 0]
    cph = CoxPHFitter(penalizer=penalizer)
    cph.fit(train[[*keep, "time", "event"]], duration_col="time", event_col="event")
    out = {}
    for s in sites:
        test = data[(data.site == s) & (data.split == "test")]
        risk = cph.predict_partial_hazard(test[keep]).to_numpy()
        out[s] = survival_metrics(test.time, test.event, np.log(risk))["c-index"]
    test = data[data.split == "test"]
    out["all test cases"] = survival_metrics(
        test.time, test.event, np.log(cph.predict_partial_hazard(test[keep]).to_numpy())
    )["c-index"]
    return out


def federated(
    prepared: Path, rounds: int, work: Path
) -> tuple[dict[str, float], float]:
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    flwr = str(bin_dir / "flwr")
    subprocess.run(
        [flwr, "federation", "simulation-config", "--num-supernodes", "6"],
        env=env,
        check=True,
        capture_output=True,
    )
    try:
        t = time.time()
        out = subprocess.run(
            [
                flwr,
                "run",
                str(ROOT / "simulations" / "tcga_brca_sites"),
                "--stream",
                "--run-config",
                f"data-root='{prepared}' run-dir='{work / 'runs'}' "
                f"num-server-rounds={rounds}",
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        wall = time.time() - t
    finally:
        subprocess.run(
            [flwr, "federation", "simulation-config", "--num-supernodes", "7"],
            env=env,
            capture_output=True,
        )
    stores = list((work / "runs").glob("*/run.sqlite"))
    if not stores or "of that model" not in out.stdout + out.stderr:
        print(out.stdout[-3000:], out.stderr[-3000:])
        raise SystemExit("federated run failed (see log above)")
    with sqlite3.connect(stores[0]) as db:
        pooled = db.execute(
            "SELECT value FROM global_metrics WHERE metric='c-index' AND round=? "
            "AND split='test'",
            (rounds,),
        ).fetchone()[0]
    per_site = regional_test(stores[0].parent / "checkpoints" / "last.pt", prepared)
    per_site["all test cases"] = pooled
    return per_site, wall


def regional_test(checkpoint: Path, prepared: Path) -> dict[str, float]:
    """C-index of the saved global model on each region's test split."""
    from oncofed.common.data.prepared import PreparedDataset
    from oncofed.common.data.site import load_site
    from oncofed.common.ml.models import load_checkpoint
    from oncofed.common.ml.training import predict_detailed

    model, cfg, _ = load_checkpoint(checkpoint)
    out = {}
    ds = PreparedDataset.open(prepared)
    for k, site in enumerate(ds.sites):
        test = load_site(ds.site_dir(k), cfg.data, splits=("test",)).split("test")
        pred = predict_detailed(model, test, "cpu", 64)
        out[site] = survival_metrics(pred.times, pred.events, pred.logits)["c-index"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--flamby", default=str(ROOT.parent / "shared/data/flamby_tcga_brca")
    )
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--penalizer", type=float, default=0.1)
    ap.add_argument("--json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepared = work / "prepared"
        report = prepare(
            "tcga_brca_flamby", Path(args.flamby), prepared, PrepareOptions(), False
        )
        sites = sorted(report["sites"])
        cox = pooled_cox(prepared, sites, args.penalizer)
        fed, wall = federated(prepared, args.rounds, work)
    rows = []
    for s in [*sites, "all test cases"]:
        rows.append({"test set": s, "pooled_coxph": cox[s], "federated": fed.get(s)})
        f_s = fed.get(s, float("nan"))
        print(f"{s:<24} pooled CoxPH {cox[s]:.3f}   federated {f_s:.3f}")
    mean_cox = float(np.nanmean([cox[s] for s in sites]))
    mean_fed = float(np.nanmean([fed[s] for s in sites]))
    print(
        f"\nmean over the 6 regional test sets: pooled CoxPH {mean_cox:.3f}, "
        f"federated {mean_fed:.3f}  (FLamby: pooled {FLAMBY_RESULTS['pooled']}, "
        f"FedAvg {FLAMBY_RESULTS['FedAvg']}, best {FLAMBY_RESULTS['best strategy']})"
    )
    print(f"federated wall time {wall:.0f} s for {args.rounds} rounds")
    result = {
        "command": "python " + " ".join(sys.argv),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "rounds": args.rounds,
        "rows": rows,
        "mean_regional": {"pooled_coxph": mean_cox, "federated": mean_fed},
        "flamby": FLAMBY_RESULTS,
        "federated_wall_s": wall,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
