"""Fusion-head registry. A head sees only embeddings and presence masks.

``forward(embeddings, present) -> logits (B,)`` where ``embeddings`` maps modality ->
(B, D) and ``present`` maps modality -> (B,) float flags.
"""

from __future__ import annotations

import torch
from torch import nn

from oncofed.common.ml.models.layers import Learned
from oncofed.common.registry import Registry

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


class LateFusion(nn.Module):
    """Late fusion: one logistic head per modality; the logits are combined over the
    modalities a case has, either averaged (``mean``) or with learned weights
    (``stacked``: a softmax over per-modality weights, renormalised over the present
    ones)."""

    def __init__(self, modalities: tuple[str, ...], embed_dim: int, stacked: bool):
        super().__init__()
        self.modalities = modalities
        self.heads = nn.ModuleDict({m: nn.Linear(embed_dim, 1) for m in modalities})
        # stacked: learned weights; mean: none (every present modality counts alike)
        self.weight_logits = Learned(len(modalities)) if stacked else None
        self.last_weights: torch.Tensor | None = None

    def forward(
        self, embeddings: dict[str, torch.Tensor], present: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        logits = torch.stack(
            [self.heads[m](embeddings[m]).squeeze(1) for m in self.modalities], dim=1
        )
        mask = _presence(present, self.modalities)
        base = (
            self.weight_logits(mask)
            if self.weight_logits is not None
            else torch.zeros_like(mask)
        )
        w = torch.softmax(base.masked_fill(mask == 0, -1e4), dim=1)
        self.last_weights = w.detach()
        return (w * logits).sum(1)


class DynamicFusionTransformer(nn.Module):
    """Dynamic Fusion Transformer: one token per modality (its embedding plus a
    learned modality-type embedding), a self-attention layer across the tokens, and
    a learned query that cross-attends to them. The query's attention over the
    modalities is the per-sample modality weight (``last_weights``, (B, M)); absent
    modalities are masked out of it."""

    def __init__(
        self,
        modalities: tuple[str, ...],
        embed_dim: int,
        heads: int = 4,
        layers: int = 1,
    ):
        super().__init__()
        self.modalities = modalities
        heads = heads if embed_dim % heads == 0 else 1
        self.type_embed = Learned(len(modalities), embed_dim, std=0.02)
        layer = nn.TransformerEncoderLayer(
            embed_dim,
            heads,
            dim_feedforward=2 * embed_dim,
            dropout=0.1,
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.query = Learned(1, embed_dim, std=0.02)
        self.cross = nn.MultiheadAttention(embed_dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, 1)
        self.last_weights: torch.Tensor | None = None

    def forward(
        self, embeddings: dict[str, torch.Tensor], present: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        tokens = torch.stack([embeddings[m] for m in self.modalities], dim=1)
        presence = _presence(present, self.modalities)
        tokens = self.encoder(tokens + self.type_embed(presence))
        mask = presence == 0  # True = ignore
        q = self.query(presence)
        out, w = self.cross(q, tokens, tokens, key_padding_mask=mask)
        self.last_weights = w.squeeze(1).detach()
        return self.head(self.norm(out.squeeze(1))).squeeze(1)


def _presence(present: dict[str, torch.Tensor], modalities: tuple[str, ...]):
    """(B, M) presence; a row with nothing present counts all as present (so no
    softmax runs over an empty set: the learned stand-ins carry the case)."""
    mask = torch.stack([present[m].float() for m in modalities], dim=1)
    none = mask.sum(1, keepdim=True) == 0
    return torch.where(none, torch.ones_like(mask), mask)


@FUSIONS.register("late_mean")
def late_mean(
    modalities: tuple[str, ...], embed_dim: int = 64, **_: object
) -> nn.Module:
    """Late fusion, per-modality logits averaged over the present modalities."""
    return LateFusion(modalities, embed_dim, stacked=False)


@FUSIONS.register("late_stacked")
def late_stacked(
    modalities: tuple[str, ...], embed_dim: int = 64, **_: object
) -> nn.Module:
    """Late fusion, per-modality logits combined with learned weights."""
    return LateFusion(modalities, embed_dim, stacked=True)


@FUSIONS.register("transformer")
def transformer(
    modalities: tuple[str, ...], embed_dim: int = 64, **_: object
) -> nn.Module:
    """Dynamic Fusion Transformer (cross-attention, per-sample modality weights)."""
    return DynamicFusionTransformer(modalities, embed_dim)
