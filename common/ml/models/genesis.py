"""Models Genesis: self-supervised restoration of CT (task ``pretrain``).

Zhou et al., "Models Genesis" (MICCAI 2019; Medical Image Analysis 2021): a
network learns to restore a CT volume from a distorted copy. The distortions are
MONAI's implementations of the paper's four:

* non-linear intensity mapping (``RandHistogramShift``: a random monotone
  piecewise-linear curve through control points, MONAI's counterpart of the
  paper's Bezier curve), probability 0.9;
* local pixel shuffling (``RandCoarseShuffle``: voxels shuffled inside small
  blocks), probability 0.5;
* inner cut-out (in-painting) or outer cut-out (out-painting) with random values
  (``RandCoarseDropout`` with ``dropout_holes`` true / false), probability 0.9,
  out-painting four times in five, as in the paper.

The network is the registry's CT encoder (run-config ``image-encoder``) and a
small decoder that restores the volume from the encoder's embedding alone. The
paper uses a U-Net with skip connections; decoding from the embedding lets any
registry encoder be pretrained and keeps everything learnt in the encoder, which
is what fine-tuning loads (``pretrained = "ct=…/ct-encoder.pt"``). The loss is
the mean squared error of the restored volume, as in the paper.

The model keeps the interface of the other task networks: ``forward(batch)``
gives each case's restoration error on a fixed distortion (the same every round,
so validation is comparable), ``training_loss`` the error on a fresh one.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from oncofed.common.keys import CT

# the paper's probabilities
NONLINEAR_RATE = 0.9
LOCAL_SHUFFLE_RATE = 0.5
PAINT_RATE = 0.9
OUTPAINT_SHARE = 0.8
EVAL_SEED = 20190101  # the fixed distortion of every evaluation


@cache
def genesis_distortion(shape: tuple[int, ...]):  # type: ignore[no-untyped-def]
    """Models Genesis' distortions (MONAI transforms) for a (1, S, S, D) volume;
    built once per shape (every use reseeds it, :func:`distort`)."""
    from monai.transforms import (
        Compose,
        OneOf,
        RandCoarseDropout,
        RandCoarseShuffle,
        RandHistogramShift,
    )

    size = [int(s) for s in shape[1:]]

    def frac(f: float) -> list[int]:
        return [max(1, int(round(s * f))) for s in size]

    inner = RandCoarseDropout(
        holes=1, spatial_size=frac(1 / 8), max_spatial_size=frac(1 / 3),
        max_holes=5, fill_value=(0.0, 1.0), prob=1.0,
    )  # fmt: skip
    outer = RandCoarseDropout(
        holes=1, spatial_size=frac(1 / 2), max_spatial_size=frac(7 / 8),
        max_holes=3, dropout_holes=False, fill_value=(0.0, 1.0), prob=1.0,
    )  # fmt: skip
    paint = OneOf([inner, outer], weights=[1 - OUTPAINT_SHARE, OUTPAINT_SHARE])
    return Compose(
        [
            RandHistogramShift(num_control_points=(4, 8), prob=NONLINEAR_RATE),
            RandCoarseShuffle(
                holes=8,
                spatial_size=frac(1 / 16),
                max_spatial_size=frac(1 / 8),
                max_holes=64,
                prob=LOCAL_SHUFFLE_RATE,
            ),  # fmt: skip
            # OneOf has no prob: a Compose around it applies it 9 times in 10
            _Maybe(paint, PAINT_RATE),
        ]
    )


class _Maybe:
    """Apply ``transform`` with probability ``prob`` (MONAI's ``OneOf`` has none)."""

    def __init__(self, transform, prob: float) -> None:  # type: ignore[no-untyped-def]
        self.transform, self.prob = transform, prob
        self.R = np.random.RandomState()

    def set_random_state(self, seed: int) -> None:
        self.R = np.random.RandomState(seed)
        self.transform.set_random_state(seed=int(self.R.randint(2**31 - 1)))

    def __call__(self, x):  # type: ignore[no-untyped-def]
        return self.transform(x) if self.R.rand() < self.prob else x


def distort(x: torch.Tensor, seeds: list[int]) -> torch.Tensor:
    """Each volume of ``x`` (B, 1, S, S, D) in [0, 1] distorted with its own seed."""
    chain = genesis_distortion(tuple(x.shape[1:]))
    out = []
    for volume, seed in zip(x.detach().cpu(), seeds, strict=True):
        _seed(chain, seed)
        out.append(torch.as_tensor(np.asarray(chain(volume.clone())), dtype=x.dtype))
    return torch.stack(out).clamp(0.0, 1.0).to(x.device)


def _seed(chain, seed: int) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.RandomState(seed)
    for t in chain.transforms:
        t.set_random_state(seed=int(rng.randint(2**31 - 1)))


class GenesisNet(nn.Module):
    """CT encoder + restoration decoder (task ``pretrain``)."""

    modalities = (CT,)
    task = "pretrain"

    # the decoder starts from this grid and grows it 8-fold per axis; the result is
    # resampled to the input's grid, whatever image-size and image-depth are
    seed_shape = (4, 4, 2)

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        width = 32
        embed_dim = int(encoder.embed_dim)  # type: ignore[arg-type]
        self.fc = nn.Linear(embed_dim, width * math.prod(self.seed_shape))
        self.width = width

        def up(cin: int, cout: int) -> list[nn.Module]:
            return [
                nn.ConvTranspose3d(cin, cout, kernel_size=2, stride=2),
                nn.GroupNorm(4, cout),
                nn.ReLU(),
            ]

        self.decoder = nn.Sequential(
            *up(width, 16), *up(16, 8), *up(8, 8), nn.Conv3d(8, 1, 3, padding=1)
        )

    def restore(self, x: torch.Tensor) -> torch.Tensor:
        """The restored volume (B, 1, S, S, D) in [0, 1]."""
        z = self.fc(self.encoder(x)).view(-1, self.width, *self.seed_shape)
        y = self.decoder(z)
        y = F.interpolate(y, size=x.shape[2:], mode="trilinear", align_corners=False)
        return torch.sigmoid(y)

    def errors(self, x: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        """Per-case mean squared restoration error (B,)."""
        restored = self.restore(distort(x, seeds))
        return ((restored - x) ** 2).flatten(1).mean(1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = batch[CT]
        return self.errors(x, [EVAL_SEED + i for i in range(len(x))])

    def training_loss(
        self, batch: dict[str, torch.Tensor], labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch[CT]
        seeds = [int(s) for s in torch.randint(0, 2**31 - 1, (len(x),))]
        err = self.errors(x, seeds)
        return err.mean(), err.detach()

    def modality_weights(self) -> None:
        return None


def restoration_metrics(errors: np.ndarray) -> dict[str, float]:
    """Mean squared restoration error and its PSNR (dB; CT in [0, 1])."""
    if len(errors) == 0:
        return {"restore-mse": math.nan, "restore-psnr": math.nan}
    mse = float(np.mean(errors))
    return {"restore-mse": mse, "restore-psnr": 10 * math.log10(1 / max(mse, 1e-12))}
