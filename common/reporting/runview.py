"""One run as the dashboard, the report and the tracking export see it: read-only.

:func:`find_runs` lists the run folders under a directory (any depth, so an
``oncofed ablate`` output folder works too); :func:`load_run` reads one folder's
``run.sqlite`` (SQLite ``mode=ro``: it never takes a write lock, so a run that is
writing goes on), ``config.json`` and ``provenance.json``. A :class:`RunView`
answers what the panels ask: curves per round, the per-site table, fairness,
metrics per modality subset, ROC / calibration / confusion of the server's own
cases, modality weights, DP epsilon per site, quarantine counts.

Every number comes from the run store as the ServerApp wrote it; nothing here
touches a model or a site's data.
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from oncofed.common import keys
from oncofed.common.ml.tasks import get_task
from oncofed.common.tracking.store import PRIVACY, RUN_STORE, TEST, VAL, RunStore

MAX_RUNS = 500  # run folders listed under one directory, newest first
TRAIN, EVALUATE = "train", "evaluate"


def find_runs(root: str | Path, limit: int = MAX_RUNS) -> list[Path]:
    """Run folders (those holding ``run.sqlite``) at or under ``root``, newest
    first by folder name (``<timestamp>-run<id>``)."""
    root = Path(root)
    if (root / RUN_STORE).is_file():
        return [root]
    found = sorted(
        (p.parent for p in root.rglob(RUN_STORE) if p.is_file()),
        key=lambda p: p.name,
        reverse=True,
    )
    return found[:limit]


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass
class RunView:
    """One run, read once (call :func:`load_run` again for newer rounds)."""

    run_dir: Path
    run_id: str
    name: str
    status: str
    started_at: float | None
    finished_at: float | None
    config: dict[str, Any]
    selected_round: int | None
    globals: pd.DataFrame  # round, split, metric, value
    sites: pd.DataFrame  # round, site, phase, metric, value
    predictions: pd.DataFrame  # round, split, case_index, label, prob
    provenance: dict[str, Any] = field(default_factory=dict)
    # replies the server rejected, clipped or saw fail; each resumption
    events: pd.DataFrame = field(default_factory=pd.DataFrame)
    resumes: pd.DataFrame = field(default_factory=pd.DataFrame)

    # -- what kind of run
    @property
    def task(self):  # type: ignore[no-untyped-def]
        return get_task(str(self.config.get("task", "classification")))

    @property
    def primary(self) -> str:
        return str(self.task.primary)

    @property
    def label(self) -> str:
        return str(self.task.label)

    @property
    def rounds_planned(self) -> int:
        return int(self.config.get("num-server-rounds", 0) or 0)

    @property
    def rounds_done(self) -> int:
        """Rounds the server has scored (round 0 is the initial model)."""
        val = self.globals[self.globals["split"] == VAL] if len(self.globals) else None
        return 0 if val is None or val.empty else int(val["round"].max())

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at
        if end is None and len(self.globals):
            elapsed = self.curve(keys.ELAPSED)
            return float(elapsed.iloc[-1]) if len(elapsed) else None
        return None if end is None else end - self.started_at

    @property
    def privacy(self) -> str:
        """The run's privacy settings in a few words."""
        c = self.config
        parts = []
        dp = c.get("dp", "off")
        if dp == "sample":
            parts.append(f"DP-SGD, target ε {c.get('dp-epsilon')}")
        elif dp == "central":
            parts.append(
                f"central DP ({c.get('dp-clipping')}), noise "
                f"{c.get('dp-noise-multiplier')}"
            )
        if c.get("secure-aggregation"):
            parts.append("SecAgg+")
        return ", ".join(parts) or "none"

    # -- curves
    def curve(self, metric: str, split: str = VAL) -> pd.Series:
        """``metric`` of the global model per round on ``split`` (NaN where
        undefined), indexed by round."""
        g = self.globals
        if g.empty:
            return pd.Series(dtype=float)
        rows = g[(g["split"] == split) & (g["metric"] == metric)]
        return rows.set_index("round")["value"].astype(float).sort_index()

    def metrics_of(self, rnd: int, split: str) -> dict[str, float]:
        g = self.globals
        if g.empty:
            return {}
        rows = g[(g["split"] == split) & (g["round"] == rnd)]
        return {m: _num(v) for m, v in zip(rows["metric"], rows["value"], strict=True)}

    def best_validation(self) -> tuple[int | None, float]:
        """The selected round and its validation primary metric (while running:
        the best so far)."""
        val = self.curve(self.primary).dropna()
        rnd = self.selected_round
        if rnd is None and len(val):
            rnd = int(val.idxmax())
        if rnd is None or rnd not in val.index:
            return rnd, math.nan
        return rnd, float(val.loc[rnd])

    def test_of_selected(self) -> tuple[float, float, float]:
        """Test primary metric of the selected round and its 95 % interval (NaN
        until the run has finished)."""
        if self.selected_round is None:
            return math.nan, math.nan, math.nan
        m = self.metrics_of(self.selected_round, TEST)
        p = self.primary
        return (
            m.get(p, math.nan),
            m.get(f"{p}-lo", math.nan),
            m.get(f"{p}-hi", math.nan),
        )

    # -- sites
    def site_names(self) -> list[str]:
        return sorted(self.sites["site"].unique()) if len(self.sites) else []

    def site_curve(self, metric: str, phase: str = EVALUATE) -> pd.DataFrame:
        """``metric`` per round (rows) and site (columns)."""
        s = self.sites
        if s.empty:
            return pd.DataFrame()
        rows = s[(s["phase"] == phase) & (s["metric"] == metric)]
        return rows.pivot_table(index="round", columns="site", values="value")

    def site_table(self) -> pd.DataFrame:
        """Each site's last reported round: cases, local metrics on its own
        validation split (or "suppressed"), train loss, quarantined cases, ε."""
        rows = []
        for site in self.site_names():
            s = self.sites[self.sites["site"] == site]
            ev = _last(s, EVALUATE)
            tr = _last(s, TRAIN)
            suppressed = bool(ev.get(keys.SUPPRESSED, 0))
            row: dict[str, Any] = {
                "site": site,
                "round": int(s["round"].max()),
                "train cases": _int(tr.get(keys.NUM_EXAMPLES)),
                "val cases": _int(ev.get(keys.NUM_EXAMPLES)),
                "suppressed": suppressed,
            }
            for name, key in self.task.columns:
                row[name] = math.nan if suppressed else ev.get(key, math.nan)
            row["train loss"] = tr.get(keys.LOSS, math.nan)
            row["quarantined"] = _int(tr.get(keys.NUM_QUARANTINED))
            row["ε"] = tr.get(keys.DP_EPSILON, math.nan)
            rows.append(row)
        return pd.DataFrame(rows)

    def fairness(self) -> dict[str, Any]:
        """Worst site, spread and each site's gap to the global model, on the
        primary metric of the last round every site reported (suppressed sites
        left out: they sent no metric)."""
        table = self.site_table()
        name = self.task.columns[0][0]
        if table.empty or name not in table:
            return {"metric": self.label, "sites": 0}
        vals = table.set_index("site")[name].astype(float).dropna()
        rnd = int(table["round"].max())
        glob = self.curve(self.primary).get(rnd, math.nan)
        out: dict[str, Any] = {
            "metric": self.label,
            "round": rnd,
            "global": float(glob),
            "sites": int(len(vals)),
            "suppressed": int(table["suppressed"].sum()),
        }
        if len(vals):
            out.update(
                worst_site=str(vals.idxmin()),
                worst=float(vals.min()),
                spread=float(vals.max() - vals.min()),
                gaps={s: float(v - glob) for s, v in vals.items()},
            )
        return out

    def epsilon(self) -> pd.DataFrame:
        """DP-SGD ε spent so far, per round (rows) and site (columns)."""
        return self.site_curve(keys.DP_EPSILON, TRAIN)

    def central_epsilon(self) -> pd.Series:
        """dp 'central': the server's (ε, δ) accounting per round."""
        return self.curve(keys.DP_EPSILON, PRIVACY)

    def quarantine(self) -> pd.Series:
        table = self.site_table()
        if table.empty:
            return pd.Series(dtype=float)
        return table.set_index("site")["quarantined"]

    # -- the global model's breakdowns
    def subsets(self, rnd: int | None = None, split: str = VAL) -> pd.DataFrame:
        """Metrics per available-modality subset (``auc@ct+clinical``...)."""
        if rnd is None:
            rnd = self.rounds_done
        m = self.metrics_of(rnd, split)
        rows: dict[str, dict[str, float]] = {}
        for k, v in m.items():
            if "@" in k and not k.startswith("weight@"):
                metric, subset = k.split("@", 1)
                rows.setdefault(subset, {})[metric] = v
        return pd.DataFrame([{"modalities": s, **v} for s, v in sorted(rows.items())])

    def modality_weights(self) -> pd.DataFrame:
        """The fusion head's mean per-sample modality weight per round."""
        g = self.globals
        if g.empty:
            return pd.DataFrame()
        rows = g[(g["split"] == VAL) & g["metric"].str.startswith("weight@")]
        if rows.empty:
            return pd.DataFrame()
        rows = rows.assign(modality=rows["metric"].str.slice(len("weight@")))
        return rows.pivot_table(index="round", columns="modality", values="value")

    def scored_cases(self) -> tuple[str, int, pd.DataFrame] | None:
        """The predictions the ROC / calibration / confusion panels draw: the
        selected model on the test set once the run has finished, else the latest
        round on the validation set. (split, round, frame) or None."""
        p = self.predictions
        if p.empty:
            return None
        if self.selected_round is not None:
            t = p[(p["split"] == TEST) & (p["round"] == self.selected_round)]
            if len(t):
                return TEST, self.selected_round, t
        v = p[p["split"] == VAL]
        if v.empty:
            return None
        rnd = int(v["round"].max())
        return VAL, rnd, v[v["round"] == rnd]

    def event_records(self) -> list[dict[str, Any]]:
        """Replies not taken as sent: round, phase, site, outcome, reason."""
        if self.events.empty:
            return []
        cols = ["round", "phase", "site", "outcome", "reason"]
        return self.events[cols].to_dict("records")  # type: ignore[return-value]

    def resume_line(self) -> str:
        """When the run was resumed, or that it never was."""
        if self.resumes.empty:
            return "never interrupted and resumed"
        return "; ".join(
            f"resumed after round {int(r['round'])} ({int(r['rows_dropped'])} "
            "row(s) of the interrupted round dropped and recomputed)"
            for r in self.resumes.to_dict("records")
        )

    def summary(self) -> dict[str, Any]:
        """One line of the runs table."""
        rnd, best = self.best_validation()
        test, lo, hi = self.test_of_selected()
        eps = pd.concat([self.epsilon().stack(), self.central_epsilon()])
        spent = float(np.nanmax(eps.to_numpy())) if eps.notna().any() else math.nan
        return {
            "run": self.name,
            "status": self.status,
            "dataset": self.config.get("dataset", "?"),
            "strategy": self.config.get("strategy", "?"),
            "rounds": f"{self.rounds_done}/{self.rounds_planned}",
            "metric": self.label,
            "best val": best,
            "at round": rnd,
            "test": test,
            "test 95% CI": "" if math.isnan(lo) else f"[{lo:.3f}, {hi:.3f}]",
            "privacy": self.privacy,
            "max ε": spent,
            "started": _when(self.started_at),
            "duration": _duration(self.duration_s),
        }


def _num(v: Any) -> float:
    return math.nan if v is None else float(v)


def _int(v: Any) -> int | None:
    return None if v is None or v != v else int(v)


def _last(s: pd.DataFrame, phase: str) -> dict[str, float]:
    rows = s[s["phase"] == phase]
    if rows.empty:
        return {}
    last = rows[rows["round"] == rows["round"].max()]
    return {m: _num(v) for m, v in zip(last["metric"], last["value"], strict=True)}


def _when(t: float | None) -> str:
    if t is None:
        return ""
    return pd.Timestamp(t, unit="s").strftime("%Y-%m-%d %H:%M:%S")


def _duration(s: float | None) -> str:
    if s is None or s != s:
        return ""
    m, sec = divmod(int(s), 60)
    return f"{m} min {sec:02d} s" if m else f"{sec} s"


def load_run(run_dir: str | Path) -> RunView:
    """Read one run folder, read-only. Raises ``FileNotFoundError`` without a run
    store and ``sqlite3.Error`` when SQLite cannot read it now."""
    run_dir = Path(run_dir)
    store = RunStore(run_dir / RUN_STORE, readonly=True)
    runs = store.runs()
    if runs.empty:
        raise sqlite3.DatabaseError(f"{run_dir / RUN_STORE}: no run recorded yet")
    row = runs.iloc[-1]
    run_id = str(row["run_id"])
    config = _json(run_dir / "config.json")
    if not config and isinstance(row["config_json"], str):
        config = json.loads(row["config_json"])
    sel = row["selected_round"]

    def frame(df: pd.DataFrame) -> pd.DataFrame:
        return df.drop(columns=["run_id"], errors="ignore")

    return RunView(
        run_dir=run_dir,
        run_id=run_id,
        name=str(row["name"]),
        status=str(row["status"]),
        started_at=None if pd.isna(row["started_at"]) else float(row["started_at"]),
        finished_at=None if pd.isna(row["finished_at"]) else float(row["finished_at"]),
        config=config,
        selected_round=None if pd.isna(sel) else int(sel),
        globals=frame(store.global_frame(run_id)),
        sites=frame(store.site_frame(run_id)),
        predictions=frame(store.predictions(run_id)),
        provenance=_json(run_dir / "provenance.json"),
        events=frame(store.reply_events(run_id)),
        resumes=frame(store.resumes(run_id)),
    )


def roc_points(cases: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, float]:
    """False and true positive rates of ``cases`` (label, prob) and their AUC
    (scikit-learn); empty arrays and NaN with one class only."""
    from sklearn.metrics import roc_auc_score, roc_curve

    cases = cases.dropna(subset=["label", "prob"])
    y = cases["label"].to_numpy(dtype=int)
    if len(set(y)) < 2:
        return np.array([]), np.array([]), math.nan
    fpr, tpr, _ = roc_curve(y, cases["prob"])
    return fpr, tpr, float(roc_auc_score(y, cases["prob"]))


def calibration_points(
    cases: pd.DataFrame, bins: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Reliability curve: mean predicted probability and observed fraction of
    positives per probability bin (scikit-learn's ``calibration_curve``)."""
    from sklearn.calibration import calibration_curve

    cases = cases.dropna(subset=["label", "prob"])
    if cases.empty:
        return np.array([]), np.array([])
    observed, predicted = calibration_curve(
        cases["label"].to_numpy(dtype=int), cases["prob"], n_bins=bins
    )
    return predicted, observed


def confusion(cases: pd.DataFrame, threshold: float = 0.5) -> np.ndarray:
    """2 x 2 confusion matrix at ``threshold`` (rows: true 0/1; columns:
    predicted 0/1), as the run's accuracy, sensitivity and specificity use."""
    from sklearn.metrics import confusion_matrix

    cases = cases.dropna(subset=["label", "prob"])
    return np.asarray(
        confusion_matrix(
            cases["label"].to_numpy(dtype=int),
            (cases["prob"].to_numpy() >= threshold).astype(int),
            labels=[0, 1],
        )
    )
