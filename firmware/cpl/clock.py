"""Extends the board's wrapping µs tick counter to the 64-bit device time of the frames.

Values stay small ints (no heap allocation on a 32-bit port): the time is kept as
`wraps * TICKS_PERIOD + ticks` and packed from its parts.
"""
import struct

from board.base import TICKS_HALF, TICKS_MASK, TICKS_PERIOD


class Clock:
    def __init__(self, board) -> None:
        self._board = board
        self.wraps = 0
        self.last = board.ticks_us()

    def update(self) -> int:
        """Read the board clock; call at least once per TICKS_PERIOD µs (≈ 17.9 min).
        Returns the current wrapped ticks (µs)."""
        t = self._board.ticks_us()
        if t < self.last:
            self.wraps += 1
        self.last = t
        return t

    def _wraps_of(self, ticks: int) -> int:
        # `ticks` lies within half a period of the last update, before or after it
        if (ticks - self.last) & TICKS_MASK < TICKS_HALF:
            return self.wraps + 1 if ticks < self.last else self.wraps
        return self.wraps - 1 if ticks > self.last else self.wraps

    def pack_into(self, buf, offset: int, ticks: int) -> None:
        """Write the u64 device time (µs) of `ticks`, a stamp within half a period
        (≈ 9 min) of the last update, at buf[offset:]."""
        w = self._wraps_of(ticks)
        struct.pack_into("<HHI", buf, offset, ticks & 0xFFFF,
                         (ticks >> 16) | ((w & 3) << 14), w >> 2)

    def now_us(self) -> int:
        """Device time in µs since boot (may be a long int: not for the streaming path)."""
        return self.wraps * TICKS_PERIOD + self.last

    def elapsed_us(self, since: int) -> int:
        """µs from the wrapped stamp `since` to the last update (valid up to one period)."""
        return (self.last - since) & TICKS_MASK
