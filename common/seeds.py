"""Seeds derived from names: the same in every process, distinct for every name.

Python's ``hash()`` of a string changes between processes, and a character sum
(``sum(map(ord, name))``) gives anagrams such as ``site-01`` and ``site-10`` the
same value. These helpers use the whole name's bytes instead.
"""

from __future__ import annotations

import numpy as np


def stable_int(text: str) -> int:
    """The whole name as one integer: the same in every process, and distinct for
    distinct names (also for names that share a prefix or are anagrams)."""
    return int.from_bytes(text.encode(), "little")


def round_seed(seed: int, server_round: int, site: str) -> int:
    """The seed a site trains round ``server_round`` with: a 31-bit integer mixed
    from the run seed, the round and the site's whole name by NumPy's
    ``SeedSequence``."""
    mixed = np.random.SeedSequence([seed, server_round, stable_int(site)])
    return int(mixed.generate_state(1, dtype=np.uint32)[0] >> 1)
