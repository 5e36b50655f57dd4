"""``oncofed report``: a run's (or an ablation's) summary for a clinical partner,
as PDF (reportlab) and HTML.

A run report holds what the study write-ups present: the selection and the test
figures of the chosen model, metric bar charts (test metrics of the selected and
the last round's model; the local metric per site), the best round per metric by
validation, validation curves with bootstrap bands, ROC, calibration and
confusion matrix of the test set, the per-site and fairness tables, metrics per
modality subset and the fusion's modality weights, the privacy settings and ε per
site, the quarantine summary, and a model card (intended and not-intended use,
data provenance, training config, code version, selection, limitations, date).

An ``oncofed ablate`` folder (``ablation.csv``/``ablation.md``) gets its tables,
findings and charts, an AUC bar chart per arm and regime, and the model chosen by
validation AUC per regime.

The document is built once as a list of blocks (:class:`Doc`) and rendered twice,
so the PDF and the HTML say the same.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from oncofed.common import __version__
from oncofed.common.reporting.runview import (
    RunView,
    calibration_points,
    confusion,
    load_run,
    roc_points,
)
from oncofed.common.tracking.store import RUN_STORE, TEST, VAL

ABLATION_CSV, ABLATION_MD, ABLATION_PNG = "ablation.csv", "ablation.md", "ablation.png"
MODEL_CARD_HEADINGS = (
    "Intended use",
    "Not intended for",
    "Data provenance",
    "Training configuration",
    "Code version",
    "Model selection",
    "Limitations",
    "Date",
)


# -- the document --------------------------------------------------------------
@dataclass
class Doc:
    """Blocks in order: ("h", level, text), ("p", text), ("table", header, rows),
    ("fig", png_bytes, caption). Text may hold **bold** spans."""

    title: str
    blocks: list[tuple] = field(default_factory=list)

    def h(self, text: str, level: int = 2) -> None:
        self.blocks.append(("h", level, text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, header: list[str], rows: list[list[Any]]) -> None:
        self.blocks.append(("table", header, [[_fmt(v) for v in r] for r in rows]))

    def fig(self, png: bytes, caption: str) -> None:
        self.blocks.append(("fig", png, caption))


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float | np.floating):
        return "-" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def _bold(text: str, open_: str, close: str) -> str:
    return re.sub(r"\*\*(.+?)\*\*", rf"{open_}\1{close}", text)


def to_html(doc: Doc) -> str:
    out = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(doc.title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1000px;margin:24px auto;}"
        "table{border-collapse:collapse;margin:8px 0;}td,th{border:1px solid #bbb;"
        "padding:3px 6px;font-size:13px;}th{background:#eee;}img{max-width:100%;}"
        "</style></head><body>",
        f"<h1>{html.escape(doc.title)}</h1>",
    ]
    for block in doc.blocks:
        kind = block[0]
        if kind == "h":
            out.append(f"<h{block[1]}>{html.escape(block[2])}</h{block[1]}>")
        elif kind == "p":
            out.append(f"<p>{_bold(html.escape(block[1]), '<b>', '</b>')}</p>")
        elif kind == "table":
            head = "".join(f"<th>{html.escape(c)}</th>" for c in block[1])
            body = "".join(
                "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                for row in block[2]
            )
            out.append(f"<table><tr>{head}</tr>{body}</table>")
        elif kind == "fig":
            data = base64.b64encode(block[1]).decode()
            out.append(
                f"<figure><img src='data:image/png;base64,{data}' alt='"
                f"{html.escape(block[2])}'><figcaption>{html.escape(block[2])}"
                "</figcaption></figure>"
            )
    out.append("</body></html>")
    return "\n".join(out)


def to_pdf(doc: Doc, path: Path) -> None:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import cm
    from reportlab.platypus import (
        Image,
        Paragraph,
        SimpleDocTemplate,
        Spacer,
        Table,
        TableStyle,
    )

    styles = getSampleStyleSheet()
    cell = styles["BodyText"].clone("cell", fontSize=7.5, leading=9)
    width = A4[0] - 3 * cm

    def para(text: str, style) -> Paragraph:  # type: ignore[no-untyped-def]
        return Paragraph(_bold(html.escape(text), "<b>", "</b>"), style)

    story: list[Any] = [Paragraph(html.escape(doc.title), styles["Title"])]
    for block in doc.blocks:
        kind = block[0]
        if kind == "h":
            story.append(
                para(block[2], styles["Heading2" if block[1] <= 2 else "Heading3"])
            )
        elif kind == "p":
            story.append(para(block[1], styles["BodyText"]))
        elif kind == "table":
            data = [[para(c, cell) for c in block[1]]]
            data += [[para(c, cell) for c in row] for row in block[2]]
            t = Table(
                data,
                repeatRows=1,
                hAlign="LEFT",
                colWidths=[width / max(1, len(block[1]))] * len(block[1]),
            )
            t.setStyle(
                TableStyle(
                    [
                        ("GRID", (0, 0), (-1, -1), 0.3, colors.grey),
                        ("BACKGROUND", (0, 0), (-1, 0), colors.whitesmoke),
                        ("VALIGN", (0, 0), (-1, -1), "TOP"),
                    ]
                )
            )
            story += [t, Spacer(1, 6)]
        elif kind == "fig":
            img = Image(io.BytesIO(block[1]))
            scale = min(1.0, width / img.drawWidth)
            img.drawWidth *= scale
            img.drawHeight *= scale
            story += [img, para(block[2], styles["Italic"]), Spacer(1, 6)]
    SimpleDocTemplate(
        str(path),
        pagesize=A4,
        title=doc.title,
        leftMargin=1.5 * cm,
        rightMargin=1.5 * cm,
        topMargin=1.5 * cm,
        bottomMargin=1.5 * cm,
    ).build(story)


# -- charts --------------------------------------------------------------------
def _png(fig) -> bytes:  # type: ignore[no-untyped-def]
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _figure(w: float = 6.4, h: float = 3.2):  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(w, h))


def bar_chart(
    labels: list[str],
    series: dict[str, list[float]],
    ylabel: str,
    errors: dict[str, tuple[list[float], list[float]]] | None = None,
) -> bytes:
    """Grouped bars: one group per label, one bar per series (NaN left empty)."""
    fig, ax = _figure(7.0, 3.4)
    n = max(1, len(series))
    x = np.arange(len(labels))
    for k, (name, values) in enumerate(series.items()):
        v = np.array(values, dtype=float)
        yerr = None
        if errors and name in errors:
            lo, hi = (np.array(e, dtype=float) for e in errors[name])
            yerr = np.nan_to_num(np.vstack([v - lo, hi - v]), nan=0.0).clip(min=0)
        ax.bar(
            x + (k - (n - 1) / 2) * 0.8 / n,
            np.nan_to_num(v),
            0.8 / n,
            label=name,
            yerr=yerr,
            capsize=2,
        )
    ax.set_xticks(
        x,
        labels,
        rotation=30 if len(labels) > 4 else 0,
        ha="right" if len(labels) > 4 else "center",
        fontsize=8,
    )
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.05)
    if n > 1:
        ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def curve_chart(view: RunView) -> bytes:
    fig, ax = _figure()
    val = view.curve(view.primary)
    lo, hi = view.curve(f"{view.primary}-lo"), view.curve(f"{view.primary}-hi")
    if len(lo.dropna()):
        ax.fill_between(
            lo.index,
            lo.values,
            hi.reindex(lo.index).values,
            alpha=0.2,
            label="95 % bootstrap (validation)",
        )
    ax.plot(val.index, val.values, marker="o", label=f"validation {view.label}")
    test = view.curve(view.primary, TEST).dropna()
    if len(test):
        ax.plot(test.index, test.values, "*", markersize=12, label="test (end only)")
    ax.set_xlabel("round")
    ax.set_ylabel(view.label)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _png(fig)


def scored_charts(cases) -> bytes:  # type: ignore[no-untyped-def]
    """ROC, calibration and confusion matrix side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(10, 3.3))
    fpr, tpr, auc = roc_points(cases)
    axes[0].plot([0, 1], [0, 1], ":", color="grey")
    axes[0].plot(fpr, tpr, label=f"AUC {auc:.3f}")
    axes[0].set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    axes[0].legend(fontsize=7)
    pred, obs = calibration_points(cases)
    axes[1].plot([0, 1], [0, 1], ":", color="grey")
    axes[1].plot(pred, obs, marker="o")
    axes[1].set(
        xlabel="mean predicted probability",
        ylabel="observed positive",
        title="Calibration",
    )
    cm = confusion(cases)
    axes[2].imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        axes[2].text(j, i, str(v), ha="center", va="center")
    axes[2].set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=["pred 0", "pred 1"],
        yticklabels=["true 0", "true 1"],
        title="Confusion (0.5)",
    )
    return _png(fig)


def lines_chart(table, ylabel: str) -> bytes:  # type: ignore[no-untyped-def]
    fig, ax = _figure()
    for col in table.columns:
        s = table[col].dropna()
        ax.plot(s.index, s.values, marker="o", label=str(col))
    ax.set_xlabel("round")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _png(fig)


# -- a run ---------------------------------------------------------------------
SCALARS = ("auc", "accuracy", "f1", "sensitivity", "specificity", "brier", "c-index")


def run_report(view: RunView) -> Doc:
    doc = Doc(f"OncoFed run report: {view.name}")
    _run_summary(doc, view)
    _run_metrics(doc, view)
    _run_sites(doc, view)
    _run_privacy(doc, view)
    _model_card(doc, view)
    return doc


def _run_summary(doc: Doc, view: RunView) -> None:
    rnd, best = view.best_validation()
    test, lo, hi = view.test_of_selected()
    doc.h("Summary")
    doc.p(
        f"Run id {view.run_id}; status **{view.status}**; rounds "
        f"{view.rounds_done} of {view.rounds_planned}; dataset "
        f"{view.config.get('dataset')}; strategy {view.config.get('strategy')}; "
        f"privacy: {view.privacy}."
    )
    if rnd is not None:
        line = (
            f"The model of round {rnd} was chosen by its validation {view.label} "
            f"({best:.3f})."
        )
        if not math.isnan(test):
            line += f" Its test {view.label} is **{test:.3f}**"
            line += (
                ""
                if math.isnan(lo)
                else f" (95 % bootstrap interval {lo:.3f} to {hi:.3f})"
            )
            line += ". The test set was scored once, after training."
        doc.p(line)
    if view.provenance.get("synthetic"):
        doc.p(
            "**The data are synthetic**: virtual hospitals written by OncoFed's "
            "generator, which was built to contain a learnable lesion signal in CT "
            "and clinical data. These figures describe the software on that "
            "signal, not clinical performance."
        )


def _run_metrics(doc: Doc, view: RunView) -> None:
    doc.h("Metrics")
    rounds = [r for r in {view.selected_round, view.rounds_done} if r is not None]
    have = [m for m in SCALARS if not view.curve(m).dropna().empty]
    if have and rounds:
        arms = {
            f"round {r}" + (" (selected)" if r == view.selected_round else " (last)"): r
            for r in sorted(rounds)
        }
        series = {
            a: [view.metrics_of(r, TEST).get(m, math.nan) for m in have]
            for a, r in arms.items()
        }
        if any(not math.isnan(v) for vs in series.values() for v in vs):
            doc.fig(
                bar_chart(have, series, "test"),
                "Test metrics of the selected and the last round's model",
            )
        rows = []
        for m in have:
            val = view.curve(m).dropna()
            best_r = int(val.idxmin() if m == "brier" else val.idxmax())
            rows.append(
                [
                    m,
                    best_r,
                    float(val.loc[best_r]),
                    view.metrics_of(view.selected_round or best_r, VAL).get(m),
                    view.metrics_of(view.selected_round or -1, TEST).get(m),
                ]
            )
        doc.p(
            "Best round per metric, by validation (lower is better for Brier); the "
            "test column is the selected model's, the only one scored on test."
        )
        doc.table(
            [
                "metric",
                "best round (validation)",
                "its validation value",
                "selected model, validation",
                "selected model, test",
            ],
            rows,
        )
    if not view.curve(view.primary).dropna().empty:
        doc.fig(curve_chart(view), f"Validation {view.label} per round")
    scored = view.scored_cases()
    if scored is not None:
        split, rnd, cases = scored
        where = (
            "test set" if split == TEST else "validation set (the run has not finished)"
        )
        doc.fig(
            scored_charts(cases),
            f"ROC, calibration and confusion matrix: {where}, "
            f"round {rnd}, n = {len(cases)}",
        )
    subsets = view.subsets(
        view.selected_round or view.rounds_done,
        TEST if view.selected_round is not None else VAL,
    )
    if not subsets.empty:
        doc.h("By available modalities", 3)
        doc.table(list(subsets.columns), subsets.values.tolist())
    weights = view.modality_weights()
    if not weights.empty:
        doc.h("Fusion modality weights", 3)
        doc.fig(
            lines_chart(weights, "mean weight"),
            "Mean per-sample modality weight of the fusion head (validation)",
        )


def _run_sites(doc: Doc, view: RunView) -> None:
    doc.h("Sites")
    table = view.site_table()
    if table.empty:
        doc.p("No site has reported yet.")
        return
    doc.p(
        "Each site's own validation split at the last round it reported. A site "
        "with fewer cases than min-report-n / min-report-class-n sends no metric: "
        "'suppressed'."
    )
    names = [n for n, _ in view.task.columns]
    rows = []
    for r in table.to_dict("records"):
        metrics = (
            ["suppressed"] * len(names) if r["suppressed"] else [r[n] for n in names]
        )
        rows.append(
            [
                r["site"],
                r["train cases"],
                r["val cases"],
                *metrics,
                r["train loss"],
                r["quarantined"],
            ]
        )
    doc.table(
        ["site", "train cases", "val cases", *names, "train loss", "quarantined"], rows
    )
    first = names[0]
    local = table[~table["suppressed"]]
    if len(local):
        doc.fig(
            bar_chart(list(local["site"]), {first: list(local[first])}, first),
            f"Local {first} per site (own validation split)",
        )
    f = view.fairness()
    doc.h("Fairness", 3)
    if f.get("sites"):
        rows = [
            [f"global model, validation (round {f['round']})", f["global"]],
            [f"worst site ({f['worst_site']})", f["worst"]],
            ["max - min across sites", f["spread"]],
            ["sites suppressed", f["suppressed"]],
        ]
        rows += [
            [f"{s}: gap to the global model", g] for s, g in sorted(f["gaps"].items())
        ]
        doc.table(["what", view.label], rows)
    else:
        doc.p("No site reported a metric (all suppressed or none evaluated).")


def _run_privacy(doc: Doc, view: RunView) -> None:
    doc.h("Privacy")
    c = view.config
    doc.p(
        f"Settings: {view.privacy}. dp = {c.get('dp')}, dp-epsilon = "
        f"{c.get('dp-epsilon')}, dp-delta = {c.get('dp-delta')}, secure-aggregation "
        f"= {c.get('secure-aggregation')}, min-report-n = {c.get('min-report-n')}, "
        f"min-report-class-n = {c.get('min-report-class-n')}."
    )
    eps = view.epsilon()
    if not eps.empty:
        last = eps.ffill().iloc[-1]
        doc.table(
            ["site", "ε spent (whole run so far)"],
            [[s, float(v)] for s, v in last.items()],
        )
    central = view.central_epsilon().dropna()
    if len(central):
        doc.p(
            f"Site-level (central) DP: ε = {central.iloc[-1]:.3f} after round "
            f"{int(central.index[-1])}."
        )
    doc.h("Quarantine", 3)
    q = view.quarantine()
    prep = view.provenance.get("preparation", {})
    rows = [[s, v] for s, v in q.items()]
    doc.table(["site", "cases quarantined at the site (last round)"], rows)
    quarantined = prep.get("quarantined") if isinstance(prep, dict) else None
    if isinstance(quarantined, int | float):
        doc.p(f"Preparation quarantined {int(quarantined)} case(s) or file(s).")


def _provenance_rows(view: RunView) -> list[list[Any]]:
    prep = view.provenance.get("preparation", {})
    sites = prep.get("sites", {}) if isinstance(prep, dict) else {}
    rows = []
    for name in view.provenance.get("sites", sorted(sites)):
        s = sites.get(name, {}) if isinstance(sites, dict) else {}
        labels = s.get("labels", {}) if isinstance(s, dict) else {}
        rows.append(
            [
                name,
                s.get("cases"),
                s.get("train"),
                s.get("val"),
                s.get("test"),
                ", ".join(f"{k}: {v}" for k, v in sorted(labels.items())),
            ]
        )
    return rows


def _model_card(doc: Doc, view: RunView) -> None:
    c = view.config
    synthetic = view.provenance.get("synthetic")
    doc.h("Model card")
    doc.h("Intended use", 3)
    doc.p(
        f"Research on federated multimodal detection ({view.task.name}, "
        f"modalities {c.get('modalities')}) of liver cancer across hospitals that "
        "cannot pool data: comparing models, strategies and privacy settings."
    )
    doc.h("Not intended for", 3)
    doc.p(
        "Diagnosis or treatment decisions for any patient; use on populations, "
        "scanners or protocols unlike the training sites without a new validation; "
        "use as evidence of clinical performance."
    )
    doc.h("Data provenance", 3)
    doc.p(
        f"Dataset {c.get('dataset')}: "
        + (
            "**synthetic** (OncoFed's generator; no patient data)."
            if synthetic
            else "**real** data prepared by 'oncofed prepare' (data-root set)."
            if synthetic is False
            else "not recorded for this run."
        )
    )
    rows = _provenance_rows(view)
    if rows:
        doc.table(["site", "cases", "train", "val", "test", "cases per label"], rows)
    server = view.provenance.get("preparation", {}).get("server", {})
    if server:
        doc.p(
            "Server-held sets: "
            + ", ".join(
                f"{k} {v.get('cases')} cases"
                for k, v in server.items()
                if isinstance(v, dict)
            )
        )
    doc.h("Training configuration", 3)
    keys_shown = (
        "strategy",
        "num-server-rounds",
        "local-epochs",
        "batch-size",
        "learning-rate",
        "image-encoder",
        "clinical-encoder",
        "fusion",
        "modalities",
        "norm-layers",
        "model-family",
        "seed",
        "dp",
    )
    doc.table(["key", "value"], [[k, c.get(k)] for k in keys_shown if k in c])
    doc.h("Code version", 3)
    doc.p(f"OncoFed {view.provenance.get('code', __version__)}.")
    doc.h("Model selection", 3)
    doc.p(
        f"After every round the server scored the global model on its validation "
        f"set; the round with the best validation {view.label} was kept "
        f"(round {view.selected_round}). The test set was scored only after "
        "training, for the selected and the last round's model; nothing about it "
        "steered training or selection."
    )
    doc.h("Limitations", 3)
    lim = [
        "Single run, single seed: no spread over seeds is shown here.",
        "Per-site figures come from small local validation splits; suppressed "
        "sites report none.",
    ]
    if synthetic:
        lim.insert(
            0,
            "Synthetic data: figures show what the generator was built to "
            "contain, not clinical performance.",
        )
    if c.get("dp", "off") != "off":
        lim.append("Differential privacy adds noise; small sites may stay untrained.")
    for item in lim:
        doc.p("- " + item)
    doc.h("Date", 3)
    doc.p(
        f"Report written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; run started "
        f"{view.summary()['started']} UTC."
    )


# -- an ablation folder ------------------------------------------------------------
def _md_blocks(doc: Doc, text: str) -> None:
    """The ablation's own markdown (headings, bullets, pipe tables) as blocks."""
    rows: list[list[str]] = []

    def flush() -> None:
        if rows:
            doc.table(
                rows[0], [r for r in rows[1:] if not set("".join(r)) <= set("-:")]
            )
            rows.clear()

    for line in text.splitlines():
        s = line.strip()
        if s.startswith("|"):
            rows.append([c.strip().replace("`", "") for c in s.strip("|").split("|")])
            continue
        flush()
        if s.startswith("#"):
            level = len(s) - len(s.lstrip("#"))
            if level > 1:
                doc.h(s.lstrip("#").strip(), min(level, 3))
        elif s:
            doc.p(re.sub(r"\[([^]]+)\]\([^)]+\)", r"\1", s).replace("`", ""))
    flush()


def ablation_report(folder: Path) -> Doc:
    doc = Doc(f"OncoFed ablation report: {folder.name}")
    with open(folder / ABLATION_CSV, newline="") as f:
        rows = [r for r in csv.DictReader(f) if not r.get("error")]
    from oncofed.common.experiments.ablation.report import REGIMES

    found = {r["regime"] for r in rows}
    regimes = [g for g in REGIMES if g in found] + sorted(found - set(REGIMES))
    arms = list(dict.fromkeys(r["arm"] for r in rows))

    def num(r: dict, k: str) -> float:
        try:
            return float(r[k])
        except (KeyError, ValueError):
            return math.nan

    def chosen(arm: str, regime: str) -> dict | None:
        cands = [r for r in rows if r["arm"] == arm and r["regime"] == regime]
        valid = [r for r in cands if not math.isnan(num(r, "val_auc"))]
        return max(valid, key=lambda r: num(r, "val_auc")) if valid else None

    series: dict[str, list[float]] = {}
    errors: dict[str, tuple[list[float], list[float]]] = {}
    for regime in regimes:
        picks = [chosen(a, regime) for a in arms]
        series[regime] = [num(p, "auc") if p else math.nan for p in picks]
        errors[regime] = (
            [num(p, "auc_ci_low") if p else math.nan for p in picks],
            [num(p, "auc_ci_high") if p else math.nan for p in picks],
        )
    doc.h("Test AUC per arm and regime")
    doc.fig(
        bar_chart(arms, series, "test AUC", errors),
        "Test AUC with 95 % bootstrap interval; per arm and regime the model with "
        "the best validation AUC (local-only: the best site's)",
    )
    doc.h("Chosen by validation AUC, per regime", 3)
    best_rows = []
    for regime in regimes:
        valid = [
            r
            for r in rows
            if r["regime"] == regime and not math.isnan(num(r, "val_auc"))
        ]
        if valid:
            b = max(valid, key=lambda r: num(r, "val_auc"))
            best_rows.append(
                [
                    regime,
                    b["arm"],
                    b["site"] or "-",
                    num(b, "val_auc"),
                    num(b, "auc"),
                    num(b, "f1"),
                    num(b, "accuracy"),
                ]
            )
    doc.table(
        [
            "regime",
            "arm",
            "site",
            "validation AUC",
            "test AUC",
            "test F1",
            "test accuracy",
        ],
        best_rows,
    )
    if (folder / ABLATION_PNG).is_file():
        doc.fig((folder / ABLATION_PNG).read_bytes(), "The ablation's own chart")
    if (folder / ABLATION_MD).is_file():
        _md_blocks(doc, (folder / ABLATION_MD).read_text())
    return doc


# -- entry point ---------------------------------------------------------------------
def build(folder: str | Path) -> Doc:
    """The report of a run folder or an ``oncofed ablate`` output folder."""
    folder = Path(folder)
    if (folder / RUN_STORE).is_file():
        return run_report(load_run(folder))
    if (folder / ABLATION_CSV).is_file():
        return ablation_report(folder)
    raise FileNotFoundError(
        f"{folder}: neither a run folder ({RUN_STORE}) nor an 'oncofed ablate' "
        f"output folder ({ABLATION_CSV})"
    )


def write(folder: str | Path, pdf: Path | None, html_out: Path | None) -> Doc:
    doc = build(folder)
    if pdf is not None:
        to_pdf(doc, pdf)
    if html_out is not None:
        html_out.write_text(to_html(doc))
    return doc
