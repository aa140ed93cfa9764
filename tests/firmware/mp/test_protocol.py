"""Protocol encode/decode against tests/vectors/frames.json, and stream reassembly."""
import json
import struct

from cpl import protocol as P
from cpl.clock import Clock
from helpers import expect_raises, decode

VECTORS = None


def vectors():
    global VECTORS
    if VECTORS is None:
        import os
        base = os.getenv("CPL_VECTORS") or "../../vectors/frames.json"
        with open(base) as f:
            VECTORS = json.load(f)["vectors"]
    return VECTORS


def vec(name):
    for v in vectors():
        if v["name"] == name:
            return v
    raise KeyError(name)


def unhex(s):
    return bytes.fromhex(s)


def read_all(data, chunk=7, now=0):
    r = P.Reader()
    out = []
    i = 0
    while i < len(data) or True:
        if i < len(data):
            sp = r.space()
            n = min(chunk, len(sp), len(data) - i)
            sp[:n] = data[i:i + n]
            r.added(n)
            i += n
        f = r.poll(now)
        while f is not None:
            out.append(bytes(f))
            f = r.poll(now)
        if i >= len(data):
            return out, r


def test_encode_matches_every_good_vector():
    n = 0
    for v in vectors():
        if "reject" in v:
            continue
        raw = unhex(v["hex"])
        payload = raw[20:-4]
        assert P.encode(v["type"], v["seq"], v["timestamp_us"], payload) == raw, v["name"]
        n += 1
    assert n == 12


def test_counts_payload_layout_matches_vectors():
    names = [v["name"] for v in vectors() if v["type"] == P.COUNTS and "reject" not in v]
    assert "counts_b64_bin_span" in names
    for name in names:
        v = vec(name)
        f = v["fields"]
        fb = P.FrameBuf()
        struct.pack_into("<HHIiIHH", fb.payload, 0, f["n_bins"], f["flags"], f["periods"],
                         f["mono_position"], f["pem_period_ps"], f["acq_id"], f["bin_span"])
        for k, c in enumerate(f["counts"]):
            struct.pack_into("<I", fb.payload, 20 + 4 * k, c)
        struct.pack_into("<Q", fb.buf, 12, v["timestamp_us"])
        n = 20 + 4 * f["n_bins"]
        out = fb.seal(P.COUNTS, n, v["seq"] >> 16, v["seq"] & 0xFFFF)
        assert bytes(out) == unhex(v["hex"]), name


def test_seal_u32_seq_and_crc_above_2_30():
    v = vec("counts_b2_saturated")  # seq 2**32-1
    raw = unhex(v["hex"])
    assert P.encode(1, 0xFFFFFFFF, 0, raw[20:-4]) == raw


def test_clock_packs_64bit_time_from_wrapping_ticks():
    class B:
        t = 0
        def ticks_us(self):
            return self.t
    b = B()
    c = Clock(b)
    buf = bytearray(8)
    total = 0
    for step in (1 << 29, 1 << 29, 123, (1 << 30) - 5, 999, 1 << 29):
        total += step
        b.t = total % (1 << 30)
        c.update()
        c.pack_into(buf, 0, b.t)
        assert struct.unpack("<Q", buf)[0] == total, (total, buf)
    # a stamp taken just before the last wrap belongs to the previous period
    b.t = (total + (1 << 29) + 10) % (1 << 30)
    total2 = total + (1 << 29) + 10
    c.update()
    stamp = (total2 - 20) % (1 << 30)
    c.pack_into(buf, 0, stamp)
    assert struct.unpack("<Q", buf)[0] == total2 - 20
    # a stamp from the board that is newer than the last update, across a wrap
    b.t = (1 << 30) - 7
    c2 = Clock(b)
    c2.pack_into(buf, 0, 100)
    assert struct.unpack("<Q", buf)[0] == (1 << 30) + 100
    c2.pack_into(buf, 0, (1 << 30) - 9)
    assert struct.unpack("<Q", buf)[0] == (1 << 30) - 9


def test_reader_decodes_good_vectors_in_any_chunking():
    good = [v for v in vectors() if "reject" not in v]
    stream = b"".join(unhex(v["hex"]) for v in good)
    for chunk in (1, 5, 64, 10000):
        out, r = read_all(stream, chunk)
        assert [o for o in out] == [unhex(v["hex"]) for v in good], chunk
        assert r.rejected == 0


def test_reader_fields_of_command_vector():
    v = vec("command_configure")
    out, _ = read_all(unhex(v["hex"]))
    (f,) = out
    assert P.frame_type(f) == 0x10
    assert P.frame_seq(f) == 1
    p = P.frame_payload(f)
    rid, op = struct.unpack_from("<HB", p, 0)
    assert (rid, op) == (513, 2)
    assert json.loads(bytes(p[4:])) == v["fields"]["args"]


def test_reader_rejects_bad_crc_and_bad_version_and_resyncs():
    good = unhex(vec("command_identify_noargs")["hex"])
    bad_crc = unhex(vec("counts_bad_crc")["hex"])
    bad_ver = unhex(vec("counts_bad_version")["hex"])
    stream = b"\x00\xc5junk" + bad_crc + good + bad_ver + b"\xc5" + good
    out, r = read_all(stream, 3)
    assert out == [good, good], out
    assert r.rejected == 2, r.rejected


def test_reader_rejects_oversize_length():
    good = unhex(vec("command_identify_noargs")["hex"])
    hdr = b"\xc5\x5c" + struct.pack("<BBHHIQ", 1, 0x10, 8193, 0, 0, 0)
    out, r = read_all(hdr + good)
    assert out == [good]
    assert r.rejected == 1
    assert "length" in r.last_reject


def test_reader_drops_stale_truncated_frame():
    good = unhex(vec("command_identify_noargs")["hex"])
    r = P.Reader(stale_us=1000)
    sp = r.space()
    part = good[:10]
    sp[:10] = part
    r.added(10)
    assert r.poll(0) is None
    assert r.poll(500) is None
    assert r.rejected == 0
    sp = r.space()
    sp[:len(good)] = good
    r.added(len(good))
    f = r.poll(2000)  # the partial is stale: rejected, then the good frame is found
    assert f is not None and bytes(f) == good
    assert r.rejected == 1


def test_device_frames_decode_with_independent_decoder():
    raw = P.encode(P.EVENT, 8, 5, struct.pack("<HH", 2, 2) + b"PMT rate 3.2e6 cps > limit 2.0e6 cps")
    assert raw == unhex(vec("event_overload")["hex"])
    t, seq, ts, p = decode(raw)
    assert (t, seq, ts) == (4, 8, 5)
