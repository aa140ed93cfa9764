"""Test helpers: an independent frame decoder (struct + binascii) and a command driver."""
import json
import struct
from binascii import crc32

from fakeboard import FakeBoard
from cpl.instrument import Instrument


def make(**kw):
    b = FakeBoard(**kw)
    inst = Instrument(b)
    inst.boot()
    b.written.clear()
    return inst, b


def raw_frame(ftype, seq, ts, payload):
    head = b"\xc5\x5c" + struct.pack("<BBHHIQ", 1, ftype, len(payload), 0, seq, ts)
    body = head + payload
    return body + struct.pack("<I", crc32(body))


def command_frame(rid, op, args=None, seq=0):
    body = b"" if args is None else (args if isinstance(args, bytes) else json.dumps(args).encode())
    return raw_frame(0x10, seq, 0, struct.pack("<HBB", rid, op, 0) + body)


def decode(frame):
    """-> (type, seq, ts, payload); asserts the frame is well formed."""
    assert frame[0:2] == b"\xc5\x5c", frame
    ver, ftype, n, _res, seq, ts = struct.unpack_from("<BBHHIQ", frame, 2)
    assert ver == 1
    assert len(frame) == 24 + n, (len(frame), n)
    (crc,) = struct.unpack_from("<I", frame, 20 + n)
    assert crc == crc32(frame[:20 + n]), "bad CRC in device frame"
    return ftype, seq, ts, frame[20:20 + n]


def frames(b, ftype=None):
    out = [decode(f) for f in b.written]
    return [f for f in out if ftype is None or f[0] == ftype]


def events(b):
    out = []
    for f in frames(b, 4):
        code, sev = struct.unpack_from("<HH", f[3], 0)
        out.append((code, sev, str(f[3][4:], "utf-8")))
    return out


def run(inst, n=1):
    for _ in range(n):
        inst.step()


def cmd(inst, b, op, args=None, rid=7):
    """Send one COMMAND, run the loop, return (status, result dict or error text)."""
    b.written.clear()
    b.rx += command_frame(rid, op, args)
    run(inst, 2)
    passes = 0
    while not frames(b, 5) and inst.mono.homing() and passes < 100000:
        run(inst)  # HOME answers when homing ends, the main loop going on meanwhile
        passes += 1
    replies = frames(b, 5)
    assert len(replies) == 1, "expected one REPLY, got %d" % len(replies)
    p = replies[0][3]
    r_id, r_op, status = struct.unpack_from("<HBB", p, 0)
    assert r_id == rid, (r_id, rid)
    assert r_op == op, (r_op, op)
    body = str(p[4:], "utf-8")
    return status, (json.loads(body) if status == 0 else body)


def ok(inst, b, op, args=None):
    st, res = cmd(inst, b, op, args)
    assert st == 0, "opcode %d failed: %d %s" % (op, st, res)
    return res


def counts_frames(b):
    out = []
    for ftype, seq, ts, p in frames(b, 1):
        nb, flags, periods, pos, pem_ps, acq, span = struct.unpack_from("<HHIiIHH", p, 0)
        assert len(p) == 20 + 4 * nb
        counts = struct.unpack_from("<%dI" % nb, p, 20)
        out.append({"seq": seq, "ts": ts, "bins": nb, "flags": flags, "periods": periods,
                    "position": pos, "pem_period_ps": pem_ps, "acq_id": acq,
                    "bin_span": span, "counts": counts})
    return out


def expect_raises(exc, fn, *a):
    try:
        fn(*a)
    except exc as e:
        return e
    raise AssertionError("%s not raised" % exc.__name__)
