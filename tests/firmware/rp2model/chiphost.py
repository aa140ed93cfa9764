"""The host's end of the chip model's USB, for the scripts that run the whole firmware on it:
run the main loop (the guard's timer firing before each pass) and read what the board sent
(``got``), send a command and take its one reply."""
import json
import struct

import machine

from usb.device import core
from cpl import protocol as P
from helpers import command_frame, decode

got = []  # the frames the host read, decoded: (type, seq, timestamp, payload)


def pump(inst, n=4):
    """``n`` passes of the main loop, each followed by the host's USB polling; then the host
    reads what arrived into ``got``."""
    for _ in range(n):
        machine.Timer.fire_all()   # the guard's timer runs meanwhile (its heartbeat)
        inst.step()
        core.host_poll()
    transfers, _ = core.host_read()
    for t in transfers:
        got.append(decode(t))


def command(inst, op, args=None, rid=1):
    """Send one COMMAND; (status, the result dict or the error text) of its one REPLY."""
    del got[:]
    core.host_write(command_frame(rid, op, args))
    pump(inst)
    replies = [f for f in got if f[0] == P.REPLY]
    assert len(replies) == 1, [f[0] for f in got]
    r_id, r_op, status = struct.unpack_from("<HBB", replies[0][3], 0)
    assert (r_id, r_op) == (rid, op)
    body = str(replies[0][3][4:], "utf-8")
    return status, (json.loads(body) if status == 0 else body)


def ok(inst, op, args=None):
    st, r = command(inst, op, args)
    assert st == 0, (op, st, r)
    return r
