"""A site's policy file: what it accepts, what it refuses, and that a broken
policy refuses everything rather than allow what it meant to forbid. (The
loopback deployment test runs a SuperNode with a policy end to end.)"""

from __future__ import annotations

import pytest

from oncofed.client.policy import PolicyRefusal, site_policy
from oncofed.common.config import from_run_config
from oncofed.common.errors import ConfigError

STRICT = """
refuse-paths = true
[rules]
dp = { allowed = ["sample"] }
dp-epsilon = { max = 3.0 }
min-report-n = { min = 10 }
strategy = { allowed = ["fedavg", "fedmedian"] }
"""


def _policy(tmp_path, text):
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return site_policy({"policy-file": str(path)})


def test_a_run_within_the_policy_is_accepted(tmp_path):
    policy = _policy(tmp_path, STRICT)
    policy.check(from_run_config({"dp": "sample", "dp-epsilon": 3.0}))
    assert len(policy.sha256) == 64


@pytest.mark.parametrize(
    "run,rule",
    [
        ({"dp": "off"}, "dp = 'off' is not one of ['sample']"),
        ({"dp": "sample", "dp-epsilon": 8.0}, "dp-epsilon = 8.0 is above 3.0"),
        ({"dp": "sample", "min-report-n": 5}, "min-report-n = 5 is below 10.0"),
        ({"dp": "sample", "strategy": "fedadam"}, "strategy = 'fedadam' is not one"),
        ({"dp": "sample", "pretrained": "/srv/x.pt"}, "pretrained is set"),
        ({"dp": "sample", "data-root": "/srv/data"}, "data-root is set"),
    ],
)
def test_a_run_that_breaks_a_rule_is_refused_naming_it(tmp_path, run, rule):
    policy = _policy(tmp_path, STRICT)
    with pytest.raises(PolicyRefusal, match="") as refused:
        policy.check(from_run_config(run))
    assert rule in str(refused.value)


@pytest.mark.parametrize(
    "text,what",
    [
        ("[rules]\ndp-epsilom = { max = 3 }", "unknown run-config key 'dp-epsilom'"),
        ("[rules]\ndp = 'sample'", "rule 'dp'"),
        ("[rules]\ndp-epsilon = { maximum = 3 }", "rule 'dp-epsilon'"),
        ("[rules]\ndp-epsilon = { max = 'three' }", "max = 'three'"),
        ("refuse-path = true", "unknown entries"),
        ("[rules\n", "not TOML"),
    ],
)
def test_a_broken_policy_file_is_an_error_naming_the_file(tmp_path, text, what):
    with pytest.raises(ConfigError, match="site policy") as err:
        _policy(tmp_path, text)
    assert what in str(err.value) and "policy.toml" in str(err.value)


def test_a_missing_policy_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot be read"):
        site_policy({"policy-file": str(tmp_path / "nope.toml")})
    assert site_policy({"data-path": "/x"}) is None


def test_an_edited_policy_is_read_again(tmp_path):
    first = _policy(tmp_path, STRICT)
    import os
    import time

    path = tmp_path / "policy.toml"
    path.write_text(STRICT.replace("3.0", "1.0"))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    second = site_policy({"policy-file": str(path)})
    assert second.sha256 != first.sha256
    with pytest.raises(PolicyRefusal, match="above 1.0"):
        second.check(from_run_config({"dp": "sample", "dp-epsilon": 3.0}))


def test_a_site_can_refuse_a_harmonisation_method(tmp_path):
    """A hospital that will not spend its CPU on CycleGAN allows the other
    methods only; the run that asks for it is refused by name."""
    policy = _policy(
        tmp_path,
        '[rules]\nharmonise = { allowed = ["none", "histogram", "zscore", "fedbn"] }\n',
    )
    shift = {"ct-roi": "liver", "dataset": "synthetic_scanner_shift"}
    policy.check(from_run_config({**shift, "harmonise": "histogram"}))
    with pytest.raises(PolicyRefusal, match="harmonise = 'cyclegan'"):
        policy.check(from_run_config({**shift, "harmonise": "cyclegan"}))
