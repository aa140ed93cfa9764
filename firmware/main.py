"""Firmware entry point: pick the board support for this platform and run the instrument.

On the Pico this runs at boot. In the unix port: `micropython firmware/main.py [ADDRESS]`,
where ADDRESS (or $CPLSCOPE_SIM_LINK) is the sim hub's socket (docs/sim-link.md).
"""
import sys


def make_board():
    if sys.platform == "rp2":
        from board.rp2 import Rp2Board
        return Rp2Board()
    if sys.platform in ("linux", "darwin", "unix"):
        from board.sim import Board
        return Board.from_argv(sys.argv)
    raise RuntimeError("no board support for platform %r" % sys.platform)


def main() -> None:
    from cpl.instrument import Instrument
    Instrument(make_board()).run()


if __name__ == "__main__":
    main()
