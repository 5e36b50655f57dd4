"""CPU latency of the light (GhostNet-based) model: PyTorch vs ONNX Runtime.

Builds the deployment model (GhostNet-1.0 over the 2.5D CT stack + clinical MLP,
concat fusion), exports it to ONNX, checks parity, and times one case at a time
(batch 1: how a hospital scores a new study) for each input size. Reports the
median over ``--repeats`` runs after ``--warmup`` runs, per case and per CT slice,
and the ONNX Runtime / PyTorch ratio measured in the same invocation. Weights are
random: latency does not depend on them.

    python benchmarks/onnx_latency.py --json /tmp/onnx.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _runinfo import run_info  # benchmarks/ is the script folder

from oncofed.common.config import ModelConfig
from oncofed.common.data.clinical import NUM_FEATURES
from oncofed.common.ml.export import ExportWrapper, export_onnx, max_abs_difference
from oncofed.common.ml.models import build_model


def time_it(fn, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--sizes",
        default="64x16,128x32,256x48",
        help="in-plane x slices per case (64x16,128x32,256x48)",
    )
    ap.add_argument("--encoder", default="ghostnet_25d", help="image encoder")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=0, help="0 = library default")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    import onnxruntime as ort

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for size in args.sizes.split(","):
        side, depth = (int(v) for v in size.split("x"))
        cfg = dataclasses.replace(ModelConfig(image_encoder=args.encoder))
        model = build_model(cfg, depth).eval()
        batch = {
            "ct": torch.rand(1, 1, side, side, depth),
            "ct_present": torch.ones(1),
            "clinical": torch.randn(1, NUM_FEATURES),
            "clinical_present": torch.ones(1),
        }
        with tempfile.TemporaryDirectory() as tmp:
            path = export_onnx(model, batch, Path(tmp) / "m.onnx")
            diff = max_abs_difference(model, path, batch)
            opts = ort.SessionOptions()
            if args.threads:
                opts.intra_op_num_threads = args.threads
            session = ort.InferenceSession(
                str(path), opts, providers=["CPUExecutionProvider"]
            )
            wrapper = ExportWrapper(model).eval()
            inputs = wrapper.example_inputs(batch)
            feed = {
                n: t.numpy() for n, t in zip(wrapper.input_names(), inputs, strict=True)
            }
            with torch.no_grad():
                t_torch = time_it(
                    lambda w=wrapper, x=inputs: w(*x), args.warmup, args.repeats
                )
            t_ort = time_it(
                lambda s=session, f=feed: s.run(None, f), args.warmup, args.repeats
            )
        row = {
            "size": f"{side}x{side}x{depth}",
            "torch_ms_per_case": round(1000 * t_torch, 2),
            "onnx_ms_per_case": round(1000 * t_ort, 2),
            "torch_ms_per_slice": round(1000 * t_torch / depth, 3),
            "onnx_ms_per_slice": round(1000 * t_ort / depth, 3),
            "ratio_onnx_over_torch": round(t_ort / t_torch, 3),
            "max_abs_diff": diff,
        }
        rows.append(row)
        print(
            f"{row['size']:>12}  PyTorch {row['torch_ms_per_case']:8.2f} ms/case "
            f"({row['torch_ms_per_slice']:.3f} ms/slice)  ONNX Runtime "
            f"{row['onnx_ms_per_case']:8.2f} ms/case ({row['onnx_ms_per_slice']:.3f} "
            f"ms/slice)  ratio {row['ratio_onnx_over_torch']:.2f}  "
            f"max|diff| {diff:.1e}",
            flush=True,
        )
    result = {
        **run_info(f", torch {torch.__version__}, onnxruntime {ort.__version__}"),
        "encoder": args.encoder,
        "rows": rows,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    assert all(np.isfinite(r["max_abs_diff"]) for r in rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
