"""``oncofed ablate``: does fusing modalities across hospitals beat each modality and
each hospital alone?

One command trains every *arm* (each single modality, then early, late and
cross-attention fusion) in every *regime* (each site alone, all sites pooled, and a
real Flower federation), scores all of them on the same held-out test set with paired
bootstrap 95 % intervals, adds leave-one-site-out external validation, and writes
``ablation.csv``, ``ablation.md`` and ``ablation.png``.

* :mod:`.plan`: scenarios (the Flower apps under ``simulations/``), arms, options;
* :mod:`.runner`: training in process (local-only, pooled) and through ``flwr run``
  (federated), leave-one-site-out;
* :mod:`.results`: what the runner produces and the report reads (neither imports
  the other);
* :mod:`.report`: intervals, comparisons, the CSV, the Markdown and the chart;
* :mod:`.summary`: several seeds, one table and one answer per question.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from oncofed.common.experiments.ablation.plan import (
    AblationOptions,
    Arm,
    load_scenario,
    plan_arms,
)
from oncofed.common.experiments.ablation.results import seed_folder
from oncofed.common.experiments.ablation.runner import Ablation, Echo, _say

__all__ = ["AblationOptions", "Arm", "load_scenario", "plan_arms", "run_ablation"]


def run_ablation(opts: AblationOptions, echo: Echo = _say) -> Path:
    """Run the whole ablation, once or once per seed of ``opts.seeds``, and return
    the Markdown report's path.

    One run writes ``ablation.csv``/``.md``/``.png`` and ``findings.json`` into
    ``opts.out`` (rewritten after every model, so an interrupted run keeps what it
    finished). With seeds, each seed's run writes into ``opts.out/seed-<s>/`` and
    :mod:`.summary` writes the across-seed ``ablation.csv`` and ``ablation.md``."""
    from oncofed.common.experiments.ablation.federation import restore_node_count
    from oncofed.common.experiments.ablation.plan import FEDERATED
    from oncofed.common.experiments.ablation.report import Scorer, write_report
    from oncofed.common.experiments.ablation.summary import write_summary

    if opts.seeds:
        for k, seed in enumerate(opts.seeds):
            echo(f"=== seed {seed} ({k + 1} of {len(opts.seeds)}) ===")
            one = dataclasses.replace(
                opts,
                seeds=(),
                out=seed_folder(opts.out, seed),
                overrides={**opts.overrides, "seed": seed},
            )
            run_ablation(one, echo)
        return write_summary(
            opts.out, opts.seeds, _scenario_dataset(opts), opts.command, opts.scenario
        )
    opts.out.mkdir(parents=True, exist_ok=True)
    ablation = Ablation(opts, echo)
    scorer = Scorer(opts.bootstrap)
    ablation.on_result = lambda a: write_report(a, scorer, final=False)
    ablation.run()
    if FEDERATED in opts.regimes or opts.loso == FEDERATED:
        restore_node_count(opts, len(ablation.sites))
    return write_report(ablation, scorer, final=True)


def _scenario_dataset(opts: AblationOptions) -> str:
    scenario = load_scenario(opts.scenario)
    return str(scenario.run_config(opts.overrides).get("dataset", ""))
