"""Scanner harmonisation on the scanner-shift scenario (issue 18), first part.

For each ``--methods`` option (run-config ``harmonise``) and each ``--seeds`` seed:

``loso``
    ``oncofed ablate --scenario scanner_shift_sites --regimes pooled --loso pooled``
    with ``--set harmonise=METHOD``: the ``--arms`` (CT only and clinical only
    by default; early fusion with ``--arms ct,clinical,concat``), each trained
    pooled on all sites but one,
    tested on every case of the held-out site, which maps its scans with its own
    harmoniser, fitted without labels. Reported: test AUC per held-out site and
    its mean over sites, per arm; and, for scale, each arm trained pooled on
    every site and tested on the server's test set (reference scanner). With
    ``--loso federated`` the leave-one-site-out models are Flower federations
    of the other sites instead, where ``fedbn`` (each site's own normalisation
    layers; the held-out site gets the global model's) differs from ``none``.
``rails``
    each site loaded through the method as a federated run would: the guard-rail
    figures (``harmonise-*``), whether the site fell back, and the CPU seconds
    of fitting (the CycleGAN's training).

Paired comparison: for each method and arm, the held-out-site AUC minus that of
``none`` on the same site and seed, averaged; its 95 % interval resamples the
held-out sites (a percentile bootstrap over sites, each site's difference
averaged over seeds). Domain gap: each site's per-tissue HU distance to the
reference cohort (1-Wasserstein, liver and lesion) before and after, and "in
use" (after, or before where the site fell back). Label efficiency with
federated Models Genesis is ``benchmarks/pretraining.py``.

``features``
    the domain gap in the task encoder's eyes: a site-vs-reference classifier
    on the embeddings of a CT-only model trained pooled on every harmonised site.
``transfer``
    the scenario's premise, that a CT model trained elsewhere loses AUC at a
    site whose scanner it never saw: per held-out site, a CT-only model trained
    elsewhere against one trained on the same cases plus the site's, both
    tested on the site's cases that neither trained on (``--transfer-folds``:
    every case, cross-fitted). Elsewhere is the other sites pooled
    (``--transfer-from sites``, as leave-one-site-out; then also, on the
    reference scanner, a CT model trained on reference-scanner cases only
    against the one pooled on every site) or the reference scanner's labelled
    cases (``--transfer-from reference``: a model trained on a public dataset,
    taken to a hospital).

The scenario was built with scanner differences the default does not have (see
docs/synthetic-data.md, "Scanner shift"); what a method recovers here is what it
recovers of those, not of real scanners.

    python benchmarks/harmonisation.py --json /tmp/harmonisation.json
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _runinfo import run_info  # benchmarks/ is the script folder

from oncofed.common.paths import scratch_dir

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = "scanner_shift_sites"


def _oncofed() -> str:
    return str(Path(sys.executable).parent / "oncofed")


def loso(
    method: str, seed: int, out: Path, rounds: int, arms: str, how: str = "pooled"
) -> dict:
    """Per arm: {held-out site: test AUC} of one ablation."""
    suffix = "" if how == "pooled" else f"-{how}"  # pooled: the earlier folders
    folder = out / f"{method}-seed-{seed}{suffix}"
    t = time.time()
    if _finished(folder):  # --work: a finished run is reused
        return _read_loso(method, seed, folder, t)
    cmd = [
        _oncofed(), "ablate", "--scenario", SCENARIO, "--out", str(folder),
        "--regimes", "pooled", "--fusions", "concat", "--loso", how,
        "--loso-arms", arms,
        "--rounds", str(rounds), "--set", f"harmonise={method}",
        "--set", f"seed={seed}",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return _read_loso(method, seed, folder, t)


def _finished(folder: Path) -> bool:
    """An ablation folder that finished with every model trained: the CSV is
    rewritten after each model, findings.json only at the end, and a model that
    failed leaves its error in the CSV's last column."""
    if not (folder / "findings.json").is_file():
        return False
    with open(folder / "ablation.csv", newline="") as f:
        return not any(row.get("error") for row in csv.DictReader(f))


def _read_loso(method: str, seed: int, folder: Path, t: float) -> dict:
    """Per arm: {held-out site: test AUC} of one ablation folder."""
    per_arm: dict[str, dict[str, float]] = {}
    pooled: dict[str, float] = {}  # every site, tested on the reference scanner
    with open(folder / "ablation.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["regime"] == "leave-one-site-out" and row["auc"]:
                per_arm.setdefault(row["arm"], {})[row["site"]] = float(row["auc"])
            elif row["regime"] == "pooled" and row["auc"]:
                pooled[row["arm"]] = float(row["auc"])
    means = {a: statistics.mean(v.values()) for a, v in per_arm.items()}
    fits = folder / "harmonisation.json"  # the sites' guard rails, as fitted there
    rails_seen = json.loads(fits.read_text()) if fits.is_file() else {}
    print(
        f"  {method:>9} seed {seed}: "
        + "; ".join(
            f"{a} LOSO AUC {m:.3f} (pooled: {pooled.get(a, float('nan')):.3f} on "
            "the reference scanner)"
            for a, m in means.items()
        )
        + f" ({time.time() - t:.0f} s)",
        flush=True,
    )
    return {
        "per_site": per_arm,
        "mean": means,
        "pooled_reference_test": pooled,
        "rails": rails_seen,
        "seconds": time.time() - t,
    }


def rails(method: str, seed: int) -> dict:
    """Each site's guard-rail figures and fitting time under ``method``."""
    from oncofed.common.config import from_run_config
    from oncofed.common.data.prepared import open_prepared
    from oncofed.common.ingest import ensure_prepared
    from oncofed.common.ml.harmonise import load_harmonised_sites

    app = _app_config()
    cfg = from_run_config({**app, "harmonise": method, "seed": seed}).data
    ensure_prepared(cfg)
    ds = open_prepared(cfg)
    dirs = [ds.site_dir(i) for i in range(len(ds.sites))]
    loaded = load_harmonised_sites(dirs, cfg, ("train",))
    return {
        name: {**data.harmonise, "fit-cpu-s": seconds}
        for name, (data, seconds) in zip(ds.sites, loaded, strict=True)
    }


def paired(
    loso_result: dict, method: str, arm: str, seed: int = 0, base_method: str = "none"
) -> dict:
    """``method`` minus ``base_method`` on the same held-out site and seed: the
    mean over sites of the seed-averaged difference, with a 95 % percentile
    bootstrap interval over sites (2,000 resamples)."""
    import numpy as np

    per_site: dict[str, list[float]] = {}
    for s, r in loso_result[method].items():
        base = loso_result[base_method][s]["per_site"].get(arm, {})
        for site, auc in r["per_site"].get(arm, {}).items():
            if site in base:
                per_site.setdefault(site, []).append(auc - base[site])
    diffs = np.array([np.mean(v) for v in per_site.values()])
    if not len(diffs):
        return {"mean": float("nan"), "lo": float("nan"), "hi": float("nan")}
    rng = np.random.default_rng(seed)
    boot = [rng.choice(diffs, len(diffs)).mean() for _ in range(2000)]
    return {
        "mean": float(diffs.mean()),
        "lo": float(np.percentile(boot, 2.5)),
        "hi": float(np.percentile(boot, 97.5)),
        "sites": len(diffs),
    }


def gap_summary(rails_result: dict) -> dict:
    """Per method, the mean over sites and seeds of each tissue's HU distance to
    the reference: before, after, and in use (before where the site fell back);
    and how many site-seeds fell back."""
    out = {}
    for m, by_seed in rails_result.items():
        rows = [v for r in by_seed.values() for v in r.values()]
        row = {"fallbacks": sum(v.get("harmonise-fallback") == 1.0 for v in rows),
               "site_seeds": len(rows)}  # fmt: skip
        for t in ("liver", "lesion"):
            b = [v[f"harmonise-gap-{t}-before"] for v in rows]
            a = [v[f"harmonise-gap-{t}-after"] for v in rows]
            used = [
                bb if v.get("harmonise-fallback") == 1.0 else aa
                for bb, aa, v in zip(b, a, rows, strict=True)
            ]
            row[f"{t}_before"] = statistics.mean(b)
            row[f"{t}_after"] = statistics.mean(a)
            row[f"{t}_in_use"] = statistics.mean(used)
        out[m] = row
    return out


def _ct_sites(method: str, seed: int) -> tuple:
    """The scenario's CT-only config under ``method`` and ``seed``, its prepared
    dataset, and every site loaded through the method."""
    from oncofed.common.config import from_run_config
    from oncofed.common.data.prepared import open_prepared
    from oncofed.common.ingest import ensure_prepared
    from oncofed.common.ml.harmonise import load_harmonised_sites

    cfg = from_run_config(
        {**_app_config(), "harmonise": method, "seed": seed, "modalities": "ct"}
    )
    ensure_prepared(cfg.data)
    ds = open_prepared(cfg.data)
    dirs = [ds.site_dir(i) for i in range(len(ds.sites))]
    return cfg, ds, [site for site, _ in load_harmonised_sites(dirs, cfg.data)]


def _fit_ct(cfg, sites: list, train: list[dict], seed: int, rounds: int):  # type: ignore[no-untyped-def]
    """A CT-only model trained on ``train`` for ``rounds`` x local-epochs epochs
    (seeded, CPU)."""
    import torch

    from oncofed.common.ml.models import build_model
    from oncofed.common.ml.training import seed_everything, train_local

    seed_everything(seed)
    model = build_model(cfg.model, cfg.data.image_depth, sites[0].input_dims)
    train_local(model, train, cfg.train, torch.device("cpu"), seed,
                epochs=rounds * cfg.train.local_epochs)  # fmt: skip
    return model


def feature_gap(method: str, seed: int, rounds: int) -> dict:
    """The domain gap in the task encoder's eyes: a CT-only model trained pooled
    on every site's (harmonised) training cases; then, per site, a logistic
    regression telling that site's cases from the reference cohort's scans by
    their CT embeddings, scored by 5-fold cross-validated balanced accuracy
    (0.5: the encoder cannot tell them apart)."""
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from oncofed.common.data.harmonise import reference_samples

    cfg, ds, sites = _ct_sites(method, seed)
    train = [s for d in sites for s in d.split("train")]
    model = _fit_ct(cfg, sites, train, seed, rounds)
    encoder = model.encoders["ct"].eval()

    @torch.no_grad()
    def embed(samples: list[dict]) -> np.ndarray:
        x = torch.stack([s["ct"] for s in samples])
        return torch.cat([encoder(b) for b in x.split(64)]).numpy()

    ref = embed(reference_samples(ds.site_dir(0), cfg.data, train[0]))
    out = {}
    for d in sites:
        own = embed([s for split in ("train", "val", "test") for s in d.split(split)])
        x = np.concatenate([own, ref])
        y = np.r_[np.ones(len(own)), np.zeros(len(ref))]
        clf = make_pipeline(
            StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=2000)
        )
        folds = StratifiedKFold(5, shuffle=True, random_state=seed)
        scores = cross_val_score(clf, x, y, cv=folds, scoring="balanced_accuracy")
        out[d.name] = float(scores.mean())
    return out


def transfer(
    seed: int, rounds: int, method: str = "none", folds: int = 0, source: str = "sites"
) -> dict:
    """The scenario's premise: what a CT model loses at a site whose scanner it
    never saw. Per held-out site k, a CT-only model trained elsewhere and one
    trained on the same cases plus k's ("seen": k's scanner in training), both
    for the same epochs and tested on cases of k that neither trained on.

    ``source`` says where "elsewhere" is. ``"sites"``: pooled on the other
    sites' training cases (as leave-one-site-out); "seen" is trained on every
    site's. ``"reference"``: the reference scanner's labelled cases (the
    server's validation set, used here for training; nothing is selected with
    them), as a model trained on a public dataset and taken to a hospital;
    "seen" adds k's training cases. Either way they are tested on k's
    validation and test cases. Returns per site the two AUCs, and the AUC of
    the predictions pooled over sites (each case scored by its own site's
    models). With ``"sites"`` also, on the reference scanner, a model trained on
    the server's validation cases against the one pooled on every site, both
    tested on the server's test cases.

    ``folds`` >= 2 cross-fits "seen" over every case of site k instead (about
    2.5 times as many cases per site): k's cases in ``folds`` label-stratified
    folds, each scored by a model trained on the elsewhere cases and k's other
    folds; "elsewhere" scores the same cases. A site's AUC is then the mean of
    its folds' AUCs, for both models alike."""
    import numpy as np
    import torch
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    from oncofed.common.ml.harmonise import load_harmonised
    from oncofed.common.ml.training import predict

    cfg, ds, sites = _ct_sites(method, seed)

    def ct(samples: list[dict]) -> list[dict]:
        return [s for s in samples if s.get("ct_present")]

    def fit(train: list[dict]) -> torch.nn.Module:
        return _fit_ct(cfg, sites, train, seed, rounds)

    def scores(model: torch.nn.Module, test: list[dict]) -> tuple:
        y, p, _ = predict(model, test, torch.device("cpu"), cfg.train.batch_size)
        return np.asarray(y), np.asarray(p)

    def server(split: str) -> list[dict]:
        folder = ds.server_dir(split)
        return ct(load_harmonised(folder, cfg.data, (split,), reference_domain=True)
                  .split(split))  # fmt: skip

    ref_val = server("val")
    ref_model = fit(ref_val)
    seen = None
    if source == "sites":
        seen = fit(ct([s for d in sites for s in d.split("train")]))
    per_site, ys, p_else, p_seen = {}, [], [], []
    for k, held in enumerate(sites):
        if source == "sites":
            base = ct(
                [s for j, d in enumerate(sites) if j != k for s in d.split("train")]
            )
            model = fit(base)
        else:
            base, model = ref_val, ref_model
        splits = ("train", "val", "test") if folds >= 2 else ("val", "test")
        test = ct([s for sp in splits for s in held.split(sp)])
        y, pe = scores(model, test)
        both = len(set(y.tolist())) == 2
        if folds >= 2:  # every case of k, each scored by a model that saw its folds
            ps = np.empty(len(test))
            cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
            fold_aucs = []
            for rest, fold in cv.split(np.zeros(len(y)), y):
                model = fit(base + [test[i] for i in rest])
                ps[fold] = scores(model, [test[i] for i in fold])[1]
                fold_aucs.append(
                    (roc_auc_score(y[fold], pe[fold]), roc_auc_score(y[fold], ps[fold]))
                )
            # each fold's AUC, then their mean: the folds' models put their
            # scores on scales of their own, and one AUC over all folds would
            # count that against "seen" (the single "elsewhere" model has one)
            auc_else, auc_seen = (float(v) for v in np.mean(fold_aucs, axis=0))
        else:
            if seen is not None:
                _, ps = scores(seen, test)
            else:
                _, ps = scores(fit(base + ct(held.split("train"))), test)
            nan = float("nan")
            auc_else = float(roc_auc_score(y, pe)) if both else nan
            auc_seen = float(roc_auc_score(y, ps)) if both else nan
        per_site[held.name] = {"n": len(y), "elsewhere": auc_else, "seen": auc_seen}
        ys.append(y)
        p_else.append(pe)
        p_seen.append(ps)
    y = np.concatenate(ys)
    pooled = {
        "elsewhere": float(roc_auc_score(y, np.concatenate(p_else))),
        "seen": float(roc_auc_score(y, np.concatenate(p_seen))),
        "n": len(y),
    }
    out: dict[str, Any] = {"source": source, "per_site": per_site, "pooled": pooled}
    scored = "every case" if folds >= 2 else "val+test cases"
    where = "on the other sites" if source == "sites" else "on the reference scanner"
    line = (f"  {method:>9} seed {seed}: held-out sites' {scored} ({len(y)}), "
            f"CT-only AUC trained {where} {pooled['elsewhere']:.3f}, with the "
            f"site's scanner seen {pooled['seen']:.3f}")  # fmt: skip
    if seen is not None:
        # the reference scanner: a model that saw only it (the server's
        # validation cases) against the one pooled on the 7 sites, both tested
        # on the server's test cases
        ref_test = server("test")
        yr, p_ref = scores(ref_model, ref_test)
        _, p_pool = scores(seen, ref_test)
        reference = {
            "trained_on_reference": float(roc_auc_score(yr, p_ref)),
            "pooled_on_sites": float(roc_auc_score(yr, p_pool)),
            "n_train": len(ref_val),
            "n_test": len(yr),
        }
        out["reference"] = reference
        line += (f"; reference-scanner test: trained on {len(ref_val)} "
                 f"reference-scanner cases {reference['trained_on_reference']:.3f}, "
                 f"pooled on the sites {reference['pooled_on_sites']:.3f}")  # fmt: skip
    print(line, flush=True)
    return out


def _check_work(work: str | None, how: str) -> None:
    """With ``--loso federated`` the ServerApp writes into ``--work``: refused
    up front when that lies outside the run root it may write under."""
    from oncofed.common.paths import run_root

    if (
        work
        and how == "federated"
        and not Path(work).resolve().is_relative_to(run_root())
    ):
        raise SystemExit(
            f"--work {work}: with --loso federated the ServerApp writes there, so "
            f"it must lie under the run root {run_root()} (ONCOFED_RUN_ROOT where "
            "the SuperLink runs); give a folder under it"
        )


def transfer_summary(transfers: dict) -> dict:
    """Print the premise's figures per method (mean over sites, paired by site,
    as the leave-one-site-out table); return the paired differences."""
    print("The premise, mean over held-out sites:", flush=True)
    out = {}
    for m, by_seed in transfers.items():
        # per site, as the LOSO table: each site's AUC, paired by site
        as_loso = {
            which: {
                seed: {"per_site": {"ct": {
                    site: v[which] for site, v in r["per_site"].items()
                }}}
                for seed, r in by_seed.items()
            }
            for which in ("elsewhere", "seen")
        }  # fmt: skip
        means = {
            which: [statistics.mean(r["per_site"]["ct"].values())
                    for r in as_loso[which].values()]
            for which in as_loso
        }  # fmt: skip
        ref = [r["reference"] for r in by_seed.values() if "reference" in r]
        if ref:
            t = [r["trained_on_reference"] for r in ref]
            p = [r["pooled_on_sites"] for r in ref]
            print(f"  {m:>9}: reference-scanner test, trained on the reference "
                  f"scanner {statistics.mean(t):.3f}, pooled on the sites "
                  f"{statistics.mean(p):.3f}")  # fmt: skip
        d = paired(as_loso, "seen", "ct", base_method="elsewhere")
        out[f"transfer {m} seen minus elsewhere"] = d
        print(f"  {m:>9}: mean over sites, trained elsewhere "
              f"{statistics.mean(means['elsewhere']):.3f}, scanner seen "
              f"{statistics.mean(means['seen']):.3f}; seen minus elsewhere, "
              f"paired by site: {d['mean']:+.3f} [{d['lo']:+.3f}, "
              f"{d['hi']:+.3f}]")  # fmt: skip
    return out


def _app_config() -> dict:
    import tomllib

    toml = tomllib.loads(
        (ROOT / "simulations" / SCENARIO / "pyproject.toml").read_text()
    )
    return dict(toml["tool"]["flwr"]["app"]["config"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--methods",
        default="none,histogram,zscore,cyclegan",
        help="run-config harmonise values (fedbn: the same as none when the "
        "models train pooled; it differs only with --loso federated)",
    )
    ap.add_argument("--seeds", default="2024,2025,2026")
    ap.add_argument(
        "--parts",
        default="loso,rails,features",
        help="loso,rails,features,transfer (features: the site-vs-reference "
        "classifier on a pooled CT model's embeddings; transfer: a CT model "
        "trained elsewhere against one that saw the held-out site's scanner)",
    )
    ap.add_argument("--rounds", type=int, default=4, help="ablate --rounds (4)")
    ap.add_argument(
        "--arms",
        default="ct,clinical",
        help="ablate --loso-arms (ct,clinical: the clinical arm never sees CT, "
        "so harmonisation must leave it unchanged: the control that says no; "
        "add concat for early fusion)",
    )
    ap.add_argument(
        "--work",
        help="keep each method and seed's ablation folder here; one that holds a "
        "finished ablation is read, not run again (resumes a long benchmark)",
    )
    ap.add_argument(
        "--loso",
        default="pooled",
        choices=("pooled", "federated"),
        help="leave-one-site-out models trained pooled on the other sites "
        "(default) or as a Flower federation of them (ablate --loso federated): "
        "fedbn differs from none only there",
    )
    ap.add_argument(
        "--transfer-folds",
        type=int,
        default=0,
        help="transfer: cross-fit the 'seen' model over every case of the held-out "
        "site in this many folds (0: score only its validation and test cases, "
        "'seen' adding the site's training cases)",
    )
    ap.add_argument(
        "--transfer-from",
        choices=("sites", "reference"),
        default="sites",
        help="transfer: where 'elsewhere' is: pooled on the other sites (as "
        "leave-one-site-out; default), or the reference scanner's labelled cases "
        "(a model trained on a public dataset, taken to a hospital); 'seen' adds "
        "the held-out site's cases to the same training set",
    )
    ap.add_argument("--json", help="write the results here as JSON")
    args = ap.parse_args()
    methods = args.methods.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    parts = set(args.parts.split(","))
    _check_work(args.work, args.loso)
    result: dict = {**run_info(), "seeds": seeds, "loso_training": args.loso}
    if "loso" in parts:
        print("Leave-one-site-out test AUC (pooled on the other sites):", flush=True)
        with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp:
            work = Path(args.work) if args.work else Path(tmp)
            result["loso"] = {
                m: {
                    s: loso(m, s, work, args.rounds, args.arms, args.loso)
                    for s in seeds
                }
                for m in methods
            }
    if "rails" in parts:
        print("Guard rails per site (train scans):", flush=True)
        result["rails"] = {
            m: {
                s: (result.get("loso", {}).get(m, {}).get(s, {}).get("rails")
                    or rails(m, s))
                for s in seeds
            }
            for m in methods
            if m not in ("none", "fedbn")
        }  # fmt: skip
        for m, by_seed in result["rails"].items():
            fell = [
                site for r in by_seed.values() for site, v in r.items()
                if v.get("harmonise-fallback") == 1.0
            ]  # fmt: skip
            print(f"  {m:>9}: sites falling back (over seeds): {sorted(fell)}")
        result["gap"] = gap_summary(result["rails"])
        print("HU distance to the reference cohort (mean over sites and seeds):")
        for m, g in result["gap"].items():
            print(
                f"  {m:>9}: liver {g['liver_before']:.1f} -> {g['liver_after']:.1f} "
                f"(in use {g['liver_in_use']:.1f}); lesion {g['lesion_before']:.1f} "
                f"-> {g['lesion_after']:.1f} (in use {g['lesion_in_use']:.1f}); "
                f"fell back {g['fallbacks']}/{g['site_seeds']}"
            )
    if "loso" in parts:
        print("Leave-one-site-out test AUC, mean over held-out sites:", flush=True)
        for m, by_seed in result["loso"].items():
            for arm in next(iter(by_seed.values()))["mean"]:
                vals = [r["mean"][arm] for r in by_seed.values() if arm in r["mean"]]
                sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
                line = f"  {m:>9} {arm}: {statistics.mean(vals):.3f} ± {sd:.3f}"
                if m != "none" and "none" in result["loso"]:
                    d = paired(result["loso"], m, arm)
                    result.setdefault("paired", {})[f"{m} {arm}"] = d
                    line += (
                        f"; minus none, paired by site: {d['mean']:+.3f} "
                        f"[{d['lo']:+.3f}, {d['hi']:+.3f}]"
                    )
                print(line)
    if "features" in parts:
        print("Site vs reference cohort, balanced accuracy on CT embeddings "
              "(0.5 = no gap), mean over sites:", flush=True)  # fmt: skip
        result["features"] = {}
        for m in methods:
            result["features"][m] = {}
            for s in seeds:
                t = time.time()
                per_site = feature_gap(m, s, args.rounds)
                result["features"][m][s] = per_site
                print(f"  {m:>9} seed {s}: {statistics.mean(per_site.values()):.3f} "
                      f"({time.time() - t:.0f} s)", flush=True)  # fmt: skip
    if "transfer" in parts:
        print("The premise: CT-only AUC at a site trained elsewhere vs with its "
              "scanner seen (same cases):", flush=True)  # fmt: skip
        result["transfer"] = {
            m: {
                s: transfer(s, args.rounds, m, args.transfer_folds, args.transfer_from)
                for s in seeds
            }
            for m in methods
        }
        result.setdefault("paired", {}).update(transfer_summary(result["transfer"]))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
