"""Run time opens prepared data and never prepares it; seeds come from whole
site names."""

from __future__ import annotations

import subprocess
import sys

import pytest

from oncofed.client.site import site_data
from oncofed.common.config import DataConfig
from oncofed.common.errors import DataError
from oncofed.common.ingest import ensure_prepared
from oncofed.common.paths import data_cache_dir
from oncofed.common.seeds import round_seed


def test_a_site_without_prepared_data_names_the_command_and_writes_nothing(
    oncofed_home,
):
    cfg = DataConfig(num_sites=2, seed=991)  # a default nobody has generated
    before = sorted(p for p in oncofed_home.rglob("*"))
    with pytest.raises(DataError, match="oncofed generate --dataset synthetic "
                       "--num-sites 2 --seed 991"):  # fmt: skip
        site_data({"partition-id": 0}, cfg)
    assert sorted(p for p in oncofed_home.rglob("*")) == before


def test_a_site_refuses_an_unprepared_data_root(tmp_path):
    download = tmp_path / "download"
    download.mkdir()
    cfg = DataConfig(dataset="tcga_lihc", data_root=str(download))
    with pytest.raises(DataError, match="oncofed prepare tcga_lihc"):
        site_data({"partition-id": 0}, cfg)
    with pytest.raises(DataError, match="oncofed prepare tcga_lihc"):
        ensure_prepared(cfg)  # the server does not prepare a download either


def test_the_default_is_made_once_then_reused(oncofed_home):
    cfg = DataConfig(num_sites=2, seed=992)
    first = ensure_prepared(cfg)
    assert first.root.is_relative_to(data_cache_dir())
    stamp = (first.root / "dataset.json").stat().st_mtime_ns
    assert ensure_prepared(cfg).root == first.root
    assert (first.root / "dataset.json").stat().st_mtime_ns == stamp
    assert site_data({"partition-id": 1}, cfg).name == "site-01"


def test_round_seeds_differ_for_anagram_site_names_and_across_rounds():
    seeds = {round_seed(2024, r, s) for r in (1, 2) for s in ("site-01", "site-10")}
    assert len(seeds) == 4
    assert all(0 <= s < 2**31 for s in seeds)


def test_round_seed_is_the_same_in_another_process():
    code = (
        "from oncofed.common.seeds import round_seed; "
        "print(round_seed(2024, 3, 'hospital-north'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert int(out.stdout) == round_seed(2024, 3, "hospital-north")
