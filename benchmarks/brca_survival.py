"""Federated survival on FLamby's Fed-TCGA-BRCA (6 regions), against a pooled Cox.

One invocation:

1. ``oncofed prepare tcga_brca_flamby`` on FLamby's files (default
   ``../shared/data/flamby_tcga_brca``): FLamby's 6 regions and train/test split.
2. Pooled baseline: lifelines ``CoxPHFitter`` (ridge penalty ``--penalizer``) on all
   training rows, C-index on each region's test set.
3. Federated: ``flwr run simulations/tcga_brca_sites`` (6 simulated SuperNodes,
   FedAvg, Cox head on the clinical MLP), once per seed (``--seeds``, all in one
   Flower run through the ablation's federation step), the *last* round's model;
   C-index on each region's test split (read here, after the run; sites evaluate
   on validation).

Both train on the training split only (validation, 15 % carved from FLamby's
training part, is left out of both).

FLamby's benchmark metric is the mean over the 6 regional test sets; it is printed
for both (federated: mean ± sd over seeds), next to FLamby's published figures for
the same split.

    python benchmarks/brca_survival.py --json /tmp/brca.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _runinfo import run_info  # benchmarks/ is the script folder

from oncofed.common.experiments.ablation.federation import (
    restore_node_count,
    run_federation,
)
from oncofed.common.experiments.ablation.plan import AblationOptions, load_scenario
from oncofed.common.ingest.prepare import PrepareOptions, prepare
from oncofed.common.ml.metrics import survival_metrics
from oncofed.common.paths import scratch_dir
from oncofed.common.tracking.store import RUN_STORE, RunStore

ROOT = Path(__file__).resolve().parents[1]

ALL = "all test cases"
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
    prepared: Path, rounds: int, seeds: list[int], work: Path
) -> tuple[dict[int, dict[str, float]], float]:
    """Every seed as an entry of one ``flwr run`` (the ablation's federation step):
    per seed, the last round's C-index on each region's test split and on all of
    them together."""
    scenario = load_scenario("tcga_brca_sites")
    done: dict[int, Path | str] = {}
    t = time.time()
    run_federation(
        scenario,
        {"data-root": str(prepared), "num-server-rounds": rounds},
        [{"seed": s} for s in seeds],
        6,
        work / "runs",
        "",
        lambda line: None,
        lambda k, outcome: done.__setitem__(seeds[k], outcome),
    )
    wall = time.time() - t
    restore_node_count(AblationOptions(), 7)  # OncoFed's default simulation size
    out = {}
    for seed, outcome in done.items():
        if not isinstance(outcome, Path):
            raise SystemExit(f"federated run for seed {seed} failed: {outcome}")
        store = RunStore(outcome.parent.parent / RUN_STORE).global_frame()
        pooled = store.query(
            "split == 'test' and metric == 'c-index' and round == @rounds"
        ).value
        out[seed] = {**regional_test(outcome, prepared), ALL: float(pooled.iloc[0])}
    return out, wall


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
    ap.add_argument(
        "--seeds",
        default="2024,2025,2026",
        help="run-config seeds of the federated runs (2024,2025,2026)",
    )
    ap.add_argument("--penalizer", type=float, default=0.1)
    ap.add_argument("--json")
    args = ap.parse_args()
    seeds = [int(x) for x in args.seeds.split(",")]
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp:
        work = Path(tmp)
        prepared = work / "prepared"
        report = prepare(
            "tcga_brca_flamby", Path(args.flamby), prepared, PrepareOptions(), False
        )
        sites = sorted(report["sites"])
        cox = pooled_cox(prepared, sites, args.penalizer)
        fed, wall = federated(prepared, args.rounds, seeds, work)
    rows = []
    for s in [*sites, ALL]:
        values = [fed[seed][s] for seed in seeds]
        rows.append(
            {
                "test set": s,
                "pooled_coxph": cox[s],
                "federated_per_seed": values,
                "federated_mean": float(np.mean(values)),
                "federated_sd": float(np.std(values, ddof=1)) if len(seeds) > 1 else 0,
            }
        )
        print(
            f"{s:<24} pooled CoxPH {cox[s]:.3f}   federated "
            f"{np.mean(values):.3f} ± {rows[-1]['federated_sd']:.3f} "
            f"({', '.join(f'{v:.3f}' for v in values)})"
        )
    mean_cox = float(np.nanmean([cox[s] for s in sites]))
    per_seed = [float(np.nanmean([fed[seed][s] for s in sites])) for seed in seeds]
    sd = float(np.std(per_seed, ddof=1)) if len(seeds) > 1 else 0.0
    print(
        f"\nmean over the 6 regional test sets: pooled CoxPH {mean_cox:.3f} "
        f"(deterministic), federated {np.mean(per_seed):.3f} ± {sd:.3f} over seeds "
        f"{', '.join(map(str, seeds))} ({', '.join(f'{v:.3f}' for v in per_seed)})  "
        f"(FLamby: pooled {FLAMBY_RESULTS['pooled']}, FedAvg "
        f"{FLAMBY_RESULTS['FedAvg']}, best {FLAMBY_RESULTS['best strategy']})"
    )
    print(f"federated wall time {wall:.0f} s for {len(seeds)} x {args.rounds} rounds")
    result = {
        **run_info(),
        "rounds": args.rounds,
        "seeds": seeds,
        "rows": rows,
        "mean_regional": {
            "pooled_coxph": mean_cox,
            "federated_per_seed": per_seed,
            "federated_mean": float(np.mean(per_seed)),
            "federated_sd": sd,
        },
        "flamby": FLAMBY_RESULTS,
        "federated_wall_s": wall,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
