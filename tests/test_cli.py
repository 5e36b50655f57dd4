"""The ``oncofed`` console script, as a user runs it."""

import subprocess

from tests.conftest import BIN


def _run(*args, **kw):
    return subprocess.run(
        [str(BIN / "oncofed"), *args], capture_output=True, text=True, timeout=120, **kw
    )


def test_help_on_every_command():
    top = _run("--help")
    assert top.returncode == 0 and "flwr run simulations/lits_sites" in top.stdout
    for cmd in ("generate", "show", "config"):
        out = _run(cmd, "--help")
        assert out.returncode == 0 and "usage: oncofed " + cmd in out.stdout


def test_config_lists_every_key():
    from oncofed.common.config import KEYS

    out = _run("config").stdout
    for key in KEYS:
        assert key in out


def test_show_on_a_missing_run_dir_says_so(tmp_path):
    out = _run("show", str(tmp_path))
    assert out.returncode == 2 and "no run store" in out.stderr


def test_generate_writes_a_dataset(tmp_path):
    out = _run("generate", "--out", str(tmp_path / "ds"), "--num-sites", "2")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "ds" / "site-01" / "manifest.csv").is_file()


def test_config_check_names_an_unknown_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("num-server-round = 3\n")
    out = _run("config", "--check", str(bad))
    assert out.returncode == 2
    assert "'num-server-round'" in out.stderr and "num-server-rounds" in out.stderr
    good = _run("config", "--check", "configs/quick.toml", cwd=BIN.parents[1])
    assert good.returncode == 0, good.stderr
