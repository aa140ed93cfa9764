"""Malformed frames, sent raw through pyusb: each is answered as docs/protocol.md says (a REPLY
with the right status, or an EVENT BAD_FRAME when the frame cannot be trusted), and the
firmware keeps answering."""
from __future__ import annotations

import struct


from cplscope.protocol import (
    Event,
    EventCode,
    FrameType,
    Opcode,
    Reply,
    ReplyStatus,
    encode_frame,
)


def command_payload(rid: int, opcode: int, body: bytes) -> bytes:
    return struct.pack("<HBB", rid, opcode, 0) + body


def send_and_collect(link, frame: bytes, until, timeout_s: float = 5.0) -> list:
    seen: list = []
    link.write(frame)
    link.read_until(until, timeout_s, seen)
    return seen


def alive(link) -> None:
    assert link.identify()["implementation"] == "micropython"


def test_short_command_payloads_get_reply_ffff(open_raw) -> None:
    link = open_raw()
    for n in range(4):
        frame = encode_frame(FrameType.COMMAND, link.next_seq(), 0, b"\x07\x00\x01"[:n])
        seen = send_and_collect(link, frame, lambda m: isinstance(m, Reply))
        reply = seen[-1]
        assert (reply.request_id, int(reply.opcode), reply.status) == (
            0xFFFF, 0, ReplyStatus.BAD_FRAME), f"{n}-byte payload"
        assert str(n) in reply.error
        alive(link)


def test_args_that_are_not_a_json_object(open_raw) -> None:
    link = open_raw()
    bodies = [b"\xff\xfe{}", b"{mode:", b"[1, 2]", b"5", b"null", b'"text"',
              b'{"volts": NaN}', b'{"volts": Infinity}', b'{"volts": 1e999}',
              b'{"volts": 800', b"{}}", b"\x00" * 40]
    for body in bodies:
        rid = link.next_request_id()
        frame = encode_frame(FrameType.COMMAND, link.next_seq(), 0,
                             command_payload(rid, Opcode.SET_HV, body))
        seen = send_and_collect(link, frame,
                                lambda m: isinstance(m, Reply) and m.request_id == rid)
        reply = seen[-1]
        assert reply.status == ReplyStatus.BAD_ARGS, (body, reply)
        assert reply.opcode == Opcode.SET_HV and reply.error
    status = link.call(Opcode.STATUS)
    assert status["hv_set_volts"] == 0.0, "a refused SET_HV changed the set point"
    alive(link)


def test_bad_crc_and_bad_version_give_bad_frame_events(open_raw) -> None:
    link = open_raw()
    rid, good = link.command_frame(Opcode.SET_HV, {"volts": 100.0})
    bad_crc = good[:-4] + bytes(b ^ 0xFF for b in good[-4:])
    bad_version = bytearray(good)
    bad_version[2] = 2
    for frame, why in ((bad_crc, "CRC"), (bytes(bad_version), "version")):
        seen = send_and_collect(
            link, frame, lambda m: isinstance(m, Event) and m.code == EventCode.BAD_FRAME)
        assert why in seen[-1].text
        assert not any(isinstance(m, Reply) and m.request_id == rid for m in seen)
    assert link.call(Opcode.STATUS)["hv_set_volts"] == 0.0, "a rejected frame was executed"
    alive(link)


def test_garbage_and_foreign_frame_types_are_skipped(open_raw) -> None:
    link = open_raw()
    # bytes with no sync: skipped silently; a good-CRC frame of a device->host type: ignored
    link.write(bytes(range(256)).replace(b"\xc5", b"\x00") * 8)
    link.write(encode_frame(FrameType.COUNTS, link.next_seq(), 0, b"\x00" * 84))
    rid, frame = link.command_frame(Opcode.IDENTIFY)
    seen = send_and_collect(link, frame,
                            lambda m: isinstance(m, Reply) and m.request_id == rid)
    assert seen[-1].ok
    assert [m for m in seen if isinstance(m, Reply)] == [seen[-1]], "a reply to no command"


def test_truncated_frame_does_not_swallow_the_next_command(open_raw) -> None:
    """A frame cut short (its length field promises more than comes) is dropped as truncated
    once it goes stale, and the command behind it is still answered."""
    link = open_raw()
    rid0, first = link.command_frame(Opcode.SET_LIMITS, {"max_count_rate_cps": 2e6,
                                                           "max_adc_level": 4000})
    assert len(first) > 40
    rid, second = link.command_frame(Opcode.STATUS)
    link.write(first[:30])  # header + 10 bytes of a frame announcing more
    seen = send_and_collect(link, second,
                            lambda m: isinstance(m, Reply) and m.request_id == rid, 10.0)
    assert seen[-1].ok
    assert not any(isinstance(m, Reply) and m.request_id == rid0 for m in seen)
    assert any(isinstance(m, Event) and m.code == EventCode.BAD_FRAME for m in seen)
    alive(link)


def test_pipelined_commands_each_get_one_reply(open_raw) -> None:
    """Several commands in one USB write (a packet may hold several frames), in order."""
    link = open_raw()
    frames = [link.command_frame(op) for op in (Opcode.IDENTIFY, Opcode.STATUS,
                                                 Opcode.SELF_TEST, 200, Opcode.STOP)]
    link.write(b"".join(f for _, f in frames))
    want = {rid for rid, _ in frames}
    replies: list = []
    link.read_until(lambda m: isinstance(m, Reply) and m.request_id == frames[-1][0], 5.0,
                    replies)
    got = [m.request_id for m in replies if isinstance(m, Reply)]
    assert got == [rid for rid, _ in frames]
    assert set(got) == want


def test_each_bad_frame_gets_its_own_event(open_raw) -> None:
    """protocol.md: a command frame with a bad CRC gets an EVENT BAD_FRAME "instead" of its
    reply, i.e. one per frame."""
    link = open_raw()
    bad = []
    for _ in range(3):
        _, good = link.command_frame(Opcode.STATUS)
        bad.append(good[:-1] + bytes([good[-1] ^ 0x55]))
    rid, last = link.command_frame(Opcode.IDENTIFY)
    seen: list = []
    link.write(b"".join(bad) + last)
    link.read_until(lambda m: isinstance(m, Reply) and m.request_id == rid, 5.0, seen)
    seen += link.drain(max_s=0.3)
    events = [m for m in seen if isinstance(m, Event) and m.code == EventCode.BAD_FRAME]
    assert len(events) == 3, f"3 bad frames gave {len(events)} EVENT BAD_FRAME"
