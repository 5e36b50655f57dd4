"""Small layers shared by the model families."""

from __future__ import annotations

import torch
from torch import nn


class Learned(nn.Module):
    """A learned tensor of ``shape`` (a stand-in embedding, a modality-type
    embedding, a query), returned once per case of a batch: ``forward(ref)`` is
    ``weight`` expanded to ``(len(ref), *shape)``. ``ref`` must not need a
    gradient (pass presence flags, not an embedding): a backward hook on this
    layer fires only once the gradient reaches its input.

    Every learned tensor of a model lives in a layer that is called like this
    rather than as a bare parameter, so that example-level differential privacy
    (Opacus) sees each case's own gradient of it: case ``b``'s gradient of
    ``weight`` is the gradient of the loss at output ``b``
    (:mod:`common.ml.privacy` registers that rule).
    """

    def __init__(self, *shape: int, std: float = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(*shape))
        if std > 0:
            nn.init.normal_(self.weight, std=std)

    def forward(self, ref: torch.Tensor) -> torch.Tensor:
        if ref.requires_grad:
            raise ValueError("Learned(ref): ref must not need a gradient")
        return self.weight.expand(ref.shape[0], *self.weight.shape)
