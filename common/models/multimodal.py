"""The multimodal network: one encoder per modality, a learned stand-in embedding
for each absent modality, and a fusion head."""

from __future__ import annotations

import torch
from torch import nn

from common.config import ModelConfig
from common.data.clinical import NUM_FEATURES
from common.keys import CLINICAL, CT, present_key
from common.models.encoders import ENCODERS, load_pretrained
from common.models.fusion import FUSIONS


class MultimodalNet(nn.Module):
    """Binary classifier over a batch of sample dicts.

    ``forward(batch) -> logits (B,)``; ``batch[m]`` is modality ``m``'s input and
    ``batch[m + '_present']`` its (B,) presence flags.
    """

    def __init__(
        self,
        encoders: dict[str, nn.Module],
        fusion: nn.Module,
        embed_dim: int,
    ) -> None:
        super().__init__()
        self.modalities = tuple(encoders)
        self.encoders = nn.ModuleDict(encoders)
        self.fusion = fusion
        self.missing = nn.ParameterDict(
            {m: nn.Parameter(torch.zeros(embed_dim)) for m in self.modalities}
        )

    def embed(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        embeddings, present = {}, {}
        for m in self.modalities:
            flag = batch[present_key(m)].float()
            z = self.encoders[m].forward_features(batch[m])
            embeddings[m] = torch.where(flag[:, None] > 0, z, self.missing[m])
            present[m] = flag
        return embeddings, present

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.fusion(*self.embed(batch))


def build_model(cfg: ModelConfig, image_depth: int = 16) -> MultimodalNet:
    """Create the network named by ``cfg`` (weights random unless ``pretrained``)."""
    encoders: dict[str, nn.Module] = {}
    for m in cfg.modality_list:
        if m == CT:
            enc = ENCODERS.create(
                cfg.image_encoder, embed_dim=cfg.embed_dim, in_slices=image_depth
            )
            if cfg.pretrained:
                load_pretrained(enc, cfg.pretrained)
        elif m == CLINICAL:
            enc = ENCODERS.create(
                cfg.clinical_encoder, embed_dim=cfg.embed_dim, in_features=NUM_FEATURES
            )
        else:
            from common.registry import look_up_option

            look_up_option(m, (CT, CLINICAL), "modality")
        encoders[m] = enc
    fusion = FUSIONS.create(
        cfg.fusion, modalities=tuple(encoders), embed_dim=cfg.embed_dim
    )
    return MultimodalNet(encoders, fusion, cfg.embed_dim)
