"""The dashboard, the report and the tracker export on a real federation.

One real 3-round Flower simulation (module fixture, with run-config
``tracking = 'tensorboard'``) runs in the background; the dashboard test watches
it live in the system's Chromium (Playwright with ``executable_path``), the
others use it once it has finished. ``make setup`` installs Debian's
``chromium`` when it is missing (``apt-get install -y chromium``).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import (
    BIN,
    ROOT,
    SMALL_SITES,
    Processes,
    free_port,
    new_processes,
    wait_port,
)
from tests.test_federation import APP, _superlink

ROUNDS = 3
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SITES = [f"site-{i:02d}" for i in range(SMALL_SITES)]


class Federation:
    """A real ``flwr run`` going on in the background."""

    def __init__(self, processes: Processes, run_root: Path) -> None:
        self.processes = processes
        self.run_root = run_root
        self.proc = processes.start(
            "flwr-run",
            str(BIN / "flwr"),
            "run",
            str(APP),
            "oncofed-test",
            "--stream",
            "--run-config",
            f"num-server-rounds={ROUNDS} num-sites={SMALL_SITES} local-epochs=1 "
            f"run-dir='{run_root}' tracking='tensorboard'",
            "--federation-config",
            f"num-supernodes={SMALL_SITES}",
        )

    def wait(self) -> Path:
        """The finished run's folder."""
        self.proc.wait(timeout=900)
        log = self.processes.log("flwr-run")
        runs = list(self.run_root.glob("*/run.sqlite"))
        assert runs, log[-4000:]
        with sqlite3.connect(runs[0]) as db:
            (status,) = db.execute("SELECT status FROM runs").fetchone()
        assert status == "finished", log[-4000:]
        return runs[0].parent


@pytest.fixture(scope="module")
def federation(tmp_path_factory, oncofed_home, small_dataset):
    procs = new_processes(tmp_path_factory.mktemp("dashboard"), oncofed_home)
    _superlink(procs, simulation=True)
    yield Federation(procs, procs.logdir / "runs")
    procs.stop_all()


def _dashboard(processes: Processes, root: Path, *extra: str) -> int:
    port = free_port()
    processes.start(
        f"dashboard-{port}",
        str(BIN / "oncofed"),
        "dashboard",
        str(root),
        "--port",
        str(port),
        *extra,
    )
    wait_port(port)
    return port


def _rounds(page) -> int | None:  # type: ignore[no-untyped-def]
    text = page.locator("#run-rounds").inner_text()  # "round 2 / 3"
    try:
        return int(text.split()[1])
    except (IndexError, ValueError):
        return None


@pytest.mark.slow
def test_dashboard_follows_a_live_federation(federation, tmp_path):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "no chromium on PATH: apt-get install -y chromium (make setup)"
    federation.run_root.mkdir(parents=True, exist_ok=True)
    port = _dashboard(federation.processes, federation.run_root)
    seen: list[int] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        requested: list[str] = []  # every script, style and call the page makes
        page.on("request", lambda r: requested.append(r.url))
        page.goto(f"http://127.0.0.1:{port}/")
        # the run is listed once the ServerApp has made its folder
        link = page.locator("#runs-table a").first
        link.wait_for(timeout=300_000)
        name = link.inner_text()
        assert name.endswith(tuple("0123456789")) and "-run" in name
        link.click()
        page.wait_for_selector("#run-rounds", timeout=30_000)
        deadline = time.time() + 600
        while time.time() < deadline:  # no reload: the page refreshes itself
            k = _rounds(page)
            if k is not None and (not seen or k != seen[-1]):
                seen.append(k)
            if page.locator("#run-status").inner_text() == "finished":
                break
            time.sleep(0.5)
        assert page.locator("#run-status").inner_text() == "finished"
        time.sleep(3)  # the last refresh
        k = _rounds(page)
        if k != seen[-1]:
            seen.append(k)
        assert seen == sorted(seen) and len(seen) >= 2 and seen[-1] == ROUNDS, seen
        assert seen[0] < ROUNDS, f"the page only ever showed {seen}"
        table = page.locator("#site-table").inner_text()
        for site in SITES:
            assert site in table, table
        # the ROC panel drew the model's curve on the test set
        assert page.locator("#roc .main-svg").count() >= 1
        assert "AUC" in page.locator("#roc").inner_text()
        assert (
            "test set, selected round" in page.locator("#scored-caption").inner_text()
        )
        # offline: nothing was fetched from anywhere but the dashboard itself
        local = f"http://127.0.0.1:{port}/"
        assert requested and all(u.startswith((local, "data:")) for u in requested), [
            u for u in requested if not u.startswith(local)
        ]
        shot = tmp_path / "dashboard.png"
        page.screenshot(path=str(shot), full_page=False)
        browser.close()
    assert shot.stat().st_size > 10_000
    if os.environ.get("ONCOFED_UPDATE_SCREENSHOT"):  # the README's picture
        shutil.copyfile(shot, ROOT / "docs" / "dashboard.png")
    run_dir = federation.wait()  # the dashboard never got in the run's way
    assert (run_dir / "checkpoints" / "best.pt").is_file()


@pytest.mark.slow
def test_dashboard_off_loopback_needs_a_token(tmp_path, processes):
    refused = subprocess.run(
        [str(BIN / "oncofed"), "dashboard", str(tmp_path), "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2
    assert "--token" in refused.stderr
    port = _dashboard(processes, tmp_path, "--host", "0.0.0.0", "--token", "s3cret")
    base = f"http://127.0.0.1:{port}"

    def status(path: str, headers: dict | None = None) -> int:
        req = urllib.request.Request(base + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as err:
            return int(err.code)

    assert status("/") == 401
    assert status("/_dash-layout") == 401
    assert status("/?token=wrong") == 401
    assert status("/?token=s3cret") == 200
    assert status("/_dash-layout", {"Authorization": "Bearer s3cret"}) == 200


@pytest.mark.slow
def test_report_pdf_holds_run_sites_auc_and_model_card(federation, tmp_path):
    from pypdf import PdfReader

    from oncofed.common.reporting.report import MODEL_CARD_HEADINGS

    run_dir = federation.wait()
    pdf, html = tmp_path / "report.pdf", tmp_path / "report.html"
    out = subprocess.run(
        [
            str(BIN / "oncofed"),
            "report",
            str(run_dir),
            "--out",
            str(pdf),
            "--html",
            str(html),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    text = " ".join(page.extract_text() for page in PdfReader(pdf).pages)
    text = " ".join(text.split())
    with sqlite3.connect(run_dir / "run.sqlite") as db:
        (run_id,) = db.execute("SELECT run_id FROM runs").fetchone()
    assert run_id in text
    for site in SITES:
        assert site in text
    assert "best round (validation)" in text and "auc" in text and "AUC" in text
    for heading in ("Model card", *MODEL_CARD_HEADINGS):
        assert heading in text, heading
    assert "synthetic" in text
    page = html.read_text()
    assert run_id in page and "data:image/png;base64," in page


@pytest.mark.slow
def test_trackers_hold_every_rounds_metrics(federation, tmp_path):
    import mlflow
    from tensorboard.backend.event_processing.event_accumulator import (
        EventAccumulator,
    )

    run_dir = federation.wait()
    # live, from run-config tracking = 'tensorboard'
    (events,) = (run_dir / "tensorboard").iterdir()
    acc = EventAccumulator(str(events))
    acc.Reload()
    assert [s.step for s in acc.Scalars("val/auc")] == list(range(ROUNDS + 1))
    for site in SITES:
        steps = [s.step for s in acc.Scalars(f"site/{site}/train/loss")]
        assert steps == list(range(1, ROUNDS + 1)), site
    assert (events / "best.pt").is_file()
    # afterwards, with oncofed export-runs
    store = tmp_path / "mlflow"
    out = subprocess.run(
        [
            str(BIN / "oncofed"),
            "export-runs",
            str(run_dir.parent),
            "--mlflow",
            str(store),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    client = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    exp = client.get_experiment_by_name("oncofed")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.run_name == run_dir.name
    history = client.get_metric_history(run.info.run_id, "val/auc")
    assert sorted(m.step for m in history) == list(range(ROUNDS + 1))
    with sqlite3.connect(run_dir / "run.sqlite") as db:
        (auc,) = db.execute(
            "SELECT value FROM global_metrics WHERE split='val' AND metric='auc' "
            "AND round = ?",
            (ROUNDS,),
        ).fetchone()
    assert {m.step: m.value for m in history}[ROUNDS] == pytest.approx(auc)
    for site in SITES:
        assert client.get_metric_history(run.info.run_id, f"site/{site}/train/loss")
    assert run.data.params["num-server-rounds"] == str(ROUNDS)
    assert [a.path for a in client.list_artifacts(run.info.run_id, "model")] == [
        "model/best.pt"
    ]


@pytest.mark.slow
def test_dashboard_lists_rejected_replies_and_resumptions(tmp_path, processes):
    """What the guard turned away, and that the run was resumed, on the run's
    page (a run store written by the real store writer)."""
    import json

    from playwright.sync_api import sync_playwright

    from oncofed.common.config import OncoFedConfig
    from oncofed.common.tracking.store import RunStore

    run = tmp_path / "runs" / "20261201-120000-run7"
    run.mkdir(parents=True)
    config = OncoFedConfig().to_flat()
    (run / "config.json").write_text(json.dumps(config))
    store = RunStore(run / "run.sqlite")
    store.start_run("7", run.name, config)
    for rnd in range(3):
        store.log_global("7", rnd, {"auc": 0.6 + rnd / 20, "loss": 0.7})
    store.rewind("7", 1, "99")  # as `oncofed resume` does, after round 1
    store.log_global("7", 2, {"auc": 0.7, "loss": 0.6})
    store.log_reply_event(
        "7", 2, "site-03", "104", "train", "rejected", "tensor 'w' holds NaN or Inf"
    )
    port = _dashboard(processes, tmp_path / "runs")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"http://127.0.0.1:{port}/")
        page.locator("#runs-table a").first.click()
        page.wait_for_selector("#events-table td", timeout=60_000)
        table = page.locator("#events-table").inner_text()
        caption = page.locator("#resume-caption").inner_text()
        browser.close()
    assert "site-03" in table and "holds NaN or Inf" in table and "rejected" in table
    assert "resumed after round 1" in caption
