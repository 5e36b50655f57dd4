"""Where OncoFed keeps things on disk.

``ONCOFED_HOME`` (default ``~/.oncofed``) holds ``data/`` (generated synthetic
hospitals, cached and reused) and ``runs/`` (the default run directory).
"""

from __future__ import annotations

import os
from pathlib import Path


def oncofed_home() -> Path:
    """Root folder for cached data and runs: ``$ONCOFED_HOME`` or ``~/.oncofed``."""
    return Path(os.environ.get("ONCOFED_HOME", "~/.oncofed")).expanduser().resolve()


def data_cache_dir() -> Path:
    return oncofed_home() / "data"


def default_runs_dir() -> Path:
    return oncofed_home() / "runs"
