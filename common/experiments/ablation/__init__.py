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
* :mod:`.report`: intervals, comparisons, the CSV, the Markdown and the chart.
"""

from oncofed.common.experiments.ablation.plan import (
    AblationOptions,
    Arm,
    load_scenario,
    plan_arms,
)
from oncofed.common.experiments.ablation.runner import run_ablation

__all__ = ["AblationOptions", "Arm", "load_scenario", "plan_arms", "run_ablation"]
