"""Commands sent again with the flag RETRY (docs/protocol.md, "Retries"): the original's reply
comes back and the command is not executed twice; a command without the flag always runs."""
import json
import struct

from cpl import protocol as P
from cpl.replay import SIZE
from helpers import make, ok, frames, run, raw_frame, counts_frames
from test_protocol import unhex, vec

IDENTIFY, CONFIGURE, START, STOP, MOVE, HOME, SET_RET, SET_HV, SHUTTER, STATUS = range(1, 11)


def retry_frame(rid, op, args=None, seq=0, flags=1):
    body = b"" if args is None else json.dumps(args).encode()
    return raw_frame(0x10, seq, 0, struct.pack("<HBB", rid, op, flags) + body)


def send(inst, b, frame):
    """Send one command frame; return the replies [(rid, op, status, body bytes)]."""
    b.written.clear()
    b.rx += frame
    run(inst, 2)
    out = []
    for _t, _s, _ts, p in frames(b, 5):
        rid, op, status = struct.unpack_from("<HBB", p, 0)
        out.append((rid, op, status, bytes(p[4:])))
    return out


def homed():
    inst, b = make()
    ok(inst, b, HOME)
    return inst, b


def test_a_retried_start_starts_no_second_acquisition():
    inst, b = make()
    ok(inst, b, CONFIGURE, {"mode": "counting", "bins": 4, "periods": 10})
    b.frames_ready = 0  # the counter holds its frames until the retry is in
    (first,) = send(inst, b, retry_frame(40, START, {"frames": 3}, flags=0))
    assert first[2] == P.OK
    acq = json.loads(first[3])["acq_id"]
    assert inst.acq.acq_id == acq and inst.state == "running"
    # the reply was lost: the host sends the same START again, flagged
    (again,) = send(inst, b, retry_frame(40, START, {"frames": 3}))
    assert again == first, (again, first)
    assert inst.acq.acq_id == acq  # no second START
    assert inst.replay.replayed == 1
    # also after the bounded acquisition ended by itself: still the original reply
    b.frames_ready = -1
    run(inst, 10)
    assert inst.state == "idle"
    assert {f["acq_id"] for f in counts_frames(b)} == {acq}
    (late,) = send(inst, b, retry_frame(40, START, {"frames": 3}))
    assert late == first and inst.state == "idle" and inst.acq.acq_id == acq
    # the next START (a new request id) is a new acquisition
    assert ok(inst, b, START, {"frames": 3})["acq_id"] == acq + 1


def test_a_retried_move_gets_the_original_reply_not_busy():
    inst, b = homed()
    (first,) = send(inst, b, retry_frame(41, MOVE, {"wavelength_nm": 438.0}, flags=0))
    assert first[2] == P.OK
    b.written.clear()
    # while the first MOVE is still moving, executing it again would be refused (BAD_STATE)
    b.target = b.pos  # the motor has not moved yet
    inst.mono._legs = [inst.mono.steps_for(438.0)]
    (again,) = send(inst, b, retry_frame(41, MOVE, {"wavelength_nm": 438.0}))
    assert again == first
    assert json.loads(again[3]) == {"position": 2380, "wavelength_nm": 438.0}


def test_a_retried_set_hv_and_stop_are_answered_from_the_cache():
    inst, b = make()
    (hv,) = send(inst, b, retry_frame(7, SET_HV, {"volts": 800.0}, flags=0))
    assert json.loads(hv[3])["hv_set_volts"] == 800.0
    b.hv = 123.0  # any change since would show in a second execution's read-back
    (again,) = send(inst, b, retry_frame(7, SET_HV, {"volts": 800.0}))
    assert again == hv and b.hv == 123.0
    ok(inst, b, START)
    (stop,) = send(inst, b, retry_frame(8, STOP, flags=0))
    assert stop[2] == P.OK and inst.state == "idle"
    ok(inst, b, START)  # a new acquisition: a late retry of the STOP must not end it
    (again,) = send(inst, b, retry_frame(8, STOP))
    assert again == stop and inst.state == "running"


def test_error_replies_are_replayed_too():
    inst, b = make()
    (err,) = send(inst, b, retry_frame(9, SET_HV, {"volts": 5000.0}, flags=0))
    assert err[2] == P.ST_OUT_OF_RANGE
    (again,) = send(inst, b, retry_frame(9, SET_HV, {"volts": 5000.0}))
    assert again == err and inst.replay.replayed == 1  # from the cache, not validated again


def test_a_retry_whose_original_never_arrived_is_executed():
    inst, b = make()
    (r,) = send(inst, b, retry_frame(50, SET_HV, {"volts": 300.0}))
    assert r[2] == P.OK and inst.safety.hv_set_volts == 300.0
    assert inst.replay.replayed == 0


def test_a_command_without_the_flag_always_runs_even_with_a_used_id():
    inst, b = make()
    ok(inst, b, CONFIGURE, {"mode": "counting", "bins": 4, "periods": 10})
    (a,) = send(inst, b, retry_frame(60, START, flags=0))
    ok(inst, b, STOP)
    (c,) = send(inst, b, retry_frame(60, START, flags=0))  # a new host session reusing ids
    assert json.loads(c[3])["acq_id"] == json.loads(a[3])["acq_id"] + 1
    assert inst.replay.replayed == 0


def test_a_retry_with_other_args_or_opcode_is_another_command():
    inst, b = make()
    send(inst, b, retry_frame(70, SET_HV, {"volts": 100.0}, flags=0))
    (r,) = send(inst, b, retry_frame(70, SET_HV, {"volts": 200.0}))
    assert r[2] == P.OK and inst.safety.hv_set_volts == 200.0
    (s,) = send(inst, b, retry_frame(70, STATUS))
    assert s[2] == P.OK and json.loads(s[3])["hv_set_volts"] == 200.0
    assert inst.replay.replayed == 0


def test_the_cache_holds_the_last_replies_only():
    inst, b = make()
    for rid in range(100, 100 + SIZE + 1):
        send(inst, b, retry_frame(rid, SET_HV, {"volts": float(rid)}, flags=0))
    # the oldest reply was replaced: its retry runs the command again
    send(inst, b, retry_frame(100, SET_HV, {"volts": 100.0}))
    assert inst.replay.replayed == 0 and inst.safety.hv_set_volts == 100.0
    # the newest ones are kept (the re-run 100 replaced the next oldest, 101)
    for rid in range(102, 100 + SIZE + 1):
        send(inst, b, retry_frame(rid, SET_HV, {"volts": float(rid)}))
    assert inst.replay.replayed == SIZE - 1
    assert inst.safety.hv_set_volts == 100.0  # none of them ran again


def test_status_counts_replays_and_identify_states_the_revision():
    inst, b = make()
    assert ok(inst, b, IDENTIFY)["protocol_revision"] == 3
    send(inst, b, retry_frame(80, SHUTTER, {"open": False}, flags=0))
    send(inst, b, retry_frame(80, SHUTTER, {"open": False}))
    send(inst, b, retry_frame(80, SHUTTER, {"open": False}))
    assert ok(inst, b, STATUS)["replayed"] == 2


def test_the_retry_vector_is_answered_from_the_cache():
    inst, b = make()
    ok(inst, b, CONFIGURE, {"mode": "counting", "bins": 4, "periods": 10})
    frame = unhex(vec("command_start_retry")["hex"])
    assert frame[23] & 1  # flags: RETRY
    plain = bytearray(frame)
    plain[23] = 0  # the original: the same frame without the flag (CRC made again)
    orig = raw_frame(0x10, 4, 0, bytes(plain[20:-4]))
    (first,) = send(inst, b, orig)
    (again,) = send(inst, b, frame)
    assert again == first and inst.replay.replayed == 1
