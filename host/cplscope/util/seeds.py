"""Seeds of the simulated instrument's noise."""
from __future__ import annotations

import secrets

__all__ = ["fresh_seed"]

#: Drawn seeds are below this: short enough to type back as ``--seed N``, and two runs share
#: one with a probability of 1e-9.
SEED_RANGE = 1_000_000_000


def fresh_seed() -> int:
    """A seed drawn from the operating system's entropy, 0 ≤ seed < 10⁹: every run that does
    not ask for a seed gets its own noise."""
    return secrets.randbelow(SEED_RANGE)
