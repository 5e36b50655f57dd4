"""A hospital-grade loopback deployment: real flower-superlink and
flower-supernode processes on 127.0.0.1 with TLS and SuperNode authentication,
keys from ``oncofed certs``, each hospital with its own data and policy.

One run of 3 rounds: it completes on the hospitals that take part; a SuperNode
whose key was never registered is refused by the SuperLink; a SuperNode that
trusts only signed apps does not run ours (it is not signed) and the server
records the failure; a SuperNode whose policy forbids the run's config refuses it
and the server records "refused by site policy"; a SuperNode killed with SIGKILL
mid-run: its round completes with the others, the server records the failure,
the hospital restarts and rejoins.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.conftest import BIN, ROOT, free_port, wait_port

pytestmark = pytest.mark.slow

APP = str(ROOT / "simulations" / "lits_sites")
HOSPITALS = ("h0", "h1", "h2", "strict", "signed-only", "rogue")


def _connection(env: dict, port: int, ca) -> None:
    path = os.path.join(env["FLWR_HOME"], "config.toml")
    with open(path, "w") as f:
        f.write(
            '[superlink]\ndefault = "tls"\n\n'
            f'[superlink.tls]\naddress = "127.0.0.1:{port}"\n'
            f'root-certificates = "{ca}"\n'
        )


def _flwr(processes, *args: str, timeout: int = 900) -> str:
    out = subprocess.run(
        [str(BIN / "flwr"), *args], env=processes.env, cwd=processes.logdir,
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    return out.stdout + out.stderr


def _supernode(processes, certs, port, name, data, extra=""):
    site = certs / "sites" / name
    return processes.start(
        f"supernode-{name}",
        str(BIN / "flower-supernode"),
        "--superlink", f"127.0.0.1:{port}",
        "--root-certificates", str(site / "ca.crt"),
        "--auth-supernode-private-key", str(site / "node.key"),
        "--port", str(free_port()),
        "--node-config", f"data-path='{data}' site-name='{name}'{extra}",
    )  # fmt: skip


def _store(run_root):
    stores = sorted(run_root.glob("*/run.sqlite"))
    assert stores, f"no run store under {run_root}"
    return sqlite3.connect(stores[-1])


def test_tls_authenticated_federation_with_site_policies(
    processes, small_dataset, tmp_path
):
    certs = tmp_path / "certs"
    made = subprocess.run(
        [str(BIN / "oncofed"), "certs", "--out", str(certs), "--sites",
         ",".join(HOSPITALS)],
        capture_output=True, text=True, env=processes.env,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert (certs / "sites" / "h0" / "node.key").stat().st_mode & 0o077 == 0
    port = free_port()
    link = certs / "superlink"
    processes.start(
        "superlink", str(BIN / "flower-superlink"),
        "--ssl-ca-certfile", str(link / "ca.crt"),
        "--ssl-certfile", str(link / "server.pem"),
        "--ssl-keyfile", str(link / "server.key"),
        "--enable-supernode-auth",
        "--port", str(port), "--host", "127.0.0.1",
    )  # fmt: skip
    wait_port(port)
    _connection(processes.env, port, certs / "ca" / "ca.crt")
    for name in HOSPITALS[:-1]:  # the rogue hospital's key is never registered
        said = _flwr(processes, "supernode", "register",
                     str(certs / "sites" / name / "node.pub"))  # fmt: skip
        assert "rror" not in said, said

    # a site policy that forbids this run (it requires example-level DP)
    policy = tmp_path / "strict-policy.toml"
    policy.write_text('[rules]\ndp = { allowed = ["sample"] }\n')
    # a trusted entity that never signed our app
    trusted = tmp_path / "trusted.yaml"
    pub = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
    )
    trusted.write_text(f"fpk_consortium: '{pub.decode()}'\n")

    sites = [small_dataset.site_dir(i) for i in range(3)]
    nodes = {
        "h0": _supernode(processes, certs, port, "h0", sites[0]),
        "h1": _supernode(processes, certs, port, "h1", sites[1]),
        "h2": _supernode(processes, certs, port, "h2", sites[2]),
        "strict": _supernode(
            processes, certs, port, "strict", sites[0], f" policy-file='{policy}'"
        ),
    }
    signed_only = processes.start(
        "supernode-signed-only", str(BIN / "flower-supernode"),
        "--superlink", f"127.0.0.1:{port}",
        "--root-certificates", str(certs / "sites" / "signed-only" / "ca.crt"),
        "--auth-supernode-private-key",
        str(certs / "sites" / "signed-only" / "node.key"),
        "--trusted-entities", str(trusted),
        "--port", str(free_port()),
        "--node-config", f"data-path='{sites[1]}' site-name='signed-only'",
    )  # fmt: skip
    rogue = _supernode(processes, certs, port, "rogue", sites[2])

    # One 3-round run. A hospital is killed with SIGKILL as round 2 starts (round 1
    # is in the run store); it comes back with the same key once round 2 has
    # completed without it, and trains again in round 3. Progress is read from the
    # run store as the server writes it.
    run_root = tmp_path / "runs"
    run_config = (
        "num-server-rounds=3 num-sites=3 local-epochs=1 min-sites=2 "
        f"round-timeout=120 run-dir='{run_root}'"
    )
    log_file = open(tmp_path / "run.log", "w")  # noqa: SIM115
    stream = subprocess.Popen(
        [str(BIN / "flwr"), "run", APP, "--stream", "--run-config", run_config],
        env=processes.env, cwd=processes.logdir, stdout=log_file,
        stderr=subprocess.STDOUT,
    )  # fmt: skip

    def rows(rnd: int, phase: str) -> int:
        stores = sorted(run_root.glob("*/run.sqlite"))
        if not stores:
            return 0
        with sqlite3.connect(f"file:{stores[-1]}?mode=ro", uri=True) as db:
            return db.execute(
                "SELECT COUNT(DISTINCT site) FROM site_metrics WHERE round = ? "
                "AND phase = ?",
                (rnd, phase),
            ).fetchone()[0]

    killed = restarted = False
    deadline = time.time() + 1200
    while stream.poll() is None and time.time() < deadline:
        if not killed and rows(1, "evaluate") == 3:
            os.killpg(nodes["h2"].pid, signal.SIGKILL)
            killed = True
        if killed and not restarted and rows(2, "train") > 0:
            nodes["h2"] = _supernode(processes, certs, port, "h2", sites[2])
            restarted = True
        time.sleep(0.5)
    stream.wait(timeout=60)
    log_file.close()
    said = (tmp_path / "run.log").read_text()[-3000:]
    assert killed and restarted, said

    with _store(run_root) as db:
        assert db.execute("SELECT status FROM runs").fetchone()[0] == "finished"
        per_round = dict(
            db.execute(
                "SELECT round, COUNT(DISTINCT site) FROM site_metrics "
                "WHERE phase = 'train' GROUP BY round"
            ).fetchall()
        )
        trained = {
            s for (s,) in db.execute("SELECT DISTINCT site FROM site_metrics")
        }  # fmt: skip
        events = db.execute(
            "SELECT round, site, outcome, reason FROM reply_events "
            "WHERE phase = 'train'"
        ).fetchall()
        val = {
            r for (r,) in db.execute(
                "SELECT DISTINCT round FROM global_metrics WHERE split = 'val'"
            )
        }  # fmt: skip
    assert val == {0, 1, 2, 3}, said
    # the three registered hospitals that accept the run, by their site-name
    assert trained == {"h0", "h1", "h2"}, (trained, events)
    # the strict hospital refused every round, naming the rule
    refused = [e for e in events if e[3].startswith("refused by site policy")]
    assert [e[0] for e in refused] == [1, 2, 3], events
    assert all("strict" in e[3] and "dp = 'off'" in e[3] for e in refused), refused
    # the signed-only hospital did not run the unsigned app, every round
    unsigned = [e for e in events if "could not be verified" in e[3]]
    assert [e[0] for e in unsigned] == [1, 2, 3], events
    assert "FAB could not be verified" in processes.log("supernode-signed-only")
    assert signed_only.poll() is None  # it refused the app, and stays up
    # the killed hospital: failed in round 2, the round went on, back in round 3
    lost = [e for e in events if e[1] == "h2"]
    assert [(e[0], e[2]) for e in lost] == [(2, "failed")], events
    # Flower's heartbeat error, or no reply at all before the round ended
    assert "Node Unavailable" in lost[0][3] or "no reply" in lost[0][3], lost
    assert per_round == {1: 3, 2: 2, 3: 3}, (per_round, events)
    # the unregistered SuperNode never joined: the SuperLink refused to activate it
    deadline = time.time() + 60
    while rogue.poll() is None and time.time() < deadline:
        time.sleep(1)
    rogue_log = processes.log("supernode-rogue")
    assert "Failed to activate SuperNode" in rogue_log, rogue_log[-2000:]
