"""Federated Models Genesis pretraining and label efficiency (issue 18, item 4).

For each ``--seeds`` seed, on the scanner-shift scenario (``simulations/
scanner_shift_sites``; CT only):

1. one federated pretraining run (``task = "pretrain"``, ``--pretrain-rounds``
   rounds): every site restores distorted CT of its training cases and of the
   public reference cohort it holds; no label is read. It writes
   ``checkpoints/ct-encoder.pt`` (the round with the best validation PSNR).
2. federated CT-only classification with ``label-fraction`` 0.1, 0.25 and 1.0 of
   every site's training labels, from scratch and from that encoder
   (``pretrained = "ct=…"``). Reported: test AUC of the validation-selected
   round, mean ± sd over seeds, and the per-seed paired difference
   (pretrained - scratch).

Also: wall time of one pretraining round (the server's elapsed time over the
rounds), on this machine.

What the figures can say: the generator's CT carries the lesion signal in
lesion contrast inside a liver crop, and the scanner-shift sites differ in HU
offset, gain, noise and kernel; a pretrained encoder helps here only if
restoring such CT teaches features of it. "No detectable difference" is a
possible answer, and the table says which.

    python benchmarks/pretraining.py --json /tmp/pretraining.json
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from _runinfo import run_info  # benchmarks/ is the script folder

from oncofed.common.paths import scratch_dir

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "simulations" / "scanner_shift_sites"


def _flwr() -> str:
    from oncofed.common.experiments.ablation.federation import flwr_executable

    return flwr_executable()


def _store(run_root: Path) -> Path:
    return next(run_root.glob("*/run.sqlite"))


def _selected(run_root: Path, metric: str, split: str = "test") -> float:
    from oncofed.common.tracking.store import RunStore

    return RunStore(_store(run_root), readonly=True).selected_value(metric, split)


def _round_seconds(run_root: Path) -> float:
    """Mean wall time of a round: the server's elapsed time at the last round over
    the rounds (training, aggregation and validation)."""
    with sqlite3.connect(_store(run_root)) as db:
        rnd, elapsed = db.execute(
            "SELECT round, value FROM global_metrics WHERE split = 'val' AND "
            "metric = 'elapsed-s' ORDER BY round DESC LIMIT 1"
        ).fetchone()
    return float(elapsed) / max(int(rnd), 1)


def flwr_run(run_root: Path, keys: str) -> None:
    out = subprocess.run(
        [_flwr(), "run", str(APP), "--stream", "--run-config",
         f"{keys} run-dir='{run_root}'"],
        capture_output=True, text=True, cwd=ROOT, timeout=3600,
    )  # fmt: skip
    if not list(run_root.glob("*/run.sqlite")):
        raise SystemExit(f"flwr run ({keys}) left no run store:\n"
                         f"{(out.stdout + out.stderr)[-3000:]}")  # fmt: skip


def pretrain(seed: int, rounds: int, work: Path) -> tuple[Path, float, float]:
    """(encoder file, validation-selected test PSNR, seconds per round)."""
    root = work / f"pretrain-seed-{seed}"
    flwr_run(root, f"task='pretrain' modalities='ct' seed={seed} "
                   f"num-server-rounds={rounds}")  # fmt: skip
    (encoder,) = root.glob("*/checkpoints/ct-encoder.pt")
    return encoder, _selected(root, "restore-psnr"), _round_seconds(root)


def classify(seed: int, fraction: float, encoder: Path | None, work: Path) -> float:
    name = f"{'genesis' if encoder else 'scratch'}-f{fraction:g}-seed-{seed}"
    keys = f"modalities='ct' seed={seed} label-fraction={fraction}"
    if encoder is not None:
        keys += f" pretrained='ct={encoder}'"
    flwr_run(work / name, keys)
    return _selected(work / name, "auc")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="2024,2025,2026", help="run-config seeds")
    ap.add_argument("--fractions", default="0.1,0.25,1.0", help="label fractions")
    ap.add_argument("--pretrain-rounds", type=int, default=10, help="rounds (10)")
    ap.add_argument("--json", help="write the results here as JSON")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    fractions = [float(f) for f in args.fractions.split(",")]
    started = time.time()
    result: dict = {
        **run_info(),
        "seeds": seeds,
        "pretrain": [],
        "auc": {},
    }
    with tempfile.TemporaryDirectory(
        prefix="oncofed-pretraining-", dir=scratch_dir()
    ) as tmp:
        work = Path(tmp)
        for seed in seeds:
            t = time.time()
            encoder, psnr, per_round = pretrain(seed, args.pretrain_rounds, work)
            result["pretrain"].append(
                {"seed": seed, "test_psnr": psnr, "seconds_per_round": per_round}
            )
            print(f"seed {seed}: pretraining test PSNR {psnr:.2f} dB, "
                  f"{per_round:.1f} s per round ({time.time() - t:.0f} s)",
                  flush=True)  # fmt: skip
            for f in fractions:
                for arm, enc in (("scratch", None), ("genesis", encoder)):
                    auc = classify(seed, f, enc, work)
                    result["auc"].setdefault(f"{arm} {f:g}", []).append(auc)
                    print(f"  {arm:>8} labels {f:>5.0%}: test AUC {auc:.3f}",
                          flush=True)  # fmt: skip
    lines = ["| labels | from scratch | Models Genesis | difference (per seed) |",
             "|---|---|---|---|"]  # fmt: skip
    for f in fractions:
        a, b = result["auc"][f"scratch {f:g}"], result["auc"][f"genesis {f:g}"]
        diff = [y - x for x, y in zip(a, b, strict=True)]
        sd = statistics.stdev if len(seeds) > 1 else (lambda v: 0.0)
        lines.append(
            f"| {f:.0%} | {statistics.mean(a):.3f} ± {sd(a):.3f} | "
            f"{statistics.mean(b):.3f} ± {sd(b):.3f} | "
            f"{statistics.mean(diff):+.3f} ({', '.join(f'{d:+.3f}' for d in diff)}) |"
        )
    print("\n".join(lines))
    result["table"] = lines
    result["minutes"] = (time.time() - started) / 60
    print(f"{result['machine']}; {result['minutes']:.0f} min")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
