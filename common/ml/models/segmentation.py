"""Liver and tumour segmentation on CT (task ``segmentation``).

A MONAI 3D UNet (instance norm) predicts the LiTS classes (0 background, 1 liver,
2 tumour), trained with MONAI's Dice + cross-entropy loss on the cases that have a
label map. Its tumour-presence score is the log-odds of the largest voxel tumour
probability, so the same classification metrics (AUC against the case label) apply.
Dice is reported as LiTS does: per case (mean over the cases whose ground truth has
the structure) and global (all voxels of all cases pooled).
"""

from __future__ import annotations

import torch
from torch import nn

from oncofed.common.keys import CT, MASK, present_key

CLASSES = 3  # background, liver, tumour


class SegmentationNet(nn.Module):
    """UNet wrapper with the multimodal network's interface:
    ``forward(batch) -> tumour-presence logit (B,)``,
    ``training_loss(batch, labels) -> (loss, logits)``, ``segment(ct)``."""

    modalities = (CT,)
    task = "segmentation"

    def __init__(self, channels: tuple[int, ...] = (8, 16, 32, 64)) -> None:
        super().__init__()
        from monai.losses import DiceCELoss
        from monai.networks.nets import UNet

        self.unet = UNet(
            spatial_dims=3,
            in_channels=1,
            out_channels=CLASSES,
            channels=channels,
            strides=(2,) * (len(channels) - 1),
            num_res_units=1,
            norm=("instance", {"affine": True}),  # no batch statistics to federate
        )
        self.loss = DiceCELoss(to_onehot_y=True, softmax=True)

    def segment(self, ct: torch.Tensor) -> torch.Tensor:
        """Class logits (B, 3, S, S, D)."""
        return self.unet(ct)

    def presence(self, seg_logits: torch.Tensor) -> torch.Tensor:
        p = torch.softmax(seg_logits, dim=1)[:, 2].flatten(1).amax(1)
        p = p.clamp(1e-6, 1 - 1e-6)
        return torch.log(p) - torch.log1p(-p)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.presence(self.segment(batch[CT]))

    def training_loss(
        self, batch: dict[str, torch.Tensor], labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        seg = self.segment(batch[CT])
        logits = self.presence(seg)
        keep = (batch[present_key(MASK)] > 0) & (batch[present_key(CT)] > 0)
        if not bool(keep.any()):
            return seg.sum() * 0.0, logits
        return self.loss(seg[keep], batch[MASK][keep].long()), logits

    def modality_weights(self) -> None:
        return None


def dice_counts(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per case and structure (liver = labels 1 and 2, tumour = label 2): true
    positives, predicted voxels, true voxels. Shape (B, 2, 3)."""
    out = []
    for structure in ((1, 2), (2,)):
        p = torch.isin(pred, torch.tensor(structure, device=pred.device))
        t = torch.isin(truth, torch.tensor(structure, device=truth.device))
        out.append(
            torch.stack(
                [
                    (p & t).flatten(1).sum(1),
                    p.flatten(1).sum(1),
                    t.flatten(1).sum(1),
                ],
                dim=1,
            )
        )
    return torch.stack(out, dim=1).double()


DICE_KEYS = ("dice-liver", "dice-liver-global", "dice-tumour", "dice-tumour-global")


def dice_metrics(counts: torch.Tensor) -> dict[str, float]:
    """Dice per case (mean over cases whose truth has the structure) and global."""
    out = {}
    for i, name in enumerate(("liver", "tumour")):
        tp, pred, true = counts[:, i, 0], counts[:, i, 1], counts[:, i, 2]
        has = true > 0
        per_case = 2 * tp[has] / (pred[has] + true[has])
        out[f"dice-{name}"] = (
            float(per_case.mean()) if bool(has.any()) else float("nan")
        )
        denom = float(pred.sum() + true.sum())
        out[f"dice-{name}-global"] = (
            2 * float(tp.sum()) / denom if denom else float("nan")
        )
    return out
