"""Building blocks that wrap a library's own (imported on first use)."""

from __future__ import annotations

import torch
from monai.networks.nets.resnet import ResNetBlock


class BasicBlock(ResNetBlock):
    """MONAI's basic residual block with its residual added out of place: the
    same layers, weights and result. Example-level DP (Opacus) watches each
    layer's own output, which MONAI's in-place ``+=`` would overwrite."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))
        residual = x if self.downsample is None else self.downsample(x)
        return self.act(out + residual)
