"""Federation overhead and benefit on the default synthetic scenario, over seeds.

For every seed, trains the scenario's model on the same samples three ways, with
the ablation's own steps (:mod:`oncofed.common.experiments.ablation`), and scores
each on the server's held-out test set:

(a) pooled: every site's train split in one process, ROUNDS x LOCAL_EPOCHS epochs;
(b) federated: ``flwr run simulations/lits_sites`` (real Flower simulation runtime),
    ROUNDS rounds x LOCAL_EPOCHS local epochs at every site: the same number of
    passes over every sample; the last round's model;
(c) each site alone, ROUNDS x LOCAL_EPOCHS epochs on its own train split, scored on
    its own site's test cases and on the other sites'.

Prints, per seed and as mean ± sd over seeds, the federated/pooled wall-time ratios
(whole ``flwr run`` with start-up; strategy time only) and test AUCs with 95 %
bootstrap intervals. Each seed is a run-config ``seed``: a new draw of the synthetic
hospitals and of the training. Usage::

    python benchmarks/federation_overhead.py [--seeds 2024,2025,2026] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from oncofed.common.config import OncoFedConfig, from_run_config
from oncofed.common.data.site import load_site
from oncofed.common.experiments.ablation import AblationOptions
from oncofed.common.experiments.ablation.federation import (
    restore_node_count,
    run_federation,
)
from oncofed.common.experiments.ablation.plan import load_scenario
from oncofed.common.experiments.ablation.runner import (
    held_out_set,
    score_checkpoint,
    train_and_score,
)
from oncofed.common.ingest import ensure_prepared
from oncofed.common.ml.metrics import (
    binary_metrics,
    bootstrap_indices,
    percentile_interval,
    resampled_metrics,
)
from oncofed.common.ml.training import resolve_device
from oncofed.common.paths import scratch_dir
from oncofed.common.tracking.store import RUN_STORE, RunStore

SCENARIO = "lits_sites"


def auc_ci(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    lo, hi = percentile_interval(
        resampled_metrics(y, p, bootstrap_indices(len(y), 1000, 0))["auc"]
    )
    return {"auc": binary_metrics(y, p)["auc"], "low": lo, "high": hi}


def federated(cfg: OncoFedConfig, keys: dict, n_sites: int, test, val):
    """One real Flower federation; its wall time, strategy time and last-round
    model's test scores."""
    done: dict[int, Path | str] = {}
    with tempfile.TemporaryDirectory(prefix="oncofed-bench-", dir=scratch_dir()) as tmp:
        t = time.time()
        run_federation(
            load_scenario(SCENARIO),
            {**keys, "fraction-evaluate": 0.0},
            [{"seed": cfg.data.seed}],
            n_sites,
            Path(tmp),
            "",
            lambda line: None,
            lambda k, outcome: done.__setitem__(k, outcome),
        )
        wall = time.time() - t
        ckpt = done.get(0)
        if not isinstance(ckpt, Path):
            raise SystemExit(f"federated run failed: {ckpt}")
        y, p, _ = score_checkpoint(ckpt, test, val)
        store = RunStore(ckpt.parent.parent / RUN_STORE).global_frame()
        strategy_s = float(store[store.metric == "elapsed-s"].value.max())
    return wall, strategy_s, y, p


def one_seed(seed: int, base: dict) -> dict:
    keys = {**base, "seed": seed}
    cfg = from_run_config(load_scenario(SCENARIO).run_config(keys))
    epochs = cfg.federation.num_server_rounds * cfg.train.local_epochs
    ds = ensure_prepared(cfg.data)
    sites = [load_site(ds.site_dir(i), cfg.data) for i in range(len(ds.sites))]
    val = held_out_set(ds, cfg, sites, "val").samples
    test = held_out_set(ds, cfg, sites, "test").samples
    dims = sites[0].input_dims
    pooled_train = [s for d in sites for s in d.split("train")]
    out: dict = {"seed": seed, "rows": {}}

    def add(name: str, y, p, wall: float) -> None:
        out["rows"][name] = {**auc_ci(y, p), "wall_s": wall}
        r = out["rows"][name]
        print(
            f"  {name:<26} AUC {r['auc']:.3f} [{r['low']:.3f}, {r['high']:.3f}]  "
            f"{wall:6.1f} s",
            flush=True,
        )

    print(f"seed {seed}: {len(pooled_train)} training cases, test n={len(test)}")
    t = time.time()
    y, p, _ = train_and_score(cfg, pooled_train, test, val, epochs, seed, dims)
    add("pooled", y, p, time.time() - t)
    # the federation reads the same prepared folder as the pooled model
    fed_keys = {**keys, "data-root": str(ds.root)}
    fed_wall, strategy_s, y, p = federated(cfg, fed_keys, len(sites), test, val)
    add("federated (FedAvg, last round)", y, p, fed_wall)
    out["strategy_s"] = strategy_s
    test_site = np.array([s["case_id"].split("-")[1] for s in test])  # test-XX-NNNN
    shift = []
    for d in sites:
        t = time.time()
        y, p, _ = train_and_score(cfg, d.split("train"), test, val, epochs, seed, dims)
        add(f"{d.name} alone", y, p, time.time() - t)
        own = test_site == d.name.split("-")[1]
        shift.append(
            (
                binary_metrics(y[own], p[own])["auc"],
                binary_metrics(y[~own], p[~own])["auc"],
            )
        )
    out["own_site_auc"] = float(np.nanmean([a for a, _ in shift]))
    out["other_sites_auc"] = float(np.nanmean([b for _, b in shift]))
    pooled_wall = out["rows"]["pooled"]["wall_s"]
    out["ratio_wall"] = fed_wall / pooled_wall
    out["ratio_strategy"] = strategy_s / pooled_wall
    print(
        f"  wall-time ratio federated/pooled {out['ratio_wall']:.2f} (whole flwr run); "
        f"strategy only {out['ratio_strategy']:.2f}; single-site models: AUC "
        f"{out['own_site_auc']:.3f} at their own site, {out['other_sites_auc']:.3f} "
        "at the others"
    )
    return out


def mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f} (one seed)"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--local-epochs", type=int, default=2)
    ap.add_argument("--seeds", default="2024,2025,2026", help="(2024,2025,2026)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    base = {"num-server-rounds": args.rounds, "local-epochs": args.local_epochs}
    per_seed = [one_seed(s, base) for s in seeds]
    restore_node_count(AblationOptions(), 7)  # OncoFed's default simulation size
    names = list(per_seed[0]["rows"])
    print(f"\nover seeds {', '.join(map(str, seeds))}:")
    summary = {}
    for name in [*names, "ratio_wall", "ratio_strategy", "own_site_auc",
                 "other_sites_auc"]:  # fmt: skip
        values = [
            r["rows"][name]["auc"] if name in r["rows"] else r[name] for r in per_seed
        ]
        summary[name] = {"mean_sd": mean_sd(values), "values": values}
        print(f"  {name:<32} {mean_sd(values)}")
    result = {
        "command": " ".join(["python", *sys.argv]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"{platform.python_version()}, device {resolve_device('auto')}",
        "rounds": args.rounds,
        "local_epochs": args.local_epochs,
        "seeds": seeds,
        "per_seed": per_seed,
        "summary": summary,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
