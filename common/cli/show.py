"""``oncofed show``: print a run's metrics from its run store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add(sub: argparse._SubParsersAction) -> None:
    """Register the subcommand on the ``oncofed`` parser."""
    p = sub.add_parser(
        "show",
        help="print a run's metrics from its run store",
        description="Print per-round server-side metrics and the last per-site "
        "table of a run directory (or its run.sqlite).",
    )
    p.add_argument("run_dir", help="run directory, as the run's last log line says")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from oncofed.common.tracking.store import RUN_STORE, TEST, VAL, RunStore

    path = Path(args.run_dir)
    path = path / RUN_STORE if path.is_dir() else path
    if not path.is_file():
        print(f"{path}: no run store here (expected {RUN_STORE})", file=sys.stderr)
        return 2
    store = RunStore(path, readonly=True)  # never writes, even the schema
    g = store.global_frame()
    if g.empty:
        print("no global metrics recorded yet")
        return 0
    val, test = g[g.split == VAL], g[g.split == TEST]
    print("Server-side validation per round (chooses the model):")
    main = val[~val.metric.str.contains("@")]
    print(
        main.pivot_table(index="round", columns="metric", values="value")
        .round(3)
        .to_string()
    )
    extra = val[val.metric.str.contains("@") & (val["round"] == val["round"].max())]
    if not extra.empty:
        print(
            f"\nRound {int(val['round'].max())} by available modalities "
            "(metric@subset) and mean fusion weight per modality (weight@m):"
        )
        print(extra.set_index("metric")["value"].round(3).to_string())
    selected = {r: store.selected_round(r) for r in store.runs().run_id}
    if not test.empty:
        chosen = ", ".join(str(r) for r in selected.values() if r is not None)
        print(
            f"\nTest set (read once, after training): the selected round "
            f"({chosen}) and the last round:"
        )
        main = test[~test.metric.str.contains("@")]
        print(
            main.pivot_table(index="round", columns="metric", values="value")
            .round(3)
            .to_string()
        )
    s = store.site_frame()
    ev = s[s.phase == "evaluate"]
    if not ev.empty:
        last = ev[ev["round"] == ev["round"].max()]
        print(
            f"\nPer-site evaluation, round {int(last['round'].max())} "
            "(local validation splits):"
        )
        print(
            last.pivot_table(index="site", columns="metric", values="value")
            .round(3)
            .to_string()
        )
    _show_resumes(store)
    _show_events(store)
    return 0


def _show_resumes(store) -> None:
    """When the run was interrupted and resumed (oncofed resume)."""
    resumes = store.resumes()
    for row in resumes.itertuples():
        print(
            f"\nResumed after round {row.round} (Flower run "
            f"{row.flower_run_id}; {row.rows_dropped} row(s) of the interrupted "
            "round dropped and recomputed)"
        )


def _show_events(store) -> None:
    """Replies the server did not take as sent (rejected, clipped, failed)."""
    events = store.reply_events()
    if events.empty:
        return
    print("\nReplies not taken as sent (the run went on without them):")
    counts = events.groupby(["site", "outcome"]).size().unstack(fill_value=0)
    print(counts.to_string())
    first = events.drop_duplicates(["site", "outcome", "reason"]).head(20)
    for row in first.itertuples():
        print(
            f"  round {row.round} {row.phase} {row.site}: {row.outcome}: {row.reason}"
        )
