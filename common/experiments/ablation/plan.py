"""What an ablation trains: the scenario, its arms and the regimes.

A *scenario* is a Flower app folder under ``simulations/`` (or any app folder): its
``[tool.flwr.app.config]`` gives the dataset, modalities and every default, so the
in-process regimes train exactly what ``flwr run`` trains.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oncofed.common.errors import ConfigError
from oncofed.common.registry import suggestion

# the checkout's Flower app folders (common/experiments/ablation/plan.py -> root)
SIMULATIONS = Path(__file__).resolve().parents[3] / "simulations"

LOCAL, POOLED, FEDERATED = "local", "pooled", "federated"
# a model per site trained on as many cases as that site has, drawn from every
# site's training cases: isolates what site differences do from how many cases
MIXED = "same-size-mix"
REGIMES = (LOCAL, MIXED, POOLED, FEDERATED)
LOSO_CHOICES = ("pooled", "federated", "none")

FUSION_LABELS = {
    "concat": "early fusion (concat)",
    "late_mean": "late fusion (mean of logits)",
    "late_stacked": "late fusion (stacked logits)",
    "transformer": "cross-attention fusion (transformer)",
}


@dataclass(frozen=True)
class Arm:
    """One model of the ablation: which modalities it sees and how it fuses them."""

    name: str
    modalities: tuple[str, ...]
    fusion: str

    @property
    def is_fusion(self) -> bool:
        return len(self.modalities) > 1

    @property
    def slug(self) -> str:
        """File-name form, e.g. ``ct+clinical-transformer``."""
        return f"{'+'.join(self.modalities)}-{self.fusion}"

    def overrides(self) -> dict[str, Any]:
        """Run-config keys that select this arm."""
        return {"modalities": ",".join(self.modalities), "fusion": self.fusion}


def plan_arms(modalities: tuple[str, ...], fusions: tuple[str, ...]) -> list[Arm]:
    """One single-modality arm per modality, then one arm per fusion head (only
    when there are two modalities or more). A single-modality arm is the unimodal
    encoder with its own head (``concat`` of one embedding)."""
    arms = [Arm(f"{m} only", (m,), "concat") for m in modalities]
    if len(modalities) > 1:
        arms += [Arm(FUSION_LABELS.get(f, f), tuple(modalities), f) for f in fusions]
    return arms


@dataclass(frozen=True)
class Scenario:
    name: str
    app_dir: Path
    defaults: dict[str, Any]  # the app's declared run config

    def run_config(self, overrides: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(overrides) - set(self.defaults))
        if unknown:
            hint = suggestion(unknown[0], list(self.defaults))
            raise ConfigError(
                f"run-config key {unknown[0]!r} is not declared by scenario "
                f"{self.name!r} ({self.app_dir / 'pyproject.toml'}).{hint}"
            )
        return {**self.defaults, **overrides}


def available_scenarios() -> list[str]:
    if not SIMULATIONS.is_dir():
        return []
    return sorted(p.parent.name for p in SIMULATIONS.glob("*/pyproject.toml"))


def load_scenario(name_or_path: str) -> Scenario:
    """A scenario by name (``lits_sites``) or by app folder path."""
    path = Path(name_or_path).expanduser()
    if not (path / "pyproject.toml").is_file():
        path = SIMULATIONS / name_or_path
    project = path / "pyproject.toml"
    if not project.is_file():
        names = available_scenarios()
        raise ConfigError(
            f"no scenario {name_or_path!r}: expected a Flower app folder with a "
            f"pyproject.toml, or one of: {', '.join(names) or '(none found)'}"
            f"{suggestion(name_or_path, names)}"
        )
    meta = tomllib.loads(project.read_text())
    try:
        defaults = dict(meta["tool"]["flwr"]["app"]["config"])
    except KeyError:
        raise ConfigError(
            f"{project}: no [tool.flwr.app.config] table, so this is not an OncoFed "
            "scenario app"
        ) from None
    return Scenario(path.resolve().name, path.resolve(), defaults)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs, values in TOML syntax as ``flwr run --run-config``
    takes them (``fusion='transformer'``, ``learning-rate=0.003``)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"--set {pair!r}: expected key=value")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value.strip()  # a bare word: take it as a string
    return out


@dataclass(frozen=True)
class AblationOptions:
    """What ``oncofed ablate`` runs (defaults fit the default scenario in 20 min on
    2 CPU cores, see BENCHMARKS.md)."""

    scenario: str = "lits_sites"
    out: Path = Path("ablation")
    rounds: int = 8  # federated rounds; local-only and pooled train rounds x epochs
    local_epochs: int = 2
    regimes: tuple[str, ...] = REGIMES
    fusions: tuple[str, ...] = ("concat", "late_mean", "transformer")
    loso: str = "pooled"  # how leave-one-site-out models train, or "none"
    # "best" (best single modality + best fusion), "all", or arm names "ct,concat"
    loso_arms: str = "best"
    bootstrap: int = 1000
    connection: str = ""  # Flower connection for federated runs ('' = default)
    overrides: dict[str, Any] = field(default_factory=dict)
    command: str = ""  # the command line, for the report
    # several seeds: one ablation per run-config seed, then a summary across them
    seeds: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        bad = [r for r in self.regimes if r not in REGIMES]
        if bad:
            raise ConfigError(
                f"regime {bad[0]!r} unknown: choose from {', '.join(REGIMES)}."
                f"{suggestion(bad[0], list(REGIMES))}"
            )
        if self.loso not in LOSO_CHOICES:
            raise ConfigError(
                f"--loso {self.loso!r}: choose from {', '.join(LOSO_CHOICES)}"
            )
        if not self.loso_arms.strip():
            raise ConfigError("--loso-arms: 'best', 'all' or arm names (ct,concat)")
        if self.rounds < 1 or self.local_epochs < 1:
            raise ConfigError("--rounds and --local-epochs must be at least 1")
