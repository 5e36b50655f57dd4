"""Across seeds: one table and one answer per question from several ablations.

Each seed's ablation writes its own folder (``seed-<s>/``: ``ablation.csv``,
``ablation.md``, ``ablation.png``, ``findings.json``). This module reads those files
(data only, never the Markdown) and writes, in the parent folder, ``ablation.csv``
(every seed's rows, with a ``seed`` column) and ``ablation.md``: AUC as mean ± sd
over seeds, and for every finding its paired difference in each seed and how many
seeds show a win (the paired interval above 0).
"""

from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Sequence
from pathlib import Path

from oncofed.common.experiments.ablation.results import (
    LOSS,
    Finding,
    about_data,
    seed_folder,
)

CSV_NAME, MD_NAME, FINDINGS_JSON = "ablation.csv", "ablation.md", "findings.json"


def _rows(folder: Path) -> list[dict[str, str]]:
    path = folder / CSV_NAME
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _findings(folder: Path) -> list[Finding]:
    path = folder / FINDINGS_JSON
    if not path.is_file():
        return []
    return [Finding(**d) for d in json.loads(path.read_text())]


def _mean_sd(values: Sequence[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f} (one seed)"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def _auc(row: dict[str, str]) -> float | None:
    try:
        return float(row["auc"])
    except (KeyError, ValueError):
        return None


def auc_table(per_seed: dict[int, list[dict[str, str]]]) -> list[str]:
    """Test AUC per arm and regime, mean ± sd over seeds (local-only and same-size
    mix: the mean of the sites' models in each seed)."""
    arms = list(dict.fromkeys(r["arm"] for rows in per_seed.values() for r in rows))
    regimes = ("local", "same-size-mix", "pooled", "federated")
    out = [
        "| model | local-only (mean of sites) | same-size mix (mean of sites) | "
        "pooled | federated |",
        "|---|---|---|---|---|",
    ]
    for arm in arms:
        cells = []
        for regime in regimes:
            values = []
            for rows in per_seed.values():
                v = [
                    a
                    for r in rows
                    if r["arm"] == arm and r["regime"] == regime
                    if (a := _auc(r)) is not None
                ]
                if v:
                    values.append(statistics.mean(v))
            cells.append(_mean_sd(values))
        out.append(f"| {arm} | " + " | ".join(cells) + " |")
    return out


def _questions(per_seed: dict[int, list[Finding]]) -> list[str]:
    """Every question asked in any seed, in the order first asked."""
    return list(dict.fromkeys(f.question for fs in per_seed.values() for f in fs))


def findings_table(per_seed: dict[int, list[Finding]]) -> list[str]:
    """Every question: its paired difference [95 % CI] in each seed, the mean ± sd
    of the difference, and in how many seeds it is a win."""
    seeds = sorted(per_seed)
    questions = _questions(per_seed)
    out = [
        "| question | "
        + " | ".join(f"seed {s}" for s in seeds)
        + " | mean ± sd of the difference | wins |",
        "|---|" + "---|" * len(seeds) + "---|---|",
    ]
    for q in questions:
        by_seed = {
            s: next((f for f in per_seed[s] if f.question == q), None) for s in seeds
        }
        cells = [
            f"{f.difference:+.3f} [{f.low:+.3f}, {f.high:+.3f}] ({f.a.split(' (')[0]})"
            if f is not None
            else "-"
            for f in by_seed.values()
        ]
        found = [f for f in by_seed.values() if f is not None]
        wins = sum(f.win for f in found)
        diffs = [f.difference for f in found]
        out.append(
            f"| {q} | " + " | ".join(cells) + f" | {_mean_sd(diffs)} | "
            f"{wins} of {len(found)} |"
        )
    return out


def verdicts(per_seed: dict[int, list[Finding]]) -> list[str]:
    """One sentence per question: a win only where every seed's interval lies
    above 0."""
    out = []
    for q in _questions(per_seed):
        found = [f for fs in per_seed.values() for f in fs if f.question == q]
        wins = sum(f.win for f in found)
        losses = sum(f.said == LOSS for f in found)
        if found and wins == len(found):
            said = "a win in every seed"
        elif wins:
            said = f"a win in {wins} of {len(found)} seeds only: not a stable finding"
        elif losses:
            said = f"a loss in {losses} of {len(found)} seeds"
        else:
            said = "no detectable difference in any seed (every interval includes 0)"
        out.append(f"**{q}**: {said}.")
    return out


def write_summary(
    out: Path, seeds: Sequence[int], dataset: str, command: str, scenario: str
) -> Path:
    """Write ``out/ablation.csv`` and ``out/ablation.md`` from the seed folders."""
    rows = {s: _rows(seed_folder(out, s)) for s in seeds}
    found = {s: _findings(seed_folder(out, s)) for s in seeds}
    columns = ["seed", *next((list(r[0]) for r in rows.values() if r), [])]
    with open(out / CSV_NAME, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for s, rs in rows.items():
            for r in rs:
                w.writerow({"seed": s, **r})
    about = about_data(dataset)
    lines = [
        f"# Ablation over {len(seeds)} seeds: {scenario}",
        "",
        f"- Command: `{command or 'oncofed ablate'}`",
        f"- Seeds: {', '.join(map(str, seeds))}. Each seed is a run-config `seed`: "
        "for a synthetic dataset a new draw of the hospitals *and* of the training; "
        "for a prepared folder the training only. Per-seed reports: "
        + ", ".join(f"[`seed-{s}/`](seed-{s}/ablation.md)" for s in seeds)
        + ".",
        f"- Dataset `{dataset}`." + (f" {about}" if about else ""),
        '- Every "best" is chosen by validation AUC; differences are paired on the '
        "same test cases (95 % bootstrap intervals); a win needs the interval above "
        "0.",
        "",
        "## Answers across seeds",
        "",
        *[f"- {v}" for v in verdicts(found)],
        "",
        "## Paired differences per seed",
        "",
        *findings_table(found),
        "",
        "## Test AUC, mean ± sd over seeds",
        "",
        *auc_table(rows),
        "",
        f"Per-seed rows: [`{CSV_NAME}`]({CSV_NAME}) (column `seed`).",
        "",
    ]
    (out / MD_NAME).write_text("\n".join(lines))
    return out / MD_NAME
