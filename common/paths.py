"""Where OncoFed keeps things on disk.

``ONCOFED_HOME`` (default ``~/.oncofed``) holds ``data/layout<N>/`` (generated
synthetic hospitals and prepared datasets, cached and reused) and ``runs/`` (the
default run directory). ``ONCOFED_RUN_ROOT`` (default ``ONCOFED_HOME``) is the
operator's bound on run-config ``run-dir``, ``pretrained`` and ``resume-from``;
``ONCOFED_DATA_ROOT`` (default: ``ONCOFED_HOME`` and the run root) on
run-config ``data-root`` where the ServerApp opens it.
"""

from __future__ import annotations

import os
from pathlib import Path


def oncofed_home() -> Path:
    """Root folder for cached data and runs: ``$ONCOFED_HOME`` or ``~/.oncofed``."""
    return Path(os.environ.get("ONCOFED_HOME", "~/.oncofed")).expanduser().resolve()


# Version of the prepared layout (site folders, server-val, server-test). Cached
# folders live under a folder named after it, so a layout change (2: validation
# splits and server-val) never reuses a folder written by older code.
PREPARED_LAYOUT = 2


def data_cache_dir() -> Path:
    """Cached generated and prepared datasets of the current layout."""
    return oncofed_home() / "data" / f"layout{PREPARED_LAYOUT}"


def default_runs_dir() -> Path:
    return oncofed_home() / "runs"


def run_root() -> Path:
    """The folder every run directory must lie under: ``$ONCOFED_RUN_ROOT``, set
    by the operator where the ServerApp runs (the SuperLink's host), or
    ``$ONCOFED_HOME``. Run-config ``run-dir`` comes from whoever submits a run;
    this root does not."""
    env = os.environ.get("ONCOFED_RUN_ROOT")
    return Path(env).expanduser().resolve() if env else oncofed_home()


def data_roots() -> list[Path]:
    """The folders a run-config ``data-root`` must lie under where the ServerApp
    opens it: ``$ONCOFED_DATA_ROOT`` (one or more, separated by ``os.pathsep``),
    set by the operator where the SuperLink runs, or ``$ONCOFED_HOME`` and the
    run root."""
    env = os.environ.get("ONCOFED_DATA_ROOT")
    if env:
        return [Path(p).expanduser().resolve() for p in env.split(os.pathsep) if p]
    return list(dict.fromkeys([oncofed_home(), run_root()]))


def scratch_dir() -> Path:
    """``$ONCOFED_RUN_ROOT/tmp`` (or ``$ONCOFED_HOME/tmp``): benchmarks' and
    ablations' temporary runs, inside the run root."""
    path = run_root() / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path


def pseudonym_salt() -> str:
    """This machine's secret salt for pseudonymous case IDs.

    Created once (random) as ``$ONCOFED_HOME/pseudonym-salt`` and reused, so the
    same patient gets the same pseudonym in every preparation on this machine; keep
    it at the site. ``ONCOFED_PSEUDONYM_SALT`` overrides it (e.g. a consortium-wide
    salt so linked records from two sources match).
    """
    import os
    import secrets

    env = os.environ.get("ONCOFED_PSEUDONYM_SALT")
    if env:
        return env
    path = oncofed_home() / "pseudonym-salt"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(16))
        path.chmod(0o600)
    return path.read_text().strip()
