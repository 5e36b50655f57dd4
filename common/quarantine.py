"""A case or file left out of a run or a preparation, with the file and the reason.

Nothing is dropped silently: every loader and reader collects these, logs them and
reports them (counts in the run store, lists in a preparation's report).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Quarantined:
    """``case_id`` may be empty when a whole file is unusable before any case is
    known; ``field`` names the column, tag or header at fault when there is one."""

    case_id: str
    path: str
    reason: str
    field: str = ""
