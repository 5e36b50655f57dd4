"""Poisoned and broken sites against the server's guard and Flower's robust
strategies (issue 19, item 9).

For each ``--seeds`` seed and each ``--strategies`` strategy, one ``flwr run`` of
the default scenario (``simulations/lits_sites``, 7 virtual hospitals) trains,
as a ``sweep``, the clean model and one model per red-team attack (``attack``:
sign-flip, scale, noise, nan, label-flip) with 1 and with 2 of the 7 sites
attacking (``attack-sites``). The guard runs with its defaults (update norm
bound 10 x the round's median). Reported per strategy, attack and k: test AUC of
the validation-selected round (mean ± sd over seeds), its paired difference from
the same strategy's clean run, the replies the guard rejected, and whether the
final model is finite.

What the generator was built to contain: the synthetic hospitals carry the
lesion signal in CT and clinical features; nothing in them knows of attacks. An
attack that does not lower AUC here says the default model and data shrug it
off; it does not say a real consortium would. The clean run of each strategy is
the "no" case: robust aggregation itself may cost AUC.

    python benchmarks/robustness.py --json /tmp/robustness.json
"""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _runinfo import run_info  # benchmarks/ is the script folder

from oncofed.common.paths import scratch_dir

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "simulations" / "lits_sites"
ATTACKS = "sign-flip,scale,noise,nan,label-flip"
STRATEGIES = "fedavg,fedmedian,fedtrimmedavg,krum,multikrum,bulyan"


def _flwr() -> str:
    from oncofed.common.experiments.ablation.federation import flwr_executable

    return flwr_executable()


def entries(attacks: list[str], ks: list[int]) -> list[tuple[str, int]]:
    return [("none", 0)] + [(a, k) for a in attacks for k in ks]


def run_strategy(
    work: Path,
    seed: int,
    strategy: str,
    grid: list[tuple[str, int]],
    rounds: int,
    extra: str = "",
) -> None:
    sweep = "; ".join(f"attack={a} attack-sites={k}" for a, k in grid)
    keys = (
        f"seed={seed} strategy='{strategy}' num-server-rounds={rounds} "
        f"sweep='{sweep}' run-dir='{work}' {extra}"
    )
    out = subprocess.run(
        [_flwr(), "run", str(APP), "--stream", "--run-config", keys,
         "--federation-config", "num-supernodes=7"],
        capture_output=True, text=True, cwd=ROOT, timeout=7200,
    )  # fmt: skip
    if len(list(work.glob("*/run.sqlite"))) < len(grid):
        print((out.stdout + out.stderr)[-3000:], file=sys.stderr)


def read_entry(work: Path, k: int) -> dict:
    """Test AUC of the selected round, rejected replies, finite final model."""
    from oncofed.common.tracking.store import RunStore

    found = sorted(work.glob(f"*-sweep{k}/run.sqlite"))
    if not found:
        return {"auc": math.nan, "rejected": 0, "finished": False}
    store = RunStore(found[-1], readonly=True)
    with sqlite3.connect(found[-1]) as db:
        status = db.execute("SELECT status FROM runs").fetchone()[0]
        rejected = db.execute(
            "SELECT COUNT(*) FROM reply_events WHERE phase = 'train' AND "
            "outcome = 'rejected'"
        ).fetchone()[0]
    try:
        auc = store.selected_value("auc", "test")
    except Exception:  # noqa: BLE001 - a run that selected nothing
        auc = math.nan
    return {"auc": auc, "rejected": int(rejected), "finished": status == "finished"}


def _mean_sd(xs: list[float], signed: bool = False) -> str:
    xs = [x for x in xs if not math.isnan(x)]
    if not xs:
        return "n/a"
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    mean = f"{statistics.mean(xs):+.3f}" if signed else f"{statistics.mean(xs):.3f}"
    return f"{mean} ± {sd:.3f}"


def table(result: dict) -> list[str]:
    lines = [
        "| strategy | attack | sites attacking | test AUC | minus clean | "
        "rejected updates | finished |",
        "|---|---|---|---|---|---|---|",
    ]
    for strategy, rows in result["runs"].items():
        clean = rows["none/0"]
        for name, row in rows.items():
            attack, k = name.split("/")
            diffs = [
                a - c
                for a, c in zip(row["auc"], clean["auc"], strict=True)
                if not (math.isnan(a) or math.isnan(c))
            ]
            diff = (
                "—"
                if name == "none/0"
                else (f"{statistics.mean(diffs):+.3f}" if diffs else "n/a")
            )
            lines.append(
                f"| {strategy} | {attack} | {k} | {_mean_sd(row['auc'])} | {diff} | "
                f"{sum(row['rejected'])} | {sum(row['finished'])}/{len(row['auc'])} |"
            )
    return lines


def wide_table(result: dict) -> list[str]:
    """One row per strategy: clean AUC (mean ± sd), then per attack and k the
    mean paired difference from clean ± its sd and the rejected updates."""
    first = next(iter(result["runs"].values()))
    names = [n for n in first if n != "none/0"]
    head = ["strategy", "clean"] + [n.replace("/", " ×") for n in names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for strategy, rows in result["runs"].items():
        cells = [strategy, _mean_sd(rows["none/0"]["auc"])]
        for name in names:
            diffs = [
                a - c
                for a, c in zip(rows[name]["auc"], rows["none/0"]["auc"], strict=True)
                if not (math.isnan(a) or math.isnan(c))
            ]
            cell = _mean_sd(diffs, signed=True)
            rejected = sum(rows[name]["rejected"])
            cells.append(cell + (f" ({rejected} rej.)" if rejected else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _load_partial(path: Path, rounds: int, grid: list, extra: str) -> dict:
    """Results of an earlier, interrupted invocation with the same settings."""
    if not path.is_file():
        return {}
    old = json.loads(path.read_text())
    if (
        old.get("rounds") != rounds
        or old.get("grid") != [f"{a}/{n}" for a, n in grid]
        or old.get("set", "") != extra
    ):
        raise SystemExit(
            f"{path}: written with other --rounds/--attacks/--sites/--set; "
            "pick another --json file or drop --continue"
        )
    return old.get("per_seed", {})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="2024,2025,2026", help="run-config seeds")
    ap.add_argument("--strategies", default=STRATEGIES, help=f"({STRATEGIES})")
    ap.add_argument("--attacks", default=ATTACKS, help=f"({ATTACKS})")
    ap.add_argument("--sites", default="1,2", help="attack-sites values (1,2)")
    ap.add_argument("--rounds", type=int, default=4, help="rounds per model (4)")
    ap.add_argument(
        "--json", help="write the results here as JSON (after every strategy)"
    )
    ap.add_argument(
        "--set",
        default="",
        help='more run-config keys for every model, e.g. "byzantine-sites=2 '
        'trim-fraction=0.3" (the strategies told how many sites attack)',
    )
    ap.add_argument(
        "--continue", dest="cont", action="store_true",
        help="keep the seeds and strategies already in --json (same settings) "
        "and run only the missing ones: the benchmark takes hours",
    )  # fmt: skip
    args = ap.parse_args()
    if args.cont and not args.json:
        ap.error("--continue needs --json")
    seeds = [int(s) for s in args.seeds.split(",")]
    strategies = args.strategies.split(",")
    grid = entries(args.attacks.split(","), [int(k) for k in args.sites.split(",")])
    started = time.time()
    per_seed: dict = (
        _load_partial(Path(args.json), args.rounds, grid, args.set) if args.cont else {}
    )
    result: dict = {**run_info(), "seeds": seeds, "rounds": args.rounds}
    result["set"] = args.set
    result["grid"] = [f"{a}/{n}" for a, n in grid]

    def assemble() -> None:
        # runs[strategy][entry][key] = one value per seed, in --seeds order
        runs: dict = {}
        for strategy in strategies:
            for attack, n in grid:
                row = runs.setdefault(strategy, {}).setdefault(
                    f"{attack}/{n}", {"auc": [], "rejected": [], "finished": []}
                )
                for seed in seeds:
                    got = per_seed.get(str(seed), {}).get(strategy, {})
                    entry = got.get("entries", {}).get(f"{attack}/{n}")
                    if entry is not None:
                        for key in row:
                            row[key].append(entry[key])
        result["per_seed"] = per_seed
        result["runs"] = runs
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2))

    with tempfile.TemporaryDirectory(prefix="oncofed-robust-", dir=scratch_dir()) as t:
        for seed in seeds:
            for strategy in strategies:
                if strategy in per_seed.get(str(seed), {}):
                    print(f"seed {seed} {strategy}: kept from {args.json}")
                    continue
                work = Path(t) / f"{strategy}-seed-{seed}"
                t0 = time.time()
                run_strategy(work, seed, strategy, grid, args.rounds, args.set)
                got_rows = {}
                for k, (attack, n) in enumerate(grid):
                    got = read_entry(work, k)
                    got_rows[f"{attack}/{n}"] = got
                    print(f"seed {seed} {strategy:>13} {attack:>10} x{n}: "
                          f"AUC {got['auc']:.3f}, {got['rejected']} rejected",
                          flush=True)  # fmt: skip
                per_seed.setdefault(str(seed), {})[strategy] = {
                    "commit": result.get("commit"),
                    "seconds": round(time.time() - t0),
                    "entries": got_rows,
                }
                assemble()
                print(f"  ({time.time() - t0:.0f} s)", flush=True)
    assemble()
    result["seconds"] = round(time.time() - started)
    print("\n".join(table(result)))
    print()
    print("\n".join(wide_table(result)))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
