"""Resume an interrupted run from its last complete round.

After the server's validation of every round (and of round 0) the ServerApp
writes ``checkpoints/resume.pt`` (atomically: a ``kill -9`` leaves the previous
one whole). It holds what the next round depends on:

* the global model exactly as the strategy holds it (FedAdam's are float64);
* the strategy's own state: FedAdam's moments ``m_t`` and ``v_t`` (its bias
  correction follows the round number, which resumes too), the adaptive DP
  clipping norm; the number of central-DP noisy releases so far;
* the reply guard's bindings (site label <-> node) and each site's first-round
  size;
* the validation-selected round so far, its score and its global model;
* the training time so far;
* the ServerApp's random generators (Python's, NumPy's, torch's), which Flower's
  node sampling and its central-DP noise draw from: restored just before the
  remaining rounds start, a resumed ``dp = "central"`` run adds the same noise
  as the uninterrupted one.

Run-config ``resume-from = RUN_DIR`` (what ``oncofed resume RUN_DIR`` submits,
with the run's stored config) reopens that folder and its run store: rows of a
round after the saved one (the interrupted round) are dropped, the resumption is
recorded (``resumes`` table), and the strategy runs the remaining rounds with
their original round numbers, so sites draw the same round seeds. Under the
deterministic settings the final model is the uninterrupted run's, bit for bit.

What the sites keep between rounds (their DP-SGD ledgers, their FedBN layers)
a new Flower run's site contexts do not hold: each site reads it back from its
own disk (:mod:`client.state`), found by ``run-lineage``, the run id the server
sends with every message. Refused, with the reason: SecAgg+ runs, and a config
that differs from the run's.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, MetricRecord
from flwr.serverapp.strategy import Strategy

from oncofed.common.config import OncoFedConfig
from oncofed.common.errors import ConfigError, DataError
from oncofed.common.ml.weights import save_atomic
from oncofed.common.tracking.store import RUN_STORE, RunStore

RESUME = "resume.pt"
FORMAT = 1
MOMENTS = ("m_t", "v_t")  # server optimiser state (FedOpt family), per tensor
SCALARS = ("clipping_norm",)  # adaptive clipping (Flower's DP wrappers)
GUARD = ("label_of_node", "node_of_label", "first_size")
RNG_KEYS = {"python", "numpy", "torch"}


def _tensors(arrays: ArrayRecord | dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    items = arrays.items()
    return {
        k: torch.from_numpy(np.array(v.numpy() if isinstance(v, Array) else v))
        for k, v in items
    }


def _record(tensors: dict[str, torch.Tensor]) -> ArrayRecord:
    return ArrayRecord({k: Array(t.numpy()) for k, t in tensors.items()})


def random_state() -> dict[str, Any]:
    """Python's, NumPy's and torch's global generator states, as tensors and
    plain values (what ``torch.load(weights_only=True)`` reads back)."""
    version, internal, gauss = random.getstate()
    kind, keys_, pos, has_gauss, cached = np.random.get_state(legacy=True)
    keys_ = np.asarray(keys_)
    return {
        "python": [version, torch.tensor(internal, dtype=torch.int64), gauss],
        "numpy": [kind, torch.from_numpy(keys_.astype(np.int64)), int(pos),
                  int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }  # fmt: skip


def set_random_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(int(x) for x in internal.tolist()), gauss))
    kind, keys_, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys_.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])


def layers(strategy: Strategy) -> Iterator[Strategy]:
    """The strategy and every strategy it wraps (recording -> DP -> FedAdam)."""
    seen: Strategy | None = strategy
    while seen is not None:
        yield seen
        seen = getattr(seen, "inner", None) or getattr(seen, "strategy", None)


def strategy_state(strategy: Strategy) -> dict[str, Any]:
    """The allow-listed state of every layer, keyed ``<Class>.<attribute>``."""
    out: dict[str, Any] = {}
    for layer in layers(strategy):
        name = type(layer).__name__
        for attr in MOMENTS:
            value = getattr(layer, attr, None)
            if value:
                out[f"{name}.{attr}"] = _tensors(value)
        for attr in SCALARS:
            if hasattr(layer, attr):
                out[f"{name}.{attr}"] = float(getattr(layer, attr))
    return out


def restore_strategy(strategy: Strategy, state: dict[str, Any], path: Path) -> None:
    by_name = {type(layer).__name__: layer for layer in layers(strategy)}
    for key, value in state.items():
        name, _, attr = key.partition(".")
        if name not in by_name or attr not in (*MOMENTS, *SCALARS):
            raise DataError(
                path,
                f"strategy.{key}",
                f"state of a strategy this run does not have ({sorted(by_name)})",
                "resume with the run's own config (oncofed resume sends it)",
            )
        if attr in MOMENTS:
            value = {k: t.numpy() for k, t in value.items()}
        setattr(by_name[name], attr, value)


@dataclass
class RoundState:
    """What ``resume.pt`` holds (see the module docstring)."""

    round: int
    run_id: str
    config: dict[str, Any]
    arrays: dict[str, torch.Tensor]
    strategy: dict[str, Any]
    guard: dict[str, dict[str, Any]]
    releases: int
    best_round: int
    best_score: float
    best_arrays: dict[str, torch.Tensor] | None
    elapsed: float
    rng: dict[str, Any]  # the ServerApp's random generators (random_state)

    def global_arrays(self) -> ArrayRecord:
        return _record(self.arrays)

    def save(self, ckpt_dir: Path) -> None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        save_atomic({"format": FORMAT, **dataclasses.asdict(self)}, ckpt_dir / RESUME)


def read_state(path: Path) -> RoundState:
    """``resume.pt``, tensors and plain values only, checked field by field."""
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise DataError(
            path,
            "contents",
            f"not a readable resume state ({str(err).splitlines()[0][:120]})",
            "resume from a run folder the OncoFed server wrote",
        ) from None
    names = {f.name for f in dataclasses.fields(RoundState)}
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise DataError(
            path, "format", f"not resume format {FORMAT}", "resume with this version"
        )
    if set(raw) - {"format"} != names:
        raise DataError(
            path,
            "keys",
            f"expected {sorted(names)}, found {sorted(set(raw) - {'format'})}",
            "resume from a run folder the OncoFed server wrote",
        )
    state = RoundState(**{k: raw[k] for k in names})
    checks = {
        "round": isinstance(state.round, int) and state.round >= 0,
        "arrays": _all_finite(state.arrays),
        "best_arrays": state.best_arrays is None or _all_finite(state.best_arrays),
        "guard": isinstance(state.guard, dict) and set(state.guard) == set(GUARD),
        "config": isinstance(state.config, dict),
        "releases": isinstance(state.releases, int) and state.releases >= 0,
        "rng": isinstance(state.rng, dict) and set(state.rng) == RNG_KEYS,
    }
    for field, ok in checks.items():
        if not ok:
            raise DataError(
                path, field, "missing or malformed", "resume from an intact run folder"
            )
    return state


def _all_finite(tensors: Any) -> bool:
    return isinstance(tensors, dict) and all(
        isinstance(k, str)
        and isinstance(t, torch.Tensor)
        and (not t.is_floating_point() or bool(torch.isfinite(t).all()))
        for k, t in tensors.items()
    )


@dataclass
class Resumed:
    """An interrupted run reopened: its folder, run id, store and saved state."""

    run_dir: Path
    run_id: str
    store: RunStore
    state: RoundState


def refuse_unresumable(cfg: OncoFedConfig) -> None:
    """ConfigError if part of the run's state is out of the server's reach."""
    if cfg.privacy.secure_aggregation:
        raise ConfigError(
            "Run-config key 'resume-from': this run cannot be resumed: "
            "secure-aggregation (SecAgg+ runs do not resume yet). Fix: start it "
            "again as a new run."
        )


def reopen(
    cfg: OncoFedConfig, run_dir: Path, flower_run_id: str
) -> tuple[Resumed, OncoFedConfig]:
    """The run in ``run_dir`` (already checked to lie under the run root) and
    the config to continue it with (``resume-from`` cleared), its run store
    rewound to the saved round."""
    path = run_dir / "checkpoints" / RESUME
    if not path.is_file():
        raise ConfigError(
            f"Run-config key 'resume-from' = {str(run_dir)!r}: no "
            f"checkpoints/{RESUME} there (not an OncoFed run folder, or the run "
            "stopped before its first validation). Fix: start it again."
        )
    state = read_state(path)
    cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, resume_from=""))
    refuse_unresumable(cfg)
    differ = sorted(
        k
        for k, v in cfg.to_flat().items()
        if k not in ("run-dir",) and state.config.get(k) != v
    )
    if differ:
        raise ConfigError(
            f"Run-config key 'resume-from': the submitted config differs from the "
            f"run's in {differ}. Fix: resume with 'oncofed resume {run_dir}', "
            "which submits the run's own config."
        )
    store = RunStore(run_dir / RUN_STORE)
    runs = store.runs()
    if list(runs["run_id"]) != [state.run_id]:
        raise DataError(
            run_dir / RUN_STORE, "runs", f"does not hold run {state.run_id}", "resume "
            "from an intact run folder"
        )  # fmt: skip
    if runs["status"].iloc[0] == "finished":
        raise ConfigError(
            f"Run-config key 'resume-from' = {str(run_dir)!r}: that run finished; "
            "there is nothing to resume."
        )
    if state.round > cfg.federation.num_server_rounds:
        rounds = cfg.federation.num_server_rounds
        raise DataError(
            path, "round", f"round {state.round} of a {rounds}-round run",
            "resume from an intact run folder",
        )  # fmt: skip
    store.rewind(state.run_id, state.round, flower_run_id)
    return Resumed(run_dir, state.run_id, store, state), cfg


LOCK = ".serverapp.lock"


class RunLock:
    """An exclusive lock on a run folder for as long as a ServerApp serves it
    (``fcntl.flock`` on ``RUN_DIR/.serverapp.lock``; the OS drops it when the
    process dies, ``kill -9`` included). A resumed run takes it first, so an
    interrupted run's ServerApp that is in fact still alive (e.g. orphaned
    when its SuperLink was killed) and its resumption never write one run
    folder together."""

    def __init__(self, run_dir: Path) -> None:
        import fcntl

        self.path = run_dir / LOCK
        self._file = open(self.path, "a+")  # noqa: SIM115 - held until release
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "unknown"
            self._file.close()
            raise ConfigError(
                f"Run folder {run_dir} is being served by another ServerApp "
                f"(process {holder}). Fix: stop that run first (flwr stop RUN_ID; "
                "or end the process), then resume."
            ) from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(str(os.getpid()))
        self._file.flush()

    def release(self) -> None:
        if not self._file.closed:
            self._file.close()


class RoundEnd:
    """``evaluate_fn`` for ``Strategy.start``: the server's validation of round
    ``offset + r`` (round 0 of a resumed run was scored before), then
    ``resume.pt``."""

    def __init__(self, evaluator: Any, strategy: Any, resumed: Resumed | None) -> None:
        self.evaluator = evaluator
        self.strategy = strategy  # the RecordingStrategy
        self.offset = 0
        self.best_arrays: dict[str, torch.Tensor] | None = None
        self._rng: dict[str, Any] | None = None
        if resumed is not None:
            self._restore(resumed)

    def _restore(self, resumed: Resumed) -> None:
        state, ev = resumed.state, self.evaluator
        path = resumed.run_dir / "checkpoints" / RESUME
        self.offset = state.round
        restore_strategy(self.strategy, state.strategy, path)
        self.strategy.offset = state.round
        self.strategy.releases = state.releases
        for name in GUARD:
            setattr(self.strategy.guard, name, dict(state.guard[name]))
        ev.last_round = state.round
        ev.last_state = ev.state_of(state.global_arrays())
        ev.best_round, ev.best_score = state.best_round, state.best_score
        self.best_arrays = state.best_arrays
        if state.best_arrays is not None:
            ev.best_state = ev.state_of(_record(state.best_arrays))
        ev.shift_clock(state.elapsed)
        self._rng = state.rng

    def restore_random_state(self) -> None:
        """Just before the remaining rounds: the generators as they were when
        the last complete round ended (a no-op for a new run)."""
        if self._rng is not None:
            set_random_state(self._rng)

    def __call__(self, server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        if server_round == 0 and self.offset:
            return None  # scored, stored and checkpointed before the interruption
        rnd = server_round + self.offset
        metrics = self.evaluator(rnd, arrays)
        if self.evaluator.best_round == rnd:
            self.best_arrays = _tensors(arrays)
        guard = self.strategy.guard
        RoundState(
            round=rnd,
            run_id=self.evaluator.run_id,
            config=self.evaluator.cfg.to_flat(),
            arrays=_tensors(arrays),
            strategy=strategy_state(self.strategy),
            guard={name: dict(getattr(guard, name)) for name in GUARD},
            releases=int(self.strategy.releases),
            best_round=int(self.evaluator.best_round),
            best_score=float(self.evaluator.best_score),
            best_arrays=self.best_arrays,
            elapsed=self.evaluator.elapsed(),
            rng=random_state(),
        ).save(self.evaluator.ckpt_dir)
        return metrics
