"""Encoder registry. Every encoder maps one modality to a (B, embed_dim) embedding.

Interface: ``forward_features(x) -> Tensor (B, embed_dim)`` and the attribute
``embed_dim``. Image encoders take ``x`` of shape (B, 1, S, S, D) (CT in [0, 1]);
tabular encoders take (B, F). Device is never chosen here.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from oncofed.common.errors import ConfigError
from oncofed.common.registry import Registry

ENCODERS: Registry[nn.Module] = Registry("encoder")


class Encoder(nn.Module):
    """Base: ``forward`` is ``forward_features``.

    Every encoder ends in a LayerNorm: embeddings of all modalities share one scale,
    and an outlier input cannot blow up the fused logit.
    """

    embed_dim: int

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


class Monai3DEncoder(Encoder):
    """A MONAI 3D ResNet trunk (GroupNorm: no batch statistics to federate)."""

    def __init__(self, embed_dim: int, widths: list[int], layers: list[int]) -> None:
        super().__init__()
        from monai.networks.nets import ResNet

        from oncofed.common.ml.models.blocks import BasicBlock

        self.trunk = ResNet(
            block=BasicBlock,
            layers=layers,
            block_inplanes=widths,
            spatial_dims=3,
            n_input_channels=1,
            conv1_t_size=3,
            conv1_t_stride=2,
            feed_forward=False,
            no_max_pool=True,
            norm=("group", {"num_groups": 4}),
        )
        # a lesion is a small local finding: average pooling alone dilutes it
        self.trunk.avgpool = AvgMaxPool3d()  # type: ignore[assignment]
        self.proj = nn.Sequential(
            nn.Linear(2 * widths[-1], embed_dim), nn.LayerNorm(embed_dim)
        )
        self.embed_dim = embed_dim

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.trunk(x))


class AvgMaxPool3d(nn.Module):
    """Global average and max pooling, concatenated: (B, C, ...) -> (B, 2C, 1, 1, 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = x.mean(dim=(2, 3, 4), keepdim=True)
        mx = x.amax(dim=(2, 3, 4), keepdim=True)
        return torch.cat([avg, mx], dim=1)


class Timm25DEncoder(Encoder):
    """A 2D timm backbone on a 2.5D stack: the CT slices become input channels."""

    def __init__(self, model_name: str, embed_dim: int, in_slices: int) -> None:
        super().__init__()
        import timm

        self.trunk = timm.create_model(
            model_name, pretrained=False, in_chans=in_slices, num_classes=0
        )
        with torch.no_grad():  # the pooled width (GhostNet's differs from num_features)
            self.trunk.eval()
            width = int(self.trunk(torch.zeros(1, in_slices, 64, 64)).shape[1])
            self.trunk.train()
        self.proj = nn.Sequential(nn.Linear(width, embed_dim), nn.LayerNorm(embed_dim))
        self.embed_dim = embed_dim

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # (B, 1, S, S, D) -> (B, D, S, S)
        return self.proj(self.trunk(x[:, 0].permute(0, 3, 1, 2)))


class DenseNet3DEncoder(Encoder):
    """A small MONAI 3D DenseNet (two dense blocks, GroupNorm)."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        from monai.networks.nets import DenseNet

        self.trunk = DenseNet(
            spatial_dims=3,
            in_channels=1,
            out_channels=embed_dim,
            init_features=16,
            growth_rate=8,
            block_config=(2, 2),
            norm=("group", {"num_groups": 4}),
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.embed_dim = embed_dim

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.trunk(x))


class MLPEncoder(Encoder):
    """Two-layer MLP for tabular (clinical) features."""

    def __init__(self, in_features: int, embed_dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Linear(hidden, embed_dim),
            nn.LayerNorm(embed_dim),
        )
        self.embed_dim = embed_dim

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class GatedAttentionPool(nn.Module):
    """Gated attention pooling over a set (Ilse et al. 2018): (B, N, E) -> (B, E),
    members flagged in ``pad`` (B, N) get no weight. The weights of the last call
    are kept in ``last_attention`` (B, N) for explanations."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.v = nn.Linear(dim, dim)
        self.u = nn.Linear(dim, dim)
        self.w = nn.Linear(dim, 1)
        self.last_attention: torch.Tensor | None = None

    def forward(self, h: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        score = self.w(torch.tanh(self.v(h)) * torch.sigmoid(self.u(h))).squeeze(-1)
        if pad is not None:
            score = score.masked_fill(pad, -1e4)
        a = torch.softmax(score, dim=1)
        self.last_attention = a.detach()
        return (a.unsqueeze(-1) * h).sum(1)


class TimmSliceEncoder(Encoder):
    """A 2D timm backbone on every CT/MRI slice separately (one input channel),
    then gated attention pooling over the slices: which slices hold the finding is
    learnt, and the slice weights stay available for explanations."""

    def __init__(self, model_name: str, embed_dim: int) -> None:
        super().__init__()
        import timm

        self.trunk = timm.create_model(
            model_name, pretrained=False, in_chans=1, num_classes=0
        )
        with torch.no_grad():
            self.trunk.eval()
            width = int(self.trunk(torch.zeros(1, 1, 64, 64)).shape[1])
            self.trunk.train()
        self.slice_proj = nn.Linear(width, embed_dim)
        self.pool = GatedAttentionPool(embed_dim)
        self.norm = nn.LayerNorm(embed_dim)
        self.embed_dim = embed_dim

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # (B, 1, S, S, D) -> (B*D, 1, S, S): every slice is one 2D image
        b, _, s1, s2, d = x.shape
        slices = x[:, 0].permute(0, 3, 1, 2).reshape(b * d, 1, s1, s2)
        h = self.slice_proj(self.trunk(slices)).view(b, d, -1)
        return self.norm(self.pool(h))


class AttentionMILEncoder(Encoder):
    """A patient's bag of tiles -> one embedding: a small 2D CNN per tile, then
    gated attention pooling over the tiles (Ilse et al. 2018, "Attention-based deep
    multiple instance learning"). Written here because MONAI's ``MILModel`` returns
    class logits, not the pooled embedding that fusion needs.

    Input (B, N, 3, T, T) uint8 or float in [0, 255]; tiles that are all zero are
    padding and get no attention.
    """

    def __init__(self, embed_dim: int, width: int = 32) -> None:
        super().__init__()
        self.tile = nn.Sequential(
            nn.Conv2d(3, width // 2, 3, stride=2, padding=1),
            nn.GroupNorm(4, width // 2),
            nn.ReLU(),
            nn.Conv2d(width // 2, width, 3, stride=2, padding=1),
            nn.GroupNorm(4, width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(width, embed_dim),
        )
        self.pool = GatedAttentionPool(embed_dim)
        self.norm = nn.LayerNorm(embed_dim)
        self.embed_dim = embed_dim

    @property
    def last_attention(self) -> torch.Tensor | None:
        """Tile weights of the last forward pass, (B, N)."""
        return self.pool.last_attention

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        b, n = x.shape[:2]
        x = x.float() / 255.0
        pad = x.flatten(2).abs().sum(-1) == 0  # (B, N)
        h = self.tile(x.flatten(0, 1)).view(b, n, -1)
        return self.norm(self.pool(h, pad))


@ENCODERS.register("tiny3d")
def tiny3d(embed_dim: int = 64, **_: object) -> Encoder:
    """Small 3D ResNet (widths 8-64, one block per stage): the CPU default."""
    return Monai3DEncoder(embed_dim, widths=[8, 16, 32, 64], layers=[1, 1, 1, 1])


@ENCODERS.register("resnet10_3d")
def resnet10_3d(embed_dim: int = 64, **_: object) -> Encoder:
    """MONAI ResNet-10 layout (widths 64-512), for GPUs."""
    return Monai3DEncoder(embed_dim, widths=[64, 128, 256, 512], layers=[1, 1, 1, 1])


@ENCODERS.register("resnet18_25d")
def resnet18_25d(embed_dim: int = 64, in_slices: int = 16, **_: object) -> Encoder:
    """timm ResNet-18 over the slice stack (2.5D)."""
    return Timm25DEncoder("resnet18", embed_dim, in_slices)


@ENCODERS.register("densenet_3d")
def densenet_3d(embed_dim: int = 64, **_: object) -> Encoder:
    """Small MONAI DenseNet 3D (two dense blocks)."""
    return DenseNet3DEncoder(embed_dim)


@ENCODERS.register("resnet50_25d")
def resnet50_25d(embed_dim: int = 64, in_slices: int = 16, **_: object) -> Encoder:
    """timm ResNet-50 over the slice stack: the image-only baseline of the seeds."""
    return Timm25DEncoder("resnet50", embed_dim, in_slices)


@ENCODERS.register("efficientnet_b3_25d")
def efficientnet_b3_25d(
    embed_dim: int = 64, in_slices: int = 16, **_: object
) -> Encoder:
    """timm EfficientNet-B3 over the slice stack: the other image-only baseline."""
    return Timm25DEncoder("efficientnet_b3", embed_dim, in_slices)


@ENCODERS.register("ghostnet_25d")
def ghostnet_25d(embed_dim: int = 64, in_slices: int = 16, **_: object) -> Encoder:
    """timm GhostNet-1.0 over the slice stack: the light model for deployment."""
    return Timm25DEncoder("ghostnet_100", embed_dim, in_slices)


@ENCODERS.register("tiny_25d")
def tiny_25d(embed_dim: int = 64, in_slices: int = 16, **_: object) -> Encoder:
    """A tiny timm ResNet (one block per stage, widths 8-64) over the slice stack,
    for tests and quick runs."""
    return Timm25DEncoder("resnet10t", embed_dim, in_slices)


@ENCODERS.register("tiny_2d")
def tiny_2d(embed_dim: int = 64, **_: object) -> Encoder:
    """The tiny timm ResNet on each slice (2D), attention over slices: tests."""
    return TimmSliceEncoder("resnet10t", embed_dim)


@ENCODERS.register("resnet50_2d")
def resnet50_2d(embed_dim: int = 64, **_: object) -> Encoder:
    """timm ResNet-50 on each slice (2D), attention over slices."""
    return TimmSliceEncoder("resnet50", embed_dim)


@ENCODERS.register("efficientnet_b3_2d")
def efficientnet_b3_2d(embed_dim: int = 64, **_: object) -> Encoder:
    """timm EfficientNet-B3 on each slice (2D), attention over slices."""
    return TimmSliceEncoder("efficientnet_b3", embed_dim)


@ENCODERS.register("ghostnet_2d")
def ghostnet_2d(embed_dim: int = 64, **_: object) -> Encoder:
    """timm GhostNet-1.0 on each slice (2D), attention over slices."""
    return TimmSliceEncoder("ghostnet_100", embed_dim)


@ENCODERS.register("mlp")
def mlp(embed_dim: int = 64, in_features: int = 24, **_: object) -> Encoder:
    return MLPEncoder(in_features, embed_dim)


# what each encoder reads: a CT volume, a feature vector, or a bag of tiles
INPUT_KIND = {
    "tiny3d": "volume",
    "resnet10_3d": "volume",
    "resnet18_25d": "volume",
    "resnet50_25d": "volume",
    "efficientnet_b3_25d": "volume",
    "ghostnet_25d": "volume",
    "tiny_25d": "volume",
    "densenet_3d": "volume",
    "tiny_2d": "volume",
    "resnet50_2d": "volume",
    "efficientnet_b3_2d": "volume",
    "ghostnet_2d": "volume",
    "mlp": "vector",
    "attention_mil": "bag",
}


@ENCODERS.register("attention_mil")
def attention_mil(embed_dim: int = 64, **_: object) -> Encoder:
    """Histology bag encoder: tile CNN + gated attention pooling."""
    return AttentionMILEncoder(embed_dim)


def load_pretrained(encoder: nn.Module, path: str) -> None:
    """Load weights from a local file into ``encoder``; nothing is downloaded.

    Accepted: a state dict of the encoder itself (as OncoFed saves it), or of its
    backbone alone, e.g. a timm checkpoint (``conv1.weight``, ...: matched under
    ``trunk.``). A first convolution trained on 3-channel images is adapted to the
    encoder's input channels with timm's ``adapt_input_conv``; tensors that fit
    nowhere (a classifier head) are skipped. At least half of the encoder's tensors
    must load, or the file is refused.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            f"Run-config key 'pretrained' = {path!r}: file not found. OncoFed never "
            "downloads weights: give the path of a local state-dict file."
        )
    state: dict[str, torch.Tensor]
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(p))
    else:
        loaded = torch.load(p, map_location="cpu", weights_only=True)
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"Run-config key 'pretrained' = {path!r}: not a state dict. Fix: "
                "save the encoder's weights with torch.save(model.state_dict(), ...)."
            )
        state = loaded.get("state_dict", loaded)
    own = encoder.state_dict()
    if not set(state) & set(own):  # a backbone checkpoint: keys under 'trunk.'
        state = {f"trunk.{k}": v for k, v in state.items()}
    fitted = {}
    for key, value in state.items():
        if key not in own:
            continue
        target = own[key]
        if value.shape != target.shape and value.ndim == 4 and target.ndim == 4:
            from timm.models import adapt_input_conv

            if (
                value.shape[0] == target.shape[0]
                and value.shape[2:] == target.shape[2:]
            ):
                value = adapt_input_conv(target.shape[1], value)
        if value.shape == target.shape:
            fitted[key] = value
    if len(fitted) < len(own) / 2:
        raise ConfigError(
            f"Run-config key 'pretrained' = {path!r}: only {len(fitted)} of "
            f"{len(own)} tensors of the {type(encoder).__name__} fit this file. "
            "Fix: give weights saved from the same encoder (or its timm backbone)."
        )
    encoder.load_state_dict(fitted, strict=False)
