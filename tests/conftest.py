"""Shared fixtures: a small generated dataset, real data paths, process handling."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
BIN = Path(sys.executable).parent
SMALL_SITES = 3


@pytest.fixture(scope="session")
def oncofed_home(tmp_path_factory) -> Iterator[Path]:
    """A private ONCOFED_HOME for the whole session (data cache + runs)."""
    home = tmp_path_factory.mktemp("oncofed-home")
    old = os.environ.get("ONCOFED_HOME")
    os.environ["ONCOFED_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("ONCOFED_HOME", None)
    else:
        os.environ["ONCOFED_HOME"] = old


@pytest.fixture(scope="session")
def small_dataset(oncofed_home):
    """The synthetic dataset with 3 sites, generated once per session."""
    from oncofed.common.config import DataConfig
    from oncofed.common.ingest import ensure_prepared

    return ensure_prepared(DataConfig(num_sites=SMALL_SITES))


@pytest.fixture()
def site_copy(small_dataset, tmp_path) -> Path:
    """A private copy of site-00 that a test may damage."""
    dst = tmp_path / "site-00"
    shutil.copytree(small_dataset.site_dir(0), dst)
    return dst


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class Processes:
    """Starts processes in their own process group; stops every one of them."""

    def __init__(self, env: dict, logdir: Path) -> None:
        self.env = env
        self.logdir = logdir
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.logdir / f"{name}.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            list(args),
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.logdir,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # ServerApp/ClientApp children outlive a killed parent in their group only
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def log(self, name: str) -> str:
        return (self.logdir / f"{name}.log").read_text(errors="replace")


def new_processes(folder: Path, oncofed_home: Path) -> Processes:
    """Processes logging into ``folder``, with a private FLWR_HOME there."""
    flwr_home = folder / "flwr-home"
    flwr_home.mkdir()
    env = dict(
        os.environ,
        FLWR_HOME=str(flwr_home),
        ONCOFED_HOME=str(oncofed_home),
        ONCOFED_RUN_ROOT=str(folder),  # the operator's bound on run-dir
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    return Processes(env, folder)


@pytest.fixture()
def processes(tmp_path, oncofed_home) -> Iterator[Processes]:
    procs = new_processes(tmp_path, oncofed_home)
    yield procs
    procs.stop_all()


def write_connection(env: dict, name: str, port: int) -> None:
    """A Flower connection to a SuperLink on 127.0.0.1:port in FLWR_HOME."""
    path = Path(env["FLWR_HOME"]) / "config.toml"
    path.write_text(
        f'[superlink]\ndefault = "{name}"\n\n'
        f'[superlink.{name}]\naddress = "127.0.0.1:{port}"\ninsecure = true\n'
    )
