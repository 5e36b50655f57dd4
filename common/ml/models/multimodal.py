"""The multimodal network: one encoder per modality, a learned stand-in embedding
for each absent modality, and a fusion head."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from oncofed.common.config import ModelConfig
from oncofed.common.data.clinical import NUM_FEATURES
from oncofed.common.errors import ConfigError
from oncofed.common.keys import (
    CLINICAL,
    CT,
    GENOMICS,
    HISTOLOGY,
    present_key,
)
from oncofed.common.ml.models.encoders import ENCODERS, load_pretrained
from oncofed.common.ml.models.fusion import FUSIONS
from oncofed.common.ml.models.layers import Learned
from oncofed.common.ml.tasks import cox_loss, get_task

__all__ = ["MultimodalNet", "build_model", "cox_loss", "load_checkpoint"]


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
        modality_dropout: float = 0.0,
        aux_weight: float = 0.0,
        contrastive_weight: float = 0.0,
        task: str = "classification",
    ) -> None:
        super().__init__()
        self.contrastive_weight = contrastive_weight
        # example-level DP: the loss must be a mean of each case's own loss
        self.per_case_loss = False
        self.task = task
        self.modality_dropout = modality_dropout
        self.aux_weight = aux_weight
        self.modalities = tuple(encoders)
        self.encoders = nn.ModuleDict(encoders)
        self.fusion = fusion
        self.missing = nn.ModuleDict({m: Learned(embed_dim) for m in self.modalities})
        # one linear head per modality, used only for the auxiliary training loss
        self.aux_heads = nn.ModuleDict(
            {m: nn.Linear(embed_dim, 1) for m in self.modalities}
        )
        # CLIP-style projections, used only for the contrastive alignment loss
        self.proj = nn.ModuleDict(
            {m: nn.Linear(embed_dim, embed_dim) for m in self.modalities}
            if contrastive_weight > 0
            else {}
        )
        self.log_temperature = nn.Parameter(torch.tensor(2.3))  # 1 / 0.1

    def embed(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        embeddings, present = {}, {}
        for m in self.modalities:
            flag = batch[present_key(m)].float()
            if self.training and self.modality_dropout > 0 and len(self.modalities) > 1:
                # drop a present modality now and then so that no branch can lean on
                # the others, and the learned stand-in embedding gets trained
                keep = torch.rand_like(flag) >= self.modality_dropout
                flag = flag * keep
            z = self.encoders[m].forward_features(batch[m])  # type: ignore[operator]
            embeddings[m] = torch.where(flag[:, None] > 0, z, self.missing[m](flag))
            present[m] = flag
        return embeddings, present

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.fusion(*self.embed(batch))

    def training_loss(
        self, batch: dict[str, torch.Tensor], labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The task's loss on the fused logits plus ``aux_weight`` x each
        modality's own loss over the cases that have it (see
        :class:`oncofed.common.ml.tasks.Task`).

        The auxiliary heads give every encoder a gradient of its own: without them
        the branch that fits fastest (clinical) starves the slower one (CT).
        Returns (loss, fused logits (B,)).
        """
        embeddings, present = self.embed(batch)
        logits = self.fusion(embeddings, present)
        task = get_task(self.task)  # BCE for classification, Cox for survival
        loss = task.loss(logits, batch)
        if self.aux_weight > 0 and len(self.modalities) > 1:
            for m in self.modalities:
                aux = self.aux_heads[m](embeddings[m]).squeeze(1)
                term = task.loss(aux, batch, present[m])
                if self.per_case_loss:  # a mean over the batch, not over the
                    # cases that have m: each case's share then depends on it alone
                    term = term * present[m].sum().clamp(min=1.0) / len(aux)
                loss = loss + self.aux_weight * term
        if self.contrastive_weight > 0:
            loss = loss + self.contrastive_weight * self.alignment_loss(
                embeddings, present
            )
        return loss, logits

    def alignment_loss(
        self, embeddings: dict[str, torch.Tensor], present: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """Symmetric InfoNCE (as CLIP) between every pair of modalities, over the
        cases of the batch that have both: a case's two embeddings should match
        each other better than any other case's."""
        total, pairs = torch.zeros((), device=self.log_temperature.device), 0
        mods = list(self.modalities)
        for i, a in enumerate(mods):
            for b in mods[i + 1 :]:
                both = (present[a] > 0) & (present[b] > 0)
                if int(both.sum()) < 2:
                    continue
                za = F.normalize(self.proj[a](embeddings[a][both]), dim=1)
                zb = F.normalize(self.proj[b](embeddings[b][both]), dim=1)
                sim = za @ zb.T * self.log_temperature.exp().clamp(max=100)
                target = torch.arange(len(za), device=sim.device)
                total = (
                    total
                    + (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target))
                    / 2
                )
                pairs += 1
        return total / max(pairs, 1)

    def modality_weights(self) -> torch.Tensor | None:
        """Per-sample modality weights of the last forward pass (B, M), for fusion
        heads that have them (transformer, late fusion), else None."""
        return getattr(self.fusion, "last_weights", None)


def build_model(
    cfg: ModelConfig,
    image_depth: int = 16,
    input_dims: dict[str, int] | None = None,
    private: bool = False,
) -> MultimodalNet:
    """Create the network named by ``cfg`` (weights random unless ``pretrained``);
    ``private``: made trainable with example-level DP-SGD
    (:func:`common.ml.privacy.private_model`), for run-config ``dp = "sample"``.

    ``input_dims``: feature sizes of the tabular modalities (``clinical``,
    ``genomics``) from the data's schema (:func:`common.data.schema.load_schema`);
    default: the HCC clinical encoding and no genomics.
    """
    if cfg.task == "segmentation":
        from oncofed.common.ml.models.segmentation import SegmentationNet

        return SegmentationNet()  # type: ignore[return-value]
    if cfg.task == "pretrain":  # Models Genesis: the CT encoder and a decoder
        from oncofed.common.ml.models.genesis import GenesisNet

        encoder = ENCODERS.create(
            cfg.image_encoder, embed_dim=cfg.embed_dim, in_slices=image_depth
        )
        for modality, path in cfg.pretrained_files.items():
            if modality == CT:  # continue from an earlier pretraining
                load_pretrained(encoder, path)
        return GenesisNet(encoder)  # type: ignore[return-value]
    # modality names are validated with the config (common.config)
    dims = {CLINICAL: NUM_FEATURES, GENOMICS: 0, **(input_dims or {})}
    encoders: dict[str, nn.Module] = {}
    if CT in cfg.modality_list:
        encoders[CT] = ENCODERS.create(
            cfg.image_encoder, embed_dim=cfg.embed_dim, in_slices=image_depth
        )
    if CLINICAL in cfg.modality_list:
        encoders[CLINICAL] = ENCODERS.create(
            cfg.clinical_encoder, embed_dim=cfg.embed_dim, in_features=dims[CLINICAL]
        )
    if GENOMICS in cfg.modality_list:
        if dims[GENOMICS] <= 0:
            raise ConfigError(
                "Run-config key 'modalities' names 'genomics' but this dataset has no "
                "genomic features. Fix: drop 'genomics' from modalities or prepare "
                "the dataset with its genomic files."
            )
        encoders[GENOMICS] = ENCODERS.create(
            cfg.genomics_encoder, embed_dim=cfg.embed_dim, in_features=dims[GENOMICS]
        )
    if HISTOLOGY in cfg.modality_list:
        encoders[HISTOLOGY] = ENCODERS.create(
            cfg.histology_encoder, embed_dim=cfg.embed_dim
        )
    for modality, path in cfg.pretrained_files.items():
        if modality not in encoders:
            raise ConfigError(
                f"Run-config key 'pretrained' gives weights for {modality!r}, which "
                f"is not among modalities {cfg.modalities!r}. Fix: drop it or add "
                "the modality."
            )
        load_pretrained(encoders[modality], path)
    fusion = FUSIONS.create(
        cfg.fusion, modalities=tuple(encoders), embed_dim=cfg.embed_dim
    )
    model = MultimodalNet(
        encoders,
        fusion,
        cfg.embed_dim,
        cfg.modality_dropout,
        cfg.aux_loss_weight,
        cfg.contrastive_weight,
        cfg.task,
    )
    if private:
        from oncofed.common.ml.privacy import private_model

        return private_model(model)  # type: ignore[return-value]
    return model


def load_checkpoint(path: str | Path) -> tuple[MultimodalNet, Any, dict]:
    """A global model saved by the server (``checkpoints/best.pt`` / ``last.pt``):
    the network rebuilt from the checkpoint's own config, in eval mode, with that
    config (:class:`common.config.OncoFedConfig`) and the raw checkpoint."""
    import dataclasses
    import pickle

    from oncofed.common.config import from_run_config
    from oncofed.common.errors import DataError

    try:  # tensors and plain values only: a pickled object never runs
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise DataError(
            path,
            "contents",
            "refused: it holds objects other than tensors and plain values "
            f"(loading them could run code; {str(err).splitlines()[0][:120]})",
            "use a checkpoint written by the OncoFed server",
        ) from None
    if not isinstance(ckpt, dict) or not {"config", "state_dict"} <= set(ckpt):
        raise DataError(
            path,
            "keys",
            "not an OncoFed checkpoint (no 'config' and 'state_dict')",
            "use checkpoints/best.pt or last.pt of a run folder",
        )
    cfg = from_run_config(ckpt["config"])
    # the weights are the checkpoint's: a 'pretrained' path in its config (a file
    # of the machine that trained it) is never opened here
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, pretrained=""))
    model = build_model(
        cfg.model,
        cfg.data.image_depth,
        ckpt.get("input_dims"),
        private=cfg.privacy.per_example,
    )
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), cfg, ckpt
