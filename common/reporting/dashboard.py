"""``oncofed dashboard``: the server's runs in the browser, live, read-only.

Built on Dash (Plotly's dashboard framework on Flask): its charts, tables and
timed callbacks are what a live metrics page needs, and it serves every script
and style from the installed packages (``serve_locally``), so the page works with
no network. Pages:

``/``            every run under RUNS_DIR (status, dataset, strategy, rounds,
                 best validation and test metric, privacy, ε, start, duration);
                 tick two or more to compare their validation curves.
``/run/<name>``  one run: global curves with bootstrap bands, the per-site table
                 and curves, fairness, metrics per modality subset, ROC /
                 calibration / confusion of the server's own cases, modality
                 weights, ε per site, quarantine counts, replies not taken as
                 sent and resumptions, the resolved config and the data
                 provenance.

Every panel re-reads the run store every ``REFRESH_MS`` (a new round shows within
about 2 s, no reload). Run stores are opened read-only (SQLite ``mode=ro``), so
the dashboard never blocks or changes a run that is writing. A run is looked up
by its folder name among the runs found under RUNS_DIR, never by a path from the
request.

Binding to anything but the loopback interface needs a token (``--token`` or
``--token-file``): every request must then carry it, as ``?token=`` once (a
cookie keeps it for the session) or as ``Authorization: Bearer``.
"""

from __future__ import annotations

import hmac
import json
import math
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pandas as pd

from oncofed.common.reporting.runview import (
    RunView,
    calibration_points,
    confusion,
    find_runs,
    load_run,
    roc_points,
)
from oncofed.common.tracking.store import RUN_STORE, TEST

REFRESH_MS = 2000
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
COOKIE = "oncofed-dashboard-token"
RUN_PREFIX = "/run/"


class RunCache:
    """Run views by folder, re-read only when the run store file changed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._views: dict[Path, tuple[tuple[int, int], RunView]] = {}

    def get(self, run_dir: Path) -> RunView | None:
        try:
            st = (run_dir / RUN_STORE).stat()
        except OSError:
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        cached = self._views.get(run_dir)
        if cached and cached[0] == stamp:
            return cached[1]
        try:
            view = load_run(run_dir)
        except (OSError, sqlite3.Error, ValueError):
            # mid-write or not a run yet: show the last good read, if any
            return cached[1] if cached else None
        self._views[run_dir] = (stamp, view)
        return view

    def all(self) -> list[RunView]:
        views = (self.get(d) for d in find_runs(self.root))
        return [v for v in views if v is not None]

    def by_name(self, name: str) -> RunView | None:
        """The run whose folder is ``name``: a folder already read is found
        without walking the runs tree again (a run page refreshes every 2 s)."""
        for d in list(self._views):
            if d.name == name and (d / RUN_STORE).is_file():
                return self.get(d)
        for d in find_runs(self.root):
            if d.name == name:
                return self.get(d)
        return None


# -- figures -----------------------------------------------------------------
def _fig(title: str, x: str = "round", y: str = ""):  # type: ignore[no-untyped-def]
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.update_layout(
        title=title,
        xaxis_title=x,
        yaxis_title=y,
        margin={"l": 50, "r": 20, "t": 50, "b": 40},
        height=320,
        template="plotly_white",
        legend={"orientation": "h", "y": -0.25},
    )
    if x == "round":
        fig.update_xaxes(dtick=1)
    return fig


def _empty(title: str, why: str):  # type: ignore[no-untyped-def]
    fig = _fig(title, "", "")
    fig.add_annotation(
        text=why, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper"
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def global_figure(view: RunView, metric: str, title: str):  # type: ignore[no-untyped-def]
    """``metric`` per round on the validation set, with its bootstrap band when
    stored, and the test set's value for the rounds scored at the end."""
    import plotly.graph_objects as go

    val = view.curve(metric)
    if val.dropna().empty:
        return _empty(title, "no round scored yet")
    fig = _fig(title, y=metric)
    lo, hi = view.curve(f"{metric}-lo"), view.curve(f"{metric}-hi")
    if len(lo.dropna()):
        fig.add_trace(
            go.Scatter(
                x=list(hi.index) + list(lo.index[::-1]),
                y=list(hi.values) + list(lo.values[::-1]),
                fill="toself",
                fillcolor="rgba(31,119,180,0.15)",
                line={"width": 0},
                mode="lines",
                name="validation 95% bootstrap",
                hoverinfo="skip",
            )
        )
    fig.add_trace(
        go.Scatter(x=val.index, y=val.values, mode="lines+markers", name="validation")
    )
    test = view.curve(metric, TEST).dropna()
    if len(test):
        fig.add_trace(
            go.Scatter(
                x=test.index,
                y=test.values,
                mode="markers",
                marker={"symbol": "star", "size": 12},
                name="test (scored once, at the end)",
            )
        )
    return fig


def site_figure(view: RunView, metric: str, phase: str, title: str):  # type: ignore[no-untyped-def]
    import plotly.graph_objects as go

    table = view.site_curve(metric, phase)
    if table.empty:
        return _empty(title, "no site has reported it (suppressed or not yet)")
    fig = _fig(title, y=metric)
    for site in table.columns:
        s = table[site].dropna()
        fig.add_trace(
            go.Scatter(x=s.index, y=s.values, mode="lines+markers", name=site)
        )
    return fig


def compare_figure(views: list[RunView]):  # type: ignore[no-untyped-def]
    import plotly.graph_objects as go

    if len(views) < 2:
        return _empty("Compare runs", "tick two or more runs in the table")
    fig = _fig("Validation curves of the ticked runs", y="validation metric")
    for v in views:
        s = v.curve(v.primary)
        fig.add_trace(
            go.Scatter(
                x=s.index,
                y=s.values,
                mode="lines+markers",
                name=f"{v.name} ({v.label})",
            )
        )
    return fig


def _diagonal(fig, name: str):  # type: ignore[no-untyped-def]
    """``fig`` with the dotted y = x line (chance ROC, perfect calibration)."""
    import plotly.graph_objects as go

    fig.add_trace(
        go.Scatter(
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            name=name,
            line={"dash": "dot", "color": "grey"},
        )
    )
    return fig


def scored_figures(view: RunView):  # type: ignore[no-untyped-def]
    """ROC, calibration and confusion figures of the cases the server scored,
    and the caption saying which (test set after the run, else validation)."""
    import plotly.graph_objects as go

    scored = view.scored_cases()
    if scored is None:
        why = "no per-case predictions in this run store (binary tasks only)"
        return (
            _empty("ROC", why),
            _empty("Calibration", why),
            _empty("Confusion matrix", why),
            why,
        )
    split, rnd, cases = scored
    where = (
        f"test set, selected round {rnd} (scored once, after training)"
        if split == TEST
        else f"validation set, round {rnd} (the test set is scored at the end)"
    )
    fpr, tpr, auc = roc_points(cases)
    roc = _diagonal(
        _fig(f"ROC, {where}", "false positive rate", "true positive rate"), "chance"
    )
    roc.add_trace(go.Scatter(x=fpr, y=tpr, mode="lines", name=f"AUC {auc:.3f}"))
    pred, obs = calibration_points(cases)
    cal = _diagonal(
        _fig(
            "Calibration (reliability)",
            "mean predicted probability",
            "observed fraction positive",
        ),
        "perfect",
    )
    cal.add_trace(go.Scatter(x=pred, y=obs, mode="lines+markers", name="model"))
    cm = confusion(cases)
    conf = go.Figure(
        go.Heatmap(
            z=cm,
            x=["predicted 0", "predicted 1"],
            y=["true 0", "true 1"],
            text=cm,
            texttemplate="%{text}",
            colorscale="Blues",
            showscale=False,
        )
    )
    conf.update_layout(
        title="Confusion matrix (threshold 0.5)",
        height=320,
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
        yaxis={"autorange": "reversed"},
    )
    return roc, cal, conf, f"Cases: {where}; n = {len(cases)}."


def weights_figure(view: RunView):  # type: ignore[no-untyped-def]
    import plotly.graph_objects as go

    w = view.modality_weights()
    if w.empty:
        return _empty(
            "Fusion modality weights",
            "this fusion head has no per-sample weights (fusion = 'transformer' has)",
        )
    fig = _fig("Fusion modality weights (mean per sample, validation)", y="weight")
    for m in w.columns:
        fig.add_trace(go.Scatter(x=w.index, y=w[m], mode="lines+markers", name=m))
    return fig


def epsilon_figure(view: RunView):  # type: ignore[no-untyped-def]
    import plotly.graph_objects as go

    eps, central = view.epsilon(), view.central_epsilon().dropna()
    if eps.empty and central.empty:
        return _empty("DP ε", f"no differential privacy in this run ({view.privacy})")
    fig = _fig("DP ε spent so far", y="ε")
    for site in eps.columns:
        s = eps[site].dropna()
        fig.add_trace(
            go.Scatter(x=s.index, y=s.values, mode="lines+markers", name=site)
        )
    if len(central):
        fig.add_trace(
            go.Scatter(
                x=central.index,
                y=central.values,
                mode="lines+markers",
                name="site-level (central)",
            )
        )
    return fig


def quarantine_figure(view: RunView):  # type: ignore[no-untyped-def]
    import plotly.graph_objects as go

    q = pd.to_numeric(view.quarantine(), errors="coerce").fillna(0)
    if q.empty:
        return _empty("Quarantined cases", "no site has reported yet")
    fig = _fig("Quarantined cases per site", "site", "cases")
    fig.add_trace(go.Bar(x=list(q.index), y=list(q.values), name="quarantined"))
    return fig


# -- tables ------------------------------------------------------------------
def _cell(v: Any) -> Any:
    if isinstance(v, float):
        return "" if math.isnan(v) else round(v, 3)
    return v


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _cell(v) for k, v in row.items()} for row in df.to_dict("records")]


def site_records(view: RunView) -> list[dict[str, Any]]:
    """The per-site table; a suppressed site's metrics read "suppressed"."""
    table = view.site_table()
    rows = records(table)
    metric_names = [name for name, _ in view.task.columns]
    for row in rows:
        if row.get("suppressed"):
            for name in metric_names:
                row[name] = "suppressed"
        row["suppressed"] = "yes" if row.get("suppressed") else "no"
    return rows


def fairness_records(view: RunView) -> list[dict[str, Any]]:
    f = view.fairness()
    if not f.get("sites"):
        return [{"what": "no site reported a metric yet", "value": ""}]
    rows = [
        {
            "what": f"global model, validation {f['metric']} (round {f['round']})",
            "value": _cell(f["global"]),
        },
        {"what": f"worst site ({f['worst_site']})", "value": _cell(f["worst"])},
        {"what": "max - min across sites", "value": _cell(f["spread"])},
        {
            "what": "sites suppressed (too few cases to report)",
            "value": f["suppressed"],
        },
    ]
    rows += [
        {"what": f"{site}: gap to the global model", "value": _cell(gap)}
        for site, gap in sorted(f["gaps"].items())
    ]
    return rows


# -- the app -----------------------------------------------------------------
def _table(id_: str, **kw):  # type: ignore[no-untyped-def]
    from dash import dash_table

    return dash_table.DataTable(  # type: ignore[attr-defined]
        id=id_,
        style_table={"overflowX": "auto"},
        style_cell={
            "fontFamily": "sans-serif",
            "fontSize": 13,
            "padding": "4px",
            "textAlign": "left",
        },
        style_header={"fontWeight": "bold"},
        **kw,
    )


def runs_page(root: Path):  # type: ignore[no-untyped-def]
    from dash import dcc, html

    return html.Div(
        [
            html.H2("Runs"),
            html.P(
                f"Run folders under {root}; refreshed every {REFRESH_MS // 1000} s."
            ),
            _table(
                "runs-table",
                row_selectable="multi",
                markdown_options={"link_target": "_self"},
            ),
            dcc.Graph(id="compare"),
        ]
    )


def run_page(name: str):  # type: ignore[no-untyped-def]
    from dash import dcc, html

    def graph(id_: str, width: str = "49%"):  # type: ignore[no-untyped-def]
        return html.Div(
            dcc.Graph(id=id_), style={"width": width, "display": "inline-block"}
        )

    return html.Div(
        [
            dcc.Link("← all runs", href="/"),
            html.H2(name, id="run-name"),
            html.P(
                [
                    html.Span("status: "),
                    html.B(id="run-status"),
                    html.Span(" · "),
                    html.Span(id="run-rounds"),
                    html.Span(" · "),
                    html.Span(id="run-summary"),
                ]
            ),
            html.H3("Global model (server-side)"),
            graph("curve-primary", "33%"),
            graph("curve-loss", "33%"),
            graph("curve-brier", "33%"),
            html.H3("Sites"),
            html.P(
                "Each site's own validation split, last round it reported; a site "
                "with fewer cases than min-report-n / min-report-class-n sends no "
                "metric and shows 'suppressed'."
            ),
            _table("site-table"),
            graph("site-primary"),
            graph("site-loss"),
            html.H3("Fairness"),
            _table("fairness-table"),
            html.H3("By available modalities (validation, latest round)"),
            _table("subset-table"),
            html.H3("The server's own cases"),
            html.P(id="scored-caption"),
            graph("roc", "33%"),
            graph("calibration", "33%"),
            graph("confusion", "33%"),
            html.H3("Modality weights, privacy, quarantine"),
            graph("weights", "33%"),
            graph("epsilon", "33%"),
            graph("quarantine", "33%"),
            html.H3("Replies not taken as sent, and resumptions"),
            html.P(
                "Site replies the server rejected (with the check that failed), "
                "clipped, or saw fail (crashed, refused by the site's policy, no "
                "reply); the round went on without them."
            ),
            html.P(id="resume-caption"),
            _table("events-table"),
            html.H3("Resolved config"),
            html.Pre(id="config", style={"maxHeight": "300px", "overflow": "auto"}),
            html.H3("Data provenance"),
            html.Pre(id="provenance", style={"maxHeight": "300px", "overflow": "auto"}),
        ]
    )


RUN_OUTPUTS = [
    ("run-status", "children"),
    ("run-rounds", "children"),
    ("run-summary", "children"),
    ("curve-primary", "figure"),
    ("curve-loss", "figure"),
    ("curve-brier", "figure"),
    ("site-table", "data"),
    ("site-table", "columns"),
    ("site-primary", "figure"),
    ("site-loss", "figure"),
    ("fairness-table", "data"),
    ("fairness-table", "columns"),
    ("subset-table", "data"),
    ("subset-table", "columns"),
    ("scored-caption", "children"),
    ("roc", "figure"),
    ("calibration", "figure"),
    ("confusion", "figure"),
    ("weights", "figure"),
    ("epsilon", "figure"),
    ("quarantine", "figure"),
    ("resume-caption", "children"),
    ("events-table", "data"),
    ("events-table", "columns"),
    ("config", "children"),
    ("provenance", "children"),
]


EVENT_COLUMNS = ("round", "phase", "site", "outcome", "reason")


def _columns(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"name": k, "id": k} for k in (rows[0] if rows else {})]


def run_outputs(view: RunView) -> list[Any]:
    """Every panel of the run page, in ``RUN_OUTPUTS`` order."""
    rnd, best = view.best_validation()
    test, lo, hi = view.test_of_selected()
    summary = f"best validation {view.label} {best:.3f} at round {rnd}" if rnd else ""
    if not math.isnan(test):
        summary += f"; test {view.label} of that model {test:.3f}"
        if not math.isnan(lo):
            summary += f" [{lo:.3f}, {hi:.3f}]"
    sites = site_records(view)
    fair = fairness_records(view)
    subsets = records(view.subsets())
    roc, cal, conf, caption = scored_figures(view)
    events = [{k: _cell(v) for k, v in e.items()} for e in view.event_records()]
    primary = view.primary
    return [
        view.status,
        f"round {view.rounds_done} / {view.rounds_planned}",
        summary,
        global_figure(view, primary, f"Validation {view.label}"),
        global_figure(view, "loss", "Loss"),
        global_figure(view, "brier", "Brier score"),
        sites,
        _columns(sites),
        site_figure(view, primary, "evaluate", f"Local {view.label} per site"),
        site_figure(view, "loss", "train", "Train loss per site"),
        fair,
        _columns(fair),
        subsets,
        _columns(subsets),
        caption,
        roc,
        cal,
        conf,
        weights_figure(view),
        epsilon_figure(view),
        quarantine_figure(view),
        f"This run was {view.resume_line()}.",
        events,
        _columns(events) or _columns([dict.fromkeys(EVENT_COLUMNS, "")]),
        json.dumps(view.config, indent=2, sort_keys=True),
        json.dumps(view.provenance, indent=2, sort_keys=True) or "(none recorded)",
    ]


def runs_records(views: list[RunView]) -> list[dict[str, Any]]:
    rows = []
    for v in views:
        row = {k: _cell(x) for k, x in v.summary().items()}
        row["id"] = v.name
        row["run"] = f"[{v.name}]({RUN_PREFIX}{quote(v.name)})"
        rows.append(row)
    return rows


def create_app(root: str | Path, token: str | None = None):  # type: ignore[no-untyped-def]
    """The Dash app over the runs under ``root``; with ``token``, every request
    must carry it."""
    import dash
    from dash import Input, Output, State, dcc, html
    from flask import Response, request

    root = Path(root)
    cache = RunCache(root)
    app = dash.Dash(
        __name__,
        title="OncoFed dashboard",
        serve_locally=True,
        suppress_callback_exceptions=True,
        update_title="",
        enable_mcp=False,
    )
    if token:
        _require_token(app.server, token, request, Response)
    app.layout = html.Div(
        [
            dcc.Location(id="url"),
            dcc.Interval(id="tick", interval=REFRESH_MS),
            html.H1("OncoFed dashboard", style={"fontSize": "22px"}),
            html.Div(id="page"),
        ],
        style={"fontFamily": "sans-serif", "margin": "12px 24px"},
    )

    @app.callback(Output("page", "children"), Input("url", "pathname"))
    def route(path: str | None):  # type: ignore[no-untyped-def]
        if path and path.startswith(RUN_PREFIX):
            return run_page(unquote(path[len(RUN_PREFIX) :]))
        return runs_page(root)

    @app.callback(
        Output("runs-table", "data"),
        Output("runs-table", "columns"),
        Input("tick", "n_intervals"),
    )
    def refresh_runs(_):  # type: ignore[no-untyped-def]
        rows = runs_records(cache.all())
        cols = [
            {"name": k, "id": k, **({"presentation": "markdown"} if k == "run" else {})}
            for k in (rows[0] if rows else {"run": ""})
            if k != "id"
        ]
        return rows, cols

    @app.callback(
        Output("compare", "figure"),
        Input("runs-table", "selected_row_ids"),
        Input("tick", "n_intervals"),
    )
    def refresh_compare(ids, _):  # type: ignore[no-untyped-def]
        views = [cache.by_name(i) for i in ids or []]
        return compare_figure([v for v in views if v is not None])

    @app.callback(
        [Output(i, p) for i, p in RUN_OUTPUTS],
        Input("tick", "n_intervals"),
        State("url", "pathname"),
    )
    def refresh_run(_, path):  # type: ignore[no-untyped-def]
        name = unquote((path or "")[len(RUN_PREFIX) :])
        view = cache.by_name(name)
        if view is None:
            out: list[Any] = [dash.no_update] * len(RUN_OUTPUTS)
            out[0] = f"no run called {name!r} under {root}"
            return out
        return run_outputs(view)

    return app


def _require_token(server, token: str, request, response_cls) -> None:  # type: ignore[no-untyped-def]
    """Refuse every request that does not carry ``token``."""
    expected = token.encode()

    def given() -> str:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return auth[len("Bearer ") :]
        return request.args.get("token") or request.cookies.get(COOKIE) or ""

    @server.before_request
    def check():  # type: ignore[no-untyped-def]
        if not hmac.compare_digest(given().encode(), expected):
            return response_cls(
                "OncoFed dashboard: a token is required (open the address with "
                "?token=... as given to the operator).\n",
                status=401,
                mimetype="text/plain",
            )
        return None

    @server.after_request
    def remember(resp):  # type: ignore[no-untyped-def]
        if request.args.get("token"):
            resp.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
        return resp


def read_token(token: str | None, token_file: str | None) -> str | None:
    if token_file:
        text = Path(token_file).read_text().strip()
        if not text:
            raise ValueError(f"{token_file}: the token file is empty")
        return text
    return token or None


def serve(root: str | Path, host: str, port: int, token: str | None) -> None:
    """Serve the dashboard with waitress (a production WSGI server) until
    interrupted."""
    if host not in LOOPBACK and not token:
        raise PermissionError(
            f"--host {host} exposes the dashboard beyond this machine: give "
            "--token TOKEN or --token-file FILE (or bind 127.0.0.1)"
        )
    from waitress import serve as wsgi

    app = create_app(root, token)
    wsgi(app.server, host=host, port=port, threads=8, ident="oncofed-dashboard")
