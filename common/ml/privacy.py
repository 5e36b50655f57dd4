"""Example-level differential privacy at a site: DP-SGD with Opacus.

With run-config ``dp = "sample"`` every site trains with Opacus' ``PrivacyEngine``:
each case's gradient is clipped to ``dp-max-grad-norm``, Gaussian noise is added to
their sum, and batches are drawn by Poisson sampling (each case joins each batch
with probability ``q``), as the accountant assumes.

The budget is per site, for the whole run. A site plans its noise once from what
it knows before round 1 (its number of training cases ``N``, ``batch-size``,
``local-epochs`` and ``num-server-rounds``): ``q = 1 / ceil(N / batch-size)``,
``ceil(N / batch-size)`` steps per epoch, and the noise multiplier that Opacus'
``get_noise_multiplier`` finds for ``dp-epsilon`` at ``dp-delta`` after every
planned step. Each round's steps join the site's :class:`Ledger` (the
accountant's history), which lives in the node's Flower ``context.state``: the
epsilon a site reports is the accountant's over every step it has taken in this
run. A round that would take it past ``dp-epsilon`` is refused
(:class:`~oncofed.common.errors.BudgetSpent`) and the site trains no more.

Models are made compatible once, the same way at the server and at the sites
(:func:`private_model`): Opacus' ``ModuleValidator.fix`` (BatchNorm -> GroupNorm,
``MultiheadAttention`` -> Opacus' ``DPMultiheadAttention``), in-place activations
made out-of-place (Opacus' hooks need each layer's own output), the auxiliary
losses averaged over the whole batch (so each case's share of the loss depends
on that case alone), and parameters that
the training loss never touches are frozen (an auxiliary head with
``aux-loss-weight = 0``, the contrastive temperature).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from oncofed.common.config import OncoFedConfig
from oncofed.common.errors import BudgetSpent, ConfigError
from oncofed.common.keys import CT
from oncofed.common.ml.models.layers import Learned

LEDGER = "dp-ledger"  # the site's accountant history in Flower's context.state


@functools.cache
def _register_samplers() -> None:
    """Opacus' per-case gradients for the layers it has none for (:class:`Learned`)
    or a slow one (``Conv3d``)."""
    from opacus.grad_sample import register_grad_sampler

    # torch warns on every backward pass through such a layer: expected here
    warnings.filterwarnings("ignore", message="Full backward hook is firing")

    @register_grad_sampler(Learned)
    def learned_grad_sample(
        layer: Learned, activations: list[torch.Tensor], backprops: torch.Tensor
    ) -> dict[nn.Parameter, torch.Tensor]:
        """Case ``b``'s gradient is the loss gradient at its output ``b`` (the
        layer is ``weight`` repeated per case)."""
        return {layer.weight: backprops} if layer.weight.requires_grad else {}

    @register_grad_sampler(nn.Conv3d)
    def conv3d_grad_sample(
        layer: nn.Conv3d, activations: list[torch.Tensor], backprops: torch.Tensor
    ) -> dict[nn.Parameter, torch.Tensor]:
        return conv3d_per_case(layer, activations[0], backprops)


def conv3d_per_case(
    layer: nn.Conv3d, x: torch.Tensor, grad_out: torch.Tensor
) -> dict[Any, torch.Tensor]:
    """Each case's gradient of a ``Conv3d``'s weight and bias, from its input
    ``x`` and the loss gradient at its output.

    Opacus' own sampler unfolds every input patch (``unfold3d``), which took about
    a third of a DP-SGD epoch here. Instead the batch becomes the channel groups
    of one convolution, and torch's own weight gradient
    (``torch.nn.grad.conv3d_weight``) of that grouped convolution is the stack of
    the cases' gradients (Rochette et al. 2019, "Efficient per-example gradient
    computations in convolutional neural networks"). ``tests/test_dp.py`` checks
    it against Opacus' sampler.
    """
    n = x.shape[0]
    x = x.to(grad_out.dtype)
    if isinstance(layer.padding, str) or layer.padding_mode != "zeros":
        # Opacus' own path (padding the input is not the layer's input here)
        from opacus.grad_sample.conv import compute_conv_grad_sample

        return compute_conv_grad_sample(layer, [x], grad_out)
    from torch.nn.grad import conv3d_weight

    out: dict[Any, torch.Tensor] = {}
    g = layer.groups
    if layer.weight.requires_grad:
        w = conv3d_weight(
            x.reshape(1, n * layer.in_channels, *x.shape[2:]),
            (n * layer.out_channels, layer.in_channels // g, *layer.kernel_size),
            grad_out.reshape(1, n * layer.out_channels, *grad_out.shape[2:]),
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
            groups=n * g,
        )
        out[layer.weight] = w.reshape(n, *layer.weight.shape)
    if layer.bias is not None and layer.bias.requires_grad:
        out[layer.bias] = grad_out.sum(dim=(2, 3, 4))
    return out


@dataclass
class Ledger:
    """Every DP-SGD step a site has taken in this run, in the accountant's own
    terms: runs of ``steps`` steps at noise multiplier ``noise`` and sampling
    rate ``rate``."""

    noise: list[float] = field(default_factory=list)
    rate: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)

    @property
    def total_steps(self) -> int:
        return sum(self.steps)

    def history(self) -> list[tuple[float, float, int]]:
        return list(zip(self.noise, self.rate, self.steps, strict=True))

    def add(self, noise: float, rate: float, steps: int) -> Ledger:
        return Ledger([*self.noise, noise], [*self.rate, rate], [*self.steps, steps])

    def epsilon(self, delta: float, accountant: str) -> float:
        """The accountant's epsilon at ``delta`` over every step so far."""
        if not self.steps:
            return 0.0
        return epsilon_of(self.history(), delta, accountant)

    def to_record(self) -> dict[str, list[float] | list[int]]:
        return {"noise": self.noise, "rate": self.rate, "steps": self.steps}

    @classmethod
    def from_record(cls, record: object) -> Ledger:
        if record is None:
            return cls()
        get = record.get  # type: ignore[attr-defined]
        return cls(
            [float(x) for x in get("noise", [])],
            [float(x) for x in get("rate", [])],
            [int(x) for x in get("steps", [])],
        )


def _accountant(name: str):
    from opacus.accountants import create_accountant

    return create_accountant(mechanism=name)


def epsilon_of(
    history: list[tuple[float, float, int]], delta: float, accountant: str
) -> float:
    """Opacus' epsilon at ``delta`` for an accountant ``history`` of
    (noise multiplier, sample rate, steps) (cached: the PRV accountant takes
    about a second, and sites of one size share their histories)."""
    return _epsilon(tuple(map(tuple, history)), delta, accountant)


@functools.lru_cache(maxsize=256)
def _epsilon(history: tuple, delta: float, accountant: str) -> float:
    acc = _accountant(accountant)
    acc.history = [tuple(h) for h in history]
    with _quiet():
        return float(acc.get_epsilon(delta=delta))


@functools.lru_cache(maxsize=64)
def noise_for(
    epsilon: float, delta: float, rate: float, steps: int, accountant: str
) -> float:
    """Opacus' noise multiplier that reaches ``epsilon`` at ``delta`` after
    ``steps`` steps at sampling rate ``rate`` (a binary search: cached)."""
    from opacus.accountants.utils import get_noise_multiplier

    with _quiet():
        return float(
            get_noise_multiplier(
                target_epsilon=epsilon,
                target_delta=delta,
                sample_rate=rate,
                steps=steps,
                accountant=accountant,
            )
        )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Opacus' accountants warn about their search range of orders, and torch
    about backward hooks on layers whose input needs no gradient (the first
    layer; :class:`Learned`): neither is a problem here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the")
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        # the PRV accountant at sample rate 1 (a site smaller than a batch)
        warnings.filterwarnings("ignore", message="divide by zero encountered in log")
        # noise from torch's generator: said once in README ("Privacy")
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        yield


@dataclass(frozen=True)
class Plan:
    """A site's DP-SGD plan for the whole run (see the module docstring)."""

    n: int
    sample_rate: float
    steps_per_round: int
    planned_steps: int
    noise: float
    delta: float
    target_epsilon: float
    accountant: str
    max_grad_norm: float


def plan(n: int, cfg: OncoFedConfig) -> Plan:
    """The noise that spends ``dp-epsilon`` exactly at the last planned round.

    Raises ConfigError when ``dp-delta`` is not below ``1 / N`` (a delta that
    large allows a mechanism that publishes a case outright)."""
    dp, batch = cfg.privacy, cfg.train.batch_size
    if n < 1:
        raise ConfigError("dp 'sample': this site has no training cases")
    if dp.dp_delta >= 1.0 / n:
        raise ConfigError(
            f"Run-config key 'dp-delta' = {dp.dp_delta}: must be below 1/N = "
            f"{1.0 / n:.2g} for a site with N = {n} training cases. Fix: lower "
            "dp-delta (the default 1e-5 suits sites of up to 100,000 cases)."
        )
    batches = math.ceil(n / batch)
    rate = 1.0 / batches  # what Opacus' DPDataLoader derives from the loader
    per_round = batches * cfg.train.local_epochs
    steps = per_round * cfg.federation.num_server_rounds
    return Plan(
        n,
        rate,
        per_round,
        steps,
        noise_for(dp.dp_epsilon, dp.dp_delta, rate, steps, dp.dp_accountant),
        dp.dp_delta,
        dp.dp_epsilon,
        dp.dp_accountant,
        dp.dp_max_grad_norm,
    )


def check_budget(ledger: Ledger, p: Plan) -> None:
    """Refuse a round that would take the site past its epsilon."""
    after = ledger.add(p.noise, p.sample_rate, p.steps_per_round)
    eps = after.epsilon(p.delta, p.accountant)
    if eps > p.target_epsilon * (1 + 1e-6):
        spent = ledger.epsilon(p.delta, p.accountant)
        raise BudgetSpent(
            f"privacy budget spent: another round would take epsilon from "
            f"{spent:.3f} to {eps:.3f}, above dp-epsilon = {p.target_epsilon} "
            f"({ledger.total_steps} of {p.planned_steps} planned steps taken)"
        )


class DPSGD:
    """Wraps one round of local training in Opacus' ``PrivacyEngine`` and adds
    its steps to the site's ledger (:attr:`ledger` after :meth:`close`)."""

    def __init__(self, p: Plan, ledger: Ledger) -> None:
        _register_samplers()
        self.plan = p
        self.ledger = ledger
        self.engine: Any = None
        self.wrapped: Any = None

    def wrap(self, model: nn.Module, optimizer, loader):
        from opacus import PrivacyEngine

        with _quiet():
            self.engine = PrivacyEngine(accountant=self.plan.accountant)
        self.engine.accountant.history = self.ledger.history()
        wrapped, opt, dp_loader = self.engine.make_private(
            module=model,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=self.plan.noise,
            max_grad_norm=self.plan.max_grad_norm,
            poisson_sampling=True,
        )
        if abs(dp_loader.sample_rate - self.plan.sample_rate) > 1e-9:
            raise RuntimeError(
                f"DP-SGD sample rate {dp_loader.sample_rate} differs from the "
                f"planned {self.plan.sample_rate}"
            )
        self.wrapped = wrapped
        return opt, dp_loader

    def close(self) -> Ledger:
        """Remove Opacus' hooks (the model is sent as a plain module) and record
        the round's steps."""
        assert self.engine is not None and self.wrapped is not None
        taken = sum(s for _, _, s in self.engine.accountant.history)
        taken -= self.ledger.total_steps  # the history began as the ledger's
        _unhook(self.wrapped)
        self.ledger = self.ledger.add(self.plan.noise, self.plan.sample_rate, taken)
        return self.ledger


def _unhook(wrapped: Any) -> None:
    """Opacus' hooks and per-case gradients off the model it wrapped."""
    wrapped.remove_hooks()
    for p in wrapped._module.parameters():
        p.grad_sample = None


def _unused(model: nn.Module) -> Iterator[nn.Parameter]:
    """Parameters the training loss never reaches (see MultimodalNet)."""
    if getattr(model, "contrastive_weight", 0) == 0:
        temp = getattr(model, "log_temperature", None)
        if temp is not None:
            yield temp
    mods = getattr(model, "modalities", ())
    if getattr(model, "aux_weight", 0) == 0 or len(mods) < 2:
        heads = getattr(model, "aux_heads", None)
        if heads is not None:
            yield from heads.parameters()


def private_model(model: nn.Module) -> nn.Module:
    """``model`` made trainable with DP-SGD (see the module docstring); the same
    at the server and every site, so the weights agree."""
    from opacus.validators import ModuleValidator

    fixed = ModuleValidator.fix(model)
    for module in fixed.modules():  # Opacus' hooks cannot see through in-place ops
        if getattr(module, "inplace", False) is True:
            module.inplace = False
    for p in _unused(fixed):
        p.requires_grad_(False)
    if hasattr(fixed, "per_case_loss"):
        fixed.per_case_loss = True
    return fixed


def dp_problem(model: nn.Module, batch: dict) -> str | None:
    """Why Opacus cannot train ``model`` (a private model) on ``batch``, or None:
    one forward and backward pass with its per-case gradient hooks, and every
    trainable parameter must get a per-case gradient."""
    from opacus import GradSampleModule
    from opacus.validators import ModuleValidator

    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        return str(errors[0])
    _register_samplers()
    model.train()
    wrapped = GradSampleModule(model)
    try:
        loss, _ = model.training_loss(batch, batch["label"].float())  # type: ignore[operator]
        loss.backward()
        missing = [
            name
            for name, p in model.named_parameters()
            if p.requires_grad and getattr(p, "grad_sample", None) is None
        ]
        return f"no per-case gradient for {', '.join(missing[:3])}" if missing else None
    except Exception as err:  # noqa: BLE001 - the reason is what we report
        return f"{type(err).__name__}: {str(err).splitlines()[0]}"
    finally:
        _unhook(wrapped)
        model.zero_grad(set_to_none=True)


def _image_encoders(batch: dict) -> list[str]:
    """Registered encoders that take this batch's CT (the image encoders)."""
    from oncofed.common.ml.models.encoders import ENCODERS

    names = []
    for name in ENCODERS.names():
        try:
            with torch.no_grad():
                ENCODERS.create(name, embed_dim=8, in_slices=batch[CT].shape[-1])(
                    batch[CT]
                )
        except Exception:  # noqa: BLE001, S112 - not an image encoder
            continue
        names.append(name)
    return names


def check_private(cfg: OncoFedConfig, samples: list[dict], input_dims: dict) -> None:
    """Refuse, before round 1, a model that example-level DP-SGD cannot train,
    naming the image encoders that it can (tried on two of ``samples``)."""
    from oncofed.common.ml.models import build_model
    from oncofed.common.ml.training import make_loader

    batch = next(iter(make_loader(samples[:2], 2, shuffle=False)))

    def problem(model_cfg) -> str | None:
        try:
            model = build_model(
                model_cfg, cfg.data.image_depth, input_dims, private=True
            )
            why = dp_problem(model, batch)
        except Exception as err:  # noqa: BLE001 - the reason is what we report
            why = f"{type(err).__name__}: {err}"
        return None if why is None else why.replace("\\n", " ").splitlines()[0][:200]

    why = problem(cfg.model)
    if why is None:
        return
    able = []
    if CT in cfg.model.modality_list:
        able = [
            name
            for name in _image_encoders(batch)
            if name != cfg.model.image_encoder
            and problem(dataclasses.replace(cfg.model, image_encoder=name)) is None
        ]
    raise ConfigError(
        f"Run-config key 'dp' = 'sample': this model (image-encoder "
        f"{cfg.model.image_encoder!r}, fusion {cfg.model.fusion!r}) cannot be "
        f"trained with example-level DP-SGD ({why}). Fix: set image-encoder to one "
        f"of {', '.join(able) or '(none with this model)'}, or dp = 'off'."
    )
