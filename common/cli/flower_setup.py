"""Configure Flower's local simulation for OncoFed (run by ``make setup``).

Flower keeps simulation settings (how many virtual SuperNodes, CPUs per client) in
its local SuperLink, set with ``flwr federation simulation-config``. OncoFed's
default scenario has 7 virtual hospitals, so set-up asks for 7 SuperNodes there:
then ``flwr run simulations/lits_sites`` needs no extra flags. Override per run with
``--federation-config "num-supernodes=N"`` (and ``--run-config "num-sites=N"``).

A local SuperLink left running from another environment would run our app with
that environment's code, so set-up stops it first; Flower restarts it on demand
from this environment.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_SITES = 7
LOCAL_PORT = "39091"  # Flower's managed local SuperLink (flwr.cli.constant)


def _local_superlinks() -> list[tuple[int, str]]:
    """(pid, executable) of running managed local SuperLinks."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        if (
            any(a.endswith("flower-superlink") for a in args[:2])
            and "--simulation" in args
            and LOCAL_PORT in args
        ):
            found.append((int(proc.name), args[0] if args else ""))
    return found


def stop_foreign_local_superlink(bin_dir: Path) -> None:
    for pid, _exe in _local_superlinks():
        print(
            f"Stopping the local Flower SuperLink (pid {pid}) so that it restarts "
            f"from {bin_dir}"
        )
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        for _ in range(50):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.1)


def main() -> int:
    bin_dir = Path(sys.executable).parent
    flwr = shutil.which("flwr", path=str(bin_dir)) or shutil.which("flwr")
    if flwr is None:
        print("flwr not found: install the project first (pip install -e .)")
        return 1
    stop_foreign_local_superlink(bin_dir)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = [
        flwr,
        "federation",
        "simulation-config",
        "--num-supernodes",
        str(DEFAULT_SITES),
    ]
    print("$", " ".join(cmd[1:]))
    return subprocess.call(cmd, env=env, cwd=Path.home())


if __name__ == "__main__":
    raise SystemExit(main())
