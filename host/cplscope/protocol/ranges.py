"""The argument ranges that protocol version 1 fixes for every board (docs/protocol.md,
"Opcodes"): a host checks a setting against them before it sends the command. The limits
that differ from board to board (the HV ceiling, the monochromator's range, the PEM) are
asked from the board itself: ``SET_LIMITS`` with no keys, ``MONO_CONFIG`` and ``PEM_CONFIG``
with none, ``IDENTIFY`` and ``STATUS``.
"""
from __future__ import annotations

import math

__all__ = ["A0_MAX_RAD", "COUNTING_BINS", "COUNT_RATE_LIMIT_CPS", "PEM_DRIVE_MAX", "PERIODS",
           "RP2_CLOCK_HZ", "RP2_MIN_BIN_CYCLES", "START_FRAMES"]

#: CONFIGURE counting ``bins``: the layouts every board of this project supports.
COUNTING_BINS = (2, 4, 8, 16, 32, 64)
#: CONFIGURE counting ``periods`` (PEM periods per frame), inclusive.
PERIODS = (1, 100_000)
#: START ``frames`` (a bounded acquisition), inclusive.
START_FRAMES = (1, 1_000_000_000)
#: SET_LIMITS ``max_count_rate_cps`` (the overload guard's count rate), inclusive, counts/s.
COUNT_RATE_LIMIT_CPS = (1.0, 1.0e9)
#: SET_RETARDATION ``a0_rad``: 0 < A0 ≤ π.
A0_MAX_RAD = math.pi
#: The PEM drive at full scale: A0 = drive / (λ · drive_per_rad_nm) with drive ≤ 1.
PEM_DRIVE_MAX = 1.0
#: On the rp2 board a phase bin lasts at least this many cycles of its system clock, else
#: START is refused (docs/protocol.md, "START").
RP2_MIN_BIN_CYCLES = 21
RP2_CLOCK_HZ = 125e6
