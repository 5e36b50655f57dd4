"""What every benchmark's JSON records about its own run: the command, the
commit it ran on and the machine (BENCHMARKS.md names all three)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path


def run_info(machine_extra: str = "") -> dict[str, str]:
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {
        "command": "python " + " ".join(sys.argv),
        "commit": commit,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python "
        f"{platform.python_version()}{machine_extra}",
    }
