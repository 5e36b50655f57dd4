"""OncoFed shared core: config, data, models, training loop, metrics, run store.

``common`` never imports ``client`` or ``server``.
"""

__version__ = "0.1.0"


def code_version() -> str:
    """``0.1.0`` plus the git commit of the source tree when it is a checkout
    (``0.1.0+git.abc1234``, ``-dirty`` with uncommitted changes)."""
    import subprocess
    from pathlib import Path

    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "describe", "--always", "--dirty", "--abbrev=7"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+git.{commit}" if commit else __version__
