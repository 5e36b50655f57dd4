"""Project exceptions. Every message names the file or key, the field and the fix."""

from __future__ import annotations

from pathlib import Path


class OncoFedError(Exception):
    """Base class of all OncoFed errors."""


class ConfigError(OncoFedError, ValueError):
    """A run-config key or value is wrong."""


class DataError(OncoFedError):
    """A data file cannot be used.

    Parameters
    ----------
    path : file (or folder) at fault.
    field : what inside it is wrong (a column, a header, the shape, ...).
    reason : what was found.
    fix : what the user can do about it.
    """

    def __init__(self, path: str | Path, field: str, reason: str, fix: str) -> None:
        self.path = str(path)
        self.field = field
        self.reason = reason
        self.fix = fix
        super().__init__(f"{self.path}: {field}: {reason}. Fix: {fix}")


class BudgetSpent(OncoFedError):
    """A site's differential-privacy budget would be exceeded by another round:
    the site stops training rather than spend more than it was given."""
