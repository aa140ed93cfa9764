"""Hooks that put the rp2 board code (firmware/board/rp2*.py) on the chip model for a test,
in the MicroPython unix port: the board's clock, its viper register pair, and its DMA buffers
registered with the model."""
import machine
import rp2


class Clock:
    """Board time in µs that moves only when a test sets ``Clock.us``, or by ``Clock.step`` µs
    at every reading (so that a ``wait()`` ends without real waiting)."""
    us = 0
    step = 0

    @staticmethod
    def ticks_us():
        Clock.us += Clock.step
        return Clock.us & 0x3FFFFFFF

    @staticmethod
    def ticks_ms():
        return (Clock.us // 1000) & 0x3FFFFFFF

    @staticmethod
    def elapse(us, tick_us=500):
        """Let ``us`` of board time pass with the board's timers firing every ``tick_us``
        (the guard's period), as on the chip: a jump of the clock alone is a timer IRQ
        held off that long, which the guard reports."""
        while us > 0:
            step = tick_us if us > tick_us else us
            Clock.us += step
            us -= step
            machine.Timer.fire_all()

    @staticmethod
    def ticks_diff(a, b):
        return ((a - b + 0x20000000) & 0x3FFFFFFF) - 0x20000000


def install(R, store2=None, clock=True):
    """Patch the board module ``R`` (board.rp2): the model's clock (unless ``clock`` is
    False), ``store2`` (default the model's), ``load2``, ``load1`` and ``store_halves``, and every DMA buffer it
    allocates through ``_aligned`` and ``_two_rings`` made known to the model, which lets DMA
    touch only those."""
    if clock:
        R.time = Clock
    R.H.store2 = store2 if store2 is not None else rp2.store2
    R.H.load2 = rp2.load2
    R.H.load1 = rp2.load1
    R.H.store_halves = rp2.store_halves
    inner = R._aligned

    def aligned(*a):
        buf, first = inner(*a)
        rp2.allow(buf)
        return buf, first

    R._aligned = aligned
    inner2 = R._two_rings

    def two_rings(*a):
        out = inner2(*a)
        rp2.allow(out[0])
        return out

    R._two_rings = two_rings
