"""What the dashboard and the report read from a run store (a real SQLite file),
without a federation: read-only access beside a writer, suppressed sites, the
fairness panel, the ablation report and the tracking extra's message."""

from __future__ import annotations

import csv
import hashlib
import json
import sqlite3
import sys

import pytest

from oncofed.common.errors import ConfigError
from oncofed.common.reporting.dashboard import (
    fairness_records,
    run_outputs,
    site_records,
)
from oncofed.common.reporting.report import build, to_html
from oncofed.common.reporting.runview import find_runs, load_run
from oncofed.common.tracking.store import RUN_STORE, TEST, VAL, RunStore


def _run(tmp_path, rounds: int = 2):
    run_dir = tmp_path / "20261201-120000-run42"
    run_dir.mkdir()
    store = RunStore(run_dir / RUN_STORE)
    config = {"task": "classification", "num-server-rounds": 3, "dataset": "synthetic"}
    (run_dir / "config.json").write_text(json.dumps(config))
    store.start_run("42", run_dir.name, config)
    for r in range(rounds + 1):
        store.log_global("42", r, {"auc": 0.6 + r / 10, "loss": 1 - r / 10}, VAL)
        store.log_predictions("42", r, VAL, [0, 1, 0, 1], [0.2, 0.7, 0.4, 0.9])
    for r in range(1, rounds + 1):
        store.log_site(
            "42", r, "site-00", "n0", "train", {"loss": 0.9, "num-examples": 30}
        )
        store.log_site(
            "42",
            r,
            "site-00",
            "n0",
            "evaluate",
            {"auc": 0.7, "num-examples": 12, "suppressed": 0},
        )
        store.log_site(
            "42", r, "site-01", "n1", "train", {"loss": 0.8, "num-examples": 6}
        )
        store.log_site(
            "42", r, "site-01", "n1", "evaluate", {"num-examples": 2, "suppressed": 1}
        )
    return run_dir, store


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_reading_a_store_never_writes_it_and_reads_beside_a_writer(tmp_path):
    run_dir, _ = _run(tmp_path)
    before = _digest(run_dir / RUN_STORE)
    writer = sqlite3.connect(run_dir / RUN_STORE)
    writer.execute("BEGIN IMMEDIATE")  # a run in the middle of writing a round
    writer.execute("INSERT INTO global_metrics VALUES ('42', 3, 'val', 'auc', 0.95)")
    view = load_run(run_dir)  # reads the committed state, does not wait
    assert view.rounds_done == 2
    writer.commit()
    writer.close()
    assert load_run(run_dir).rounds_done == 3
    after = _digest(run_dir / RUN_STORE)
    assert before != after  # the writer's commit landed
    load_run(run_dir)
    assert _digest(run_dir / RUN_STORE) == after  # reading changed nothing
    with pytest.raises(sqlite3.OperationalError):
        RunStore(run_dir / RUN_STORE, readonly=True).log_global("42", 9, {"auc": 1})


def test_a_suppressed_site_shows_suppressed_and_is_left_out_of_fairness(tmp_path):
    run_dir, _ = _run(tmp_path)
    view = load_run(run_dir)
    rows = {r["site"]: r for r in site_records(view)}
    assert rows["site-01"]["AUC"] == "suppressed"
    assert rows["site-01"]["suppressed"] == "yes"
    assert rows["site-00"]["AUC"] == 0.7
    fair = view.fairness()
    assert fair["sites"] == 1 and fair["suppressed"] == 1
    assert fair["worst_site"] == "site-00"
    assert fair["gaps"] == {"site-00": pytest.approx(0.7 - 0.8)}
    assert any("site-00: gap" in r["what"] for r in fairness_records(view))


def test_panels_show_validation_cases_until_the_test_set_is_scored(tmp_path):
    run_dir, store = _run(tmp_path)
    outputs = run_outputs(load_run(run_dir))
    assert outputs[1] == "round 2 / 3"
    caption = [o for o in outputs if isinstance(o, str) and o.startswith("Cases:")]
    assert caption and "validation set, round 2" in caption[0]
    store.select_round("42", 2)
    store.log_global("42", 2, {"auc": 0.75, "auc-lo": 0.6, "auc-hi": 0.9}, TEST)
    store.log_predictions("42", 2, TEST, [0, 1, 1], [0.3, 0.8, 0.6])
    store.finish_run("42")
    view = load_run(run_dir)
    split, rnd, cases = view.scored_cases()
    assert (split, rnd, len(cases)) == (TEST, 2, 3)
    assert view.summary()["test 95% CI"] == "[0.600, 0.900]"
    assert find_runs(tmp_path) == [run_dir]


def test_ablation_folder_report_has_the_arms_and_the_validation_choice(tmp_path):
    from oncofed.common.experiments.ablation.report import CSV_COLUMNS

    rows = [
        [
            "local",
            "local",
            "ct only",
            "ct",
            "concat",
            "site-00",
            30,
            "server-test",
            100,
            40,
            0.61,
            0.5,
            0.7,
            0.5,
            0.4,
            0.6,
            0.6,
            0.5,
            0.7,
            0.65,
            0,
            1.0,
            "",
        ],
        [
            "local",
            "local",
            "ct only",
            "ct",
            "concat",
            "site-01",
            30,
            "server-test",
            100,
            40,
            0.71,
            0.6,
            0.8,
            0.5,
            0.4,
            0.6,
            0.6,
            0.5,
            0.7,
            0.55,
            0,
            1.0,
            "",
        ],
        [
            "federated",
            "federated",
            "clinical only",
            "clinical",
            "concat",
            "",
            60,
            "server-test",
            100,
            40,
            0.8,
            0.7,
            0.9,
            0.5,
            0.4,
            0.6,
            0.6,
            0.5,
            0.7,
            0.75,
            0,
            1.0,
            "",
        ],
    ]
    with open(tmp_path / "ablation.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        w.writerows(rows)
    (tmp_path / "ablation.md").write_text(
        "# Ablation: x\n\n## Findings\n\n- **fusion** wins\n\n| a | b |\n|---|---|\n"
        "| 1 | 2 |\n"
    )
    doc = build(tmp_path)
    tables = [b for b in doc.blocks if b[0] == "table"]
    chosen = tables[0][2]
    # local-only: site-00 has the better validation AUC, though site-01 tests higher
    assert chosen[0][:3] == ["local", "ct only", "site-00"]
    assert chosen[1][:2] == ["federated", "clinical only"]
    assert ["1", "2"] in tables[1][2]
    page = to_html(doc)
    assert "<b>fusion</b> wins" in page and "Test AUC per arm and regime" in page


def test_a_missing_tracking_extra_is_named(monkeypatch):
    from oncofed.common.reporting.export import require

    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'oncofed\[tracking\]'"):
        require("mlflow")
