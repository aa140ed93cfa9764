"""Firmware entry point: pick the board support for this platform and run the instrument.

On the Pico this runs at boot, unless the board is to start in maintenance mode
(board/rp2_boot.py). However the firmware stops (Ctrl-C on the REPL, a soft reset, an
error), `finally` leaves the board safe: HV off, shutter closed, guards, ADC and DMA stopped.

In the unix port: `micropython firmware/main.py [ADDRESS]`, where ADDRESS (or
$CPLSCOPE_SIM_LINK) is the sim hub's socket (docs/sim-link.md).
"""
import gc
import sys

import micropython


def make_board():
    if sys.platform == "rp2":
        from board.rp2 import Rp2Board
        return Rp2Board()
    if sys.platform in ("linux", "darwin", "unix"):
        from board.sim import Board
        return Board.from_argv(sys.argv)
    raise RuntimeError("no board support for platform %r" % sys.platform)


def maintenance() -> str:
    """Why the firmware must not start (the board is to be in maintenance mode), or ""."""
    if sys.platform != "rp2":
        return ""
    from board import rp2_boot
    # mpremote's Ctrl-C may arrive right now (it connects as the board restarts into
    # maintenance): it must not stop the check between seeing the flag and removing it
    micropython.kbd_intr(-1)
    try:
        why = rp2_boot.maintenance_reason()
        if why:
            rp2_boot.safe_outputs()
    finally:
        micropython.kbd_intr(3)
    return why


def stop_safely(board) -> None:
    """board.shutdown(), which a second Ctrl-C must not cut short: Ctrl-C is ignored until it
    is done, and a shutdown interrupted before that is run again."""
    kbd = getattr(micropython, "kbd_intr", None)
    if kbd is not None:
        kbd(-1)
    try:
        for _ in range(3):
            try:
                board.shutdown()
                break
            except KeyboardInterrupt:
                pass
    finally:
        if kbd is not None:
            kbd(3)
    if sys.platform == "rp2":
        print("cplscope: firmware stopped; HV off, shutter closed")


def main() -> None:
    why = maintenance()
    if why:
        print("cplscope: maintenance mode (%s). The firmware is not started and the REPL is "
              "free: `cplscope flash` updates the board, machine.reset() starts the "
              "firmware." % why)
        return
    from cpl.instrument import Instrument
    board = None
    try:
        # the board's rings (32 kB in one piece) from a heap without the garbage of compiling
        # main.py and of the imports
        gc.collect()
        board = make_board()
        gc.collect()  # likewise the instrument's buffers (16 kB in one piece)
        Instrument(board).run()
    finally:
        if board is not None:
            stop_safely(board)


if __name__ == "__main__":
    main()
