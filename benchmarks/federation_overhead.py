"""Federation overhead and benefit on the default synthetic scenario, one invocation.

Trains the same model on the same samples three ways and evaluates each on the
server's held-out test set:

(a) pooled: every site's train split in one process, ROUNDS x LOCAL_EPOCHS epochs;
(b) federated: ``flwr run simulations/lits_sites`` (real Flower simulation runtime),
    ROUNDS rounds x LOCAL_EPOCHS local epochs at every site: the same number of
    passes over every sample;
(c) each site alone, ROUNDS x LOCAL_EPOCHS epochs on its own train split.

Prints wall times, the federated/pooled wall-time ratio, and test AUCs with 95 %
bootstrap intervals. Usage::

    python benchmarks/federation_overhead.py [--rounds 8] [--local-epochs 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from oncofed.common.config import from_run_config
from oncofed.common.data.site import load_site
from oncofed.common.experiments.ablation.plan import load_scenario
from oncofed.common.ingest import ensure_prepared
from oncofed.common.ml.metrics import (
    binary_metrics,
    bootstrap_indices,
    percentile_interval,
    resampled_metrics,
)
from oncofed.common.ml.models import build_model, load_checkpoint
from oncofed.common.ml.training import (
    predict,
    resolve_device,
    seed_everything,
    train_local,
)
from oncofed.common.tracking.store import RUN_STORE, RunStore

ROOT = Path(__file__).resolve().parents[1]


def bootstrap_auc(y, p, n=1000, seed=0) -> tuple[float, float]:
    idx = bootstrap_indices(len(y), n, seed)
    return percentile_interval(resampled_metrics(y, p, idx)["auc"])


def train_eval(cfg, samples, test, epochs, seed):
    device = resolve_device(cfg.train.device)
    seed_everything(seed)
    model = build_model(cfg.model, cfg.data.image_depth)
    t = time.time()
    train_local(model, samples, cfg.train, device, seed, epochs=epochs)
    y, p, _ = predict(model, test, device, 64)
    return time.time() - t, y, p


def run_federated(overrides: dict, num_sites: int) -> tuple[float, Path]:
    run_root = Path(tempfile.mkdtemp(prefix="oncofed-bench-"))
    rc = " ".join(
        f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}"
        for k, v in {**overrides, "run-dir": str(run_root)}.items()
    )
    cmd = [
        str(Path(sys.executable).parent / "flwr"),
        "run",
        str(ROOT / "simulations" / "lits_sites"),
        "--stream",
        "--run-config",
        rc,
        "--federation-config",
        f"num-supernodes={num_sites}",
    ]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    t = time.time()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.time() - t
    stores = list(run_root.glob(f"*/{RUN_STORE}"))
    if not stores or "of that model" not in out.stdout + out.stderr:
        print(out.stdout[-3000:], out.stderr[-3000:])
        raise SystemExit("federated run failed (see log above)")
    return wall, stores[0].parent


def federated(cfg, overrides, num_sites, test):
    """Run the real Flower federation; predict with its last-round model."""
    wall, run_dir = run_federated(overrides, num_sites)
    model, _, _ = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    y, p, _ = predict(model, test, resolve_device(cfg.train.device), 64)
    g = RunStore(run_dir / RUN_STORE).global_frame()
    strategy_s = float(g[g.metric == "elapsed-s"].value.max())
    return wall, strategy_s, y, p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--local-epochs", type=int, default=2)
    ap.add_argument("--learning-rate", type=float, default=None)
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument(
        "--skip-federated",
        action="store_true",
        help="pooled and single-site runs only (e.g. on a GPU box without Flower)",
    )
    args = ap.parse_args()
    overrides = {"num-server-rounds": args.rounds, "local-epochs": args.local_epochs}
    if args.learning_rate:
        overrides["learning-rate"] = args.learning_rate
    # the app's own declared defaults (liver crop, CT grid), so that pooled, single
    # site and federated models see the same inputs
    cfg = from_run_config(load_scenario("lits_sites").run_config(overrides))
    epochs = args.rounds * args.local_epochs
    ds = ensure_prepared(cfg.data)
    sites = [load_site(ds.site_dir(i), cfg.data) for i in range(len(ds.sites))]
    test = load_site(ds.server_test_dir, cfg.data, splits=("test",)).split("test")
    pooled = [s for sd in sites for s in sd.split("train")]
    rows = []

    def add(name, n, wall, y, p):
        lo, hi = bootstrap_auc(y, p)
        m = binary_metrics(y, p)
        rows.append(
            {
                "model": name,
                "train_n": n,
                "wall_s": round(wall, 1),
                "auc": round(m["auc"], 3),
                "auc_ci95": [round(lo, 3), round(hi, 3)],
                "accuracy": round(m["accuracy"], 3),
                "f1": round(m["f1"], 3),
            }
        )
        print(
            f"{name:<28} n={n:<4} wall {wall:7.1f} s  AUC {m['auc']:.3f} "
            f"[{lo:.3f}, {hi:.3f}]",
            flush=True,
        )

    wall, y, p = train_eval(cfg, pooled, test, epochs, cfg.data.seed)
    add("pooled", len(pooled), wall, y, p)
    pooled_wall = wall
    for mods in ("ct", "clinical"):
        c = dataclasses.replace(
            cfg, model=dataclasses.replace(cfg.model, modalities=mods)
        )
        w, y, p = train_eval(c, pooled, test, epochs, cfg.data.seed)
        add(f"pooled, {mods} only", len(pooled), w, y, p)
    fed_wall = strat = float("nan")
    if not args.skip_federated:
        fed_wall, strat, y, p = federated(cfg, overrides, len(ds.sites), test)
        add("federated (FedAvg, last round)", len(pooled), fed_wall, y, p)
    test_site = np.array([s["case_id"].split("-")[1] for s in test])  # test-XX-NNNN
    shift = []
    for sd in sites:
        w, y, p = train_eval(cfg, sd.split("train"), test, epochs, cfg.data.seed)
        add(f"{sd.name} alone", len(sd.split("train")), w, y, p)
        own = test_site == sd.name.split("-")[1]
        a_own = binary_metrics(y[own], p[own])["auc"]
        a_other = binary_metrics(y[~own], p[~own])["auc"]
        shift.append(
            {
                "site": sd.name,
                "auc_own": round(a_own, 3),
                "auc_others": round(a_other, 3),
            }
        )
        print(
            f"    {sd.name} model on its own site's test cases AUC {a_own:.3f} "
            f"(n={own.sum()}), on the other sites' {a_other:.3f} (n={(~own).sum()})"
        )
    mean_own = np.nanmean([r["auc_own"] for r in shift])
    mean_other = np.nanmean([r["auc_others"] for r in shift])
    print(
        f"\nsingle-site models: mean AUC {mean_own:.3f} at their own site, "
        f"{mean_other:.3f} at the other sites"
    )
    print(
        f"\nwall-time ratio federated/pooled: {fed_wall / pooled_wall:.2f} "
        f"(whole flwr run incl. start-up); strategy time only: "
        f"{strat / pooled_wall:.2f}"
    )
    result = {
        "command": " ".join(["python", *sys.argv]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"{platform.python_version()}, device {resolve_device('auto')}",
        "rounds": args.rounds,
        "local_epochs": args.local_epochs,
        "test_n": len(test),
        "ratio_wall": round(fed_wall / pooled_wall, 2),
        "ratio_strategy": round(strat / pooled_wall, 2),
        "rows": rows,
        "site_shift": shift,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
