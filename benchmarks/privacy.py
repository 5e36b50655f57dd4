"""What differential privacy costs and what it buys, on the default scenario.

Three measurements, each selectable with ``--parts`` (default: all three):

``auc``
    Test AUC of the default scenario (``simulations/lits_sites``, its embedded
    synthetic default, 7 sites, every run-config key at its default) federated
    with example-level DP-SGD (``dp='sample'``) at each ``--epsilons`` and without
    DP, the same rounds and epochs for all; one ``flwr run`` per (budget, seed),
    ``--seeds`` seeds. The figure is the test AUC of the validation-selected
    round's model, as the run prints it.

``speed``
    Local training on site-00's training split with DP-SGD (Opacus, ``dp-epsilon``
    3) and without, alternating, for 1 and for 5 epochs, ``--repeats`` times each
    after one warm-up of each: the DP / plain ratio of the median first epoch
    (Opacus' wrapping included) and of each further epoch ((5 - 1 epochs) / 4),
    within one process; the goal is <= 2.0.

``attack``
    The label-leak attack of issue 16: ``--attack-sites`` sites with one training
    case each (half positives), each trains one round from the same global model;
    the attacker reads the change of the fusion head's bias in the site's update
    and guesses "positive" when it rose. Success rate without DP and with DP-SGD at
    each ``--epsilons`` (the whole budget spent in that one round: the attacker's
    best case), over ``--seeds`` seeds. 50 % is guessing. With SecAgg+ the
    server sees only the sum of the sites' updates (``tests/test_dp.py`` checks
    that it holds no single one), so its best guess is the sum's sign for every
    site.

The synthetic generator puts a learnable lesion signal in CT and clinical data;
what DP costs here is what noise costs on that signal, not a clinical figure.

    python benchmarks/privacy.py --json /tmp/privacy.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from _runinfo import run_info  # benchmarks/ is the script folder

from oncofed.common.paths import scratch_dir

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "simulations" / "lits_sites"


def _flwr() -> str:
    from oncofed.common.experiments.ablation.federation import flwr_executable

    return flwr_executable()


def test_auc(run_root: Path) -> float:
    """The test AUC of the validation-selected round of the run under run_root."""
    from oncofed.common.tracking.store import RunStore

    store = next(run_root.glob("*/run.sqlite"))
    return RunStore(store, readonly=True).selected_value("auc")


def federated_auc(eps: float | None, seed: int, work: Path) -> float:
    run_root = work / f"eps-{eps or 'off'}-seed-{seed}"
    keys = f"seed={seed} run-dir='{run_root}'"
    if eps is not None:
        keys += f" dp='sample' dp-epsilon={eps}"
    t = time.time()
    out = subprocess.run(
        [
            _flwr(),
            "run",
            str(APP),
            "--stream",
            "--run-config",
            keys,
            "--federation-config",
            "num-supernodes=7",
        ],
        capture_output=True,
        text=True,
        cwd=work,
        timeout=3600,
    )
    try:
        auc = test_auc(run_root)
    except (StopIteration, TypeError) as err:
        tail = (out.stdout + out.stderr)[-3000:]
        what = f"run eps={eps} seed={seed}"
        raise SystemExit(f"{what} left no test AUC:\n{tail}") from err
    print(
        f"  {_label(eps)}  seed {seed}: test AUC {auc:.3f}  ({time.time() - t:.0f} s)",
        flush=True,
    )
    return auc


def _label(eps: float | None) -> str:
    return f"{'no DP' if eps is None else f'eps {eps:g}':>8}"


def _row(eps: float | None, name: str, values: list[float]) -> dict:
    """One budget's per-seed values with their mean and sd."""
    return {
        "dp_epsilon": eps,
        name: values,
        "mean": statistics.mean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


def part_auc(epsilons: list[float], seeds: list[int], work: Path) -> list[dict]:
    return [
        _row(eps, "test_auc_per_seed", [federated_auc(eps, s, work) for s in seeds])
        for eps in [None, *epsilons]
    ]


def _site(cfg):
    from oncofed.common.data.prepared import open_prepared
    from oncofed.common.data.site import load_site
    from oncofed.common.ingest import ensure_prepared

    ensure_prepared(cfg.data)
    return load_site(open_prepared(cfg.data).site_dir(0), cfg.data)


def part_speed(repeats: int) -> dict:
    from oncofed.common.config import from_run_config
    from oncofed.common.ml.models import build_model
    from oncofed.common.ml.privacy import DPSGD, Ledger, plan
    from oncofed.common.ml.training import resolve_device, train_local

    app = _app_defaults()
    times: dict[str, dict[int, list[float]]] = {
        kind: {1: [], 5: []} for kind in ("dp", "plain")
    }
    for k in range(repeats + 1):  # the first of each warms up, and is not kept
        for kind in ("plain", "dp"):
            cfg = from_run_config({**app, "dp": "sample" if kind == "dp" else "off"})
            site = _site(cfg)
            samples = site.split("train")
            for epochs in (1, 5):
                model = build_model(
                    cfg.model,
                    cfg.data.image_depth,
                    site.input_dims,
                    private=kind == "dp",
                )
                dp = DPSGD(plan(len(samples), cfg), Ledger()) if kind == "dp" else None
                t = time.perf_counter()
                train_local(
                    model, samples, cfg.train, resolve_device("cpu"), k, epochs, dp=dp
                )
                if k:
                    times[kind][epochs].append(time.perf_counter() - t)
    med = {
        kind: {e: statistics.median(v) for e, v in t.items()}
        for kind, t in times.items()
    }
    # one epoch as a round starts it (Opacus' wrapping included), and an epoch
    # further into a round: (5 epochs - 1 epoch) / 4
    first = med["dp"][1] / med["plain"][1]
    later = (med["dp"][5] - med["dp"][1]) / (med["plain"][5] - med["plain"][1])
    print(
        f"  site-00 ({len(samples)} cases): first epoch DP-SGD {med['dp'][1]:.2f} s "
        f"/ plain {med['plain'][1]:.2f} s = {first:.2f}; each further epoch "
        f"{later:.2f} x (medians of {repeats})"
    )
    return {
        "cases": len(samples),
        "seconds": times,
        "ratio_first_epoch": first,
        "ratio_further_epochs": later,
    }


def _app_defaults() -> dict:
    import tomllib

    cfg = tomllib.loads((APP / "pyproject.toml").read_text())
    return dict(cfg["tool"]["flwr"]["app"]["config"])


def _head_bias(model):
    return model.fusion.head[-1].bias.detach().clone()


def attack_success(eps: float | None, seed: int, n_sites: int) -> float:
    """Share of one-case sites whose label the head-bias attack guesses."""
    import torch

    from oncofed.common.config import from_run_config
    from oncofed.common.ml.models import build_model
    from oncofed.common.ml.privacy import DPSGD, Ledger, plan
    from oncofed.common.ml.training import resolve_device, seed_everything, train_local
    from oncofed.common.ml.weights import load_arrays, to_arrays

    app = _app_defaults()
    keys = {**app, "seed": seed, "num-server-rounds": 1}
    if eps is not None:
        keys |= {"dp": "sample", "dp-epsilon": eps}
    cfg = from_run_config(keys)
    site = _site(cfg)
    train = site.split("train")
    pos = [s for s in train if float(s["label"]) == 1.0]
    neg = [s for s in train if float(s["label"]) == 0.0]
    cases = [
        (pos if k % 2 == 0 else neg)[k // 2 % len(pos if k % 2 == 0 else neg)]
        for k in range(n_sites)
    ]
    seed_everything(seed)
    private = eps is not None
    start = to_arrays(
        build_model(cfg.model, cfg.data.image_depth, site.input_dims, private=private)
    )
    deltas, labels = [], []
    for k, case in enumerate(cases):
        model = build_model(
            cfg.model, cfg.data.image_depth, site.input_dims, private=private
        )
        load_arrays(model, start)
        before = _head_bias(model)
        dp = DPSGD(plan(1, cfg), Ledger()) if private else None
        torch.manual_seed(seed * 1000 + k)
        train_local(model, [case], cfg.train, resolve_device("cpu"), seed + k, dp=dp)
        deltas.append(float((_head_bias(model) - before).sum()))
        labels.append(float(case["label"]))
    alone = sum((d > 0) == (y == 1.0) for d, y in zip(deltas, labels, strict=True))
    # SecAgg+ shows the server the sum of the (one-case, so equally weighted)
    # updates only: one guess, the sum's sign, for every site
    summed = sum((sum(deltas) > 0) == (y == 1.0) for y in labels)
    return alone / len(cases), summed / len(cases)


def part_attack(epsilons: list[float], seeds: list[int], n_sites: int) -> list[dict]:
    rows = []
    for eps in [None, *epsilons]:
        both = [attack_success(eps, s, n_sites) for s in seeds]
        rates = [a for a, _ in both]
        rows.append(_row(eps, "success_per_seed", rates))
        rows[-1]["with_secagg"] = _row(eps, "success_per_seed", [b for _, b in both])
        print(
            f"  {_label(eps)} + SecAgg+: label guessed at "
            f"{statistics.mean(b for _, b in both):.0%} (the sum's sign for all)"
        )
        print(
            f"  {_label(eps)}: label guessed at "
            f"{statistics.mean(rates):.0%} of {n_sites} one-case sites "
            f"(per seed {', '.join(f'{r:.0%}' for r in rates)})",
            flush=True,
        )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default="speed,attack,auc", help="speed,attack,auc")
    ap.add_argument("--epsilons", default="1,3,8", help="dp-epsilon budgets (1,3,8)")
    ap.add_argument("--seeds", default="2024,2025,2026", help="run-config seeds")
    ap.add_argument("--repeats", type=int, default=5, help="speed: epochs per kind")
    ap.add_argument("--attack-sites", type=int, default=20)
    ap.add_argument("--json", help="write the results here as JSON")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    epsilons = [float(x) for x in args.epsilons.split(",")]
    seeds = [int(x) for x in args.seeds.split(",")]
    result: dict = {
        **run_info(),
        "seeds": seeds,
    }
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp:
        if "speed" in parts:
            print("DP-SGD epoch time / plain epoch time:", flush=True)
            result["speed"] = part_speed(args.repeats)
        if "attack" in parts:
            print("Label-leak attack on one-case sites (head-bias change):", flush=True)
            result["attack"] = part_attack(epsilons, seeds, args.attack_sites)
        if "auc" in parts:
            print("Test AUC of the default scenario, federated:", flush=True)
            result["auc"] = part_auc(epsilons, seeds, Path(tmp))
            for row in result["auc"]:
                eps = row["dp_epsilon"]
                print(f"  {_label(eps)}: {row['mean']:.3f} ± {row['sd']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
