"""A hospital's own policy on what runs it takes part in.

The site operator points node config ``policy-file`` at a TOML file::

    # which runs this hospital joins
    refuse-paths = true                # no data-root / pretrained from the server
    [rules]
    dp = { allowed = ["sample"] }              # example-level DP required
    dp-epsilon = { max = 3.0 }
    min-report-n = { min = 10 }
    strategy = { allowed = ["fedavg", "fedmedian", "fedtrimmedavg"] }
    task = { allowed = ["classification", "survival"] }

Every rule names a run-config key (``oncofed config`` lists them) and holds
``allowed`` (values), ``min`` and/or ``max`` (numbers). The ClientApp checks the
config of every message (the run's, or the sweep entry's) before anything else and
refuses a run that breaks a rule: the reply is an error with code
:data:`oncofed.common.keys.SITE_POLICY_REFUSED` and the broken rule (a run-config
key and the policy's bound, nothing of the site's data); the site's log says the
same. Every reply carries the policy's SHA-256 (``policy-sha256`` in the ``site``
record), so the server records which version each site runs.

A policy file that cannot be read or names an unknown key makes the site refuse
every run with a configuration error naming the file and the fix: a typo in a
policy must not quietly allow what it meant to forbid.
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from oncofed.common.config import KEYS, OncoFedConfig
from oncofed.common.errors import ConfigError
from oncofed.common.registry import suggestion

POLICY_FILE = "policy-file"  # node config key
SITE_PATH_KEYS = ("data-root", "pretrained")  # paths a server could point a site at
RULE_FIELDS = {"allowed", "min", "max"}
MAX_POLICY_BYTES = 64_000


class PolicyRefusal(Exception):
    """The run breaks a rule; the message names the key and the bound."""


@dataclass(frozen=True)
class Policy:
    path: str
    sha256: str
    rules: dict[str, dict[str, Any]]
    refuse_paths: bool

    def check(self, cfg: OncoFedConfig) -> None:
        """Raise :class:`PolicyRefusal` at the first rule ``cfg`` breaks."""
        flat = cfg.to_flat()
        if self.refuse_paths:
            for key in SITE_PATH_KEYS:
                if flat[key]:
                    raise PolicyRefusal(
                        f"{key} is set; this site takes no path from a run"
                    )
        for key, rule in self.rules.items():
            value = flat[key]
            if "allowed" in rule and value not in rule["allowed"]:
                raise PolicyRefusal(
                    f"{key} = {value!r} is not one of {rule['allowed']}"
                )
            if "min" in rule and float(value) < rule["min"]:
                raise PolicyRefusal(f"{key} = {value!r} is below {rule['min']}")
            if "max" in rule and float(value) > rule["max"]:
                raise PolicyRefusal(f"{key} = {value!r} is above {rule['max']}")


def _fail(path: str, what: str, fix: str) -> ConfigError:
    return ConfigError(f"site policy {path}: {what}. Fix: {fix}.")


def _rule(path: str, key: str, rule: Any) -> dict[str, Any]:
    if key not in KEYS:
        raise _fail(
            path, f"unknown run-config key '{key}'.{suggestion(key, KEYS)}",
            "name keys as 'oncofed config' lists them",
        )  # fmt: skip
    if not isinstance(rule, dict) or not rule or set(rule) - RULE_FIELDS:
        raise _fail(
            path, f"rule '{key}' = {rule!r}",
            "write key = { allowed = [...] } and/or { min = x, max = y }",
        )  # fmt: skip
    out = dict(rule)
    if "allowed" in out and not isinstance(out["allowed"], list):
        raise _fail(path, f"rule '{key}': allowed is not a list", "allowed = [a, b]")
    for bound in ("min", "max"):
        if bound in out:
            v = out[bound]
            if isinstance(v, bool) or not isinstance(v, int | float) or math.isnan(v):
                raise _fail(
                    path, f"rule '{key}': {bound} = {v!r}", f"{bound} = a number"
                )
            out[bound] = float(v)
    return out


@lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int) -> Policy:
    raw = Path(path).read_bytes()
    if len(raw) > MAX_POLICY_BYTES:
        raise _fail(path, f"{len(raw)} bytes", "a policy is a short TOML file")
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise _fail(path, f"not TOML ({err})", "see docs/deployment.md") from None
    unknown = set(doc) - {"rules", "refuse-paths"}
    if unknown:
        raise _fail(
            path, f"unknown entries {sorted(unknown)}", "use [rules] and refuse-paths"
        )
    rules = doc.get("rules", {})
    if not isinstance(rules, dict):
        raise _fail(path, "[rules] is not a table", "write [rules] then key = {...}")
    refuse = doc.get("refuse-paths", False)
    if not isinstance(refuse, bool):
        raise _fail(path, f"refuse-paths = {refuse!r}", "refuse-paths = true or false")
    return Policy(
        path=path,
        sha256=hashlib.sha256(raw).hexdigest(),
        rules={k: _rule(path, k, r) for k, r in rules.items()},
        refuse_paths=refuse,
    )


def site_policy(node_config: dict) -> Policy | None:
    """This site's policy (node config ``policy-file``), or None."""
    if POLICY_FILE not in node_config:
        return None
    path = Path(str(node_config[POLICY_FILE])).expanduser()
    try:
        stat = path.stat()
    except OSError as err:
        raise _fail(
            str(path), f"cannot be read ({err.strerror})", "check the path"
        ) from None
    return _load(str(path), stat.st_mtime_ns)
