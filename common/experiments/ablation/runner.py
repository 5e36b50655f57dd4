"""Train every arm in every regime, choose on the validation set, report on the
test set.

Every model is scored on the server's validation set (``val_auc``) and on the
test set. Every "best" (best single modality, best fusion, best site, the arms that
get leave-one-site-out) is chosen by validation AUC; the test set only reports the
chosen models' figures.

* local-only and pooled models train in this process with the same loop the sites
  run (:func:`common.ml.training.train_local`), for ``rounds x local-epochs`` epochs:
  the same number of passes over every sample as the federation;
* federated models come from a real Flower run (``flwr run`` on the scenario app, on
  the simulation runtime unless ``connection`` names another SuperLink; all arms in
  one run, as entries of run-config ``sweep``); the **last** round's global model
  is scored, so no model is picked on the test set;
* same-size mix: for every site, a model trained in process on as many training
  cases as that site has, drawn at random from every site's training cases; set
  against that site's local-only model it shows what site differences do at a
  fixed number of cases (a federation's lead over a site alone mixes that with
  having more cases);
* leave-one-site-out: for every site, a model trained on the other sites only
  (pooled, or federated over a dataset view that leaves the site out), scored on
  every case of the held-out site.

A failed training (a federation that does not finish, a site without both classes)
is recorded with its reason and the ablation goes on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from oncofed.common.config import OncoFedConfig, from_run_config
from oncofed.common.data.prepared import PreparedDataset
from oncofed.common.data.site import SiteData
from oncofed.common.errors import ConfigError
from oncofed.common.experiments.ablation.federation import (
    leave_one_out_view,
    run_federation,
)
from oncofed.common.experiments.ablation.plan import (
    FEDERATED,
    LOCAL,
    MIXED,
    POOLED,
    AblationOptions,
    Arm,
    load_scenario,
    plan_arms,
)
from oncofed.common.experiments.ablation.results import Result, TestSet
from oncofed.common.ingest import ensure_prepared
from oncofed.common.keys import present_key
from oncofed.common.ml.harmonise import load_harmonised, load_harmonised_sites
from oncofed.common.registry import suggestion

Echo = Callable[[str], None]
LOSO = "leave-one-site-out"
HARMONISATION_JSON = "harmonisation.json"  # run-config harmonise: each site's fit


def _say(line: str) -> None:
    print(line, flush=True)  # progress must show even when stdout is a file


def _epochs(opts: AblationOptions) -> int:
    return opts.rounds * opts.local_epochs


def arm_config(base: dict[str, Any], arm: Arm) -> OncoFedConfig:
    return from_run_config({**base, **arm.overrides()})


def train_and_score(
    cfg: OncoFedConfig,
    train: Sequence[dict],
    test: Sequence[dict],
    val: Sequence[dict],
    epochs: int,
    seed: int,
    input_dims: dict[str, int],
) -> tuple[np.ndarray, np.ndarray, float]:
    """Train a fresh model on ``train`` for ``epochs``; its labels and
    probabilities on ``test`` and its AUC on ``val``."""
    from oncofed.common.ml.models import build_model
    from oncofed.common.ml.training import (
        resolve_device,
        seed_everything,
        train_local,
    )

    device = resolve_device(cfg.train.device)
    seed_everything(seed)
    model = build_model(cfg.model, cfg.data.image_depth, input_dims)
    train_local(model, train, cfg.train, device, seed, epochs=epochs)
    return _scores(model, test, val, device)


def _scores(
    model: Any, test: Sequence[dict], val: Sequence[dict], device: Any
) -> tuple[np.ndarray, np.ndarray, float]:
    from oncofed.common.ml.metrics import binary_metrics
    from oncofed.common.ml.training import predict_detailed

    pred = predict_detailed(model, test, device, 64)
    on_val = predict_detailed(model, val, device, 64)
    return pred.labels, pred.probs, binary_metrics(on_val.labels, on_val.probs)["auc"]


def score_checkpoint(
    path: Path, test: Sequence[dict], val: Sequence[dict]
) -> tuple[np.ndarray, np.ndarray, float]:
    from oncofed.common.ml.models import load_checkpoint
    from oncofed.common.ml.training import resolve_device

    model, cfg, _ = load_checkpoint(path)
    return _scores(model, test, val, resolve_device(cfg.train.device))


def held_out_set(
    ds: PreparedDataset, cfg: OncoFedConfig, sites: list[SiteData], split: str
) -> TestSet:
    """The server's validation (``split='val'``) or test set; the union of the
    sites' splits where the server folder is empty."""
    folder = ds.server_dir(split)
    server = load_harmonised(folder, cfg.data, splits=(split,), reference_domain=True)
    if server.split(split):
        return TestSet(folder.name, server.split(split))
    return TestSet(
        f"every site's {split} split", [s for d in sites for s in d.split(split)]
    )


def _present(modalities: Sequence[str], sites: list[SiteData]) -> tuple[str, ...]:
    """The scenario's modalities that at least one training case has."""
    train = [s for d in sites for s in d.split("train")]
    return tuple(m for m in modalities if any(s[present_key(m)] > 0 for s in train))


@dataclass(frozen=True)
class FedEntry:
    """One model of a federated sweep: its run-config overrides, the result it
    will fill in and the cases it is scored on."""

    overrides: dict[str, Any]
    result: Result
    test: list[dict]
    val: list[dict]


@dataclass(frozen=True)
class Job:
    """One in-process training: which sites' training cases, which test set."""

    arm: Arm
    regime: str  # local | pooled | leave-one-site-out
    site: str  # as in Result.site
    train_sites: tuple[int, ...]
    held_out: int | None  # None: the common test set; k: every case of site k
    seed: int
    size: int | None = None  # train on this many cases drawn from train_sites


class Ablation:
    """Runs the plan step by step; ``results`` grows as it goes."""

    def __init__(self, opts: AblationOptions, echo: Echo = _say) -> None:
        self.opts = opts
        self.echo = echo
        self.scenario = load_scenario(opts.scenario)
        self.base = self.scenario.run_config(
            {
                **opts.overrides,
                "num-server-rounds": opts.rounds,
                "local-epochs": opts.local_epochs,
            }
        )
        self.cfg = from_run_config(self.base)
        if self.cfg.model.task != "classification" or self.cfg.model.family != "neural":
            raise ConfigError(
                f"ablate compares neural classification models; scenario "
                f"{self.scenario.name!r} has task={self.cfg.model.task!r}, "
                f"model-family={self.cfg.model.family!r}"
            )
        self.results: list[Result] = []
        self.started = time.time()
        self.step = 0
        self.total = 0

    # -- progress -----------------------------------------------------------------
    def _done(self, r: Result) -> None:
        from oncofed.common.ml.metrics import binary_metrics

        self.step += 1
        self.results.append(r)
        self.results.sort(key=self._order)  # the report lists in plan order
        elapsed = time.time() - self.started
        if r.error:
            what = f"FAILED: {r.error.splitlines()[0]}"
        else:
            auc = binary_metrics(r.labels, r.probs)["auc"]
            what = f"AUC {auc:.3f}"
        self.echo(
            f"[{self.step:>2}/{self.total}] {r.regime:<18} {r.arm.name:<36} "
            f"{r.site:<10} n={r.train_n:<4} {what}  ({r.wall_s:.0f} s; "
            f"{elapsed / 60:.1f} min so far)"
        )
        if self.on_result is not None:
            self.on_result(self)

    on_result: Callable[[Ablation], object] | None = None

    def _order(self, r: Result) -> tuple:
        regimes = (LOCAL, MIXED, POOLED, FEDERATED, LOSO)
        return (regimes.index(r.regime), self.arms.index(r.arm), r.site)

    # -- the plan -----------------------------------------------------------------
    def run(self) -> list[Result]:
        opts, cfg = self.opts, self.cfg
        self.ds = ensure_prepared(cfg.data)
        self.echo(
            f"OncoFed ablate | scenario {self.scenario.name} | dataset "
            f"{cfg.data.dataset} ({len(self.ds.sites)} sites) | loading ..."
        )
        self.sites = []  # each site through its own harmoniser (run-config harmonise)
        fits: dict[str, dict[str, float]] = {}
        dirs = [self.ds.site_dir(i) for i in range(len(self.ds.sites))]
        for site, seconds in load_harmonised_sites(dirs, cfg.data):
            self.sites.append(site)
            if site.harmonise:
                fits[site.name] = {**site.harmonise, "fit-cpu-s": seconds}
        if fits:  # each site's guard-rail figures and fitting time
            opts.out.mkdir(parents=True, exist_ok=True)
            (opts.out / HARMONISATION_JSON).write_text(json.dumps(fits, indent=2))
        self.val = held_out_set(self.ds, cfg, self.sites, "val")
        self.test = held_out_set(self.ds, cfg, self.sites, "test")
        mods = _present(cfg.model.modality_list, self.sites)
        skipped = [m for m in cfg.model.modality_list if m not in mods]
        if skipped:
            self.echo(f"No training case has {', '.join(skipped)}: left out.")
        self.arms = plan_arms(mods, opts.fusions)
        n_sites = len(self.sites)
        if opts.loso == "none":
            n_loso_arms = 0
        elif opts.loso_arms == "all":
            n_loso_arms = len(self.arms)
        elif opts.loso_arms == "best":
            n_loso_arms = min(2, len(self.arms))
        else:
            n_loso_arms = len(self._named_arms())
        self.total = (
            len(self.arms)
            * (
                (n_sites if LOCAL in opts.regimes else 0)
                + (n_sites if MIXED in opts.regimes else 0)
                + (POOLED in opts.regimes)
                + (FEDERATED in opts.regimes)
            )
            + n_loso_arms * n_sites
        )
        pooled_n = sum(len(d.split("train")) for d in self.sites)
        self.echo(
            f"{len(self.arms)} arms x regimes {', '.join(opts.regimes)}"
            f"{'' if opts.loso == 'none' else f' + leave-one-site-out ({opts.loso})'}; "
            f"{_epochs(opts)} epochs ({opts.rounds} rounds x {opts.local_epochs}); "
            f"{pooled_n} training cases; validation set (chooses): {self.val.name} "
            f"(n={len(self.val.samples)}); test set (reports): {self.test.name} "
            f"(n={len(self.test.samples)}); {self.total} models to train"
        )
        everyone = tuple(range(n_sites))
        jobs = []
        for arm in self.arms:
            if LOCAL in opts.regimes:
                jobs += [
                    Job(arm, LOCAL, d.name, (i,), None, cfg.data.seed + i + 1)
                    for i, d in enumerate(self.sites)
                ]
            if MIXED in opts.regimes:
                jobs += [
                    Job(arm, MIXED, d.name, everyone, None, cfg.data.seed + 300 + i,
                        size=len(d.split("train")))
                    for i, d in enumerate(self.sites)
                ]  # fmt: skip
            if POOLED in opts.regimes:
                jobs.append(Job(arm, POOLED, "all", everyone, None, cfg.data.seed))
        self._run_jobs(jobs)
        if FEDERATED in opts.regimes:
            self._federated()
        if opts.loso != "none":
            self._leave_one_out(self._loso_arms())
        return self.results

    # -- in process ---------------------------------------------------------------
    def _run_jobs(self, jobs: list[Job]) -> None:
        """Train and score each job in this process, one after the other (side by
        side in worker processes was measured: no faster on 2 cores, see
        BENCHMARKS.md)."""
        for job in jobs:
            t = time.time()
            train = [s for i in job.train_sites for s in self.sites[i].split("train")]
            if job.size is not None:
                train = _draw(train, job.size, job.seed)
            test, test_name = (
                (self.test.samples, self.test.name)
                if job.held_out is None
                else self._held_out(job.held_out)
            )
            try:
                if len({s["label"] for s in train}) < 2:
                    raise ValueError("fewer than two classes among the training cases")
                labels, probs, val_auc = train_and_score(
                    arm_config(self.base, job.arm), train, test, self.val.samples,
                    _epochs(self.opts), job.seed, self.sites[0].input_dims,
                )  # fmt: skip
                error = ""
            except (RuntimeError, ValueError) as err:
                labels, probs, error = np.zeros(0), np.zeros(0), str(err)
                val_auc = float("nan")
            how = POOLED if job.regime == LOSO else job.regime
            self._done(
                Result(job.arm, job.regime, how, job.site, len(train), test_name,
                       labels, probs, time.time() - t, error, val_auc)
            )  # fmt: skip

    def _held_out(self, k: int) -> tuple[list[dict], str]:
        """Every case of site ``k`` (all its splits), and its name."""
        held = self.sites[k]
        cases = held.split("train") + held.split("val") + held.split("test")
        return cases, f"{held.name} (all {len(cases)} cases, held out)"

    # -- federated ----------------------------------------------------------------
    def _federated(self) -> None:
        """Every arm federated over all sites, in one Flower run."""
        n = sum(len(d.split("train")) for d in self.sites)
        entries = [
            FedEntry(
                arm.overrides(),
                Result(arm, FEDERATED, FEDERATED, "all", n, self.test.name, *_EMPTY),
                self.test.samples,
                self.val.samples,
            )
            for arm in self.arms
        ]
        self._federate(entries, len(self.sites), self.opts.out / "runs" / "federated")

    def _federate(
        self,
        entries: list[FedEntry],
        num_nodes: int,
        root: Path,
        data_root: Path | None = None,
    ) -> None:
        """Federate ``entries`` in one ``flwr run``; score each entry's last-round
        model as soon as its federation ends."""
        last = time.time()  # when the previous entry ended

        def done(k: int, outcome: Path | str) -> None:
            nonlocal last
            e = entries[k]
            r = replace(e.result, wall_s=time.time() - last)
            last = time.time()
            if isinstance(outcome, Path):
                r.labels, r.probs, r.val_auc = score_checkpoint(outcome, e.test, e.val)
            else:
                r.error = outcome
            self._done(r)

        keys = self._fl_keys()
        if data_root is not None:
            keys["data-root"] = str(data_root.resolve())
        run_federation(
            self.scenario, keys, [e.overrides for e in entries],
            num_nodes, root, self.opts.connection, self.echo, done,
        )  # fmt: skip

    def _fl_keys(self) -> dict[str, Any]:
        """Run-config keys of every federated run: no site-side evaluation (the
        ablation scores the global model on the common test set itself), unless
        --set asks for it, then the user's overrides and the budget. ``data-root``
        is the prepared folder this process trains its own models on, so the
        federation reads the same data even where the SuperLink runs with another
        ``ONCOFED_HOME``."""
        o = self.opts
        return {
            "fraction-evaluate": 0.0,
            **o.overrides,
            "data-root": str(self.ds.root),
            "num-server-rounds": o.rounds,
            "local-epochs": o.local_epochs,
        }

    # -- leave one site out ---------------------------------------------------------
    def _named_arms(self) -> list[Arm]:
        """The arms ``--loso-arms`` names (comma-separated): an arm's full name,
        its modality (``ct``) or its fusion head (``concat``); an unknown name is
        refused with the arms there are."""
        by_name = {a.name: a for a in self.arms}
        for a in self.arms:
            by_name.setdefault(a.fusion if a.is_fusion else "+".join(a.modalities), a)
        names = [n.strip() for n in self.opts.loso_arms.split(",") if n.strip()]
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ConfigError(
                f"--loso-arms: no arm {unknown[0]!r} in this ablation."
                f"{suggestion(unknown[0], list(by_name))} Its arms: "
                f"{', '.join(by_name)}"
            )
        return [by_name[n] for n in names]

    def _loso_arms(self) -> list[Arm]:
        if self.opts.loso_arms == "all":
            return list(self.arms)
        if self.opts.loso_arms != "best":
            return self._named_arms()

        def best(candidates: list[Arm]) -> list[Arm]:
            scored = [
                (r.val_auc, r.arm)
                for r in self.results
                if r.arm in candidates
                and r.regime in (POOLED, FEDERATED)
                and not r.error
            ]
            scored = [(a, arm) for a, arm in scored if a == a]
            if not scored:
                return candidates[:1]
            return [max(scored, key=lambda x: x[0])[1]]

        singles = [a for a in self.arms if not a.is_fusion]
        fusions = [a for a in self.arms if a.is_fusion]
        chosen = best(singles) + (best(fusions) if fusions else [])
        self.echo(
            "Leave-one-site-out for the best single-modality and the best fusion "
            "arm (by pooled/federated validation AUC): "
            f"{', '.join(a.name for a in chosen)}"
        )
        return chosen

    def _leave_one_out(self, arms: list[Arm]) -> None:
        """For every site k and arm: train on the other sites only, test on every
        case of site k (pooled in process, or all federations in one Flower run)."""
        n_sites = len(self.sites)
        others = {k: tuple(i for i in range(n_sites) if i != k) for k in range(n_sites)}
        if self.opts.loso == POOLED:
            seed = self.cfg.data.seed
            self._run_jobs(
                [
                    Job(arm, LOSO, self.sites[k].name, others[k], k, seed + 100 + k)
                    for arm in arms
                    for k in range(n_sites)
                ]
            )
            return
        runs = self.opts.out / "runs"
        folds = [  # one dataset view, test set and training count per held-out site
            (
                held.name,
                str(leave_one_out_view(self.ds, k, runs / "views" / f"no-{held.name}")),
                *self._held_out(k),
                sum(len(self.sites[i].split("train")) for i in others[k]),
            )
            for k, held in enumerate(self.sites)
        ]
        entries = [
            FedEntry(
                {**arm.overrides(), "data-view": Path(view).name},
                Result(arm, LOSO, FEDERATED, site, train_n, name, *_EMPTY),
                test,
                self.val.samples,
            )
            for arm in arms
            for site, view, test, name, train_n in folds
        ]
        # a sweep entry names no path: each picks its view inside one data-root
        self._federate(
            entries, n_sites - 1, runs / "leave-one-site-out", runs / "views"
        )


_EMPTY = (np.zeros(0), np.zeros(0), 0.0)


def _draw(cases: list[dict], size: int, seed: int) -> list[dict]:
    """``size`` of ``cases`` drawn without replacement (reproducible by ``seed``),
    in their original order."""
    pick = np.random.default_rng(seed).choice(len(cases), size=size, replace=False)
    return [cases[i] for i in sorted(pick)]
