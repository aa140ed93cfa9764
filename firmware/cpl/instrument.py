"""The instrument: wires the board to the core modules and runs the main loop."""
import json

from board.base import TICKS_MASK
from cpl import FIRMWARE_VERSION
from cpl import protocol as P
from cpl.acquisition import Acquisition
from cpl.args import DEFERRED, CommandError, parse
from cpl.clock import Clock
from cpl.commands import Commands
from cpl.mono import Mono
from cpl.pem import Pem
from cpl.replay import RETRY, Replay, args_key
from cpl.safety import Safety
from cpl.tx import Tx

WATCHDOG_MS = 5000
STATUS_PERIOD_US = 1_000_000
IDLE_WAIT_US = 20_000
BUSY_WAIT_US = 1_000
FRAMES_PER_LOOP = 4
RESET_WATCHDOG = 1  # board.base.RESET_WATCHDOG


CONTROL_RESERVE = 8  # queue slots kept free for a reply and the events it may cause


class Instrument:
    def __init__(self, board) -> None:
        self.board = board
        self.clock = Clock(board)
        self.tx = Tx(board, self.clock)
        self.reader = P.Reader()
        self.safety = Safety(board)
        self.hv = None  # cpl.hvmodel.HvModel, made by the first HV_CONFIG (heap at boot)
        self.mono = Mono(board)
        self.pem = Pem(board)
        self.acq = Acquisition(board, self.tx)
        self.commands = Commands(self)
        self.replay = Replay()
        self.state = "idle"
        self.fault_text = ""
        self.bad_frames = 0
        self.unknown_frames = 0
        self._status_last = 0
        self._held = 0  # SHUTTER_OPEN | HV_ON bits that held since the last data frame
        self._moved = False
        self.loop_max_us = 0  # longest pass of the main loop (its sleep excluded) since START
        self.maintenance_at = -1  # MAINTENANCE accepted at this time (µs): reboot once sent
        self._loop_reset = False
        self._home_rid = -1  # request id of the HOME that waits for its reply (-1: none)
        self._home_key = 0

    # boot and loop ----------------------------------------------------------------------
    def boot(self) -> None:
        b = self.board
        b.watchdog_start(WATCHDOG_MS)
        self.safety.make_safe()
        self.safety.arm()
        self.pem.apply_board()
        self.tx.event(P.EV_BOOT, P.SEV_INFO, FIRMWARE_VERSION)
        # a board that cannot run here (e.g. a MicroPython release older than it supports)
        # says why in `boot_fault`: the instrument starts in fault with that reason
        boot_fault = getattr(b, "boot_fault", "")
        if boot_fault:
            self._enter_fault(boot_fault)
            self.tx.event(P.EV_FAULT, P.SEV_ERROR, boot_fault)
        if b.reset_cause() == RESET_WATCHDOG:
            self.tx.event(P.EV_WATCHDOG, P.SEV_ERROR, "the previous run ended in a watchdog reset")
        self._status_last = self.clock.update()

    def run(self) -> None:
        self.boot()
        while True:
            self.step()

    def step(self) -> None:
        """One pass of the main loop: feed the watchdog, take commands, check the guard and
        the PEM, drive the monochromator, stream data, then sleep if there was nothing to do."""
        b = self.board
        b.watchdog_feed()
        busy = False
        t = self.clock.update()
        try:
            busy = self._receive(t)
            self.mono.poll()
            if self._home_rid >= 0 and not self.mono.homing():
                self.end_home()
            self._track_conditions()
            if self.state == "running":
                acq = self.acq
                n = 0
                while (n < FRAMES_PER_LOOP and not acq.done()
                       and acq.pump(self._frame_flags(), self.mono.position())):
                    n += 1
                    self._reset_conditions()
                if acq.done():
                    self._end_bounded()
                    n += 1
                busy = busy or n > 0
            reason = self.safety.check_trip()
            if reason is not None:
                self._enter_fault("overload: " + reason)
                self.tx.event(P.EV_OVERLOAD, P.SEV_ERROR, reason)
            if self.state != "fault":
                reason = self.safety.check_guard()
                if reason is not None:
                    self._enter_fault("guard: " + reason)
                    self.tx.event(P.EV_FAULT, P.SEV_ERROR, self.fault_text)
            ev = self.pem.poll_lock()
            if ev:
                self.tx.event(ev, P.SEV_INFO if ev == P.EV_PEM_LOCK else P.SEV_WARNING,
                              "PEM reference %s" % ("locked" if ev == P.EV_PEM_LOCK
                                                    else "lost"))
            # no new STATUS while anything waits in the queue: with nobody reading they would
            # fill it (64 frames, 40 kB of heap)
            if (self.state != "running" and not self.tx.queued()
                    and self.clock.elapsed_us(self._status_last) >= STATUS_PERIOD_US):
                self._status_last = t
                self.tx.control(P.STATUS, json.dumps(self.status()).encode())
            self.tx.flush()
            if self.maintenance_at >= 0:
                self._maintenance()
        except Exception as e:
            self._enter_fault("%s in main loop: %s" % (type(e).__name__, e))
            self.tx.event(P.EV_FAULT, P.SEV_ERROR, self.fault_text)
            busy = True
        # how long the core takes to come round: blocks and frames go late beyond the time
        # their ring holds
        dt = (b.ticks_us() - t) & TICKS_MASK
        if self._loop_reset:  # a START in this pass: its own set-up does not count
            self._loop_reset = False
            self.loop_max_us = 0
        elif dt > self.loop_max_us:
            self.loop_max_us = dt
        if not busy:
            if self.state == "running" or self.mono.moving():
                b.wait(BUSY_WAIT_US)
            elif self.reader.pending():
                b.wait(IDLE_WAIT_US)  # time must pass: a truncated frame goes stale
            else:
                b.idle(IDLE_WAIT_US)  # nothing to do until the host writes

    def _maintenance(self) -> None:
        """After MAINTENANCE: once its reply is handed to USB and 0.1 s more for the host to
        read it (0.5 s at most), shut down and restart the chip into maintenance mode."""
        waited = self.clock.elapsed_us(self.maintenance_at)
        if waited < 100_000 or (self.tx.queued() and waited < 500_000):
            return
        self.board.reboot_to_maintenance()

    def restart_loop_time(self) -> None:
        """loop_max_us counts from the next pass of the main loop (START calls this)."""
        self._loop_reset = True

    def update_trigger(self) -> None:
        """The excitation trigger pulses only while a gated acquisition with the board's own
        trigger runs, the shutter is open and there is no fault (the board also stops it by
        itself when the shutter closes or the guard trips)."""
        acq = self.acq
        on = (self.state == "running" and acq.running and acq.mode == "gated"
              and acq.trigger == "internal" and self.safety.shutter_cmd
              and not self.safety.overload)
        if on != self.board.trigger_on():
            self.board.trigger_enable(on)

    def _end_bounded(self) -> None:
        """A bounded acquisition produced its frames: stop, report losses, then ACQ_DONE."""
        acq = self.acq
        acq.stop()
        self.state = "idle"
        self.update_trigger()
        self.tx.event(P.EV_ACQ_DONE, P.SEV_INFO,
                      "acquisition %d ended after %d data frames (%d sent)"
                      % (acq.acq_id, acq.produced, acq.frames_sent))

    def _enter_fault(self, text: str) -> None:
        if self.acq.running:
            self.acq.stop()
        self.safety.make_safe()
        self.state = "fault"
        self.fault_text = text
        self.board.trigger_enable(False)

    # commands -------------------------------------------------------------------------------
    def _receive(self, now: int) -> bool:
        r = self.reader
        space = r.space()
        if len(space):
            r.added(self.board.usb_read_into(space))
        got = False
        while True:
            # Backpressure: a command is read only when its reply (and a few events) can be
            # queued, so a host that pipelines more than the queue holds is slowed down, as
            # USB NAKs it, instead of losing replies.
            if self.tx.room() < CONTROL_RESERVE:
                self.tx.flush()
                if self.tx.room() < CONTROL_RESERVE:
                    return got
            before = r.rejected
            frame = r.poll(now)
            for _ in range(r.rejected - before):
                self.bad_frames += 1
                self.tx.event(P.EV_BAD_FRAME, P.SEV_WARNING,
                              "host frame dropped: %s" % r.last_reject)
            if frame is None:
                return got
            got = True
            if P.frame_type(frame) == P.COMMAND:
                self.handle_command(P.frame_payload(frame))
            else:
                self.unknown_frames += 1

    def handle_command(self, payload) -> None:
        """Answer one COMMAND payload with exactly one REPLY."""
        if len(payload) < 4:
            self.tx.reply(0xFFFF, 0, P.ST_BAD_FRAME,
                          ("command payload is %d bytes; it needs at least 4 (request_id "
                           "u16, opcode u8, reserved u8)" % len(payload)).encode())
            return
        rid = payload[0] | (payload[1] << 8)
        op = payload[2]
        args = payload[4:]
        key = args_key(args)
        replay = self.replay
        if payload[3] & RETRY:
            k = replay.find(rid, op, key)
            if k >= 0:  # the original was executed; its reply was lost on the way
                replay.replayed += 1
                self.tx.reply(rid, op, replay.status(k), replay.body(k))
                return
        if payload[3] & RETRY and (rid, op, key) == (self._home_rid, P.OP_HOME, self._home_key):
            return  # a retry of the HOME under way: its one reply comes when it ends
        fault = None
        try:
            handler = self.commands.handler(op)
            result = handler(parse(args))
            if result is DEFERRED:
                self._home_rid, self._home_key = rid, key
                return
            status, body = P.OK, json.dumps(result).encode()
        except CommandError as e:
            status, body = e.status, e.text.encode()
        except Exception as e:
            fault = "%s in opcode %d: %s" % (type(e).__name__, op, e)
            status, body = P.ST_INTERNAL, fault.encode()
        self.tx.reply(rid, op, status, body)
        replay.keep(rid, op, key, status, body)
        if fault is not None:
            self._enter_fault(fault)
            self.tx.event(P.EV_FAULT, P.SEV_ERROR, fault)
        self._track_conditions()

    def end_home(self) -> None:
        """Answer the HOME under way, now that homing has ended: its REPLY (kept for
        retries) and EVENT MONO."""
        rid, self._home_rid = self._home_rid, -1
        mono = self.mono
        if mono.homed:
            nm = mono.wavelength_nm()
            self.pem.follow_wavelength(nm)
            self.tx.event(P.EV_MONO, P.SEV_INFO, "homed at %s nm" % nm)
            status, body = P.OK, json.dumps({"position": mono.position()}).encode()
        else:
            self.tx.event(P.EV_MONO, P.SEV_ERROR, "homing failed: " + mono.home_error)
            status, body = P.ST_HARDWARE, mono.home_error.encode()
        self.tx.reply(rid, P.OP_HOME, status, body)
        self.replay.keep(rid, P.OP_HOME, self._home_key, status, body)

    # frame flags ----------------------------------------------------------------------------
    def _conditions(self) -> int:
        c = 0
        if self.safety.shutter_cmd:
            c |= P.F_SHUTTER_OPEN
        settled = self.board.hv_settled()  # None: the board does not know (the sim)
        if settled or (settled is None and self.safety.hv_set_volts > 0):
            c |= P.F_HV_ON
        return c

    def _track_conditions(self) -> None:
        self._held &= self._conditions()
        if self.mono.moving():
            self._moved = True

    def _reset_conditions(self) -> None:
        self._held = self._conditions()
        self._moved = self.mono.moving()

    def reset_frame_flags(self) -> None:
        self._reset_conditions()

    def _frame_flags(self) -> int:
        f = self._held & self._conditions()
        if self._moved or self.mono.moving():
            f |= P.F_MONO_MOVING
        return f

    # status ---------------------------------------------------------------------------------
    def status(self) -> dict:
        b = self.board
        nm = self.mono.wavelength_nm()
        period = b.pem_period_ps()
        st = {
            "state": self.state, "mode": self.acq.mode, "bins": self.acq.bins,
            "periods": self.acq.periods, "pem_locked": b.pem_locked(),
            "pem_period_ps": period if period else None, "a0_rad": self.pem.a0_at(nm),
            "wavelength_nm": nm, "mono_position": self.mono.position(),
            "moving": self.mono.moving(),
            "homed": self.mono.homed, "hv_volts": b.hv_read(),
            "hv_set_volts": self.safety.hv_set_volts, "shutter_open": b.shutter_open(),
            "overload": self.safety.overload, "frames_sent": self.tx.frames_sent,
            "frames_dropped": self.tx.frames_dropped, "frames_late": self.tx.frames_late,
            "uptime_us": self.clock.now_us(), "fault": self.fault_text or None,
            "loop_max_us": self.loop_max_us, "replayed": self.replay.replayed,
        }
        if self.acq.mode == "gated" or b.trigger_on():
            st["trigger_on"] = b.trigger_on()  # only where it can matter: gated counting
        return st
