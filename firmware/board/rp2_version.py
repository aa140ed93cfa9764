"""The MicroPython releases the rp2 board supports.

MIN_VERSION is the oldest release on which the board is safe to stop. v1.28.0 is the first
whose soft reset stops DMA properly: before v1.27, `DMA.close()` (also run for every channel
at a soft reset) did not abort the channel, so the ADC's endless DMA went on writing into its
freed ring, which is heap in the next program; before v1.28 the soft reset removed the DMA
interrupt handler with the interrupt still enabled, so a channel finishing afterwards ran an
unhandled interrupt. `Rp2Board.shutdown()` (main.py's `finally`) stops every channel itself,
EN bit first, but a reset that never reaches it (a Ctrl-C during boot, an error inside the
shutdown) falls back on the port. Also used: v1.26's `machine.Timer(hard=)` and slice
assignment without a slice object. Older ports are refused at boot with a clear reason, on
the REPL and in STATUS (docs/firmware.md)."""

MIN_VERSION = (1, 28, 0)


def check(version) -> str:
    """'' if `version` (sys.implementation.version) is supported, else why not."""
    v = tuple(version[:3])
    if v >= MIN_VERSION:
        return ""
    return ("MicroPython %d.%d.%d is too old for the cplscope rp2 board: it needs v%d.%d.%d "
            "or later (earlier releases do not stop DMA safely at a soft reset); flash a "
            "current MicroPython release for your board" % (v + MIN_VERSION))
