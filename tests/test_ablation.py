"""``oncofed ablate``: the grid, the intervals, leave-one-site-out, the reports."""

from __future__ import annotations

import csv
import re
import sqlite3
import subprocess

import numpy as np
import pytest

from oncofed.common.cli import main
from oncofed.common.errors import ConfigError
from oncofed.common.experiments.ablation import (
    AblationOptions,
    load_scenario,
    plan_arms,
)
from oncofed.common.experiments.ablation.plan import parse_overrides
from oncofed.common.ml.metrics import (
    binary_metrics,
    bootstrap_indices,
    percentile_interval,
    resampled_metrics,
)
from tests.conftest import BIN, SMALL_SITES, free_port, wait_port, write_connection

SMALL = [
    "--set", f"num-sites={SMALL_SITES}",
    "--set", "image-size=32",
    "--set", "image-depth=8",
]  # fmt: skip


def _rows(out) -> list[dict]:
    with open(out / "ablation.csv") as f:
        return list(csv.DictReader(f))


def test_vectorised_bootstrap_matches_scikit_learn_on_every_resample():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 60)
    p = np.round(rng.random(60) * 0.6 + 0.3 * y, 2)  # rounded: ties in the scores
    idx = bootstrap_indices(60, 50, seed=1)
    res = resampled_metrics(y, p, idx)
    for i in range(50):
        ref = binary_metrics(y[idx[i]], p[idx[i]])
        for m in ("auc", "f1", "accuracy"):
            assert res[m][i] == pytest.approx(ref[m], abs=1e-12, nan_ok=True)
    lo, hi = percentile_interval(res["auc"])
    assert lo < binary_metrics(y, p)["auc"] < hi


def test_one_class_resamples_are_left_out_not_scored():
    y = np.array([1, 0])
    idx = np.array([[0, 0], [1, 1], [0, 1]])
    auc = resampled_metrics(y, np.array([0.9, 0.1]), idx)["auc"]
    assert np.isnan(auc[0]) and np.isnan(auc[1]) and auc[2] == 1.0


def test_plan_single_modalities_then_each_fusion():
    arms = plan_arms(("ct", "clinical", "genomics"), ("concat", "transformer"))
    assert [a.modalities for a in arms] == [
        ("ct",), ("clinical",), ("genomics",),
        ("ct", "clinical", "genomics"), ("ct", "clinical", "genomics"),
    ]  # fmt: skip
    assert [a.is_fusion for a in arms] == [False, False, False, True, True]
    assert len(plan_arms(("clinical",), ("concat",))) == 1  # nothing to fuse


def test_bad_scenario_regime_and_key_are_named():
    with pytest.raises(ConfigError, match="lits_sites"):
        load_scenario("lits_site")
    with pytest.raises(ConfigError, match="federated"):
        AblationOptions(regimes=("federatd",))
    scenario = load_scenario("lits_sites")
    with pytest.raises(ConfigError, match="learning-rat.*learning-rate"):
        scenario.run_config(parse_overrides(["learning-rat=0.1"]))
    assert parse_overrides(["fusion='transformer'", "seed=3", "x=word"]) == {
        "fusion": "transformer",
        "seed": 3,
        "x": "word",
    }


def test_ablate_local_and_pooled_with_leave_one_site_out(
    small_dataset, tmp_path, capsys
):
    """The in-process regimes on the 3-site dataset, through the CLI."""
    out = tmp_path / "abl"
    rc = main(
        [
            "ablate", "--out", str(out), "--rounds", "1", "--local-epochs", "1",
            "--regimes", "local,same-size-mix,pooled", "--fusions",
            "concat,transformer", "--bootstrap", "200", *SMALL,
        ]
    )  # fmt: skip
    assert rc == 0
    said = capsys.readouterr().out
    # 4 arms x (3 sites + 3 same-size mixes + pooled) + 2 arms x 3 held-out sites,
    # each with progress
    assert "[34/34] leave-one-site-out" in said
    rows = _rows(out)
    assert len(rows) == 34
    by_regime = {r: [x for x in rows if x["regime"] == r] for r in
                 ("local", "same-size-mix", "pooled",
                  "leave-one-site-out")}  # fmt: skip
    assert [len(v) for v in by_regime.values()] == [12, 12, 4, 6]
    # a same-size mix trains on exactly as many cases as its site's local model
    local_n = {(x["arm"], x["site"]): x["train_n"] for x in by_regime["local"]}
    assert {
        (x["arm"], x["site"]): x["train_n"] for x in by_regime["same-size-mix"]
    } == local_n
    assert len(set(local_n.values())) > 1  # the small sites differ in size
    arms = {x["arm"] for x in rows}
    assert arms == {
        "ct only", "clinical only", "early fusion (concat)",
        "cross-attention fusion (transformer)",
    }  # fmt: skip
    server_n = {
        x["test_n"]
        for x in by_regime["local"] + by_regime["same-size-mix"] + by_regime["pooled"]
    }
    assert len(server_n) == 1  # every model on the same test set
    for x in rows:
        assert not x["error"], x
        for m in ("auc", "f1", "accuracy"):
            lo, v, hi = (float(x[k]) for k in (f"{m}_ci_low", m, f"{m}_ci_high"))
            assert lo <= v <= hi, (m, x)
    # leave-one-site-out: a site's model never saw that site, and is tested on
    # every one of its cases
    for x in by_regime["leave-one-site-out"]:
        site = small_dataset.site_dir(int(x["site"].split("-")[1]))
        manifest = (site / "manifest.csv").read_text().strip().splitlines()
        assert int(x["test_n"]) == len(manifest) - 1
        pooled_n = int(by_regime["pooled"][0]["train_n"])
        assert int(x["train_n"]) < pooled_n
    md = (out / "ablation.md").read_text()
    assert "## Findings" in md and "best single modality" in md
    assert "Site differences at equal numbers of cases" in md
    assert "same-size mix: mean of sites" in md
    assert "Leave-one-site-out external validation" in md
    assert md.count("| ct only |") == 4  # AUC, F1, accuracy and per-site tables
    assert (out / "ablation.png").stat().st_size > 10_000


@pytest.mark.slow
def test_ablate_federated_and_leave_one_site_out_federated(
    processes, small_dataset, tmp_path
):
    """Federated arms are real Flower runs; a leave-one-site-out federation runs on
    the other sites only (its run store has no row from the held-out site)."""
    port = free_port()
    processes.start(
        "superlink", str(BIN / "flower-superlink"), "--insecure", "--simulation",
        "--port", str(port), "--host", "127.0.0.1",
    )  # fmt: skip
    wait_port(port)
    write_connection(processes.env, "oncofed-test", port)
    out = tmp_path / "abl"
    done = subprocess.run(
        [
            str(BIN / "oncofed"), "ablate", "--out", str(out), "--rounds", "2",
            "--local-epochs", "1", "--regimes", "local,federated", "--loso",
            "federated", "--connection", "oncofed-test", "--bootstrap", "200",
            *SMALL, "--set", "modalities='clinical'",
        ],
        env=processes.env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    said = done.stdout + done.stderr
    assert done.returncode == 0, said[-4000:]
    assert "round 2/2 | validation AUC" in said  # Flower's rounds as progress
    rows = _rows(out)
    assert [x["regime"] for x in rows] == (
        ["local"] * SMALL_SITES + ["federated"] + ["leave-one-site-out"] * SMALL_SITES
    )
    assert all(not x["error"] for x in rows), rows
    fed = rows[SMALL_SITES]
    assert 0.5 < float(fed["auc"]) <= 1.0
    # every federated model came from one Flower run (a sweep), each in its own
    # run directory
    assert len(list(out.glob("runs/federated/*-sweep0/checkpoints/last.pt"))) == 1
    logs = sorted(p.parent.name for p in out.glob("runs/*/flwr.log"))
    assert logs == ["federated", "leave-one-site-out"]  # one Flower run each
    assert len(list(out.glob("runs/leave-one-site-out/*-sweep*"))) == SMALL_SITES
    for k, x in enumerate(rows[SMALL_SITES + 1 :]):
        assert x["trained_as"] == "federated"
        store = next(out.glob(f"runs/leave-one-site-out/*-sweep{k}/run.sqlite"))
        with sqlite3.connect(store) as db:
            trained = {
                s for (s,) in db.execute(
                    "SELECT DISTINCT site FROM site_metrics WHERE phase = 'train'"
                )
            }  # fmt: skip
        assert x["site"] not in trained
        assert len(trained) == SMALL_SITES - 1
    md = (out / "ablation.md").read_text()
    _verdicts_match_intervals(md, "federated")
    assert "trains by a Flower federation on the other sites" in md


VERDICT = re.compile(
    r"\*\*[^*]*?(?P<verdict>beats|is beaten by|shows no detectable difference from)"
    r"[^*]*\*\*.*?difference [+-]\d\.\d+ \[(?P<lo>[+-]\d\.\d+), "
    r"(?P<hi>[+-]\d\.\d+)\]"
)


def _verdicts_match_intervals(md: str, word: str) -> None:
    """Every finding that compares two models says "beats" only when the paired
    interval lies above 0, "is beaten by" only below, and "no detectable
    difference" when it includes 0."""
    found = [m for m in VERDICT.finditer(md) if word in m.group(0)]
    assert found, md
    for m in found:
        lo, hi = float(m["lo"]), float(m["hi"])
        expected = (
            "beats" if lo > 0 else "is beaten by" if hi < 0
            else "shows no detectable difference from"
        )  # fmt: skip
        assert m["verdict"] == expected, m.group(0)


def _finding(question: str, diff: float, lo: float, hi: float):
    from oncofed.common.experiments.ablation.results import Finding

    return Finding(question, "fusion", "a (pooled)", "b (pooled)", 0.8, 0.7,
                   diff, lo, hi)  # fmt: skip


def _scored_pair(site: str, probs_local, probs_mixed, labels):
    from oncofed.common.experiments.ablation.plan import Arm
    from oncofed.common.experiments.ablation.results import Result

    arm = Arm("ct only", ("ct",), "concat")
    return [
        Result(arm, regime, regime, site, 30, "server-test", labels, np.asarray(p),
               0.0)
        for regime, p in (("local", probs_local), ("same-size-mix", probs_mixed))
    ]  # fmt: skip


def test_site_finding_says_no_where_the_mix_adds_nothing_and_yes_where_it_does():
    """The fixed-number-of-cases question pairs each site's local-only model with
    its same-size mix: identical skill gives no win, a better mix gives one."""
    from oncofed.common.experiments.ablation.report import Scorer, _site_finding

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)

    def probs(noise: float) -> np.ndarray:
        return 1 / (1 + np.exp(-(labels - 0.5 + rng.normal(0, noise, 200))))

    noisy = [probs(1.5) for _ in range(6)]
    clean = [probs(0.5) for _ in range(3)]
    scorer = Scorer(500)

    def finding(pairs):
        results = [r for k, (a, b) in enumerate(pairs)
                   for r in _scored_pair(f"site-{k}", a, b, labels)]  # fmt: skip
        scored = [scorer(r) for r in results]
        local = [s for s in scored if s.result.regime == "local"]
        mixed = [s for s in scored if s.result.regime == "same-size-mix"]
        (f,) = _site_finding(scorer, local, mixed)
        return f

    same = finding([(noisy[0], noisy[1]), (noisy[2], noisy[3]), (noisy[4], noisy[5])])
    assert same.said == "shows no detectable difference from", same
    assert same.low < 0 < same.high
    better = finding(list(zip(noisy[:3], clean, strict=True)))
    assert better.win and better.low > 0, better
    assert "3 sites" in better.note and "every site beats" in better.sentence()


def test_a_finding_wins_only_when_every_seed_interval_lies_above_zero():
    from oncofed.common.experiments.ablation.summary import findings_table, verdicts

    per_seed = {
        1: [_finding("Q1", 0.10, 0.02, 0.18), _finding("Q2", 0.05, -0.01, 0.11)],
        2: [_finding("Q1", 0.08, 0.01, 0.15), _finding("Q2", 0.06, 0.01, 0.12)],
        3: [_finding("Q1", 0.09, 0.03, 0.16), _finding("Q2", -0.02, -0.08, 0.04)],
    }
    said = verdicts(per_seed)
    assert said[0] == "**Q1**: a win in every seed."
    assert said[1].startswith("**Q2**: a win in 1 of 3 seeds only")
    table = findings_table(per_seed)
    assert table[2].endswith("| 0.090 ± 0.010 | 3 of 3 |"), table[2]
    assert table[3].endswith("| 1 of 3 |"), table[3]
    null = {s: [_finding("Q", 0.01, -0.05, 0.07)] for s in (1, 2, 3)}
    assert verdicts(null) == [
        "**Q**: no detectable difference in any seed (every interval includes 0)."
    ]


def test_control_datasets_say_what_they_were_built_to_show():
    from oncofed.common.experiments.ablation.results import about_data

    assert "can* win" in about_data("synthetic")
    assert "nothing to add" in about_data("synthetic_shared_signal")
    assert "sites do not differ" in about_data("synthetic_iid_sites")
    assert about_data("tcga_lihc") == ""  # real data: nothing to declare


@pytest.mark.slow
def test_ablate_over_seeds_writes_each_seed_and_a_summary(small_dataset, tmp_path):
    """--seeds: one ablation per seed in its own folder, then one CSV with a seed
    column and a Markdown summary with mean ± sd and per-seed differences."""
    out = tmp_path / "abl"
    rc = main(
        [
            "ablate", "--out", str(out), "--rounds", "1", "--local-epochs", "1",
            "--regimes", "pooled", "--fusions", "concat", "--loso", "none",
            "--bootstrap", "100", "--seeds", "2024,2025", *SMALL,
        ]
    )  # fmt: skip
    assert rc == 0
    for seed in (2024, 2025):
        assert (out / f"seed-{seed}" / "ablation.md").is_file()
        assert (out / f"seed-{seed}" / "findings.json").is_file()
    rows = _rows(out)
    assert {r["seed"] for r in rows} == {"2024", "2025"}
    assert len(rows) == 2 * 3  # ct, clinical, concat per seed
    per_seed = {
        s: {r["arm"]: float(r["auc"]) for r in rows if r["seed"] == s}
        for s in ("2024", "2025")
    }
    assert per_seed["2024"] != per_seed["2025"]  # another seed, another model
    md = (out / "ablation.md").read_text()
    assert "# Ablation over 2 seeds" in md and "can* win" in md
    assert "| seed 2024 | seed 2025 |" in md
    mean = np.mean([per_seed[s]["ct only"] for s in per_seed])
    assert f"| ct only | - | - | {mean:.3f} ± " in md  # local, mix, pooled


def test_leave_one_site_out_for_the_arms_named(small_dataset, tmp_path, capsys):
    """``--loso-arms ct,concat`` holds each site out for those arms only; a name
    that is no arm is refused with the arms there are."""
    out = tmp_path / "abl"
    base = ["ablate", "--rounds", "1", "--local-epochs", "1", "--regimes",
            "pooled", "--fusions", "concat", "--bootstrap", "100", *SMALL]  # fmt: skip
    assert main([*base, "--out", str(out), "--loso-arms", "ct,concat"]) == 0
    loso = [x for x in _rows(out) if x["regime"] == "leave-one-site-out"]
    assert sorted({x["arm"] for x in loso}) == ["ct only", "early fusion (concat)"]
    assert len(loso) == 2 * 3
    capsys.readouterr()
    rc = main([*base, "--out", str(tmp_path / "bad"), "--loso-arms", "cta"])
    assert rc != 0
    err = capsys.readouterr().err
    assert "no arm 'cta'" in err and "Did you mean 'ct'?" in err


def test_a_stopped_runs_folders_do_not_stand_for_this_runs_entries(tmp_path):
    """An ablation run again into the folder of a stopped one: each sweep entry is
    read from this Flower run's folder, not from the stopped run's folder of the
    same entry (which said 'did not finish' for every entry it had reached)."""
    from oncofed.common.experiments.ablation.federation import _entry_outcome
    from oncofed.common.tracking.store import RUN_STORE, RunStore

    def entry(stamp: str, run: str, status: str):
        folder = tmp_path / f"{stamp}-run{run}-sweep3"
        (folder / "checkpoints").mkdir(parents=True)
        (folder / "checkpoints" / "last.pt").write_bytes(b"")
        store = RunStore(folder / RUN_STORE)
        store.start_run(f"{run}-sweep3", "r", {})
        if status != "running":
            store.finish_run(f"{run}-sweep3", status)
        return folder

    entry("20261202-091456", "111", "running")  # the stopped run's
    mine = entry("20261202-093839", "222", "finished")
    log = tmp_path / "flwr.log"
    log.write_text("")
    assert _entry_outcome(tmp_path, "222", 3, log) == mine / "checkpoints" / "last.pt"
    assert "did not finish" in str(_entry_outcome(tmp_path, "111", 3, log))
    assert "did not finish" in str(_entry_outcome(tmp_path, "", 3, log))
