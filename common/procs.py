"""The live process tree below a process: what the resume test and benchmark
kill (a ServerApp below its SuperLink) and check is gone."""

from __future__ import annotations

import subprocess


def descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, full command line) of every live process below ``pid`` (``ps -ww``:
    never cut at 80 columns; zombies left out)."""
    table = subprocess.run(
        ["ps", "-ww", "-eo", "pid=,ppid=,stat=,args="], capture_output=True, text=True
    ).stdout
    rows = [line.split(None, 3) for line in table.splitlines() if line.strip()]
    children: dict[int, list[tuple[int, str, str]]] = {}
    for row in rows:
        args = row[3] if len(row) > 3 else ""
        children.setdefault(int(row[1]), []).append((int(row[0]), row[2], args))
    out, todo = [], [pid]
    while todo:
        for child, stat, args in children.get(todo.pop(), []):
            if not stat.startswith("Z"):
                out.append((child, args))
            todo.append(child)
    return out
