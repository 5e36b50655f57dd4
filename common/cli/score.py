"""``oncofed score``: a global model on one site's own data, at that site.

The new-hospital path: a hospital that took no part in training prepares its
folder, fits its own harmoniser (run-config ``harmonise`` of the model's run: for
``cyclegan`` its own site -> reference generator, trained on its scans and the
public reference cohort; no label is read), and scores the global model
unchanged. Predictions are written to a local CSV; nothing leaves the site.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add(sub: argparse._SubParsersAction) -> None:
    """Register the subcommand on the ``oncofed`` parser."""
    p = sub.add_parser(
        "score",
        help="score a run's global model on one site folder (a new hospital), "
        "harmonised at the site",
        description="Load a global model (checkpoints/best.pt of a run), map the "
        "site's CT with the run's harmonisation fitted at this site alone (no "
        "labels), and write each case's probability to --out. With labels in "
        "the site's manifest it also prints the AUC with its 95 % interval.",
    )
    p.add_argument("site_dir", help="a prepared site folder (manifest.csv, ...)")
    p.add_argument("--checkpoint", required=True, help="a run's best.pt or last.pt")
    p.add_argument("--out", required=True, help="CSV of case_id, split, probability")
    p.add_argument(
        "--splits",
        default="train,val,test",
        help="which of the site's splits to score (all: train,val,test)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    import pandas as pd

    from oncofed.common.errors import OncoFedError
    from oncofed.common.keys import CASE_ID, LABEL
    from oncofed.common.ml.harmonise import load_harmonised
    from oncofed.common.ml.metrics import binary_metrics
    from oncofed.common.ml.models import load_checkpoint
    from oncofed.common.ml.tasks import get_task
    from oncofed.common.ml.training import predict_detailed

    ckpt_path, site = Path(args.checkpoint), Path(args.site_dir)
    if not ckpt_path.is_file():
        print(f"oncofed score: {ckpt_path}: no such checkpoint", file=sys.stderr)
        return 2
    try:
        model, cfg, ckpt = load_checkpoint(ckpt_path)
        if cfg.model.task != "classification":
            print(f"oncofed score: the model's task is {cfg.model.task!r}; score "
                  "takes classification models", file=sys.stderr)  # fmt: skip
            return 2
        splits = tuple(s.strip() for s in args.splits.split(",") if s.strip())
        data_cfg = dataclasses.replace(cfg.data, label_fraction=1.0)
        data = load_harmonised(site, data_cfg, splits)
    except OncoFedError as err:
        print(f"oncofed score: {err}", file=sys.stderr)
        return 2
    rows, samples = [], []
    for split in splits:
        for s in data.split(split):
            samples.append(s)
            rows.append({CASE_ID: s[CASE_ID], "split": split, LABEL: s[LABEL]})
    if not samples:
        print(f"oncofed score: no case of {site} loaded "
              f"({len(data.quarantined)} quarantined)", file=sys.stderr)  # fmt: skip
        return 2
    pred = predict_detailed(model, samples, __import__("torch").device("cpu"), 32)
    table = pd.DataFrame(rows)
    table["probability"] = pred.probs
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    if data.harmonise:
        fell = data.harmonise.get("harmonise-fallback") == 1.0
        print(
            f"harmonisation '{cfg.data.harmonise}' fitted at this site: "
            + ("failed its guard rails, CT used as is" if fell else "in use")
        )
    print(f"{len(samples)} case(s) scored by the round-{ckpt['round']} model; "
          f"{len(data.quarantined)} quarantined; predictions: {out}")  # fmt: skip
    m = binary_metrics(pred.labels, pred.probs)
    lo, hi = get_task("classification").primary_interval(pred, seed=cfg.data.seed)
    if m["auc"] == m["auc"]:
        print(f"AUC {m['auc']:.3f} [{lo:.3f}, {hi:.3f}] on these cases")
    return 0
