"""Light deployment: a trained model to ONNX, checked against PyTorch.

The multimodal network takes a dict batch; ONNX takes positional tensors, so
:class:`ExportWrapper` lays the modalities out in the model's order, each followed
by its presence flag, and returns the probability. ONNX Runtime then runs it on a
CPU without PyTorch. :func:`max_abs_difference` is the parity check (ONNX Runtime
vs PyTorch on the same inputs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from oncofed.common.keys import present_key


class ExportWrapper(nn.Module):
    """Positional inputs ``(x_m1, present_m1, x_m2, present_m2, ...)`` ->
    probability (B,)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.modalities: tuple[str, ...] = tuple(model.modalities)  # type: ignore[arg-type]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        batch = {}
        for i, m in enumerate(self.modalities):
            batch[m] = inputs[2 * i]
            batch[present_key(m)] = inputs[2 * i + 1]
        return torch.sigmoid(self.model(batch))

    def input_names(self) -> list[str]:
        return [n for m in self.modalities for n in (m, present_key(m))]

    def example_inputs(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, ...]:
        return tuple(
            batch[n].float() if n != "histology" else batch[n]
            for n in self.input_names()
        )


def export_onnx(
    model: nn.Module, example: dict[str, torch.Tensor], path: str | Path
) -> Path:
    """Write ``model`` as ONNX (batch dimension dynamic) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ExportWrapper(model).eval()
    inputs = wrapper.example_inputs(example)
    names = wrapper.input_names()
    torch.onnx.export(
        wrapper,
        inputs,
        str(path),
        input_names=names,
        output_names=["probability"],
        dynamic_axes={**{n: {0: "batch"} for n in names}, "probability": {0: "batch"}},
        opset_version=18,
        dynamo=False,
    )
    return path


def onnx_predict(path: str | Path, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Probabilities from ONNX Runtime (CPU) for named numpy inputs."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, {n: inputs[n] for n in names})[0]


def max_abs_difference(
    model: nn.Module, path: str | Path, batch: dict[str, torch.Tensor]
) -> float:
    """Largest |ONNX Runtime - PyTorch| probability difference on ``batch``."""
    wrapper = ExportWrapper(model).eval()
    inputs = wrapper.example_inputs(batch)
    with torch.no_grad():
        ref = wrapper(*inputs).numpy()
    got = onnx_predict(
        path, {n: t.numpy() for n, t in zip(wrapper.input_names(), inputs, strict=True)}
    )
    return float(np.abs(got - ref).max())
