"""Fusion-head registry. A head sees only embeddings and presence masks.

``forward(embeddings, present) -> logits (B,)`` where ``embeddings`` maps modality ->
(B, D) and ``present`` maps modality -> (B,) float flags.
"""

from __future__ import annotations

import torch
from torch import nn

from common.registry import Registry

FUSIONS: Registry[nn.Module] = Registry("fusion head")


class ConcatFusion(nn.Module):
    """Early fusion: concatenate the modality embeddings, then an MLP."""

    def __init__(self, modalities: tuple[str, ...], embed_dim: int, hidden: int = 64):
        super().__init__()
        self.modalities = modalities
        self.head = nn.Sequential(
            nn.Linear(len(modalities) * embed_dim, hidden),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Linear(hidden, 1),
        )

    def forward(
        self, embeddings: dict[str, torch.Tensor], present: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        z = torch.cat([embeddings[m] for m in self.modalities], dim=1)
        return self.head(z).squeeze(1)


@FUSIONS.register("concat")
def concat(modalities: tuple[str, ...], embed_dim: int = 64, **_: object) -> nn.Module:
    return ConcatFusion(modalities, embed_dim)
