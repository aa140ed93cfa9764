"""10 000 fuzzed command frames (100 000 with --soak, 1000 on the emulated Pico): random opcodes, JSON
and garbage args, random lengths, some with a bad CRC. The firmware stays up and answers every
good-CRC COMMAND with exactly one REPLY carrying its request id; bad CRCs give EVENT
BAD_FRAME.

Frames go out in windows of WINDOW commands (one USB write), then the replies are collected.
The two tests at the end check deeper pipelining: the firmware reads a command only when its
reply can be queued (backpressure, as USB NAKs), so every command is answered however many
are written ahead, and the simulated board holds OUT data the firmware has not read yet.
"""
from __future__ import annotations

import json
import random
import struct
import time

import pytest

from cplscope.protocol import Event, EventCode, FrameType, Opcode, Reply, ReplyStatus, encode_frame

WINDOW = 16
KEYS = ["mode", "bins", "periods", "sample_rate_hz", "block_samples", "wavelength_nm",
        "position", "a0_rad", "track_wavelength", "volts", "open", "max_count_rate_cps",
        "max_adc_level", "max_high_fraction", "max_hv_volts", "source", "frequency_hz", "drive_per_rad_nm",
        "steps_per_nm", "home_nm", "backlash_steps", "min_nm", "max_nm"]
#: never fuzzed on a real board: they move the monochromator, energise the PMT or open the
#: shutter, or lift the limits that protect the PMT
UNSAFE_ON_HARDWARE = {Opcode.MOVE, Opcode.HOME, Opcode.SET_HV, Opcode.SHUTTER,
                      Opcode.SET_LIMITS, Opcode.MONO_CONFIG, Opcode.MAINTENANCE,
                      Opcode.HV_CONFIG}


def random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(10)
    if kind == 0:
        return rng.randint(-2**40, 2**40)
    if kind == 1:
        return rng.choice([0, 1, 2, 16, 64, 500, 100000, 100001, -1])
    if kind == 2:
        return rng.uniform(-1e6, 1e6)
    if kind == 3:
        return rng.choice([0.0, 1e-9, 3.2, 438.0, 50000.0, 1e308, -0.0])
    if kind == 4:
        return rng.choice([True, False, None])
    if kind == 5:
        return rng.choice(["counting", "analog", "internal", "external", "", "x" * 50])
    if kind == 6 and depth < 2:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 7 and depth < 2:
        return {rng.choice(KEYS): random_value(rng, depth + 1) for _ in range(rng.randrange(3))}
    return rng.randint(0, 65535)


def random_args(rng: random.Random) -> bytes:
    kind = rng.randrange(6)
    if kind == 0:
        return b""
    if kind in (1, 2, 3):
        obj = {(rng.choice(KEYS) if rng.random() < 0.8 else f"k{rng.randrange(100)}"):
               random_value(rng) for _ in range(rng.randrange(5))}
        text = json.dumps(obj).encode()
        if kind == 3:  # cut short: not JSON any more
            text = text[:rng.randrange(len(text) + 1)]
        return text
    if kind == 4:
        return json.dumps(random_value(rng)).encode()  # JSON, but maybe not an object
    return rng.randbytes(rng.randrange(1, 300))  # garbage


class Plan:
    """What one window must produce."""

    def __init__(self) -> None:
        self.good: dict[int, int] = {}  # request id -> opcode
        self.short = 0
        self.bad_crc = 0


def build_window(rng: random.Random, next_rid, next_seq, opcodes: list[int]
                 ) -> tuple[bytes, Plan]:
    plan = Plan()
    out = []
    for _ in range(WINDOW):
        r = rng.random()
        if r < 0.05:
            payload = rng.randbytes(rng.randrange(4))
            plan.short += 1
            out.append(encode_frame(FrameType.COMMAND, next_seq(), 0, payload))
            continue
        rid = next_rid()
        opcode = rng.choice(opcodes)
        payload = struct.pack("<HBB", rid, opcode, rng.choice([0, 0, 0, 255])) + random_args(rng)
        frame = encode_frame(FrameType.COMMAND, next_seq(), rng.randrange(2**64), payload)
        if r < 0.20:
            i = rng.randrange(len(frame) - 4, len(frame))
            frame = frame[:i] + bytes([frame[i] ^ rng.randrange(1, 256)]) + frame[i + 1:]
            plan.bad_crc += 1
        else:
            plan.good[rid] = opcode
        out.append(frame)
    rid = next_rid()  # each window ends with a STOP, so a fuzzed START does not run on
    out.append(encode_frame(FrameType.COMMAND, next_seq(), 0,
                            struct.pack("<HBB", rid, Opcode.STOP, 0)))
    plan.good[rid] = Opcode.STOP
    return b"".join(out), plan


def test_fuzzed_commands_each_get_exactly_one_reply(open_raw, hil) -> None:
    # the emulated Pico runs at about a tenth of real time: 1000 frames there (~2 min)
    n_frames = 100_000 if hil.soak else 1_000 if hil.is_emulated else 10_000
    link = open_raw(speed=20.0)
    rng = random.Random(20240601)
    opcodes = [op for op in range(256)
               if hil.is_sim or op not in UNSAFE_ON_HARDWARE]
    opcodes += [op for op in Opcode if hil.is_sim or op not in UNSAFE_ON_HARDWARE] * 40
    serial = link.identify()["serial"]
    sent = good = bad = short = bad_frame_events = 0
    statuses: dict[int, int] = {}
    t0 = time.monotonic()
    while sent < n_frames:
        data, plan = build_window(rng, link.next_request_id, link.next_seq, opcodes)
        link.write(data)
        sent += WINDOW
        waiting = dict(plan.good)
        shorts = events = 0
        deadline = time.monotonic() + 30
        # the firmware sends one EVENT BAD_FRAME per receive pass, which may reject several
        # frames (test_hil_malformed.py: test_each_bad_frame_gets_its_own_event)
        while waiting or shorts < plan.short or (plan.bad_crc and not events):
            assert time.monotonic() < deadline, (
                f"after {sent} frames: no reply to {sorted(waiting)} / {plan.short - shorts} "
                f"short / {plan.bad_crc} bad CRC but {events} BAD_FRAME events; firmware log:\n"
                + (link.sim.log("firmware")[-2000:] if link.sim else ""))
            for msg in link.read(timeout_ms=200):
                if isinstance(msg, Reply):
                    if msg.request_id == 0xFFFF:
                        assert msg.status == ReplyStatus.BAD_FRAME and int(msg.opcode) == 0
                        shorts += 1
                        continue
                    assert msg.request_id in waiting, f"unexpected or second reply {msg}"
                    assert int(msg.opcode) == waiting.pop(msg.request_id)
                    statuses[int(msg.status)] = statuses.get(int(msg.status), 0) + 1
                elif isinstance(msg, Event) and msg.code == EventCode.BAD_FRAME:
                    events += 1
                elif isinstance(msg, Event):
                    assert msg.code != EventCode.FAULT, f"firmware fault: {msg.text}"
        assert shorts == plan.short
        good += len(plan.good)
        bad += plan.bad_crc
        short += plan.short
        bad_frame_events += events
    wall = time.monotonic() - t0
    link.drain(max_s=0.5)
    assert link.identify()["serial"] == serial
    assert link.decoder.stats.rejected == 0
    print(f"\n{sent} fuzzed frames ({good} good-CRC commands incl. {sent // WINDOW} STOPs, "
          f"{short} short, {bad} bad CRC → {bad_frame_events} BAD_FRAME events) in {wall:.1f} s "
          f"({sent / wall:.0f} frames/s); reply statuses {dict(sorted(statuses.items()))}")
    # the fuzz reached more than the validation front door
    assert statuses.get(ReplyStatus.OK, 0) > 0 and statuses.get(ReplyStatus.BAD_ARGS, 0) > 0
    assert statuses.get(ReplyStatus.UNKNOWN_COMMAND, 0) > 0


@pytest.mark.sim_only("flow control of the simulated USB OUT endpoint")
def test_a_large_out_write_is_throttled_not_fatal(open_raw) -> None:
    link = open_raw()
    link.write(b"\x00" * 100_000, timeout_s=20)
    assert link.identify()["implementation"] == "micropython"


def test_deep_pipeline_gets_every_reply(open_raw, hil) -> None:
    link = open_raw()
    frames = [link.command_frame(Opcode.STATUS) for _ in range(100)]
    link.write(b"".join(f for _, f in frames))
    want = {rid for rid, _ in frames}
    got: set[int] = set()
    deadline = time.monotonic() + (60 if hil.is_emulated else 5)  # ~1/10 of real time there
    while got != want and time.monotonic() < deadline:
        got |= {m.request_id for m in link.read() if isinstance(m, Reply)}
    assert got == want, f"{len(want - got)} of 100 replies lost"
