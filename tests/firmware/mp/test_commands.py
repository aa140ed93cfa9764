"""Every opcode: happy path and error paths; no state change on failed validation."""
import json
import struct

from cpl import protocol as P
from helpers import make, cmd, ok, frames, events, run, command_frame, raw_frame

IDENTIFY, CONFIGURE, START, STOP, MOVE, HOME, SET_RET, SET_HV, SHUTTER, STATUS = range(1, 11)
SELF_TEST, SET_LIMITS, CLEAR_FAULT, PEM_CONFIG, MONO_CONFIG = range(11, 16)


def homed():
    inst, b = make()
    ok(inst, b, HOME)
    return inst, b


def expect(inst, b, op, args, status, *words):
    st, text = cmd(inst, b, op, args)
    assert st == status, "opcode %d %r: status %d (%s), expected %d" % (op, args, st, text, status)
    for w in words:
        assert w in text, (w, text)
    return text


def test_identify():
    inst, b = make()
    r = ok(inst, b, IDENTIFY)
    assert r == {"implementation": "micropython", "board": "fake", "firmware_version": "0.1.0",
                 "protocol_version": 1, "protocol_revision": 3, "serial": "fa4e0001"}, r
    expect(inst, b, IDENTIFY, {"x": 1}, P.ST_BAD_ARGS, "unknown key")


def test_unknown_opcode_and_short_payload_and_bad_json():
    inst, b = make()
    expect(inst, b, 99, None, P.ST_UNKNOWN_COMMAND, "99")
    expect(inst, b, 0, None, P.ST_UNKNOWN_COMMAND)
    b.written.clear()
    b.rx += raw_frame(0x10, 0, 0, b"\x01\x00\x01")  # 3 bytes
    run(inst, 2)
    (r,) = frames(b, 5)
    assert struct.unpack_from("<HBB", r[3]) == (0xFFFF, 0, P.ST_BAD_FRAME)
    expect(inst, b, IDENTIFY, b"{not json", P.ST_BAD_ARGS, "JSON")
    expect(inst, b, IDENTIFY, b"[1, 2]", P.ST_BAD_ARGS, "object")
    expect(inst, b, IDENTIFY, b"\xff\xfe", P.ST_BAD_ARGS, "UTF-8")
    # still alive and answering
    assert ok(inst, b, IDENTIFY)["protocol_version"] == 1


def test_bad_crc_command_gets_event_not_reply():
    inst, b = make()
    good = command_frame(3, IDENTIFY)
    bad = bytearray(good)
    bad[-1] ^= 0xFF
    b.rx += bytes(bad) + good
    run(inst, 2)
    replies = frames(b, 5)
    assert len(replies) == 1 and struct.unpack_from("<H", replies[0][3])[0] == 3, replies
    assert [e[0] for e in events(b) if e[0] != P.EV_PEM_LOCK] == [P.EV_BAD_FRAME], events(b)
    assert inst.bad_frames == 1


def test_non_command_frame_is_counted_and_skipped():
    inst, b = make()
    b.rx += raw_frame(0x01, 0, 0, b"\x00" * 28) + command_frame(4, IDENTIFY)
    run(inst, 2)
    assert len(frames(b, 5)) == 1
    assert inst.unknown_frames == 1


def test_configure_counting_and_analog():
    inst, b = make()
    assert ok(inst, b, CONFIGURE, {"mode": "counting", "bins": 32, "periods": 50}) == \
        {"mode": "counting", "bins": 32, "periods": 50}
    r = ok(inst, b, CONFIGURE, {"mode": "analog", "sample_rate_hz": 250000, "block_samples": 2048})
    assert r == {"mode": "analog", "sample_rate_hz": 250000.0, "block_samples": 2048}, r


def test_configure_errors_change_nothing():
    inst, b = make()
    ok(inst, b, CONFIGURE, {"mode": "counting", "bins": 8, "periods": 100})
    cases = [
        ({"mode": "counting", "bins": 1, "periods": 100}, P.ST_OUT_OF_RANGE, "bins=1",
         "2, 4, 8, 16, 32, 64"),
        ({"mode": "counting", "bins": 65, "periods": 100}, P.ST_OUT_OF_RANGE, "bins"),
        ({"mode": "counting", "bins": 16, "periods": 0}, P.ST_OUT_OF_RANGE, "periods"),
        ({"mode": "counting", "bins": 16, "periods": 100001}, P.ST_OUT_OF_RANGE, "periods"),
        ({"mode": "counting", "bins": 16.0, "periods": 10}, P.ST_BAD_ARGS, "integer"),
        ({"mode": "counting", "bins": True, "periods": 10}, P.ST_BAD_ARGS, "integer"),
        ({"mode": "counting", "bins": "16", "periods": 10}, P.ST_BAD_ARGS, "integer"),
        ({"mode": "counting", "bins": 16}, P.ST_BAD_ARGS, "periods"),
        ({"bins": 16, "periods": 10}, P.ST_BAD_ARGS, "missing", "mode"),
        ({"mode": "counting", "bins": 16, "periods": 10, "gain": 2}, P.ST_BAD_ARGS, "gain"),
        ({"mode": "counting", "bins": 16, "periods": 10, "block_samples": 2}, P.ST_BAD_ARGS),
        ({"mode": "lockin"}, P.ST_OUT_OF_RANGE, "mode"),
        ({"mode": "analog", "sample_rate_hz": 250000, "block_samples": 1001}, P.ST_OUT_OF_RANGE, "even"),
        ({"mode": "analog", "sample_rate_hz": 1e6, "block_samples": 1000}, P.ST_OUT_OF_RANGE, "sample_rate_hz"),
        ({"mode": "analog", "sample_rate_hz": 100000, "block_samples": 4096}, P.ST_OUT_OF_RANGE, "8192"),
    ]
    for args, status, *words in cases:
        expect(inst, b, CONFIGURE, args, status, *words)
        assert (inst.acq.mode, inst.acq.bins, inst.acq.periods) == ("counting", 8, 100), args


def test_configure_accepts_exactly_the_boards_bin_counts():
    inst, b = make()
    assert b.counter_bins == (2, 4, 8, 16, 32, 64)  # the base interface's set, as on rp2
    ok(inst, b, CONFIGURE, {"mode": "counting", "bins": 8, "periods": 100})
    last = 8
    for n in range(-2, 130):
        args = {"mode": "counting", "bins": n, "periods": 100}
        if n in (2, 4, 8, 16, 32, 64):
            assert ok(inst, b, CONFIGURE, args)["bins"] == n
            last = n
            continue
        text = expect(inst, b, CONFIGURE, args, P.ST_OUT_OF_RANGE, "bins=%d" % n)
        assert text.endswith("use one of 2, 4, 8, 16, 32, 64"), text
        assert inst.acq.bins == last  # unchanged


def test_configure_lists_a_smaller_board_set_in_its_error():
    inst, b = make()
    b.counter_bins = (2, 4, 8)
    ok(inst, b, CONFIGURE, {"mode": "counting", "bins": 8, "periods": 10})
    expect(inst, b, CONFIGURE, {"mode": "counting", "bins": 16, "periods": 10},
           P.ST_OUT_OF_RANGE, "bins=16", "use one of 2, 4, 8")
    assert inst.acq.bins == 8


def test_start_refused_by_the_board_is_out_of_range_not_a_fault():
    inst, b = make()
    ok(inst, b, CONFIGURE, {"mode": "counting", "bins": 64, "periods": 10})

    def too_short():
        raise ValueError("a PEM period of 1000 cycles is too short for 64 bins")
    b.counter_start = too_short
    text = expect(inst, b, START, None, P.ST_OUT_OF_RANGE, "too short for 64 bins", "CONFIGURE")
    assert inst.state == "idle" and not inst.acq.running, text
    assert not [e for e in events(b) if e[0] == P.EV_FAULT]
    run(inst, 2)
    assert [f for f in frames(b) if f[0] == P.COUNTS] == []


def test_start_stop_and_wrong_state():
    inst, b = make()
    ok(inst, b, CONFIGURE, {"mode": "counting", "bins": 4, "periods": 10})
    assert ok(inst, b, START) == {"acq_id": 1}
    assert inst.state == "running"
    expect(inst, b, START, None, P.ST_BAD_STATE, "running")
    expect(inst, b, CONFIGURE, {"mode": "counting", "bins": 4, "periods": 10}, P.ST_BAD_STATE)
    expect(inst, b, PEM_CONFIG, {"frequency_hz": 40000}, P.ST_BAD_STATE)
    expect(inst, b, MONO_CONFIG, {"backlash_steps": 3}, P.ST_BAD_STATE)
    expect(inst, b, HOME, None, P.ST_BAD_STATE)
    r = ok(inst, b, STOP)
    assert r["frames_sent"] > 0 and inst.state == "idle"
    assert ok(inst, b, START) == {"acq_id": 2}
    ok(inst, b, STOP)
    assert ok(inst, b, STOP)["frames_sent"] >= 0  # idempotent


def test_move_and_home():
    inst, b = make()
    expect(inst, b, MOVE, {"wavelength_nm": 500}, P.ST_BAD_STATE, "HOME")
    assert ok(inst, b, HOME) == {"position": 0}
    assert inst.mono.homed
    evs = events(b)
    assert evs and evs[-1][0] == P.EV_MONO and "homed" in evs[-1][2]
    r = ok(inst, b, MOVE, {"wavelength_nm": 500})
    assert r == {"position": 3000, "wavelength_nm": 500.0}, r
    run(inst, 3)
    r = ok(inst, b, MOVE, {"position": 100})
    assert r == {"position": 100, "wavelength_nm": 210.0}
    run(inst, 6)
    for args, st in (({"wavelength_nm": 199.9}, P.ST_OUT_OF_RANGE),
                     ({"wavelength_nm": 900.1}, P.ST_OUT_OF_RANGE),
                     ({"position": 7001}, P.ST_OUT_OF_RANGE),
                     ({"position": 1.5}, P.ST_BAD_ARGS),
                     ({}, P.ST_BAD_ARGS),
                     ({"wavelength_nm": 300, "position": 5}, P.ST_BAD_ARGS),
                     ({"wavelength_nm": "300"}, P.ST_BAD_ARGS)):
        expect(inst, b, MOVE, args, st)
        assert inst.mono.position() == 100 and not inst.mono.moving()


def test_move_rejected_while_moving():
    inst, b = homed()
    ok(inst, b, MOVE, {"wavelength_nm": 600})
    b.rx += command_frame(9, MOVE, {"wavelength_nm": 300})
    inst.step()  # no wait between: still moving
    st = struct.unpack_from("<HBB", frames(b, 5)[-1][3])[2]
    assert st == P.ST_BAD_STATE


def test_home_fails_with_hardware_error_when_switch_missing():
    inst, b = make(home_at=-10 ** 9)
    text = expect(inst, b, HOME, None, P.ST_HARDWARE, "home switch")
    assert not inst.mono.homed
    assert any(e[0] == P.EV_MONO and e[1] == 2 for e in events(b))
    assert b.feeds > 10  # the main loop went on, feeding the watchdog


def test_set_retardation_and_tracking():
    inst, b = make()
    expect(inst, b, SET_RET, {"a0_rad": 1.5}, P.ST_BAD_STATE, "HOME")
    ok(inst, b, HOME)
    ok(inst, b, MOVE, {"wavelength_nm": 600})
    r = ok(inst, b, SET_RET, {"a0_rad": 1.5708})
    assert abs(r["drive"] - 1.5708 * 600 * 0.0006366) < 1e-6, r
    assert abs(b.drive - r["drive"]) < 1e-9
    for args, st in (({"a0_rad": 0}, P.ST_OUT_OF_RANGE), ({"a0_rad": 3.2}, P.ST_OUT_OF_RANGE),
                     ({"a0_rad": 3.0}, P.ST_OUT_OF_RANGE),  # drive > 1 at 600 nm
                     ({"a0_rad": 1, "track_wavelength": 1}, P.ST_BAD_ARGS),
                     ({"track_wavelength": True}, P.ST_BAD_ARGS)):
        expect(inst, b, SET_RET, args, st)
        assert abs(b.drive - r["drive"]) < 1e-9


def test_set_hv_and_shutter():
    inst, b = make()
    r = ok(inst, b, SET_HV, {"volts": 800})
    assert r == {"hv_set_volts": 800.0, "hv_volts": 800.0} and b.hv == 800.0
    expect(inst, b, SET_HV, {"volts": 1100.5}, P.ST_OUT_OF_RANGE, "volts=1100.5", "0..1100")
    expect(inst, b, SET_HV, {"volts": -1}, P.ST_OUT_OF_RANGE)
    expect(inst, b, SET_HV, {"volts": "high"}, P.ST_BAD_ARGS)
    expect(inst, b, SET_HV, {}, P.ST_BAD_ARGS, "volts")
    assert b.hv == 800.0
    assert ok(inst, b, SHUTTER, {"open": True}) == {"shutter_open": True}
    expect(inst, b, SHUTTER, {"open": 1}, P.ST_BAD_ARGS, "boolean")
    assert b.shutter
    assert ok(inst, b, SHUTTER, {"open": False}) == {"shutter_open": False}


def test_set_limits():
    inst, b = make()
    ok(inst, b, SET_HV, {"volts": 700})
    r = ok(inst, b, SET_LIMITS, {"max_count_rate_cps": 1e6, "max_adc_level": 3000, "max_hv_volts": 900})
    assert r == {"max_count_rate_cps": 1e6, "max_adc_level": 3000, "max_high_fraction": 0.5,
                 "max_hv_volts": 900.0}
    assert b.guard == (1e6, 3000, 0.5)
    expect(inst, b, SET_HV, {"volts": 901}, P.ST_OUT_OF_RANGE, "0..900")
    expect(inst, b, SET_LIMITS, {"max_hv_volts": 600}, P.ST_OUT_OF_RANGE, "SET_HV")
    expect(inst, b, SET_LIMITS, {"max_adc_level": 4096}, P.ST_OUT_OF_RANGE)
    expect(inst, b, SET_LIMITS, {"max_hv_volts": 2000}, P.ST_OUT_OF_RANGE)
    expect(inst, b, SET_LIMITS, {"max_count_rate_cps": 0}, P.ST_OUT_OF_RANGE)
    expect(inst, b, SET_LIMITS, {"max_adc_level": 1, "max_hv_volts": 2000}, P.ST_OUT_OF_RANGE)
    # the high-time trip: a fraction of a window; at 1 (or 0) it could never (always) trip
    for bad in (0, 1.0, 1.5, -0.1):
        expect(inst, b, SET_LIMITS, {"max_high_fraction": bad}, P.ST_OUT_OF_RANGE,
               "max_high_fraction")
    expect(inst, b, SET_LIMITS, {"max_high_fraction": "half"}, P.ST_BAD_ARGS)
    assert ok(inst, b, SET_LIMITS) == r and b.guard == (1e6, 3000, 0.5)
    r = ok(inst, b, SET_LIMITS, {"max_high_fraction": 0.8})
    assert r["max_high_fraction"] == 0.8 and b.guard == (1e6, 3000, 0.8)


def test_status_has_every_key():
    inst, b = make()
    r = ok(inst, b, STATUS)
    keys = ("state mode bins periods pem_locked pem_period_ps a0_rad wavelength_nm "
            "mono_position moving homed hv_volts hv_set_volts shutter_open overload frames_sent "
            "frames_dropped frames_late uptime_us fault loop_max_us replayed").split()
    assert sorted(r) == sorted(keys), sorted(r)
    assert r["state"] == "idle" and r["wavelength_nm"] is None and r["homed"] is False
    assert r["moving"] is False
    assert r["pem_period_ps"] == 20_000_000
    b.locked = False
    assert ok(inst, b, STATUS)["pem_period_ps"] is None  # protocol: null when unknown


def test_status_loop_max_us_is_the_longest_pass_since_start():
    """A pass that pumps 4 frames of 500 PEM periods takes 4 × 10 ms of the fake board's
    time; after a START with 10 periods per frame only the new, shorter passes count."""
    inst, b = make()
    ok(inst, b, CONFIGURE, {"mode": "counting", "bins": 16, "periods": 500})
    ok(inst, b, START)
    run(inst, 3)
    assert ok(inst, b, STATUS)["loop_max_us"] >= 4 * 500 * 20
    ok(inst, b, STOP)
    ok(inst, b, CONFIGURE, {"mode": "counting", "bins": 16, "periods": 10})
    ok(inst, b, START)
    run(inst, 3)
    assert 4 * 10 * 20 <= ok(inst, b, STATUS)["loop_max_us"] < 4 * 500 * 20


def test_start_collects_the_garbage_of_earlier_commands():
    """A collection stops an RP2040's core for tens of ms, longer than the ADC ring holds:
    START makes it happen before the run, not at an allocation during it."""
    import gc
    inst, b = make()
    gc.collect()
    before = gc.mem_alloc()
    garbage = [bytearray(1000) for _ in range(50)]
    del garbage
    assert gc.mem_alloc() > before + 40_000   # still on the heap until a collection
    ok(inst, b, START)
    assert gc.mem_alloc() < before + 20_000, (before, gc.mem_alloc())


def test_self_test():
    inst, b = make()
    r = ok(inst, b, SELF_TEST)
    assert r["passed"] is True and r["checks"]["hv_readback"] is True, r
    b.hv = 300.0  # readback disagrees with the setpoint (0 V)
    r = ok(inst, b, SELF_TEST)
    assert r["passed"] is False and r["checks"]["hv_readback"] is False


def test_pem_config():
    inst, b = make()
    r = ok(inst, b, PEM_CONFIG, {"source": "internal", "frequency_hz": 42000})
    assert r["source"] == "internal" and r["frequency_hz"] == 42000.0
    assert b.pem_cfg == ("internal", 42000.0)
    expect(inst, b, PEM_CONFIG, {"source": "magic"}, P.ST_OUT_OF_RANGE, "source")
    expect(inst, b, PEM_CONFIG, {"frequency_hz": 10}, P.ST_OUT_OF_RANGE, "frequency_hz")
    expect(inst, b, PEM_CONFIG, {"drive_per_rad_nm": -1}, P.ST_OUT_OF_RANGE)
    expect(inst, b, PEM_CONFIG, {"freq": 1}, P.ST_BAD_ARGS, "freq")
    assert b.pem_cfg == ("internal", 42000.0)


def test_mono_config():
    inst, b = make()
    r = ok(inst, b, MONO_CONFIG, {"steps_per_nm": 20, "backlash_steps": 10})
    assert r["steps_per_nm"] == 20.0 and r["backlash_steps"] == 10
    expect(inst, b, MONO_CONFIG, {"min_nm": 800, "max_nm": 700}, P.ST_OUT_OF_RANGE, "min_nm")
    expect(inst, b, MONO_CONFIG, {"backlash_steps": -1}, P.ST_OUT_OF_RANGE)
    expect(inst, b, MONO_CONFIG, {"steps_per_nm": 0}, P.ST_OUT_OF_RANGE)
    assert inst.mono.config() == r


def test_reply_seq_numbers_increase_by_one():
    inst, b = make()
    seqs = []
    for _ in range(60):  # long enough for spontaneous STATUS frames in between
        ok(inst, b, IDENTIFY)
        seqs += [f[1] for f in frames(b)]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
    assert len(seqs) > 60  # some STATUS frames were numbered too


def test_internal_error_gives_reply_and_fault_event():
    inst, b = make()
    def boom(a):
        raise RuntimeError("kaput")
    inst.commands.table[IDENTIFY] = boom
    st, text = cmd(inst, b, IDENTIFY)
    assert st == P.ST_INTERNAL and "kaput" in text
    assert any(e[0] == P.EV_FAULT and "kaput" in e[2] for e in events(b))
    assert inst.state == "fault"
    assert ok(inst, b, CLEAR_FAULT) == {"state": "idle"}


def test_a_board_that_cannot_run_boots_into_fault_and_says_why():
    from fakeboard import FakeBoard
    from cpl.instrument import Instrument
    b = FakeBoard()
    b.boot_fault = "MicroPython 1.25.0 is too old: it needs v1.26.0 or later"
    inst = Instrument(b)
    inst.boot()
    evs = [e for e in events(b) if e[0] == P.EV_FAULT]
    assert evs and "1.26.0" in evs[0][2], events(b)
    st = ok(inst, b, STATUS)
    assert st["state"] == "fault" and "too old" in st["fault"], st
    expect(inst, b, START, None, P.ST_BAD_STATE, "too old")
    # a board without the attribute, or with an empty one, boots idle
    inst, b = make()
    st = ok(inst, b, STATUS)
    assert st["state"] == "idle" and st["fault"] is None, st


def test_the_main_loop_goes_on_while_homing_and_home_answers_once_at_the_end():
    inst, b = make(home_at=-1234)
    b.rx += command_frame(30, HOME)
    run(inst, 3)
    assert inst.mono.homing() and not frames(b, 5), "HOME answers when homing ends"
    feeds = b.feeds
    # commands are answered meanwhile: STATUS at once, the ones that need the
    # monochromator refused with the reason
    st, r = cmd(inst, b, STATUS, rid=31)
    assert st == P.OK and r["moving"] is True and r["homed"] is False
    expect(inst, b, MOVE, {"wavelength_nm": 500}, P.ST_BAD_STATE, "homing")
    expect(inst, b, HOME, None, P.ST_BAD_STATE, "already homing")
    # a retry of the HOME under way gets no second reply
    b.written.clear()
    b.rx += raw_frame(0x10, 0, 0, struct.pack("<HBB", 30, HOME, 1))
    run(inst, 2)
    assert not frames(b, 5) and inst.mono.homing()
    # an overload while homing is a fault at once, not after the drive
    b.trip("a test overload")
    run(inst, 1)
    assert inst.state == "fault" and inst.mono.homing()
    assert any(e[0] == P.EV_OVERLOAD for e in events(b))
    assert b.feeds > feeds
    b.written.clear()
    passes = 0
    while inst.mono.homing():
        run(inst)
        passes += 1
    run(inst)
    assert passes > 50  # the drive took many passes of the loop, not one blocking call
    replies = frames(b, 5)
    assert len(replies) == 1
    rid, op, status = struct.unpack_from("<HBB", replies[0][3], 0)
    assert (rid, op, status) == (30, HOME, P.OK)
    assert json.loads(bytes(replies[0][3][4:])) == {"position": 0}
    assert inst.mono.homed and any(e[0] == P.EV_MONO and "homed" in e[2] for e in events(b))
    # a retry after the end gets the kept reply, and homing does not start again
    b.written.clear()
    b.rx += raw_frame(0x10, 0, 0, struct.pack("<HBB", 30, HOME, 1))
    run(inst, 2)
    again = frames(b, 5)
    assert len(again) == 1 and bytes(again[0][3]) == bytes(replies[0][3])
    assert not inst.mono.homing() and inst.replay.replayed == 1
