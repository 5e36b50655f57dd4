"""Model weights <-> Flower ``ArrayRecord``: the one module where Flower types enter
``common``.

Only floating-point tensors are shared; integer buffers such as BatchNorm's
``num_batches_tracked`` stay local (averaging a counter means nothing).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord
from torch import nn


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` through a temporary file and a rename: the file
    is always either the old or the new one, never half written (a process
    killed mid-save leaves the previous file whole)."""
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def shared_state(model: nn.Module) -> OrderedDict[str, torch.Tensor]:
    return OrderedDict(
        (k, v.detach().cpu())
        for k, v in model.state_dict().items()
        if torch.is_floating_point(v)
    )


def to_arrays(model: nn.Module) -> ArrayRecord:
    """The model's shared tensors as an ArrayRecord."""
    return ArrayRecord(shared_state(model))


def load_arrays(model: nn.Module, arrays: ArrayRecord) -> None:
    """Load shared tensors into ``model``; every shared key must be present."""
    state = arrays.to_torch_state_dict()
    expected = set(shared_state(model))
    missing = expected - set(state)
    if missing:
        raise KeyError(
            f"received weights lack {len(missing)} tensor(s), e.g. "
            f"{sorted(missing)[0]!r}: server and site run different model configs"
        )
    model.load_state_dict(state, strict=False)


NORM_TYPES = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
)


def norm_keys(model: nn.Module) -> list[str]:
    """State-dict keys of the normalisation layers (weights, biases, running
    statistics): what FedBN keeps at each site."""
    keys = []
    for name, module in model.named_modules():
        if isinstance(module, NORM_TYPES):
            prefix = f"{name}." if name else ""
            keys += [prefix + k for k in module.state_dict()]
    return keys


def norm_arrays(model: nn.Module) -> ArrayRecord:
    """The model's normalisation-layer tensors (to keep at the site)."""
    state = model.state_dict()
    return ArrayRecord(
        OrderedDict((k, state[k].detach().cpu()) for k in norm_keys(model))
    )


def restore_norm(model: nn.Module, arrays: ArrayRecord) -> int:
    """Put a site's own normalisation tensors back after loading the global model;
    returns how many tensors were restored."""
    state = arrays.to_torch_state_dict()
    model.load_state_dict(state, strict=False)
    return len(state)


def bytes_to_arrays(blob: bytes) -> ArrayRecord:
    """A serialised model (e.g. an XGBoost JSON booster) as an ArrayRecord, in the
    layout Flower's ``FedXgbBagging`` expects (one uint8 array)."""
    import numpy as np

    return ArrayRecord([np.frombuffer(blob, dtype=np.uint8)])


def arrays_to_bytes(arrays: ArrayRecord) -> bytes:
    """The inverse of :func:`bytes_to_arrays` (empty before the first round)."""
    if not len(arrays):
        return b""
    return bytes(next(iter(arrays.values())).numpy().tobytes())


def named_arrays(model: nn.Module, ndarrays: list) -> ArrayRecord:
    """Unnamed arrays in :func:`to_arrays`' order (Flower's legacy ``Parameters``,
    as SecAgg+ delivers them) as an ArrayRecord named after ``model``'s tensors."""
    import numpy as np

    state = shared_state(model)
    names = list(state)
    if len(names) != len(ndarrays):
        raise KeyError(
            f"received {len(ndarrays)} arrays for a model of {len(names)} tensors: "
            "server and site run different model configs"
        )
    return ArrayRecord(
        {
            n: torch.from_numpy(np.array(a).reshape(state[n].shape))  # (1,) -> ()
            for n, a in zip(names, ndarrays, strict=True)
        }
    )
