"""Real Flower: `flwr run` on the simulation runtime, and a loopback deployment.

Each test starts its own SuperLink (and SuperNodes) on free 127.0.0.1 ports with a
private FLWR_HOME, and stops every process it started. ``flwr run --stream`` exits
0 even when a run fails, so the tests check the run store, not the exit code.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess

import pytest

from tests.conftest import (
    BIN,
    ROOT,
    SHARED_DATA,
    SMALL_SITES,
    free_port,
    wait_port,
    write_connection,
)

APP = ROOT / "simulations" / "lits_sites"
ROUNDS = 2


def _flwr_run(processes, connection: str, overrides: str, *extra: str, app=APP) -> str:
    out = subprocess.run(
        [
            str(BIN / "flwr"),
            "run",
            str(app),
            connection,
            "--stream",
            "--run-config",
            overrides,
            *extra,
        ],
        env=processes.env,
        cwd=processes.logdir,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return out.stdout + out.stderr


def _small_run(run_root) -> str:
    """Run config of a short run: 2 rounds, 1 local epoch, the 3-site dataset."""
    return (
        f"num-server-rounds={ROUNDS} num-sites={SMALL_SITES} local-epochs=1 "
        f"run-dir='{run_root}'"
    )


def _check_run_store(run_root, sites: int) -> None:
    stores = list(run_root.glob("*/run.sqlite"))
    assert len(stores) == 1, f"no run store under {run_root}"
    _check_run_store_dir(stores[0].parent, sites)


def _check_run_store_dir(run_dir, sites: int) -> None:
    stores = [run_dir / "run.sqlite"]
    assert (run_dir / "config.json").is_file()
    assert (run_dir / "checkpoints" / "best.pt").is_file()
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    with sqlite3.connect(stores[0]) as db:
        task = json.loads((run_dir / "config.json").read_text())["task"]
        primary = {"survival": "c-index", "segmentation": "dice-tumour-global"}.get(
            task, "auc"
        )
        val = dict(
            db.execute(
                "SELECT round, value FROM global_metrics WHERE metric = ? "
                "AND split = 'val'",
                (primary,),
            ).fetchall()
        )
        assert set(val) == set(range(ROUNDS + 1))  # round 0 = initial model
        # the selected round is the best validation round, and the test set was
        # scored for that model and the last one only
        selected = db.execute("SELECT selected_round FROM runs").fetchone()[0]
        defined = {r: v for r, v in val.items() if v is not None}
        if defined:
            assert val[selected] == max(defined.values())
        tested = {
            r
            for (r,) in db.execute(
                "SELECT DISTINCT round FROM global_metrics WHERE split = 'test'"
            )
        }
        assert tested == {selected, ROUNDS}
        for phase in ("train", "evaluate"):
            per_round = db.execute(
                "SELECT round, COUNT(DISTINCT site) FROM site_metrics "
                "WHERE phase = ? GROUP BY round",
                (phase,),
            ).fetchall()
            assert per_round == [(r, sites) for r in range(1, ROUNDS + 1)], phase
        n_train = db.execute(
            "SELECT SUM(value) FROM site_metrics WHERE phase='train' AND round=1 "
            "AND metric='num-examples'"
        ).fetchone()[0]
        assert n_train > 10 * sites  # samples, not batches
        status = db.execute("SELECT status FROM runs").fetchone()[0]
        assert status == "finished"


def _summary(log: str, run_root) -> str:
    """The run's last two OncoFed lines: the selection summary, then the run
    directory (what a user reads when the run ends)."""
    ours = [line for line in log.splitlines() if "OncoFed | " in line]
    assert f"OncoFed | run directory: {run_root}" in ours[-1], ours[-3:]
    return ours[-2]


def _superlink(processes, *, simulation: bool) -> int:
    port = free_port()
    args = [
        str(BIN / "flower-superlink"),
        "--insecure",
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
    ]
    if simulation:
        args += ["--simulation"]
    processes.start("superlink", *args)
    wait_port(port)
    write_connection(processes.env, "oncofed-test", port)
    return port


@pytest.mark.slow
@pytest.mark.parametrize(
    "strategy,extra",
    [
        ("fedavg", ""),
        ("fedprox", ""),
        ("fedadam", ""),
        ("fedavg", " norm-layers='local' fusion='transformer'"),
        ("fedxgb_bagging", " model-family='xgboost' modalities='clinical'"),
        ("fedavg", " task='segmentation' modalities='ct' image-size=32 image-depth=8"),
    ],
)
def test_simulation_run_fills_the_run_store(
    processes, small_dataset, tmp_path, strategy, extra
):
    _superlink(processes, simulation=True)
    run_root = tmp_path / "runs"
    log = _flwr_run(
        processes,
        "oncofed-test",
        _small_run(run_root) + f" strategy='{strategy}'" + extra,
        "--federation-config",
        f"num-supernodes={SMALL_SITES}",
    )
    assert "OncoFed | round 2/2" in log, (
        log[-4000:] + processes.log("superlink")[-4000:]
    )
    summary = _summary(log, run_root)
    label = "global tumour Dice" if "segmentation" in extra else "AUC"
    assert f"test {label} of that model" in summary, summary
    assert f"last round ({ROUNDS}) test {label}" in summary, summary
    _check_run_store(run_root, SMALL_SITES)
    expected = {
        "fedavg": "FedAvg",
        "fedprox": "FedProx",
        "fedadam": "FedAdam",
        "fedxgb_bagging": "FedXgbBagging",
    }
    assert f"OncoFed | strategy: {strategy} ({expected[strategy]})" in log
    if "segmentation" in extra:  # Dice per case and global reach the run store
        with sqlite3.connect(next(run_root.glob("*/run.sqlite"))) as db:
            names = {
                m
                for (m,) in db.execute(
                    "SELECT DISTINCT metric FROM global_metrics WHERE round = 2 "
                    "AND split = 'val'"
                )
            }
        assert {"dice-liver", "dice-liver-global", "dice-tumour-global"} <= names
        assert "OncoFed | round 2/2 | validation Dice liver" in log
    if "transformer" in extra:  # per-sample modality weights reach the run store
        with sqlite3.connect(next(run_root.glob("*/run.sqlite"))) as db:
            w = dict(
                db.execute(
                    "SELECT metric, value FROM global_metrics WHERE round = 2 "
                    "AND split = 'val' AND metric LIKE 'weight@%'"
                ).fetchall()
            )
        assert set(w) == {"weight@ct", "weight@clinical"}
        assert sum(w.values()) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.slow
def test_sweep_trains_every_entry_in_one_run(processes, small_dataset, tmp_path):
    """run-config ``sweep``: one Flower run trains each entry as a run of its own
    (own run directory, store and checkpoints); the sites apply the entry too (a
    clinical-only model has other weights than the run's CT + clinical one); an
    entry that fails is reported and the next one still trains."""
    _superlink(processes, simulation=True)
    run_root = tmp_path / "runs"
    sweep = (
        "fusion=transformer norm-layers=local; image-encoder=no_such_encoder; "
        "modalities=clinical"
    )
    log = _flwr_run(
        processes,
        "oncofed-test",
        _small_run(run_root) + f" sweep='{sweep}'",
        "--federation-config",
        f"num-supernodes={SMALL_SITES}",
    )
    assert log.count("OncoFed | round 2/2") == 2, log[-4000:]
    assert "OncoFed | sweep entry 3/3: modalities=clinical" in log
    assert "OncoFed | sweep entry 2 failed" in log and "no_such_encoder" in log
    dirs = {k: list(run_root.glob(f"*-sweep{k}")) for k in range(3)}
    assert all(len(d) == 1 for d in dirs.values()), dirs
    for k, expect in ((0, {"fusion": "transformer"}), (2, {"modalities": "clinical"})):
        d = dirs[k][0]
        _check_run_store_dir(d, SMALL_SITES)
        config = json.loads((d / "config.json").read_text())
        assert {key: config[key] for key in expect} == expect
    with sqlite3.connect(dirs[1][0] / "run.sqlite") as db:
        assert db.execute("SELECT status FROM runs").fetchone()[0] == "failed"


@pytest.mark.slow
def test_unknown_run_config_key_is_refused(processes, small_dataset, tmp_path):
    """Flower refuses keys the app does not declare, before any run starts.

    (Flower's message does not name the key; ``oncofed config --check`` does.)
    """
    _superlink(processes, simulation=True)
    log = _flwr_run(
        processes,
        "oncofed-test",
        f"num-server-round=1 run-dir='{tmp_path / 'runs'}'",
        "--federation-config",
        "num-supernodes=2",
    )
    assert "Invalid run configuration" in log
    assert "Successfully started run" not in log
    assert not list(tmp_path.glob("runs/*/run.sqlite"))


@pytest.mark.slow
@pytest.mark.parametrize(
    "app", ["tcga_lihc_sites", "hcc_multimodal", "crc_metastasis_sites"]
)
def test_scenario_apps_run_offline_with_their_defaults(
    processes, oncofed_home, tmp_path, app
):
    """Each scenario app runs with no data-root: its synthetic default goes through
    the same readers (TCGA export -> tcga_lihc reader; H&E bags -> MIL encoder)."""
    _superlink(processes, simulation=True)
    run_root = tmp_path / "runs"
    log = _flwr_run(
        processes,
        "oncofed-test",
        _small_run(run_root),
        "--federation-config",
        f"num-supernodes={SMALL_SITES}",
        app=ROOT / "simulations" / app,
    )
    assert "OncoFed | round 2/2" in log, (
        log[-4000:] + processes.log("superlink")[-4000:]
    )
    _check_run_store(run_root, SMALL_SITES)


@pytest.mark.slow
def test_brca_survival_federation_on_flambys_regions(processes, oncofed_home, tmp_path):
    """FLamby's TCGA-BRCA, its 6 regions as 6 SuperNodes, Cox head: every region
    reports a C-index and the server evaluates the pooled test set."""
    from oncofed.common.ingest.prepare import PrepareOptions, prepare

    prepared = tmp_path / "brca"
    prepare(
        "tcga_brca_flamby",
        SHARED_DATA / "flamby_tcga_brca",
        prepared,
        PrepareOptions(),
        False,
    )
    _superlink(processes, simulation=True)
    run_root = tmp_path / "runs"
    log = _flwr_run(
        processes,
        "oncofed-test",
        f"data-root='{prepared}' run-dir='{run_root}' num-server-rounds=2",
        "--federation-config",
        "num-supernodes=6",
        app=ROOT / "simulations" / "tcga_brca_sites",
    )
    assert "OncoFed | round 2/2 | validation C-index" in log, log[-4000:]
    assert "test C-index of that model" in _summary(log, run_root)
    with sqlite3.connect(next(run_root.glob("*/run.sqlite"))) as db:
        regions = db.execute(
            "SELECT COUNT(DISTINCT site) FROM site_metrics WHERE phase='evaluate' "
            "AND metric='c-index' AND round=2"
        ).fetchone()[0]
        c = db.execute(
            "SELECT value FROM global_metrics WHERE metric='c-index' AND round=2 "
            "AND split='test'"
        ).fetchone()[0]
    assert regions == 6
    assert c > 0.6  # 222 test cases, 32 events
