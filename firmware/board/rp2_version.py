"""The MicroPython releases the rp2 board supports.

MIN_VERSION is the oldest release whose API the board code uses: v1.26.0 is the first whose
rp2 `machine.Timer` takes `hard=` (the ADC level guard is a hard timer IRQ), and from
v1.26 a slice assignment no longer allocates a slice object (the streaming path copies
frames with them). Older ports are refused at boot with a clear reason, on the REPL and in
STATUS, instead of failing later with a TypeError in the middle of a START."""

MIN_VERSION = (1, 26, 0)


def check(version) -> str:
    """'' if `version` (sys.implementation.version) is supported, else why not."""
    v = tuple(version[:3])
    if v >= MIN_VERSION:
        return ""
    return ("MicroPython %d.%d.%d is too old for the cplscope rp2 board: it needs v%d.%d.%d "
            "or later; flash a current MicroPython release for your board"
            % (v + MIN_VERSION))
