"""What every benchmark's JSON records about its own run: the command, the
commit it ran on and the machine (BENCHMARKS.md names all three)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name and whether it has AVX-512: training on the CPU is
    bit-for-bit repeatable on one CPU model, not across models (floating-point
    kernels differ), so a figure names the CPU it came from."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "CPU model unknown"
    name = next(
        (ln.split(":", 1)[1].strip() for ln in info.splitlines()
         if ln.startswith("model name")),
        platform.processor() or "CPU model unknown",
    )  # fmt: skip
    flags = next((ln for ln in info.splitlines() if ln.startswith("flags")), "")
    return f"{name}, {'with' if 'avx512f' in flags.split() else 'no'} AVX-512"


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
        "machine": f"{platform.machine()} ({cpu_model()}), {os.cpu_count()} CPU "
        f"cores, Python "
        f"{platform.python_version()}{machine_extra}",
    }
