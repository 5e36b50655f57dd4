"""Does a killed and resumed run end where an uninterrupted one does? (issue 19,
item 6)

For each setting and ``--seeds`` seed, three runs of the default scenario app on
``--sites`` generated hospitals, on a SuperLink this script starts on 127.0.0.1
(simulation runtime): A and B uninterrupted, C killed with SIGKILL (its ServerApp
process) once round ``--kill-after`` is complete and the next round's training
has been recorded, then continued with ``oncofed resume``. Reported: the last
round's validation AUC of each, the largest absolute difference between C's and
A's final weights, and |A - B| beside |A - C|: the run-to-run noise next to what
resuming adds.

Settings: ``fedadam`` (deterministic: A, B and C should be bit-identical; the
"no" case: resuming may not move the model), ``central-dp`` (dp = 'central'
with adaptive clipping: Flower's server-side noise draws from NumPy's global
generator, which the ServerApp seeds and ``resume.pt`` saves, so C should match
A too) and ``dp-sgd``
(dp = 'sample': the sites' noise is seeded, but a round the sites trained
before the kill is trained again and counted twice in their ledgers, and their
budget is planned for exactly ``--rounds`` rounds: C's sites refuse the last
round, so C may end one round short of A: the cost of honest accounting).

What the generator was built to contain: a lesion signal in CT and clinical
features; nothing here depends on it: the question is only whether the weights
match.

    python benchmarks/resume.py --json /tmp/resume.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _runinfo import run_info  # benchmarks/ is the script folder

from oncofed.common.paths import scratch_dir
from oncofed.common.procs import descendants

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "simulations" / "lits_sites"
BIN = Path(sys.executable).parent
SETTINGS = {
    "fedadam": "strategy='fedadam'",
    "central-dp": "dp='central' dp-clipping='server-adaptive' dp-noise-multiplier=0.3",
    "dp-sgd": "dp='sample'",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Federation:
    """A private simulation SuperLink and the runs submitted to it."""

    def __init__(self, work: Path, sites: int) -> None:
        self.work, self.sites = work, sites
        home = work / "flwr-home"
        home.mkdir(parents=True)
        self.port = _free_port()
        (home / "config.toml").write_text(
            f'[superlink]\ndefault = "bench"\n\n[superlink.bench]\n'
            f'address = "127.0.0.1:{self.port}"\ninsecure = true\n'
        )
        self.env = dict(
            os.environ,
            FLWR_HOME=str(home),
            ONCOFED_RUN_ROOT=str(work),
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            NO_PROXY="127.0.0.1,localhost",
            no_proxy="127.0.0.1,localhost",
        )
        self.start_superlink()

    def superlink_args(self) -> list[str]:
        return ["--simulation"]

    def start_superlink(self) -> None:
        self.superlink = subprocess.Popen(
            [str(BIN / "flower-superlink"), "--insecure", *self.superlink_args(),
             "--port", str(self.port), "--host", "127.0.0.1"],
            env=self.env, cwd=self.work, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        deadline = time.time() + 60
        while not _listening(self.port):
            if time.time() > deadline:
                raise SystemExit("the SuperLink did not start within 60 s")
            time.sleep(0.3)

    def command(self, config: str) -> list[str]:
        return [
            str(BIN / "flwr"), "run", str(APP), "bench", "--stream",
            "--run-config", config,
            "--federation-config", f"num-supernodes={self.sites}",
        ]  # fmt: skip

    def run(self, config: str) -> Path:
        out = self.work / "log.txt"
        with open(out, "a") as log:
            subprocess.run(
                self.command(config), env=self.env, cwd=self.work, stdout=log,
                stderr=subprocess.STDOUT, timeout=3600,
            )  # fmt: skip
        return out

    def run_killed(self, config: str, run_root: Path, kill_after: int) -> Path:
        """The run, its ServerApp killed once round ``kill_after`` is saved and
        round ``kill_after + 1``'s training recorded; then ``oncofed resume``."""
        with open(self.work / "log.txt", "a") as log:
            client = subprocess.Popen(
                self.command(config), env=self.env, cwd=self.work, stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
            deadline = time.time() + 3600
            while not _ready_to_kill(run_root, kill_after):
                if time.time() > deadline or client.poll() not in (None, 0):
                    raise SystemExit(f"the run to kill never reached {kill_after}")
                time.sleep(0.2)
            for pid, args in descendants(self.superlink.pid):
                if "flwr-simulation" in args:
                    os.kill(pid, signal.SIGKILL)
            client.kill()
            client.wait()
            (run_dir,) = run_root.iterdir()
            subprocess.run(
                [str(BIN / "oncofed"), "resume", str(run_dir), "--app", str(APP),
                 "--connection", "bench", "--num-supernodes", str(self.sites)],
                env=self.env, cwd=self.work, stdout=log, stderr=subprocess.STDOUT,
                timeout=3600,
            )  # fmt: skip
        return run_dir

    def stop(self) -> None:
        try:
            os.killpg(self.superlink.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.superlink.wait()


class Deployment(Federation):
    """A private SuperLink (deployment runtime, its state in a database file)
    and ``sites`` SuperNodes on 127.0.0.1, each playing partition ``i``."""

    def __init__(self, work: Path, sites: int) -> None:
        super().__init__(work, sites)
        self.nodes = [
            subprocess.Popen(
                [
                    str(BIN / "flower-supernode"),
                    "--insecure",
                    "--superlink",
                    f"127.0.0.1:{self.port}",
                    "--port",
                    str(_free_port()),
                    "--node-config",
                    f"partition-id={i} num-partitions={sites}",
                ],
                env=self.env,
                cwd=work,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
            for i in range(sites)
        ]

    def superlink_args(self) -> list[str]:
        return ["--database", str(self.work / "superlink.db")]

    def command(self, config: str) -> list[str]:
        return [str(BIN / "flwr"), "run", str(APP), "bench", "--stream",
                "--run-config", config]  # fmt: skip

    def run_killed(self, config: str, run_root: Path, kill_after: int) -> Path:
        """The run; the SuperLink process killed with SIGKILL once round
        ``kill_after`` is saved and the next round's training recorded, then
        started again on its database; the stale Flower run stopped; then
        ``oncofed resume --connection``."""
        with open(self.work / "log.txt", "a") as log:
            client = subprocess.Popen(
                self.command(config), env=self.env, cwd=self.work, stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
            deadline = time.time() + 3600
            while not _ready_to_kill(run_root, kill_after):
                if time.time() > deadline or client.poll() not in (None, 0):
                    raise SystemExit(f"the run to kill never reached {kill_after}")
                time.sleep(0.2)
            children = descendants(self.superlink.pid)
            os.kill(self.superlink.pid, signal.SIGKILL)  # the SuperLink only
            self.superlink.wait()
            client.kill()
            client.wait()
            # Flower's SuperExec and ServerApp watch their parent and end with it
            deadline = time.time() + 120
            while any(_alive(pid) for pid, _ in children):
                if time.time() > deadline:
                    raise SystemExit("the ServerApp outlived its SuperLink")
                time.sleep(0.5)
            self.start_superlink()
            (run_dir,) = run_root.iterdir()
            run_id = run_dir.name.rsplit("-run", 1)[1]
            subprocess.run(
                [str(BIN / "flwr"), "stop", run_id, "bench"], env=self.env,
                cwd=self.work, stdout=log, stderr=subprocess.STDOUT, timeout=120,
            )  # fmt: skip
            subprocess.run(
                [str(BIN / "oncofed"), "resume", str(run_dir), "--app", str(APP),
                 "--connection", "bench"],
                env=self.env, cwd=self.work, stdout=log, stderr=subprocess.STDOUT,
                timeout=3600,
            )  # fmt: skip
        return run_dir

    def stop(self) -> None:
        for proc in [*self.nodes, self.superlink]:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _ready_to_kill(run_root: Path, kill_after: int) -> bool:
    for store in run_root.glob("*/run.sqlite"):
        resume = store.parent / "checkpoints" / "resume.pt"
        try:
            saved = torch.load(resume, weights_only=True)["round"]
            with sqlite3.connect(store) as db:
                trained = db.execute(
                    "SELECT 1 FROM site_metrics WHERE phase = 'train' AND round = ?",
                    (kill_after + 1,),
                ).fetchone()
        except (OSError, RuntimeError, EOFError, KeyError, sqlite3.Error):
            return False
        return saved >= kill_after and trained is not None
    return False


def outcome(run_dir: Path, rounds: int) -> dict:
    """The final weights, the last round's validation AUC, status, resumes."""
    with sqlite3.connect(run_dir / "run.sqlite") as db:
        status = db.execute("SELECT status FROM runs").fetchone()[0]
        auc = db.execute(
            "SELECT value FROM global_metrics WHERE split = 'val' AND "
            "metric = 'auc' AND round = ?",
            (rounds,),
        ).fetchone()
        resumed = db.execute("SELECT round FROM resumes").fetchall()
        refused = db.execute(
            "SELECT COUNT(*) FROM reply_events WHERE reason LIKE '%budget%'"
        ).fetchone()[0]
    ckpt = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    return {
        "status": status,
        "auc": float(auc[0]) if auc and auc[0] is not None else float("nan"),
        "resumed_after": [r[0] for r in resumed],
        "budget_refusals": int(refused),
        "weights": ckpt["state_dict"],
    }


def max_diff(a: dict, b: dict) -> float:
    return max(
        float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0
        for k in a
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="2024,2025,2026", help="run-config seeds")
    ap.add_argument("--settings", default=",".join(SETTINGS), help="(all)")
    ap.add_argument("--sites", type=int, default=3, help="generated hospitals (3)")
    ap.add_argument("--rounds", type=int, default=4, help="rounds per run (4)")
    ap.add_argument("--kill-after", type=int, default=2, help="(2)")
    ap.add_argument(
        "--deployment-seeds",
        default="",
        help="also, for these seeds (e.g. 2024), the fedadam run on a "
        "deployment SuperLink with --sites SuperNodes, the SuperLink killed with "
        "SIGKILL, started again and the run resumed, against an uninterrupted "
        "simulation run (default: none)",
    )
    ap.add_argument("--json", help="write the results here as JSON")
    args = ap.parse_args()
    # a stopped benchmark (SIGTERM) still stops the SuperLink it started
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if shutil.which("ps") is None:
        raise SystemExit("needs 'ps' to find the ServerApp process")
    seeds = [int(s) for s in args.seeds.split(",")]
    result: dict = {
        **run_info(),
        "seeds": seeds,
        "rounds": args.rounds,
        "kill_after": args.kill_after,
        "rows": [],
    }
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="oncofed-resume-", dir=scratch_dir()) as t:
        fed = Federation(Path(t), args.sites)
        try:
            for setting in [s for s in args.settings.split(",") if s]:
                for seed in seeds:
                    base = (
                        f"seed={seed} num-sites={args.sites} local-epochs=1 "
                        f"num-server-rounds={args.rounds} {SETTINGS[setting]}"
                    )
                    got = {}
                    for name in ("A", "B"):
                        root = Path(t) / f"{setting}-{seed}-{name}"
                        fed.run(f"{base} run-dir='{root}'")
                        got[name] = outcome(next(root.iterdir()), args.rounds)
                    root = Path(t) / f"{setting}-{seed}-C"
                    run_dir = fed.run_killed(
                        f"{base} run-dir='{root}'", root, args.kill_after
                    )
                    got["C"] = outcome(run_dir, args.rounds)
                    row = {
                        "setting": setting,
                        "seed": seed,
                        **{f"auc_{k}": v["auc"] for k, v in got.items()},
                        "status_C": got["C"]["status"],
                        "resumed_after": got["C"]["resumed_after"],
                        "budget_refusals_C": got["C"]["budget_refusals"],
                        "max_weight_diff_AB": max_diff(
                            got["A"]["weights"], got["B"]["weights"]
                        ),
                        "max_weight_diff_AC": max_diff(
                            got["A"]["weights"], got["C"]["weights"]
                        ),
                    }
                    result["rows"].append(row)
                    print(json.dumps(row), flush=True)
        finally:
            fed.stop()
        for seed in [int(x) for x in args.deployment_seeds.split(",") if x]:
            result["rows"].append(deployment_row(Path(t), args, seed))
            print(json.dumps(result["rows"][-1]), flush=True)
    result["seconds"] = round(time.time() - started)
    print("\n".join(table(result["rows"])))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


def deployment_row(work: Path, args: argparse.Namespace, seed: int) -> dict:
    """Simulation, uninterrupted (A) against deployment, SuperLink killed and
    the run resumed (C), for FedAdam."""
    base = (
        f"seed={seed} num-sites={args.sites} local-epochs=1 "
        f"num-server-rounds={args.rounds} {SETTINGS['fedadam']}"
    )
    sim = Federation(work / f"sim-{seed}", args.sites)
    try:
        root_a = work / f"sim-{seed}" / "A"
        sim.run(f"{base} run-dir='{root_a}'")
    finally:
        sim.stop()
    dep = Deployment(work / f"dep-{seed}", args.sites)
    try:
        root_c = work / f"dep-{seed}" / "C"
        run_dir = dep.run_killed(f"{base} run-dir='{root_c}'", root_c, args.kill_after)
    finally:
        dep.stop()
    a, c = outcome(next(root_a.iterdir()), args.rounds), outcome(run_dir, args.rounds)
    return {
        "setting": "fedadam, deployment (SuperLink killed) vs simulation",
        "seed": seed,
        "auc_A": a["auc"],
        "auc_B": float("nan"),
        "auc_C": c["auc"],
        "status_C": c["status"],
        "resumed_after": c["resumed_after"],
        "budget_refusals_C": c["budget_refusals"],
        "max_weight_diff_AB": float("nan"),
        "max_weight_diff_AC": max_diff(a["weights"], c["weights"]),
    }


def table(rows: list[dict]) -> list[str]:
    lines = [
        "| setting | seed | val AUC A | B | C (resumed) | resumed after round | "
        "max abs weight diff A-B | A-C | C's replies refused for budget |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['setting']} | {r['seed']} | {r['auc_A']:.4f} | {r['auc_B']:.4f} | "
            f"{r['auc_C']:.4f} | {r['resumed_after']} ({r['status_C']}) | "
            f"{r['max_weight_diff_AB']:.2e} | {r['max_weight_diff_AC']:.2e} | "
            f"{r['budget_refusals_C']} |"
        )
    for setting in dict.fromkeys(r["setting"] for r in rows):
        sub = [r for r in rows if r["setting"] == setting]
        ab = [abs(r["auc_A"] - r["auc_B"]) for r in sub]
        ac = [abs(r["auc_A"] - r["auc_C"]) for r in sub]
        lines.append(
            f"\n{setting}: mean |AUC A - B| {statistics.mean(ab):.4f}, mean "
            f"|AUC A - C| {statistics.mean(ac):.4f} over {len(sub)} seed(s)"
        )
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
