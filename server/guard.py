"""Every site reply screened before it is recorded or aggregated.

A hospital's reply is untrusted input. :class:`ReplyGuard` checks each one and
hands on only those that pass; each reply it turns away is written to the run
store (``reply_events``: run, round, site, node, phase, outcome, reason) and the
round goes on with the rest. A reply is rejected when:

* it is not shaped like a site's reply: one ``metrics`` MetricRecord and, for
  training, one ``arrays`` ArrayRecord (none for evaluation);
* its site label is not 1-32 letters, digits, ``-`` or ``_``, or names a site
  another connected node already answers as, or its node answered under another
  label before (identity: the authenticated Flower node plus its label);
* a metric is not a finite number (NaN is allowed: a withheld metric), or its
  metric keys differ from those of the round's other replies;
* ``num-examples`` is not a whole number from 1 to ``max-site-examples``, or, in
  training, exceeds what the site reported at its first round;
* its weights lack a tensor of the global model, add one, change a shape or dtype,
  or hold NaN/Inf;
* its update (weights minus the global model sent) has an L2 norm above
  ``update-norm-bound`` x the round's lower-median update norm; with
  ``update-clip`` such an update is scaled down to the bound instead.

Error replies (a site failed or refused) and nodes that were asked but never
answered (crashed, disconnected, slower than ``round-timeout``) are recorded the
same way with outcome ``failed``. Nothing here raises on a reply: one bad hospital never
ends a run.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from flwr.app import Array, ArrayRecord, Message

from oncofed.common import keys
from oncofed.common.config import FederationConfig
from oncofed.common.tracking.store import RunStore

log = logging.getLogger(__name__)

LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
REJECTED = "rejected"
FAILED = "failed"
CLIPPED = "clipped"
_PRINTABLE = re.compile(r"[^ -~]")


class Rejected(Exception):
    """One reply turned away; the message is the reason recorded."""


def _clean_reason(text: str) -> str:
    """A reason from a reply, safe to store and show: printable ASCII, short."""
    return _PRINTABLE.sub("?", text)[:200]


@dataclass
class Screened:
    """A reply that passed, with the site it is recorded under."""

    msg: Message
    site: str
    node: str
    norm: float = math.nan  # L2 norm of its update (train replies)
    policy: str = ""  # SHA-256 of the site's policy file, if it runs one


@dataclass
class ReplyGuard:
    """Screens replies for one model's run (see the module docstring)."""

    store: RunStore
    run_id: str
    norm_bound: float = 10.0
    clip: bool = False
    max_examples: int = 100_000
    structural: bool = True  # False for XGBoost: its byte blob grows each round
    masked: bool = False  # SecAgg+: train replies carry no weights in the clear
    connected: Callable[[], Iterable[int]] = lambda: ()
    label_of_node: dict[str, str] = field(default_factory=dict)
    node_of_label: dict[str, str] = field(default_factory=dict)
    first_size: dict[str, int] = field(default_factory=dict)
    reference: dict[str, np.ndarray] | None = None
    asked: dict[tuple[int, str], set[str]] = field(default_factory=dict)

    @classmethod
    def from_config(
        cls, cfg: FederationConfig, store: RunStore, run_id: str, structural: bool
    ) -> ReplyGuard:
        return cls(
            store,
            run_id,
            norm_bound=cfg.update_norm_bound,
            clip=cfg.update_clip,
            max_examples=cfg.max_site_examples,
            structural=structural,
        )

    def sent(self, rnd: int, phase: str, messages: list[Message]) -> None:
        """The nodes asked this round: one that never answers is recorded."""
        self.asked[(rnd, phase)] = {str(m.metadata.dst_node_id) for m in messages}

    def expect(self, arrays: ArrayRecord) -> None:
        """The global model just sent: what train replies are compared with."""
        if self.structural:
            self.reference = {k: np.asarray(v.numpy()) for k, v in arrays.items()}

    # -- the screen -------------------------------------------------------------

    def screen(
        self, rnd: int, phase: str, replies: Iterable[Message]
    ) -> list[Screened]:
        """The replies that pass, in input order; the others recorded."""
        passed: list[Screened] = []
        replies = list(replies)
        answered = {str(m.metadata.src_node_id) for m in replies}
        for node in sorted(self.asked.pop((rnd, phase), set()) - answered):
            site = self.label_of_node.get(node, f"node-{node}")
            self.record_event(
                rnd, phase, site, node, FAILED,
                "no reply (crashed, disconnected, or slower than round-timeout)",
            )  # fmt: skip
        for msg in replies:
            node = str(msg.metadata.src_node_id)
            if msg.has_error():
                site = self.label_of_node.get(node, f"node-{node}")
                self.record_event(
                    rnd, phase, site, node, FAILED, self._error_reason(msg)
                )
                continue
            try:
                site = self._identify(msg, node)
            except Rejected as why:  # recorded under the node's own name
                self.record_event(
                    rnd, phase, self._claimed(node), node, REJECTED, str(why)
                )
                continue
            try:
                self._check_metrics(msg, site, phase)
                norm = self._check_arrays(msg, phase)
            except Rejected as why:
                self.record_event(rnd, phase, site, node, REJECTED, str(why))
                continue
            passed.append(Screened(msg, site, node, norm, _policy(msg)))
        passed = self._one_node_per_label(rnd, phase, passed)
        passed = self._consistent_keys(rnd, phase, passed)
        if phase == "train":  # the phase whose replies carry weights
            passed = self._bound_norms(rnd, phase, passed)
            for s in passed:  # the size a site may not exceed later
                n = int(_metrics(s.msg)[keys.NUM_EXAMPLES])  # type: ignore[arg-type]
                self.first_size.setdefault(s.site, n)
        for s in passed:  # bind label and node once the reply is accepted
            self.label_of_node[s.node] = s.site
            self.node_of_label[s.site] = s.node
        return passed

    def record_event(
        self, rnd: int, phase: str, site: str, node: str, outcome: str, reason: str
    ) -> None:
        log.warning(
            "Round %d %s: %s (node %s) %s: %s", rnd, phase, site, node, outcome, reason
        )
        self.store.log_reply_event(self.run_id, rnd, site, node, phase, outcome, reason)

    @staticmethod
    def _error_reason(msg: Message) -> str:
        if msg.error.code == keys.SITE_POLICY_REFUSED:
            return _clean_reason(f"refused by site policy: {msg.error.reason}")
        return _clean_reason(f"error {msg.error.code}: {msg.error.reason}")

    # -- identity ---------------------------------------------------------------

    def _claimed(self, node: str) -> str:
        """The label a rejected reply is recorded under: its node's own label when
        known (never the one it claimed), else ``node-<id>``."""
        return self.label_of_node.get(node, f"node-{node}")

    def _identify(self, msg: Message, node: str) -> str:
        record = msg.content.config_records.get(keys.SITE)
        if record is not None and set(record) - {keys.SITE_ID, keys.POLICY_SHA256}:
            raise Rejected(f"the '{keys.SITE}' record holds keys other than a label")
        policy = record.get(keys.POLICY_SHA256, "") if record is not None else ""
        if policy and (not isinstance(policy, str) or not SHA256.match(policy)):
            raise Rejected(f"{keys.POLICY_SHA256} is not a SHA-256 hex digest")
        if record is None or keys.SITE_ID not in record:
            label = f"node-{node}"
        else:
            value = record[keys.SITE_ID]
            if not isinstance(value, str) or not LABEL.match(value):
                raise Rejected(
                    "site label is not 1-32 letters, digits, '-' or '_' "
                    f"({_clean_reason(str(value))[:40]!r})"
                )
            label = value
        before = self.label_of_node.get(node)
        if before is not None and before != label:
            raise Rejected(f"node {node} answered as '{before}' before, now '{label}'")
        owner = self.node_of_label.get(label)
        if owner is not None and owner != node:
            if int(owner) in set(self.connected()):
                raise Rejected(
                    f"label '{label}' belongs to node {owner}, still connected"
                )
            log.warning("site '%s' moved from node %s to node %s", label, owner, node)
        return label

    def _one_node_per_label(
        self, rnd: int, phase: str, passed: list[Screened]
    ) -> list[Screened]:
        """Two nodes answering as one site in a round: the node that site was
        bound to keeps it; with no such node, neither is taken (arrival order
        must not decide who a site is)."""
        nodes: dict[str, set[str]] = {}
        for s in passed:
            nodes.setdefault(s.site, set()).add(s.node)
        kept = []
        for s in passed:
            claimants = nodes[s.site]
            owner = self.node_of_label.get(s.site)
            if len(claimants) == 1 or s.node == owner:
                kept.append(s)
                continue
            others = ", ".join(sorted(claimants - {s.node}))
            self.record_event(
                rnd,
                phase,
                self._claimed(s.node),
                s.node,
                REJECTED,
                f"label '{s.site}' also claimed by node(s) {others} this round",
            )
        return kept

    # -- metrics ----------------------------------------------------------------

    def _check_metrics(self, msg: Message, site: str, phase: str) -> None:
        records = msg.content.metric_records
        if list(records) != [keys.METRICS]:
            raise Rejected(
                f"expected one MetricRecord '{keys.METRICS}', got {sorted(records)}"
            )
        metrics = records[keys.METRICS]
        for k, v in metrics.items():
            if isinstance(v, list) or isinstance(v, bool):
                raise Rejected(f"metric '{_clean_reason(k)[:40]}' is not a number")
            if math.isinf(float(v)):
                raise Rejected(f"metric '{_clean_reason(k)[:40]}' is infinite")
        n = metrics.get(keys.NUM_EXAMPLES)
        if n is None:
            raise Rejected(f"no '{keys.NUM_EXAMPLES}'")
        n = float(n)  # type: ignore[arg-type]
        if math.isnan(n) or n != int(n) or not 1 <= n <= self.max_examples:
            raise Rejected(
                f"{keys.NUM_EXAMPLES} = {n:g} is not a whole number from 1 to "
                f"max-site-examples ({self.max_examples})"
            )
        first = self.first_size.get(site)
        if phase == "train" and first is not None and n > first:
            raise Rejected(
                f"{keys.NUM_EXAMPLES} = {n:g} exceeds the {first} training cases "
                "this site reported at its first round"
            )

    def _consistent_keys(
        self, rnd: int, phase: str, passed: list[Screened]
    ) -> list[Screened]:
        """Flower aggregates only replies with the same metric keys: the most
        common key set wins (ties: the first site's by name); the others are
        rejected instead of ending the round."""
        if not passed:
            return passed
        sets = [frozenset(_metrics(s.msg).keys()) for s in passed]
        counts = Counter(sets)
        top = max(counts.values())
        winner = next(
            k
            for s, k in sorted(zip(passed, sets, strict=True), key=lambda p: p[0].site)
            if counts[k] == top
        )
        kept = []
        for s, k in zip(passed, sets, strict=True):
            if k == winner:
                kept.append(s)
                continue
            extra, missing = sorted(k - winner), sorted(winner - k)
            self.record_event(
                rnd,
                phase,
                s.site,
                s.node,
                REJECTED,
                _clean_reason(
                    f"metric keys differ from the other sites' (extra {extra[:3]}, "
                    f"missing {missing[:3]})"
                ),
            )
        return kept

    # -- weights ----------------------------------------------------------------

    def _check_arrays(self, msg: Message, phase: str) -> float:
        records = msg.content.array_records
        if phase != "train":
            if records:
                raise Rejected("an evaluation reply carries weights")
            return math.nan
        if self.masked and not records:
            return math.nan  # SecAgg+: the update went into the masked sum
        if list(records) != [keys.ARRAYS]:
            raise Rejected(
                f"expected one ArrayRecord '{keys.ARRAYS}', got {sorted(records)}"
            )
        arrays = records[keys.ARRAYS]
        if not self.structural or self.reference is None:
            return math.nan
        ref = self.reference
        missing = sorted(set(ref) - set(arrays))
        extra = sorted(set(arrays) - set(ref))
        if missing:
            raise Rejected(
                f"weights lack {len(missing)} tensor(s), e.g. '{missing[0]}'"
            )
        if extra:
            raise Rejected(
                f"weights add {len(extra)} tensor(s) the model lacks, e.g. "
                f"'{_clean_reason(extra[0])[:60]}'"
            )
        squares = 0.0
        for name, want in ref.items():
            got: Array = arrays[name]
            if tuple(got.shape) != want.shape:
                shape = tuple(got.shape)
                raise Rejected(
                    f"tensor '{name}' has shape {shape}, the model {want.shape}"
                )
            if not _same_kind(got.dtype, want.dtype):
                raise Rejected(
                    f"tensor '{name}' has dtype {got.dtype}, the model {want.dtype}"
                )
            value = np.asarray(got.numpy())
            if not np.isfinite(value).all():
                raise Rejected(f"tensor '{name}' holds NaN or Inf")
            squares += float(np.sum((value.astype(np.float64) - want) ** 2))
        return math.sqrt(squares)

    def _bound_norms(
        self, rnd: int, phase: str, passed: list[Screened]
    ) -> list[Screened]:
        """Updates above ``norm_bound`` x the round's lower-median norm: rejected,
        or (``clip``) scaled down onto the bound."""
        norms = sorted(s.norm for s in passed if not math.isnan(s.norm))
        if not norms or self.norm_bound <= 0 or self.reference is None:
            return passed
        bound = self.norm_bound * norms[(len(norms) - 1) // 2]
        kept = []
        for s in passed:
            if math.isnan(s.norm) or s.norm <= bound:
                kept.append(s)
                continue
            what = (
                f"update norm {s.norm:.3g} above {self.norm_bound:g} x the round's "
                f"median ({bound:.3g})"
            )
            if not self.clip:
                self.record_event(rnd, phase, s.site, s.node, REJECTED, what)
                continue
            self.record_event(rnd, phase, s.site, s.node, CLIPPED, what + ": clipped")
            self._clip(s, bound)
            kept.append(s)
        return kept

    def _clip(self, s: Screened, bound: float) -> None:
        assert self.reference is not None
        scale = bound / s.norm
        arrays = s.msg.content.array_records[keys.ARRAYS]
        clipped = ArrayRecord()
        for name, want in self.reference.items():
            value = np.asarray(arrays[name].numpy())
            new = want + (value.astype(np.float64) - want) * scale
            clipped[name] = Array(new.astype(value.dtype))
        s.msg.content[keys.ARRAYS] = clipped
        s.norm = bound


def _same_kind(got: str, want: np.dtype) -> bool:
    """Floating tensors may differ in width (a server optimiser such as FedAdam
    can send float64 where the sites train float32); anything else must match."""
    try:
        dtype = np.dtype(got)
    except TypeError:
        return False
    if want.kind == "f":
        return dtype.kind == "f" and dtype.itemsize <= 8
    return dtype == want


def _policy(msg: Message) -> str:
    record = msg.content.config_records.get(keys.SITE)
    return str(record.get(keys.POLICY_SHA256, "")) if record is not None else ""


def _metrics(msg: Message):
    return msg.content.metric_records[keys.METRICS]
