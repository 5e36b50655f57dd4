"""``oncofed resume RUN_DIR``: continue an interrupted run from its last complete
round (a new ``flwr run`` with the run's own config and ``resume-from``)."""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

DEFAULT_APP = "simulations/lits_sites"


def add(sub: argparse._SubParsersAction) -> None:
    """Register the subcommand on the ``oncofed`` parser."""
    p = sub.add_parser(
        "resume",
        help="continue an interrupted run from its last complete round",
        description="Submit a new Flower run that continues RUN_DIR (a run folder "
        "whose server was killed or whose SuperLink went down) from its last "
        "complete round: the same config (RUN_DIR/config.json), global model, "
        "server optimiser state, random generators, round numbers and run store; "
        "each site reads its own DP-SGD ledger and FedBN layers back from its "
        "state-dir. Rows of the interrupted round are dropped and recomputed. "
        "SecAgg+ runs, and a folder another ServerApp still serves, are refused. "
        "After a SuperLink restart, stop the stale Flower run first (flwr stop "
        "RUN_ID CONNECTION).",
    )
    p.add_argument("run_dir", help="the run folder, as the run's log names it")
    p.add_argument(
        "--app",
        default=DEFAULT_APP,
        help="an OncoFed Flower app folder (any of simulations/*: the run's "
        f"config travels with the resume; default {DEFAULT_APP})",
    )
    p.add_argument(
        "--connection",
        default="",
        help="Flower connection (SuperLink) to run on; default: the local "
        "simulation, with as many SuperNodes as the run has sites",
    )
    p.add_argument(
        "--num-supernodes",
        type=int,
        help="a simulation's SuperNode count (default without --connection: the "
        "run's site count; give it for a simulation --connection too, since the "
        "local SuperLink keeps the last count it was given)",
    )
    p.set_defaults(func=run)


def _toml(value: Any) -> str:
    """A TOML value: basic strings (JSON's escapes are TOML's), numbers, bools."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))


def run_config_file(run_dir: Path, folder: Path) -> Path:
    """The run's stored config plus ``resume-from``, as a TOML file that
    ``flwr run --run-config`` reads."""
    from oncofed.common.errors import DataError

    path = run_dir / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DataError(
            path, "contents", f"unreadable ({err})", "give a run folder OncoFed wrote"
        ) from None
    if not isinstance(config, dict):
        raise DataError(path, "contents", "not a JSON object", "give a run folder")
    config["resume-from"] = str(run_dir)
    out = folder / "resume-config.toml"
    out.write_text("".join(f"{k} = {_toml(v)}\n" for k, v in config.items()))
    return out


def _sites(run_dir: Path) -> int:
    try:
        return len(json.loads((run_dir / "provenance.json").read_text())["sites"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _status(run_dir: Path) -> str:
    from oncofed.common.tracking.store import RUN_STORE, RunStore

    runs = RunStore(run_dir / RUN_STORE, readonly=True).runs()
    return str(runs["status"].iloc[-1]) if not runs.empty else "unknown"


def run(args: argparse.Namespace) -> int:
    from oncofed.common.experiments.ablation.federation import flwr_executable
    from oncofed.common.tracking.store import RUN_STORE

    run_dir = Path(args.run_dir).expanduser().resolve()
    if not (run_dir / RUN_STORE).is_file() or not (run_dir / "config.json").is_file():
        print(
            f"{run_dir}: not a run folder (no {RUN_STORE} and config.json); give "
            "the folder the run's log names",
            file=sys.stderr,
        )
        return 2
    app = Path(args.app)
    if not (app / "pyproject.toml").is_file():
        print(
            f"--app {app}: no Flower app here (no pyproject.toml); run from the "
            "OncoFed checkout or give --app simulations/<scenario>",
            file=sys.stderr,
        )
        return 2
    if _status(run_dir) == "finished":
        print(f"{run_dir}: that run finished; nothing to resume", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [flwr_executable(), "run", str(app)]
        cmd += [args.connection] if args.connection else []
        cmd += ["--stream", "--run-config", str(run_config_file(run_dir, Path(tmp)))]
        nodes = args.num_supernodes or (0 if args.connection else _sites(run_dir))
        if nodes:
            cmd += ["--federation-config", f"num-supernodes={nodes}"]
        bin_dir = str(Path(sys.executable).parent)
        path = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
        env = dict(os.environ, PATH=path)
        print(f"Resuming {run_dir} ...", flush=True)
        subprocess.run(cmd, env=env, check=False)
    status = _status(run_dir)  # flwr run --stream exits 0 even when a run fails
    if status != "finished":
        print(
            f"{run_dir}: the resumed run ended '{status}'; the log above says why",
            file=sys.stderr,
        )
        return 1
    print(f"Resumed and finished: {run_dir}")
    return 0
