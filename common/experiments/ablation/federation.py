"""Federated training for the ablation: ``flwr run`` on the scenario app.

The federation is Flower's own (simulation runtime by default, or any SuperLink a
Flower connection names); this module only starts ``flwr run``, echoes its round
lines as progress, and learns from each model's run store when it is over and where
its last-round checkpoint is. All the federated
models of an ablation train in one Flower run, as entries of run-config ``sweep``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from oncofed.common.config import sweep_label
from oncofed.common.data.prepared import DATASET_JSON, SERVER_FOLDERS, PreparedDataset
from oncofed.common.errors import ConfigError
from oncofed.common.experiments.ablation.plan import AblationOptions, Scenario

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _toml_value(key: str, v: Any) -> str:
    """A run-config value as ``flwr run --run-config`` takes it. A string becomes a
    TOML literal string; one holding a single quote cannot be one and is refused
    with the key named (never silently changed)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        if "'" in v:
            raise ConfigError(
                f"run-config {key}={v!r}: a value passed to flwr run must not hold "
                "a single quote"
            )
        return f"'{v}'"
    return str(v)


def flwr_executable() -> str:
    found = shutil.which("flwr", path=str(Path(sys.executable).parent)) or shutil.which(
        "flwr"
    )
    if found is None:
        raise ConfigError(
            "the federated regime needs Flower's 'flwr' command: install OncoFed "
            "with 'make setup', or leave it out with --regimes local,pooled"
        )
    return found


Entry = dict[str, Any]  # run-config overrides of one model (one sweep entry)
EntryDone = Callable[[int, "Path | str"], None]  # (index, checkpoint or error)


def _sweep_value(entries: list[Entry]) -> str:
    """Run-config ``sweep``: ``"k=v k=v; k=v ..."`` (values must not hold spaces)."""
    for entry in entries:
        for k, v in entry.items():
            if any(c in str(v) for c in " ;'\""):
                raise ConfigError(
                    f"sweep value {k}={v!r} must not hold spaces, ';' or quotes"
                )
    return "; ".join(" ".join(f"{k}={v}" for k, v in e.items()) for e in entries)


def _entry_dirs(run_root: Path, run_id: str, k: int) -> list[Path]:
    """Sweep entry ``k``'s run folders of Flower run ``run_id`` (none before the
    run id is known): an earlier run's folder of the same entry, left in the
    same place by a stopped run, is not this one."""
    if not run_id:
        return []
    return sorted(run_root.glob(f"*-run{run_id}-{sweep_label(k)}"))


def _entry_status(run_root: Path, run_id: str, k: int) -> str | None:
    """Sweep entry ``k``'s status in its run store (``running``, ``finished``,
    ``failed``), None before the ServerApp has started it."""
    from oncofed.common.tracking.store import RUN_STORE, RunStore

    for run_dir in _entry_dirs(run_root, run_id, k):
        if (run_dir / RUN_STORE).is_file():
            runs = RunStore(run_dir / RUN_STORE).runs()
            if not runs.empty:
                return str(runs["status"].iloc[-1])
    return None


def _entry_outcome(run_root: Path, run_id: str, k: int, log_path: Path) -> Path | str:
    """The last-round checkpoint of sweep entry ``k`` of Flower run ``run_id`` if
    its run store says that entry finished, else why not."""
    if _entry_status(run_root, run_id, k) == "finished":
        (run_dir,) = _entry_dirs(run_root, run_id, k)[-1:]
        ckpt = run_dir / "checkpoints" / "last.pt"
        if ckpt.exists():
            return ckpt
    tail = ANSI.sub("", log_path.read_text(errors="replace"))[-1500:]
    return f"the federated run did not finish model {k + 1} (log {log_path}):\n{tail}"


def run_federation(
    scenario: Scenario,
    common: dict[str, Any],
    entries: list[Entry],
    num_nodes: int,
    run_root: Path,
    connection: str,
    echo: Callable[[str], None],
    on_done: EntryDone,
) -> None:
    """One ``flwr run`` of the scenario app that federates every entry in turn
    (run-config ``sweep``): start-up and the sites' data loading are paid once.

    ``common`` holds the run-config keys of every entry. ``on_done(k, outcome)`` is
    called as soon as entry ``k`` is over, with its last-round checkpoint or the
    reason it has none. Flower's round lines are echoed as progress; the whole log
    is kept in ``run_root/flwr.log``."""
    run_root.mkdir(parents=True, exist_ok=True)
    keys = {
        **common,
        "sweep": _sweep_value(entries),
        "run-dir": str(run_root.resolve()),
    }
    rc = " ".join(f"{k}={_toml_value(k, v)}" for k, v in keys.items())
    cmd = [flwr_executable(), "run", str(scenario.app_dir)]
    cmd += [connection] if connection else []
    cmd += ["--stream", "--run-config", rc]
    cmd += ["--federation-config", f"num-supernodes={num_nodes}"]
    bin_dir = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    log_path = run_root / "flwr.log"
    reported = 0  # entries handed to on_done so far
    run_id = ""  # Flower's, once flwr run says it started

    def report_up_to(n: int) -> None:
        nonlocal reported
        if not log.closed:
            log.flush()
        while reported < n:
            on_done(reported, _entry_outcome(run_root, run_id, reported, log_path))
            reported += 1

    with (
        open(log_path, "w") as log,
        subprocess.Popen(
            cmd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=run_root,
        ) as proc,
    ):
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                log.write(line)
                plain = ANSI.sub("", line).strip()
                if plain.startswith("Successfully started run"):
                    run_id = plain.split()[-1]
                # an entry is over when its run store says so (finished or failed)
                while reported < len(entries) and _entry_status(
                    run_root, run_id, reported
                ) in ("finished", "failed"):
                    report_up_to(reported + 1)
                if "OncoFed | round" in plain:  # progress for the user, not data
                    echo("        " + plain.split("OncoFed | ", 1)[1])
        except KeyboardInterrupt:
            # the run lives in the SuperLink, not in flwr run: stop it there too
            if run_id:
                echo(f"Stopping Flower run {run_id} ...")
                stop = [flwr_executable(), "stop", run_id]
                subprocess.run(stop + ([connection] if connection else []), env=env)
            raise
    report_up_to(len(entries))


def leave_one_out_view(ds: PreparedDataset, held_out: int, root: Path) -> Path:
    """A prepared-dataset folder of every site but ``held_out`` (links, no copies),
    for a federation that never sees that site: ``data-root`` points at it."""
    root.mkdir(parents=True, exist_ok=True)
    meta = json.loads((ds.root / DATASET_JSON).read_text())
    keep = [s for i, s in enumerate(ds.sites) if i != held_out]
    meta.update(sites=keep, left_out=ds.sites[held_out])
    for name in [*keep, *SERVER_FOLDERS.values()]:
        link = root / name
        if not link.exists() and (ds.root / name).exists():
            link.symlink_to((ds.root / name).resolve(), target_is_directory=True)
    (root / DATASET_JSON).write_text(json.dumps(meta, indent=2))
    return root


def restore_node_count(opts: AblationOptions, n: int) -> None:
    """``--federation-config num-supernodes=N`` stays in Flower's local SuperLink;
    put back the scenario's site count so a plain ``flwr run`` trains every site."""
    if opts.connection:
        return
    subprocess.run(
        [
            flwr_executable(),
            "federation",
            "simulation-config",
            "--num-supernodes",
            str(n),
        ],
        capture_output=True,
        check=False,
    )
