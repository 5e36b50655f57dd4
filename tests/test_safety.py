"""Safe loading and paths: a checkpoint that would run code is refused, run
directories stay under the operator's root, sweep entries set no paths."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest
import torch

from oncofed.common.config import OncoFedConfig, from_run_config, parse_sweep
from oncofed.common.errors import ConfigError, DataError
from oncofed.common.ml.models.multimodal import load_checkpoint
from oncofed.server.app import check_data_root, make_run_dir


class Planted:
    """Unpickling this runs ``touch MARKER``: what a hostile checkpoint does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (subprocess.call, (["touch", self.marker],))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "code-ran"
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    ckpt = run / "checkpoints" / "best.pt"
    torch.save({"config": {}, "state_dict": {}, "payload": Planted(marker)}, ckpt)
    with pytest.raises(DataError, match="refused"):
        load_checkpoint(ckpt)
    # the command a user runs on a checkpoint they were sent
    proc = subprocess.run(
        [sys.executable, "-m", "oncofed.common.cli", "export", str(run),
         "--out", str(tmp_path / "m.onnx")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "refused" in proc.stderr and str(ckpt) in proc.stderr
    assert not marker.exists(), "loading the checkpoint ran its code"
    # the planted object is live: plain unpickling runs it (so the test above
    # shows something)
    pickle.loads(pickle.dumps(Planted(marker)))
    assert marker.exists()


def test_run_dir_must_lie_under_the_operators_root(tmp_path, monkeypatch):
    root = tmp_path / "runs-root"
    monkeypatch.setenv("ONCOFED_RUN_ROOT", str(root))
    ok = from_run_config({"run-dir": str(root / "study")})
    assert make_run_dir(ok, "1").parent == (root / "study").resolve()
    for outside in (str(tmp_path / "elsewhere"), str(root / ".." / "escape")):
        cfg = from_run_config({"run-dir": outside})
        with pytest.raises(ConfigError, match="outside the run root"):
            make_run_dir(cfg, "2")
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path / "escape").exists()
    link = root / "link"
    link.symlink_to(tmp_path)  # a link inside the root pointing out of it
    with pytest.raises(ConfigError, match="outside the run root"):
        make_run_dir(from_run_config({"run-dir": str(link / "x")}), "3")


def test_data_root_must_lie_under_the_operators_data_roots(tmp_path, monkeypatch):
    home, data = tmp_path / "home", tmp_path / "hospital-data"
    monkeypatch.setenv("ONCOFED_HOME", str(home))
    monkeypatch.delenv("ONCOFED_RUN_ROOT", raising=False)
    monkeypatch.delenv("ONCOFED_DATA_ROOT", raising=False)
    check_data_root(from_run_config({"data-root": str(home / "data" / "lits")}))
    outside = from_run_config({"data-root": str(data / "lits")})
    with pytest.raises(ConfigError, match="outside the data roots.*ONCOFED_DATA_ROOT"):
        check_data_root(outside)
    with pytest.raises(ConfigError, match="data-root"):
        check_data_root(from_run_config({"data-root": str(home / ".." / "x")}))
    monkeypatch.setenv("ONCOFED_DATA_ROOT", f"{tmp_path / 'other'}:{data}")
    check_data_root(outside)  # the operator named its parent
    check_data_root(from_run_config({}))  # the embedded default: no path


@pytest.mark.parametrize("key", ["run-dir", "data-root", "pretrained", "resume-from"])
def test_a_sweep_entry_may_not_set_a_path(key):
    with pytest.raises(ConfigError, match=f"cannot set '{key}'"):
        parse_sweep(f"fusion=concat; {key}=/etc")
    with pytest.raises(ConfigError, match=f"cannot set '{key}'"):
        from_run_config({"sweep": f"fusion=concat {key}=/etc"})
    assert OncoFedConfig().run.sweep == ""
