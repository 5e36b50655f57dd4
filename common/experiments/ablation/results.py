"""What an ablation produces, as data: trained-and-scored models, findings.

The runner fills these in, the report reads them; neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from oncofed.common.experiments.ablation.plan import Arm

# What each synthetic dataset was built to contain: said next to every finding on it
# (a finding on our own synthetic data shows the generator, not the world).
BUILT_TO_SHOW = {
    "synthetic": (
        "The `synthetic` hospitals were built so that fusion and federation *can* "
        "win: given the label, image and clinical findings are drawn independently "
        "(each modality misses different positives), and each site's positives "
        "arrive through a referral pathway that shifts two labs in a site-specific "
        "direction (a model trained at one site learns associations that do not hold "
        "elsewhere). See docs/synthetic-data.md."
    ),
    "synthetic_shared_signal": (
        "Control: `synthetic_shared_signal` was built so that fusion has nothing to "
        "add: one hidden finding decides both whether a positive's tumours show on "
        "CT and whether its AFP is raised, no other clinical column depends on the "
        "label, and there are no referral pathways. A fusion win here would be an "
        "artefact of the instrument."
    ),
    "synthetic_iid_sites": (
        "Control: `synthetic_iid_sites` was built so that sites do not differ: one "
        "scanner, prevalence, size and missingness everywhere and no referral "
        "pathways. A federation can win here only by having more cases than any one "
        "site, not through site differences."
    ),
}


def about_data(dataset: str) -> str:
    """What ``dataset`` was built to show ('' for data we did not make)."""
    return BUILT_TO_SHOW.get(dataset, "")


@dataclass
class Result:
    """One trained model scored on one test set (and on the validation set)."""

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
    val_auc: float = float("nan")  # on the server validation set: chooses "best"


@dataclass
class TestSet:
    name: str
    samples: list[dict]


WIN, LOSS, TIE = "beats", "is beaten by", "shows no detectable difference from"


def verdict(lo: float, hi: float) -> str:
    """``WIN`` if the paired interval lies above 0, ``LOSS`` below, else ``TIE``."""
    if lo > 0:
        return WIN
    if hi < 0:
        return LOSS
    return TIE


@dataclass
class Finding:
    """One paired comparison: model ``a`` minus model ``b`` on the same test
    cases, with its 95 % bootstrap interval. ``kind`` is ``fusion`` or
    ``federation`` (both models chosen by validation AUC) or ``sites`` (the mean
    over sites and arms of same-size-mix minus local-only, nothing chosen)."""

    question: str
    kind: str
    a: str
    b: str
    a_auc: float
    b_auc: float
    difference: float
    low: float
    high: float
    note: str = ""

    @property
    def said(self) -> str:
        return verdict(self.low, self.high)

    @property
    def win(self) -> bool:
        return self.said == WIN

    def sentence(self) -> str:
        if self.kind == "sites":
            return (
                f"**{self.question.split(':')[0]}: a model trained on cases from "
                f"every site {self.said} one trained on as many cases of a single "
                f"site ({self.note}).** {self.a} AUC {self.a_auc:.3f} vs {self.b} "
                f"{self.b_auc:.3f}: difference {self.difference:+.3f} "
                f"[{self.low:+.3f}, {self.high:+.3f}]."
            )
        what = "the best fusion" if self.kind == "fusion" else "federated"
        whom = (
            "the best single modality"
            if self.kind == "fusion"
            else "the best local-only model"
        )
        note = f"; {self.note}" if self.note else ""
        return (
            f"**{self.question.split(':')[0]}: {what} (by validation AUC) "
            f"{self.said} {whom}{note}.** {self.a} AUC {self.a_auc:.3f} vs "
            f"{self.b} {self.b_auc:.3f}: difference {self.difference:+.3f} "
            f"[{self.low:+.3f}, {self.high:+.3f}]."
        )


class AblationRun(Protocol):
    """What the report reads of a finished (or running) ablation."""

    opts: Any  # AblationOptions
    cfg: Any  # OncoFedConfig
    scenario: Any  # Scenario
    results: list[Result]
    arms: list[Arm]
    sites: list[Any]  # SiteData
    test: TestSet
    started: float


def seed_folder(out: Path, seed: int) -> Path:
    """Where the ablation of one seed writes its files."""
    return out / f"seed-{seed}"
