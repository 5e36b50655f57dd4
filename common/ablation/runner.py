"""Train every arm in every regime and score it on one test set.

* local-only and pooled models train in this process with the same loop the sites
  run (:func:`common.training.train_local`), for ``rounds x local-epochs`` epochs:
  the same number of passes over every sample as the federation;
* federated models come from a real Flower run (``flwr run`` on the scenario app, on
  the simulation runtime unless ``connection`` names another SuperLink); the
  **last** round's global model is scored, so no model is picked on the test set;
* leave-one-site-out: for every site, a model trained on the other sites only
  (pooled, or federated over a dataset view that leaves the site out), scored on
  every case of the held-out site.

A failed training (a federation that does not finish, a site without both classes)
is recorded with its reason and the ablation goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.ablation.federation import (
    leave_one_out_view,
    restore_node_count,
    run_federation,
)
from common.ablation.plan import (
    FEDERATED,
    LOCAL,
    POOLED,
    AblationOptions,
    Arm,
    load_scenario,
    plan_arms,
)
from common.config import OncoFedConfig, from_run_config
from common.data.site import SiteData, load_site
from common.datasets import SERVER_TEST, PreparedDataset, open_dataset
from common.errors import ConfigError
from common.keys import present_key

Echo = Callable[[str], None]
LOSO = "leave-one-site-out"


def _say(line: str) -> None:
    print(line, flush=True)  # progress must show even when stdout is a file


@dataclass
class Result:
    """One trained model scored on one test set."""

    arm: Arm
    regime: str  # local | pooled | federated | leave-one-site-out
    trained_as: str  # how the model trained (loso: pooled or federated)
    site: str  # local: the training site; loso: the held-out site; else "all"
    train_n: int
    test_set: str
    labels: np.ndarray
    probs: np.ndarray
    wall_s: float
    error: str = ""


@dataclass
class TestSet:
    name: str
    samples: list[dict]


def _epochs(opts: AblationOptions) -> int:
    return opts.rounds * opts.local_epochs


def arm_config(base: dict[str, Any], arm: Arm) -> OncoFedConfig:
    return from_run_config({**base, **arm.overrides()})


def train_and_score(
    cfg: OncoFedConfig,
    train: Sequence[dict],
    test: Sequence[dict],
    epochs: int,
    seed: int,
    input_dims: dict[str, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Train a fresh model on ``train`` for ``epochs`` and predict ``test``."""
    from common.models import build_model
    from common.training import (
        predict_detailed,
        resolve_device,
        seed_everything,
        train_local,
    )

    device = resolve_device(cfg.train.device)
    seed_everything(seed)
    model = build_model(cfg.model, cfg.data.image_depth, input_dims)
    train_local(model, train, cfg.train, device, seed, epochs=epochs)
    pred = predict_detailed(model, test, device, 64)
    return pred.labels, pred.probs


def score_checkpoint(path: Path, test: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
    from common.models import load_checkpoint
    from common.training import predict_detailed, resolve_device

    model, cfg, _ = load_checkpoint(path)
    pred = predict_detailed(model, test, resolve_device(cfg.train.device), 64)
    return pred.labels, pred.probs


def _test_set(
    ds: PreparedDataset, cfg: OncoFedConfig, sites: list[SiteData]
) -> TestSet:
    server = load_site(ds.server_test_dir, cfg.data, splits=("test",))
    if server.split("test"):
        return TestSet(SERVER_TEST, server.split("test"))
    return TestSet(
        "every site's test split", [s for d in sites for s in d.split("test")]
    )


def _present(modalities: Sequence[str], sites: list[SiteData]) -> tuple[str, ...]:
    """The scenario's modalities that at least one training case has."""
    train = [s for d in sites for s in d.split("train")]
    return tuple(m for m in modalities if any(s[present_key(m)] > 0 for s in train))


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
        from common.metrics import binary_metrics

        self.step += 1
        self.results.append(r)
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

    # -- the plan -----------------------------------------------------------------
    def run(self) -> list[Result]:
        opts, cfg = self.opts, self.cfg
        self.ds = open_dataset(cfg.data)
        self.echo(
            f"OncoFed ablate | scenario {self.scenario.name} | dataset "
            f"{cfg.data.dataset} ({len(self.ds.sites)} sites) | loading ..."
        )
        self.sites = [
            load_site(self.ds.site_dir(i), cfg.data) for i in range(len(self.ds.sites))
        ]
        self.test = _test_set(self.ds, cfg, self.sites)
        self.input_dims = self.sites[0].input_dims
        mods = _present(cfg.model.modality_list, self.sites)
        skipped = [m for m in cfg.model.modality_list if m not in mods]
        if skipped:
            self.echo(f"No training case has {', '.join(skipped)}: left out.")
        self.arms = plan_arms(mods, opts.fusions)
        n_sites = len(self.sites)
        n_loso_arms = (
            0
            if opts.loso == "none"
            else (len(self.arms) if opts.loso_arms == "all" else min(2, len(self.arms)))
        )
        self.total = (
            len(self.arms)
            * (
                (n_sites if LOCAL in opts.regimes else 0)
                + (POOLED in opts.regimes)
                + (FEDERATED in opts.regimes)
            )
            + n_loso_arms * n_sites
        )
        pooled = [s for d in self.sites for s in d.split("train")]
        self.echo(
            f"{len(self.arms)} arms x regimes {', '.join(opts.regimes)}"
            f"{'' if opts.loso == 'none' else f' + leave-one-site-out ({opts.loso})'}; "
            f"{_epochs(opts)} epochs ({opts.rounds} rounds x {opts.local_epochs}); "
            f"{len(pooled)} training cases; test set: {self.test.name} "
            f"(n={len(self.test.samples)}); {self.total} models to train"
        )
        for arm in self.arms:
            if LOCAL in opts.regimes:
                for i, site in enumerate(self.sites):
                    self._in_process(arm, LOCAL, site.name, site.split("train"), i + 1)
            if POOLED in opts.regimes:
                self._in_process(arm, POOLED, "all", pooled, 0)
            if FEDERATED in opts.regimes:
                self._federated(arm)
        if opts.loso != "none":
            for arm in self._loso_arms():
                for k in range(n_sites):
                    self._leave_one_out(arm, k)
        return self.results

    def _record(
        self,
        arm: Arm,
        regime: str,
        how: str,
        site: str,
        train_n: int,
        test_name: str,
        train: Callable[[], tuple[np.ndarray, np.ndarray]],
    ) -> None:
        """Run ``train`` (returns test labels and probabilities) and record it; a
        failure is recorded with its reason and the ablation goes on."""
        t = time.time()
        try:
            labels, probs = train()
            error = ""
        except (RuntimeError, ValueError) as err:
            labels, probs, error = np.zeros(0), np.zeros(0), str(err)
        self._done(
            Result(arm, regime, how, site, train_n, test_name, labels, probs,
                   time.time() - t, error)
        )  # fmt: skip

    def _in_process(
        self, arm: Arm, regime: str, site: str, train: list[dict], offset: int
    ) -> None:
        cfg = arm_config(self.base, arm)

        def go() -> tuple[np.ndarray, np.ndarray]:
            if len({s["label"] for s in train}) < 2:
                raise ValueError("fewer than two classes among the training cases")
            return train_and_score(
                cfg, train, self.test.samples, _epochs(self.opts),
                cfg.data.seed + offset, self.input_dims,
            )  # fmt: skip

        self._record(arm, regime, regime, site, len(train), self.test.name, go)

    def _federated(self, arm: Arm) -> None:
        def go() -> tuple[np.ndarray, np.ndarray]:
            ckpt = run_federation(
                self.scenario,
                {**self._fl_keys(), **arm.overrides()},
                len(self.sites),
                self.opts.out / "runs" / f"federated-{arm.slug}",
                self.opts.connection,
                self.echo,
            )
            return score_checkpoint(ckpt, self.test.samples)

        n = sum(len(d.split("train")) for d in self.sites)
        self._record(arm, FEDERATED, FEDERATED, "all", n, self.test.name, go)

    def _fl_keys(self) -> dict[str, Any]:
        """Run-config keys of every federated run: no site-side evaluation (the
        ablation scores the global model on the common test set itself), unless
        --set asks for it, then the user's overrides and the budget."""
        o = self.opts
        return {
            "fraction-evaluate": 0.0,
            **o.overrides,
            "num-server-rounds": o.rounds,
            "local-epochs": o.local_epochs,
        }

    def _loso_arms(self) -> list[Arm]:
        if self.opts.loso_arms == "all":
            return list(self.arms)
        from common.metrics import binary_metrics

        def best(candidates: list[Arm]) -> list[Arm]:
            scored = [
                (binary_metrics(r.labels, r.probs)["auc"], r.arm)
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
            f"arm (by pooled/federated test AUC): {', '.join(a.name for a in chosen)}"
        )
        return chosen

    def _leave_one_out(self, arm: Arm, k: int) -> None:
        held = self.sites[k]
        test = held.split("train") + held.split("test")
        others = [
            s for i, d in enumerate(self.sites) if i != k for s in d.split("train")
        ]
        how = self.opts.loso
        runs = self.opts.out / "runs"

        def go() -> tuple[np.ndarray, np.ndarray]:
            if how == POOLED:
                cfg = arm_config(self.base, arm)
                return train_and_score(
                    cfg, others, test, _epochs(self.opts), cfg.data.seed + 100 + k,
                    self.input_dims,
                )  # fmt: skip
            view = leave_one_out_view(self.ds, k, runs / "views" / f"no-{held.name}")
            ckpt = run_federation(
                self.scenario,
                {**self._fl_keys(), **arm.overrides(), "data-root": str(view)},
                len(self.sites) - 1,
                runs / f"loso-{held.name}-{arm.slug}",
                self.opts.connection,
                self.echo,
            )
            return score_checkpoint(ckpt, test)

        name = f"{held.name} (all {len(test)} cases, held out)"
        self._record(arm, LOSO, how, held.name, len(others), name, go)


def run_ablation(opts: AblationOptions, echo: Echo = _say) -> Path:
    """Run the whole ablation; write ``ablation.csv``/``.md``/``.png`` into
    ``opts.out`` (rewritten after every model, so an interrupted run keeps what it
    finished). Returns the Markdown report's path."""
    from common.ablation.report import Scorer, write_report

    opts.out.mkdir(parents=True, exist_ok=True)
    ablation = Ablation(opts, echo)
    scorer = Scorer(opts.bootstrap)
    ablation.on_result = lambda a: write_report(a, scorer, final=False)
    ablation.run()
    if FEDERATED in opts.regimes or opts.loso == FEDERATED:
        restore_node_count(opts, len(ablation.sites))
    return write_report(ablation, scorer, final=True)
