"""``oncofed export``: a run's model to ONNX, checked against PyTorch."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add(sub: argparse._SubParsersAction) -> None:
    """Register the subcommand on the ``oncofed`` parser."""
    p = sub.add_parser(
        "export",
        help="export a run's model to ONNX and check it against PyTorch",
        description="Write the run's validation-selected (or last) global model as "
        "ONNX for CPU deployment with ONNX Runtime, then compare ONNX Runtime with "
        "PyTorch on server validation cases (exit 1 if any probability differs by "
        "more than 1e-4).",
    )
    p.add_argument("run_dir", help="run directory, as the run's last log line says")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        default="best",
        help="which global model: best = the round with the best validation "
        "metric (default), last = the last round",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    from oncofed.common.data.site import load_site
    from oncofed.common.ingest import ensure_prepared
    from oncofed.common.ml.export import export_onnx, max_abs_difference
    from oncofed.common.ml.models import load_checkpoint
    from oncofed.common.ml.training import make_loader

    run_dir = Path(args.run_dir)
    ckpt_path = run_dir / "checkpoints" / f"{args.checkpoint}.pt"
    if not ckpt_path.is_file():
        print(f"{ckpt_path}: no checkpoint (is this a run directory?)", file=sys.stderr)
        return 2
    model, cfg, ckpt = load_checkpoint(ckpt_path)
    # the parity check reads validation cases: exporting never touches the test set
    val = load_site(ensure_prepared(cfg.data).server_val_dir, cfg.data, ("val",))
    batch = next(iter(make_loader(val.split("val")[:16], 16, shuffle=False)))
    out = export_onnx(model, batch, args.out)
    diff = max_abs_difference(model, out, batch)
    chosen = "chosen by " + ckpt["selected_by"] if "selected_by" in ckpt else ""
    print(
        f"wrote {out} (round {ckpt['round']} model{', ' + chosen if chosen else ''})"
        f"; ONNX Runtime vs PyTorch on {len(batch['label'])} server validation "
        f"cases: max |difference| {diff:.2e}"
    )
    return 0 if diff <= 1e-4 else 1
