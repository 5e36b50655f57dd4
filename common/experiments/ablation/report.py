"""The ablation's outputs: ``ablation.csv`` (one row per trained model),
``ablation.md`` (tables, findings, settings) and ``ablation.png`` (AUC with its
95 % interval per arm and regime).

Intervals: percentile bootstrap over the test cases (``bootstrap`` resamples). Every
model scored on the same test set uses the *same* resamples, so differences between
two models are paired: "fusion minus best single modality" gets its own interval.

Which arm is "best" (single modality, fusion, site) is decided by validation AUC
(``Result.val_auc``); the test set only gives the chosen models' figures. A finding
says "beats" only when the paired interval lies above 0, "is beaten by" when it lies
below, and "no detectable difference" otherwise.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import time
import warnings
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from oncofed.common import keys
from oncofed.common.experiments.ablation.results import (
    AblationRun,
    Finding,
    Result,
    about_data,
)
from oncofed.common.ml.metrics import (
    binary_metrics,
    bootstrap_indices,
    percentile_interval,
    resampled_metrics,
)

METRICS = (keys.AUC, keys.F1, keys.ACCURACY)
REGIMES = ("local", "same-size-mix", "pooled", "federated")
THRESHOLD = 0.5  # binary_metrics' default
ENCODER_KEY = {
    "ct": "image_encoder",
    "clinical": "clinical_encoder",
    "genomics": "genomics_encoder",
    "histology": "histology_encoder",
}
CSV_NAME, MD_NAME, PNG_NAME = "ablation.csv", "ablation.md", "ablation.png"
FINDINGS_JSON = "findings.json"


@dataclass
class Scored:
    result: Result
    point: dict[str, float]
    low: dict[str, float]
    high: dict[str, float]
    resampled: dict[str, np.ndarray]


class Scorer:
    """Point metrics and paired bootstrap intervals, resamples cached per test set."""

    def __init__(self, n_resamples: int) -> None:
        self.n = n_resamples
        self._idx: dict[tuple[str, int], np.ndarray] = {}
        self._cache: dict[int, Scored] = {}

    def indices(self, test_set: str, n_cases: int) -> np.ndarray:
        key = (test_set, n_cases)
        if key not in self._idx:
            self._idx[key] = bootstrap_indices(n_cases, self.n, seed=len(self._idx))
        return self._idx[key]

    def __call__(self, r: Result) -> Scored:
        if id(r) in self._cache:
            return self._cache[id(r)]
        if r.error or len(r.labels) == 0:
            nan = dict.fromkeys(METRICS, math.nan)
            s = Scored(r, nan, nan, nan, {})
        else:
            point = binary_metrics(r.labels, r.probs)
            res = resampled_metrics(
                r.labels, r.probs, self.indices(r.test_set, len(r.labels))
            )
            low, high = {}, {}
            for m in METRICS:
                low[m], high[m] = percentile_interval(res[m])
            s = Scored(r, {m: point[m] for m in METRICS}, low, high, res)
        self._cache[id(r)] = s
        return s

    def difference(self, a: Result, b: Result, metric: str = keys.AUC):
        """``a - b`` on the same test set: point value and paired 95 % interval."""
        sa, sb = self(a), self(b)
        if not sa.resampled or not sb.resampled or a.test_set != b.test_set:
            return math.nan, math.nan, math.nan
        lo, hi = percentile_interval(sa.resampled[metric] - sb.resampled[metric])
        return sa.point[metric] - sb.point[metric], lo, hi


def _fmt(s: Scored, m: str = keys.AUC) -> str:
    if s.result.error:
        return "failed"
    v, lo, hi = s.point[m], s.low[m], s.high[m]
    if v != v:
        return "n/a"
    mark = " †" if m != keys.AUC and one_class(s.result) else ""
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]{mark}"


def one_class(r: Result) -> bool:
    """Every test case called the same class at probability 0.5: F1 and accuracy
    then describe the threshold, not the model."""
    return len(r.probs) > 0 and len(set((r.probs >= THRESHOLD).tolist())) == 1


DEGENERATE = (
    "† the model calls every test case the same class at probability 0.5, so this "
    "F1 / accuracy says nothing about its ranking (see its AUC)."
)


CSV_COLUMNS = [
    "regime",
    "trained_as",
    "arm",
    "modalities",
    "fusion",
    "site",
    "train_n",
    "test_set",
    "test_n",
    "test_positives",
    *(f"{m}{s}" for m in METRICS for s in ("", "_ci_low", "_ci_high")),
    "val_auc",
    "one_class_at_0.5",
    "wall_s",
    "error",
]


def write_csv(path: Path, scored: list[Scored]) -> None:
    cols = CSV_COLUMNS
    tmp = path.with_suffix(".csv.part")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for s in scored:
            r = s.result
            row = [
                r.regime,
                r.trained_as,
                r.arm.name,
                "+".join(r.arm.modalities),
                r.arm.fusion,
                r.site,
                r.train_n,
                r.test_set,
                len(r.labels),
                int(np.sum(r.labels)),
            ]
            for m in METRICS:
                row += [_round(s.point[m]), _round(s.low[m]), _round(s.high[m])]
            row += [_round(r.val_auc), int(one_class(r)), round(r.wall_s, 1)]
            row += [r.error.splitlines()[0] if r.error else ""]
            w.writerow(row)
    os.replace(tmp, path)


def _round(v: float) -> str:
    return "" if v != v else f"{v:.4f}"


def _by(scored: list[Scored], regime: str) -> dict[str, list[Scored]]:
    out: dict[str, list[Scored]] = {}
    for s in scored:
        if s.result.regime == regime:
            out.setdefault(s.result.arm.name, []).append(s)
    return out


def _best(items: list[Scored]) -> Scored | None:
    """The item with the best *validation* AUC (never chosen on the test set)."""
    ok = [s for s in items if s.result.val_auc == s.result.val_auc]
    return max(ok, key=lambda s: s.result.val_auc) if ok else None


def _label(s: Scored) -> str:
    return f"{s.result.arm.name} ({s.result.regime})"


def _fusion_finding(scorer: Scorer, rows: list[Scored], where: str) -> list[Finding]:
    """Best fusion arm vs best single-modality arm among ``rows``, paired."""
    single = _best([s for s in rows if not s.result.arm.is_fusion])
    fused = _best([s for s in rows if s.result.arm.is_fusion])
    if not (single and fused):
        return []
    d, lo, hi = scorer.difference(fused.result, single.result)
    return [
        Finding(
            question=f"{where}: best fusion vs best single modality",
            kind="fusion",
            a=_label(fused),
            b=_label(single),
            a_auc=fused.point["auc"],
            b_auc=single.point["auc"],
            difference=d,
            low=lo,
            high=hi,
        )
    ]


def _federated_finding(
    scorer: Scorer, fed: Scored, local: list[Scored], what: str
) -> list[Finding]:
    """A federated model vs the best local-only model (by validation AUC), paired;
    ``note`` counts the local-only models whose test AUC it exceeds."""
    local = [s for s in local if s.point["auc"] == s.point["auc"]]
    top = _best(local)
    if fed.result.error or top is None:
        return []
    beaten = sum(fed.point["auc"] > s.point["auc"] for s in local)
    d, lo, hi = scorer.difference(fed.result, top.result)
    return [
        Finding(
            question=f"{what}: federated vs best local-only model",
            kind="federation",
            a=_label(fed),
            b=f"{top.result.arm.name} at {top.result.site}",
            a_auc=fed.point["auc"],
            b_auc=top.point["auc"],
            difference=d,
            low=lo,
            high=hi,
            note=f"its test AUC is higher than {beaten} of {len(local)} local-only "
            f"models'; it trained on {fed.result.train_n} cases, that model on "
            f"{top.result.train_n}",
        )
    ]


def _site_finding(
    scorer: Scorer, local: list[Scored], mixed: list[Scored]
) -> list[Finding]:
    """Site differences at a fixed number of cases: every site's same-size-mix
    model minus that site's local-only model (same arm, same number of training
    cases), averaged over the pairs.

    The interval resamples at two levels, so that it holds the training noise as
    well as the test noise: the sites (with their pairs of every arm, one cluster
    per site) and the test cases (the same resamples for every model). Resampling
    only the test cases gave intervals that excluded 0 in 2 of 3 seeds where the
    sites do not differ at all (``synthetic_iid_sites``)."""
    own = {(s.result.arm.name, s.result.site): s for s in local if s.resampled}
    pairs = [
        (m, own[key])
        for m in mixed
        if m.resampled and (key := (m.result.arm.name, m.result.site)) in own
    ]
    if not pairs:
        return []
    site_names = sorted({m.result.site for m, _ in pairs})
    per_site = np.stack(  # (sites, resamples): the site's mean over arms
        [
            np.nanmean(
                [
                    m.resampled["auc"] - o.resampled["auc"]
                    for m, o in pairs
                    if m.result.site == site
                ],
                0,
            )
            for site in site_names
        ]
    )
    n_res = per_site.shape[1]
    pick = np.random.default_rng(0).integers(
        0, len(site_names), (n_res, len(site_names))
    )
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN resamples: left out
        diffs = np.nanmean(per_site[pick, np.arange(n_res)[:, None]], 1)
    lo, hi = percentile_interval(diffs)
    a = float(np.mean([m.point["auc"] for m, _ in pairs]))
    b = float(np.mean([o.point["auc"] for _, o in pairs]))
    sites = len(site_names)
    arms = len({m.result.arm.name for m, _ in pairs})
    return [
        Finding(
            question="Site differences at equal numbers of cases: cases from every "
            "site vs one site's own",
            kind="sites",
            a=f"same-size mix (mean of {len(pairs)} models)",
            b=f"local-only (mean of {len(pairs)} models)",
            a_auc=a,
            b_auc=b,
            difference=a - b,
            low=lo,
            high=hi,
            note=f"{arms} arm(s) x {sites} sites, each pair trained on the same "
            "number of cases; sites and test cases resampled",
        )
    ]


def finding_data(ab: AblationRun, scorer: Scorer) -> list[Finding]:
    """The two questions the seeds ask, answered with paired intervals: first
    across regimes, then within each regime and each arm."""
    scored = [scorer(r) for r in ab.results if not r.error]
    main = [s for s in scored if s.result.regime in ("pooled", "federated")]
    by_regime = {g: [s for s in scored if s.result.regime == g] for g in REGIMES}
    out = _fusion_finding(scorer, main, "Any regime")
    fed_best = _best(by_regime["federated"])
    if fed_best:
        out += _federated_finding(
            scorer, fed_best, by_regime["local"], "Best federated model, any arm"
        )
    out += _site_finding(scorer, by_regime["local"], by_regime["same-size-mix"])
    for regime in ("pooled", "federated"):
        out += _fusion_finding(scorer, by_regime[regime], regime.capitalize())
    local = _by(scored, "local")
    for arm, items in _by(scored, "federated").items():
        out += _federated_finding(scorer, items[0], local.get(arm, []), arm)
    return out


def findings(ab: AblationRun, scorer: Scorer) -> list[str]:
    """The findings as Markdown sentences."""
    return [f.sentence() for f in finding_data(ab, scorer)]


def _main_table(ab: AblationRun, scorer: Scorer, metric: str) -> list[str]:
    scored = [scorer(r) for r in ab.results]
    local, pooled, fed = (_by(scored, g) for g in ("local", "pooled", "federated"))
    mixed = _by(scored, "same-size-mix")
    out = [
        "| model | local-only: site with the best validation AUC | local-only: "
        "mean of sites | same-size mix: mean of sites | pooled | federated |",
        "|---|---|---:|---:|---|---|",
    ]
    for arm in ab.arms:
        sites = [s for s in local.get(arm.name, []) if not s.result.error]
        best = _best(sites)
        mean = _site_mean(sites, metric)
        best_txt = f"{_fmt(best, metric)} ({best.result.site})" if best else "-"
        p = pooled.get(arm.name)
        f = fed.get(arm.name)
        out.append(
            f"| {arm.name} | {best_txt} | {mean} | "
            f"{_site_mean(mixed.get(arm.name, []), metric)} | "
            f"{_fmt(p[0], metric) if p else '-'} | {_fmt(f[0], metric) if f else '-'} |"
        )
    return out


def _site_mean(items: list[Scored], metric: str) -> str:
    vals = [
        s.point[metric]
        for s in items
        if not s.result.error and s.point[metric] == s.point[metric]
    ]
    return f"{np.mean(vals):.3f} ({len(vals)} sites)" if vals else "-"


def _local_table(ab: AblationRun, scorer: Scorer) -> list[str]:
    local = _by([scorer(r) for r in ab.results], "local")
    if not local:
        return []
    names = [d.name for d in ab.sites]
    out = [
        "| model | "
        + " | ".join(
            f"{n} (n={len(d.split('train'))})"
            for n, d in zip(names, ab.sites, strict=True)
        )
        + " |",
        "|---|" + "---:|" * len(names),
    ]
    for arm in ab.arms:
        by_site = {s.result.site: s for s in local.get(arm.name, [])}
        cells = [
            (
                f"{by_site[n].point['auc']:.3f}"
                if n in by_site and not by_site[n].result.error
                else "failed"
                if n in by_site
                else "-"
            )
            for n in names
        ]
        out.append(f"| {arm.name} | " + " | ".join(cells) + " |")
    return out


def _loso_table(ab: AblationRun, scorer: Scorer) -> list[str]:
    loso = [scorer(r) for r in ab.results if r.regime == "leave-one-site-out"]
    if not loso:
        return []
    arms = list(dict.fromkeys(s.result.arm.name for s in loso))
    out = [
        "| held-out site (cases, positives) | " + " | ".join(arms) + " |",
        "|---|" + "---|" * len(arms),
    ]
    for site in dict.fromkeys(s.result.site for s in loso):
        cells, n = [], ""
        for a in arms:
            hit = [s for s in loso if s.result.site == site and s.result.arm.name == a]
            cells.append(_fmt(hit[0]) if hit else "-")
            if hit and len(hit[0].result.labels):
                n = f" ({len(hit[0].result.labels)}, {int(hit[0].result.labels.sum())})"
        out.append(f"| {site}{n} | " + " | ".join(cells) + " |")
    means = []
    for a in arms:
        v = [
            s.point["auc"]
            for s in loso
            if s.result.arm.name == a and s.point["auc"] == s.point["auc"]
        ]
        means.append(f"**{np.mean(v):.3f}**" if v else "-")
    out.append("| **mean over held-out sites** | " + " | ".join(means) + " |")
    return out


def write_markdown(ab: AblationRun, scorer: Scorer, path: Path, final: bool) -> None:
    opts = ab.opts
    test = ab.test.samples
    pos = int(sum(s["label"] for s in test))
    epochs = opts.rounds * opts.local_epochs
    lines = [
        f"# Ablation: {ab.scenario.name}",
        (
            ""
            if final
            else "**Partial: the ablation is still running or was "
            "interrupted; tables hold what finished.**\n"
        ),
        f"- Command: `{opts.command or 'oncofed ablate'}`",
        f"- Machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python "
        f"{platform.python_version()}, device {ab.cfg.train.device}; "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; wall time "
        f"{(time.time() - ab.started) / 60:.1f} min",
        f"- Dataset `{ab.cfg.data.dataset}` (run-config seed {ab.cfg.data.seed}), "
        f"{len(ab.sites)} sites, "
        f"{sum(len(d.split('train')) for d in ab.sites)} training cases; modalities "
        f"{', '.join(ab.cfg.model.modality_list)}; encoders: "
        + ", ".join(
            f"{m} `{getattr(ab.cfg.model, ENCODER_KEY[m])}`"
            for m in ab.cfg.model.modality_list
        )
        + (
            "; CT cropped to the liver (`ct-roi = liver`)"
            if "ct" in ab.cfg.model.modality_list and ab.cfg.data.ct_roi == "liver"
            else ""
        )
        + ".",
        f"- Budget: every model makes {epochs} pass(es) over its training cases: "
        f"federated = {opts.rounds} rounds x {opts.local_epochs} local epochs "
        f"(FedAvg-family strategy `{ab.cfg.federation.strategy}`, real Flower "
        "simulation, **last** round's model); local-only and pooled = "
        f"{epochs} epochs in one process with the same training loop.",
        f"- Test set: {ab.test.name}, n = {len(test)} ({pos} positive), the same for "
        "every model except leave-one-site-out. Intervals: 95 % percentile bootstrap "
        f"over test cases ({opts.bootstrap} resamples, paired across models). F1 and "
        "accuracy at probability 0.5.",
        "",
        "## Findings",
        "",
        *(
            [f"- {about_data(ab.cfg.data.dataset)}", ""]
            if about_data(ab.cfg.data.dataset)
            else []
        ),
        *[f"- {x}" for x in findings(ab, scorer)],
        "",
        f"## AUC [95 % CI] on the {ab.test.name} set",
        "",
        *_main_table(ab, scorer, keys.AUC),
        "",
        "## F1 [95 % CI]",
        "",
        *_main_table(ab, scorer, keys.F1),
        "",
        "## Accuracy [95 % CI]",
        "",
        *_main_table(ab, scorer, keys.ACCURACY),
        "",
        *([DEGENERATE, ""] if any(map(one_class, ab.results)) else []),
    ]
    local = _local_table(ab, scorer)
    if local:
        lines += ["## Local-only models: test AUC of each site's model", "", *local, ""]
    loso = _loso_table(ab, scorer)
    if loso:
        how = "pooled training" if opts.loso == "pooled" else "a Flower federation"
        lines += [
            "## Leave-one-site-out external validation (AUC [95 % CI])",
            "",
            f"Each model trains by {how} on the other sites' training cases and is "
            "tested on *every* case of the held-out site, which it never saw.",
            "",
            *loso,
            "",
        ]
    failed = [r for r in ab.results if r.error]
    if failed:
        lines += ["## Failed trainings", ""]
        lines += [
            f"- {r.regime} / {r.arm.name} / {r.site}: {r.error.splitlines()[0]}"
            for r in failed
        ]
        lines.append("")
    lines += [
        f"Per-model rows: [`{CSV_NAME}`]({CSV_NAME}); chart: "
        f"[`{PNG_NAME}`]({PNG_NAME}).",
        "",
    ]
    tmp = path.with_suffix(".md.part")
    tmp.write_text("\n".join(x for x in lines if x is not None))
    os.replace(tmp, path)


def write_chart(ab: AblationRun, scorer: Scorer, path: Path) -> None:
    """AUC with 95 % intervals: one row per arm, one marker per regime (local-only:
    the mean of the sites, with the range of the sites as the bar)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [scorer(r) for r in ab.results if r.regime != "leave-one-site-out"]
    regimes = [
        ("local", "local-only (mean, range of sites)", "tab:gray"),
        ("same-size-mix", "same-size mix (mean, range)", "tab:green"),
        ("pooled", "pooled", "tab:blue"),
        ("federated", "federated", "tab:red"),
    ]
    fig, ax = plt.subplots(figsize=(8, 0.7 * len(ab.arms) + 2))
    for j, (regime, label, colour) in enumerate(regimes):
        ys, xs, lo, hi = [], [], [], []
        for i, arm in enumerate(ab.arms):
            items = [
                s
                for s in scored
                if s.result.regime == regime
                and s.result.arm == arm
                and s.point["auc"] == s.point["auc"]
            ]
            if not items:
                continue
            v = [s.point["auc"] for s in items]
            if regime in ("local", "same-size-mix"):
                x, a, b = float(np.mean(v)), min(v), max(v)
            else:
                x, a, b = v[0], items[0].low["auc"], items[0].high["auc"]
            ys.append(i + (j - 1.5) * 0.18)
            xs.append(x)
            lo.append(x - a)
            hi.append(b - x)
        if xs:
            ax.errorbar(
                xs, ys, xerr=[lo, hi], fmt="o", color=colour, label=label, capsize=3
            )
    ax.set_yticks(range(len(ab.arms)), [a.name for a in ab.arms])
    ax.invert_yaxis()
    ax.axvline(0.5, color="black", lw=0.5, ls=":")
    ax.set_xlabel(f"test AUC ({ab.test.name}, n={len(ab.test.samples)}), 95 % CI")
    ax.set_title(f"OncoFed ablation: {ab.scenario.name}")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(ab: AblationRun, scorer: Scorer, final: bool) -> Path:
    """Write the CSV and the Markdown (and, when ``final``, the chart and
    ``findings.json``); the ``scorer`` caches every model's resampled metrics
    between rewrites."""
    out = ab.opts.out
    write_csv(out / CSV_NAME, [scorer(r) for r in ab.results])
    write_markdown(ab, scorer, out / MD_NAME, final)
    if final:
        write_chart(ab, scorer, out / PNG_NAME)
        data = [asdict(f) for f in finding_data(ab, scorer)]
        (out / FINDINGS_JSON).write_text(json.dumps(data, indent=2))
    return out / MD_NAME
