"""CycleGAN (Zhu et al. 2017) between one site's CT slices and the public reference
cohort's, written with torch: ResNet generators, PatchGAN discriminators,
least-squares adversarial loss, cycle and identity losses.

2D, slice by slice, at the task's resolution (the liver crop resampled to
``image-size``), so a site trains it on a CPU in minutes; the same code runs on
CUDA. Intensities: Hounsfield units mapped linearly from [``GAN_LO``, ``GAN_HI``]
to [-1, 1] (wider than the task's window, so that a site whose calibration is off
by 150 HU is not clipped before it is mapped).

Nothing here leaves the site: :class:`SiteCycleGan` trains where the site's scans
are, and only :class:`CycleGAN` 's site -> reference generator is used afterwards
(:mod:`oncofed.common.ml.harmonise`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import torch
from torch import nn

GAN_LO, GAN_HI = -500.0, 700.0  # HU range mapped to [-1, 1]
LAMBDA_CYCLE = 10.0
LAMBDA_IDENTITY = 5.0  # 0.5 x cycle, as in the paper


def to_unit(hu: torch.Tensor) -> torch.Tensor:
    return ((hu - GAN_LO) / (GAN_HI - GAN_LO) * 2 - 1).clamp(-1, 1)


def to_hu(x: torch.Tensor) -> torch.Tensor:
    return (x + 1) / 2 * (GAN_HI - GAN_LO) + GAN_LO


class _ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(ch, ch, 3),
            nn.InstanceNorm2d(ch),
            nn.ReLU(),
            nn.ReflectionPad2d(1),
            nn.Conv2d(ch, ch, 3),
            nn.InstanceNorm2d(ch),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """c7s1-k, two stride-2 downsamplings, ``blocks`` residual blocks, two
    upsamplings, c7s1-1 and tanh (the paper's generator, narrower). Input and
    output (B, 1, H, W) in [-1, 1]; H and W divisible by 4."""

    def __init__(self, ngf: int = 8, blocks: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(1, ngf, 7),
            nn.InstanceNorm2d(ngf),
            nn.ReLU(),
        ]
        ch = ngf
        for _ in range(2):
            layers += [
                nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1),
                nn.InstanceNorm2d(ch * 2),
                nn.ReLU(),
            ]
            ch *= 2
        layers += [_ResBlock(ch) for _ in range(blocks)]
        for _ in range(2):
            layers += [
                nn.ConvTranspose2d(
                    ch, ch // 2, 3, stride=2, padding=1, output_padding=1
                ),
                nn.InstanceNorm2d(ch // 2),
                nn.ReLU(),
            ]
            ch //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ch, 1, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN: a map of real/fake scores, one per overlapping patch."""

    def __init__(self, ndf: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, ndf, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(ndf, ndf * 2, 4, stride=2, padding=1),
            nn.InstanceNorm2d(ndf * 2),
            nn.LeakyReLU(0.2),
            nn.Conv2d(ndf * 2, ndf * 4, 4, stride=1, padding=1),
            nn.InstanceNorm2d(ndf * 4),
            nn.LeakyReLU(0.2),
            nn.Conv2d(ndf * 4, 1, 4, stride=1, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@dataclass
class CycleGAN:
    """The four networks: ``g_sr`` site -> reference, ``g_rs`` reference -> site,
    ``d_ref`` (sees reference and generated-reference slices only) and ``d_site``
    (sees the site's slices)."""

    g_sr: ResnetGenerator = field(default_factory=ResnetGenerator)
    g_rs: ResnetGenerator = field(default_factory=ResnetGenerator)
    d_ref: PatchDiscriminator = field(default_factory=PatchDiscriminator)
    d_site: PatchDiscriminator = field(default_factory=PatchDiscriminator)

    def nets(self) -> dict[str, nn.Module]:
        return {
            "g_sr": self.g_sr,
            "g_rs": self.g_rs,
            "d_ref": self.d_ref,
            "d_site": self.d_site,
        }

    def to(self, device: torch.device) -> CycleGAN:
        for net in self.nets().values():
            net.to(device)
        return self

    def train(self, mode: bool = True) -> None:
        for net in self.nets().values():
            net.train(mode)


@dataclass
class Losses:
    generator: float
    cycle: float
    identity: float
    discriminator: float


class Trainer:
    """One CycleGAN and its optimisers (Adam, lr 2e-4, betas 0.5/0.999)."""

    def __init__(self, gan: CycleGAN, lr: float = 2e-4) -> None:
        self.gan = gan
        betas = (0.5, 0.999)
        self.opt_g = torch.optim.Adam(
            itertools.chain(gan.g_sr.parameters(), gan.g_rs.parameters()),
            lr,
            betas=betas,
        )
        self.opt_d = torch.optim.Adam(
            itertools.chain(gan.d_ref.parameters(), gan.d_site.parameters()),
            lr,
            betas=betas,
        )
        self.mse, self.l1 = nn.MSELoss(), nn.L1Loss()

    def generator_loss(self, site: torch.Tensor, ref: torch.Tensor) -> tuple:
        g = self.gan
        fake_ref, fake_site = g.g_sr(site), g.g_rs(ref)
        p_ref, p_site = g.d_ref(fake_ref), g.d_site(fake_site)
        adv = self.mse(p_ref, torch.ones_like(p_ref)) + self.mse(
            p_site, torch.ones_like(p_site)
        )
        cycle = self.l1(g.g_rs(fake_ref), site) + self.l1(g.g_sr(fake_site), ref)
        identity = self.l1(g.g_sr(ref), ref) + self.l1(g.g_rs(site), site)
        total = adv + LAMBDA_CYCLE * cycle + LAMBDA_IDENTITY * identity
        return total, cycle, identity, fake_ref.detach(), fake_site.detach()

    def discriminator_loss(self, site, ref, fake_ref, fake_site) -> torch.Tensor:  # type: ignore[no-untyped-def]
        g = self.gan
        loss = 0.0
        for d, real, fake in ((g.d_ref, ref, fake_ref), (g.d_site, site, fake_site)):
            pr, pf = d(real), d(fake)
            loss = loss + 0.5 * (
                self.mse(pr, torch.ones_like(pr)) + self.mse(pf, torch.zeros_like(pf))
            )
        return loss  # type: ignore[return-value]

    def step(self, site: torch.Tensor, ref: torch.Tensor) -> Losses:
        """One generator and one discriminator update on a batch of each domain
        ((B, 1, H, W) in [-1, 1])."""
        total, cycle, identity, fake_ref, fake_site = self.generator_loss(site, ref)
        self.opt_g.zero_grad()
        total.backward()
        self.opt_g.step()
        d_loss = self.discriminator_loss(site, ref, fake_ref, fake_site)
        self.opt_d.zero_grad()
        d_loss.backward()
        self.opt_d.step()
        return Losses(total.item(), cycle.item(), identity.item(), float(d_loss.item()))


def slices(volumes: list[torch.Tensor]) -> torch.Tensor:
    """(1, S, S, D) HU volumes -> (N, 1, S, S) axial slices in [-1, 1]."""
    out = [to_unit(v[0]).permute(2, 0, 1).unsqueeze(1) for v in volumes]
    return torch.cat(out) if out else torch.empty(0, 1, 1, 1)


class SiteCycleGan:
    """A site's CycleGAN with its optimisers and batch sampler. Nothing of it
    leaves the site."""

    def __init__(
        self,
        site_volumes: list[torch.Tensor],
        ref_volumes: list[torch.Tensor],
        seed: int,
        device: torch.device,
    ) -> None:
        # the order of the seeded draws is that of the first version: the
        # same seed gives the same CycleGAN as in earlier measurements
        self.gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.site, self.ref = slices(site_volumes), slices(ref_volumes)
        if len(self.site) == 0 or len(self.ref) == 0:
            raise ValueError(
                "CycleGAN needs slices from the site and the reference cohort"
            )
        self.device = device
        self.gan = CycleGAN().to(device)
        self.trainer = Trainer(self.gan)
        self.steps = 0
        self.seconds = 0.0
        self.last_cycle = math.nan  # the cycle loss over the last tenth of updates

    def train(self, steps: int, batch: int = 8, progress=None) -> list[Losses]:  # type: ignore[no-untyped-def]
        """``steps`` more updates; the loss history of these."""
        import time

        t0 = time.time()
        self.gan.train()
        history = []
        site, ref, gen = self.site, self.ref, self.gen
        for k in range(steps):
            i = torch.randint(len(site), (min(batch, len(site)),), generator=gen)
            j = torch.randint(len(ref), (min(batch, len(ref)),), generator=gen)
            history.append(
                self.trainer.step(site[i].to(self.device), ref[j].to(self.device))
            )
            if progress is not None and (k + 1) % max(1, steps // 10) == 0:
                progress(k + 1, steps, history[-1])
        self.gan.train(False)
        self.steps += steps
        self.seconds += time.time() - t0
        if history:
            last = history[-max(1, len(history) // 10) :]
            self.last_cycle = float(sum(h.cycle for h in last) / len(last))
        return history


@torch.no_grad()
def to_reference(gan: CycleGAN, volume_hu: torch.Tensor, device: torch.device):  # type: ignore[no-untyped-def]
    """A site volume (1, S, S, D) in HU mapped slice by slice to the reference
    domain, in HU."""
    x = slices([volume_hu]).to(device)
    y = to_hu(gan.g_sr(x)).cpu()  # (D, 1, S, S)
    return y[:, 0].permute(1, 2, 0).unsqueeze(0)
