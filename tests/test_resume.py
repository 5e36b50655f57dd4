"""Resume: a run whose ServerApp is killed with SIGKILL after round 2 of 4 is
continued by ``oncofed resume`` and ends with the same final model as a run that
was never interrupted; its run store has every round once."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import torch

from oncofed.common.errors import ConfigError
from oncofed.common.procs import descendants
from oncofed.common.tracking.store import RunStore
from tests.conftest import BIN, SMALL_SITES
from tests.test_federation import APP, _flwr_run, _superlink

ROUNDS = 4


def _config(run_root: Path, extra: str) -> str:
    return (
        f"num-server-rounds={ROUNDS} num-sites={SMALL_SITES} local-epochs=1 "
        f"{extra} run-dir='{run_root}'"
    )


def _federation() -> tuple[str, str]:
    return ("--federation-config", f"num-supernodes={SMALL_SITES}")


def _saved_round(run_root: Path) -> int:
    """The last complete round resume.pt holds (-1 before the first)."""
    for path in run_root.glob("*/checkpoints/resume.pt"):
        try:
            return int(torch.load(path, weights_only=True)["round"])
        except (RuntimeError, EOFError, KeyError):
            return -1
    return -1


def _round_3_trained(run_root: Path) -> bool:
    for path in run_root.glob("*/run.sqlite"):
        with sqlite3.connect(path) as db:
            return bool(
                db.execute(
                    "SELECT 1 FROM site_metrics WHERE round = 3 AND phase = 'train'"
                ).fetchone()
            )
    return False


def _wait_gone(run_dir: Path) -> None:
    from oncofed.server.resume import RunLock

    deadline = time.time() + 30
    while True:
        try:
            RunLock(run_dir).release()
            return
        except ConfigError:
            assert time.time() < deadline, "the killed ServerApp still holds its run"
            time.sleep(0.2)


def _state(run_dir: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["round"] == ROUNDS
    return ckpt["state_dict"]


def _rows(run_dir: Path, query: str) -> list[tuple]:
    with sqlite3.connect(run_dir / "run.sqlite") as db:
        return db.execute(query).fetchall()


# the server optimiser's moments resume (FedAdam), and each site reads its own
# FedBN layers back from its disk; central DP's noise generator is resumed in
# benchmarks/resume.py (3 seeds, bit-identical), not here: CI time
EXTRA = "strategy='fedadam' norm-layers='local'"


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_uninterrupted_model(
    processes, small_dataset, tmp_path
):
    extra = EXTRA
    _superlink(processes, simulation=True)
    # the reference: the same run, never interrupted
    whole = tmp_path / "whole"
    log = _flwr_run(processes, "oncofed-test", _config(whole, extra), *_federation())
    assert f"OncoFed | round {ROUNDS}/{ROUNDS}" in log, log[-4000:]
    (whole_dir,) = whole.iterdir()

    # the same run, its ServerApp killed with SIGKILL in round 3 (its sites'
    # training recorded, the round not yet complete)
    killed = tmp_path / "killed"
    superlink = processes.procs[0]
    client = processes.start(
        "killed-run", str(BIN / "flwr"), "run", str(APP), "oncofed-test",
        "--stream", "--run-config", _config(killed, extra), *_federation(),
    )  # fmt: skip
    deadline = time.time() + 600
    while _saved_round(killed) < 2 or not _round_3_trained(killed):
        assert time.time() < deadline and client.poll() in (None, 0), (
            processes.log("killed-run")[-3000:]
            + "\n--- SuperLink ---\n"
            + processes.log("superlink")[-3000:]
        )
        time.sleep(0.2)
    apps = [p for p, args in descendants(superlink.pid) if "flwr-simulation" in args]
    assert apps, descendants(superlink.pid)
    for pid in apps:
        os.kill(pid, signal.SIGKILL)
    (run_dir,) = killed.iterdir()
    _wait_gone(run_dir)  # the ServerApp's lock on its folder went with it
    saved = _saved_round(killed)
    assert 2 <= saved < ROUNDS
    assert _rows(run_dir, "SELECT status FROM runs") == [("running",)]
    client.kill()

    # what a user does next
    out = subprocess.run(
        [str(BIN / "oncofed"), "resume", str(run_dir), "--app", str(APP),
         "--connection", "oncofed-test", "--num-supernodes", str(SMALL_SITES)],
        env=processes.env, cwd=processes.logdir, capture_output=True, text=True,
        timeout=900,
    )  # fmt: skip
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    assert "resuming run" in log and f"after round {saved} of {ROUNDS}" in log, log
    assert f"OncoFed | round {ROUNDS}/{ROUNDS}" in log, log[-4000:]

    # the same final model, bit for bit, and the same selection
    resumed, reference = _state(run_dir), _state(whole_dir)
    assert resumed.keys() == reference.keys()
    for k in reference:
        assert torch.equal(resumed[k], reference[k]), k
    one, other = RunStore(run_dir / "run.sqlite"), RunStore(whole_dir / "run.sqlite")
    assert one.selected_round(one.runs().run_id[0]) == other.selected_round(
        other.runs().run_id[0]
    )
    # every round once: server validation 0..4, each site's train and evaluate
    assert _rows(run_dir, "SELECT status FROM runs") == [("finished",)]
    val = (
        "SELECT round, COUNT(*) FROM global_metrics WHERE split = 'val' "
        "AND metric = 'auc'"
    )
    assert _rows(run_dir, val + " GROUP BY round") == [
        (r, 1) for r in range(ROUNDS + 1)
    ]
    per_site = (
        "SELECT phase, round, COUNT(DISTINCT site), COUNT(DISTINCT node_id) FROM "
        "site_metrics WHERE metric='num-examples' GROUP BY phase, round"
    )
    assert _rows(run_dir, per_site) == _rows(whole_dir, per_site)
    assert len(_rows(run_dir, per_site)) == 2 * ROUNDS
    ((at, dropped),) = _rows(run_dir, "SELECT round, rows_dropped FROM resumes")
    assert at == saved and (dropped > 0 or saved == 3)  # round 3's rows, if any
    shown = subprocess.run(
        [str(BIN / "oncofed"), "show", str(run_dir)], capture_output=True, text=True
    ).stdout
    assert f"Resumed after round {saved}" in shown, shown
    # a finished run is not resumed again
    again = subprocess.run(
        [str(BIN / "oncofed"), "resume", str(run_dir), "--app", str(APP)],
        env=processes.env, capture_output=True, text=True,
    )  # fmt: skip
    assert again.returncode == 2 and "nothing to resume" in again.stderr


def test_resume_refuses_what_it_cannot_restore(tmp_path):
    from oncofed.common.config import from_run_config
    from oncofed.server.resume import refuse_unresumable

    with pytest.raises(ConfigError, match="SecAgg"):
        refuse_unresumable(from_run_config({"secure-aggregation": True}))
    with pytest.raises(ConfigError, match="resume-from"):
        from_run_config({"resume-from": "relative/run"})
    with pytest.raises(ConfigError, match="sweep entry"):
        from_run_config({"resume-from": "/runs/x", "sweep": "fusion=concat"})


def test_a_site_reads_its_state_back_from_its_own_disk(tmp_path):
    """The ledger comes from the newest round saved (an interrupted round the
    resumed run trains again is counted twice, never forgotten); FedBN layers
    from the newest round before the one asked for."""
    import numpy as np
    from flwr.app import Array, ArrayRecord, ConfigRecord

    from oncofed.client.state import SiteState
    from oncofed.common.errors import DataError

    node = {"state-dir": str(tmp_path)}
    assert SiteState(node, "", "site-00").ledger() is None  # an older server
    state = SiteState(node, "123", "site-00")
    assert state.ledger() is None and state.norms(1) == {}
    for rnd in (1, 2, 3):
        ledger = ConfigRecord({"noise": [1.0] * rnd, "rate": [0.1] * rnd,
                               "steps": [4] * rnd})  # fmt: skip
        norms = {"local-norm": ArrayRecord({"bn": Array(np.full(2, rnd, "f4"))})}
        state.save(rnd, ledger, norms)
    # the two newest rounds are kept
    assert sorted(p.name for p in (tmp_path / "123" / "site-00").iterdir()) == [
        "round-00002.pt",
        "round-00003.pt",
    ]
    assert list(state.ledger()["steps"]) == [4, 4, 4]
    assert state.norms(3)["local-norm"]["bn"].numpy().tolist() == [2.0, 2.0]
    assert state.norms(4)["local-norm"]["bn"].numpy().tolist() == [3.0, 3.0]
    assert state.norms(2) == {}
    # another run's state is not this one's; names cannot climb out
    assert SiteState(node, "124", "site-00").ledger() is None
    for lineage, site in (("../x", "site-00"), ("123", "../../etc")):
        with pytest.raises(ConfigError, match="letters, digits"):
            SiteState(node, lineage, site)
    (tmp_path / "123" / "site-00" / "round-00003.pt").write_bytes(b"garbage")
    with pytest.raises(DataError, match="round-00003.pt"):
        state.ledger()


def test_a_run_folder_a_live_serverapp_serves_is_not_resumed(tmp_path):
    """An interrupted run's ServerApp that is in fact alive (orphaned when its
    SuperLink was killed) holds its folder: a resumption is refused until that
    process is gone, SIGKILL included."""
    import sys

    from oncofed.server.resume import RunLock

    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import pathlib, sys, time; from oncofed.server.resume import RunLock; "
         f"lock = RunLock(pathlib.Path({str(tmp_path)!r})); print('held', flush=True); "
         "time.sleep(120)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    with pytest.raises(ConfigError, match=f"another ServerApp \\(process {holder.pid}"):
        RunLock(tmp_path)
    holder.kill()  # SIGKILL: the OS drops the lock
    holder.wait()
    lock = RunLock(tmp_path)
    lock.release()
