"""Write tests/vectors/frames.json from the tables in docs/protocol.md.

Uses only ``struct`` and ``zlib`` so that the vectors do not depend on either side's encoder.
Run once when the protocol changes: ``python tests/vectors/make_vectors.py``.

``fields`` hold the wire values of the payload fields (e.g. COUNTS ``bin_span`` as the u16 in
units of 1/65536, 0 = the full period); each side's test maps them to its own representation.
"""
import json
import struct
import zlib
from pathlib import Path

SYNC = b"\xc5\x5c"


def frame(ftype: int, seq: int, ts_us: int, payload: bytes) -> bytes:
    head = SYNC + struct.pack("<BBHHIQ", 1, ftype, len(payload), 0, seq, ts_us)
    body = head + payload
    return body + struct.pack("<I", zlib.crc32(body))


def pack12(samples):
    out = bytearray()
    for a, b in zip(samples[0::2], samples[1::2]):
        out += bytes([a & 0xFF, (a >> 8) | ((b & 0x0F) << 4), b >> 4])
    return bytes(out)


def main() -> None:
    vectors = []
    counts = [1000 + 7 * k for k in range(16)]
    payload = struct.pack("<HHIiIHH", 16, 0b1101100, 500, 12345, 20_000_000, 3, 0)
    payload += struct.pack("<16I", *counts)
    vectors.append({
        "name": "counts_b16", "type": 1, "seq": 42, "timestamp_us": 1_234_567_890,
        "fields": {"n_bins": 16, "flags": 0b1101100, "periods": 500, "mono_position": 12345,
                   "pem_period_ps": 20_000_000, "acq_id": 3, "bin_span": 0, "counts": counts},
        "hex": frame(1, 42, 1_234_567_890, payload).hex(),
    })
    counts2 = [0, 4294967295]
    payload = struct.pack("<HHIiIHH", 2, 0b1, 1, -5, 0, 65535, 0) + struct.pack("<2I", *counts2)
    vectors.append({
        "name": "counts_b2_saturated", "type": 1, "seq": 4294967295, "timestamp_us": 0,
        "fields": {"n_bins": 2, "flags": 1, "periods": 1, "mono_position": -5,
                   "pem_period_ps": 0, "acq_id": 65535, "bin_span": 0, "counts": counts2},
        "hex": frame(1, 4294967295, 0, payload).hex(),
    })
    # rp2 at B = 64, 50 kHz PEM, 125 MHz: bins of 37 cycles in a 2500-cycle period cover
    # 64·37/2500 of it; bin_span = 65536·2368/2500 rounded (docs/hardware.md, Photon counting)
    span = (65536 * 64 * 37 + 1250) // 2500
    counts3 = [(977 * k * k + 13) % 100_003 for k in range(64)]
    payload = struct.pack("<HHIiIHH", 64, 0b101000, 100, 3000, 20_000_000, 12, span)
    payload += struct.pack("<64I", *counts3)
    vectors.append({
        "name": "counts_b64_bin_span", "type": 1, "seq": 1000, "timestamp_us": 2**40 + 3,
        "fields": {"n_bins": 64, "flags": 0b101000, "periods": 100, "mono_position": 3000,
                   "pem_period_ps": 20_000_000, "acq_id": 12, "bin_span": span,
                   "counts": counts3},
        "hex": frame(1, 1000, 2**40 + 3, payload).hex(),
    })
    samples = [0, 4095, 2048, 1, 0xABC, 0x123, 7, 4000]
    edges_abs = [100, 2600, 5101]
    payload = struct.pack("<QIfiHHHHI", 10**12, 125_000_000, 250000.0, 777, 0b1100,
                          len(samples), len(edges_abs), 9, edges_abs[0])
    payload += struct.pack("<2H", edges_abs[1] - edges_abs[0], edges_abs[2] - edges_abs[1])
    payload += pack12(samples)
    vectors.append({
        "name": "adc_block", "type": 2, "seq": 7, "timestamp_us": 1_000_000,
        "fields": {"t0_ticks": 10**12, "tick_hz": 125_000_000, "sample_rate_hz": 250000.0,
                   "mono_position": 777, "flags": 12, "n_samples": len(samples),
                   "n_edges": len(edges_abs), "acq_id": 9, "edges_ticks": edges_abs,
                   "samples": samples},
        "hex": frame(2, 7, 1_000_000, payload).hex(),
    })
    text = "PMT rate 3.2e6 cps > limit 2.0e6 cps".encode()
    vectors.append({
        "name": "event_overload", "type": 4, "seq": 8, "timestamp_us": 5,
        "fields": {"code": 2, "severity": 2, "text": text.decode()},
        "hex": frame(4, 8, 5, struct.pack("<HH", 2, 2) + text).hex(),
    })
    args = json.dumps({"mode": "counting", "bins": 16, "periods": 500}, separators=(",", ":"))
    vectors.append({
        "name": "command_configure", "type": 16, "seq": 1, "timestamp_us": 0,
        "fields": {"request_id": 513, "opcode": 2, "args": json.loads(args)},
        "hex": frame(16, 1, 0, struct.pack("<HBB", 513, 2, 0) + args.encode()).hex(),
    })
    vectors.append({
        "name": "command_identify_noargs", "type": 16, "seq": 2, "timestamp_us": 0,
        "fields": {"request_id": 1, "opcode": 1, "args": {}},
        "hex": frame(16, 2, 0, struct.pack("<HBB", 1, 1, 0)).hex(),
    })
    vectors.append({
        "name": "reply_error", "type": 5, "seq": 9, "timestamp_us": 77,
        "fields": {"request_id": 513, "opcode": 8, "status": 4,
                   "text": "volts=2000 out of range 0..1100"},
        "hex": frame(5, 9, 77, struct.pack("<HBB", 513, 8, 4)
                     + b"volts=2000 out of range 0..1100").hex(),
    })
    result = json.dumps({"shutter_open": True}, separators=(",", ":"))
    vectors.append({
        "name": "reply_ok", "type": 5, "seq": 10, "timestamp_us": 78,
        "fields": {"request_id": 514, "opcode": 9, "status": 0, "result": json.loads(result)},
        "hex": frame(5, 10, 78, struct.pack("<HBB", 514, 9, 0) + result.encode()).hex(),
    })
    args = json.dumps({"frames": 600}, separators=(",", ":"))
    vectors.append({
        "name": "command_start_bounded", "type": 16, "seq": 3, "timestamp_us": 0,
        "fields": {"request_id": 515, "opcode": 3, "args": json.loads(args)},
        "hex": frame(16, 3, 0, struct.pack("<HBB", 515, 3, 0) + args.encode()).hex(),
    })
    vectors.append({  # the same START sent again after its reply was lost (flag RETRY)
        "name": "command_start_retry", "type": 16, "seq": 4, "timestamp_us": 0,
        "fields": {"request_id": 515, "opcode": 3, "args": json.loads(args), "retry": True},
        "hex": frame(16, 4, 0, struct.pack("<HBB", 515, 3, 1) + args.encode()).hex(),
    })
    text = "acquisition 12 ended after 600 data frames (598 sent)".encode()
    vectors.append({
        "name": "event_acq_done", "type": 4, "seq": 11, "timestamp_us": 60_000_100,
        "fields": {"code": 10, "severity": 0, "text": text.decode()},
        "hex": frame(4, 11, 60_000_100, struct.pack("<HH", 10, 0) + text).hex(),
    })
    good = bytes.fromhex(vectors[0]["hex"])
    bad = bytearray(good)
    bad[30] ^= 0x01
    vectors.append({"name": "counts_bad_crc", "type": 1, "reject": "crc", "hex": bad.hex()})
    bad_ver = bytearray(good)
    bad_ver[2] = 2
    vectors.append({"name": "counts_bad_version", "type": 1, "reject": "version",
                    "hex": bad_ver.hex()})
    out = Path(__file__).with_name("frames.json")
    out.write_text(json.dumps({"protocol_version": 1, "vectors": vectors}, indent=1) + "\n")


if __name__ == "__main__":
    main()
