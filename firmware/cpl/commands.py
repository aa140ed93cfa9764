"""COMMAND handlers. Each validates its arguments in full, then acts; a handler that raises
CommandError has changed nothing. Results are JSON-ready dicts."""
import gc
import sys

from cpl import FIRMWARE_VERSION, PROTOCOL_REVISION, PROTOCOL_VERSION
from cpl import protocol as P
from cpl.acquisition import MAX_FRAMES
from cpl.args import (BOOL, DEFERRED, INT, NUM, STR, CommandError, bad_state, check,
                      in_range)

NAMES = {1: "IDENTIFY", 2: "CONFIGURE", 3: "START", 4: "STOP", 5: "MOVE", 6: "HOME",
         7: "SET_RETARDATION", 8: "SET_HV", 9: "SHUTTER", 10: "STATUS", 11: "SELF_TEST",
         12: "SET_LIMITS", 13: "CLEAR_FAULT", 14: "PEM_CONFIG", 15: "MONO_CONFIG",
         16: "MAINTENANCE", 17: "HV_CONFIG"}


class Commands:
    def __init__(self, inst) -> None:
        self.i = inst
        self.table = {1: self.identify, 2: self.configure, 3: self.start, 4: self.stop,
                      5: self.move, 6: self.home, 7: self.set_retardation, 8: self.set_hv,
                      9: self.shutter, 10: self.status, 11: self.self_test,
                      12: self.set_limits, 13: self.clear_fault, 14: self.pem_config,
                      15: self.mono_config, 16: self.maintenance, 17: self.hv_config}

    def handler(self, opcode: int):
        h = self.table.get(opcode)
        if h is None:
            raise CommandError(P.ST_UNKNOWN_COMMAND, "unknown opcode %d; known opcodes: %s"
                               % (opcode, ", ".join("%d %s" % (k, NAMES[k])
                                                    for k in sorted(NAMES))))
        return h

    def identify(self, a: dict) -> dict:
        check(a, {})
        b = self.i.board
        return {"implementation": sys.implementation.name, "board": b.name,
                "firmware_version": FIRMWARE_VERSION, "protocol_version": PROTOCOL_VERSION,
                "protocol_revision": PROTOCOL_REVISION, "serial": b.serial()}

    def configure(self, a: dict) -> dict:
        a = check(a, {"mode": STR, "bins": INT, "periods": INT, "sample_rate_hz": NUM,
                      "block_samples": INT, "trigger": STR, "pulse_period_ns": INT,
                      "trigger_width_ns": INT, "gate_delay_ns": INT, "gate_width_ns": INT,
                      "gates": INT}, ("mode",))
        acq = self.i.acq
        c = acq.validate_config(a, self.i.pem.frequency_hz)
        acq.apply_config(c)
        return acq.config()

    def start(self, a: dict) -> dict:
        a = check(a, {"frames": INT})
        frames = a.get("frames", 0)
        if "frames" in a:
            in_range("frames", frames, 1, MAX_FRAMES, "data frames")
        i = self.i
        if i.state == "fault":
            raise bad_state("in fault (%s); send CLEAR_FAULT first" % i.fault_text)
        if i.state == "running":
            raise bad_state("already running; STOP first")
        # the garbage of earlier commands is collected now, not by an allocation during the
        # run: on an RP2040 a collection stops the core for tens of ms, longer than the ADC
        # ring holds
        gc.collect()
        acq_id = i.acq.start(frames)
        i.state = "running"
        i.update_trigger()
        i.restart_loop_time()
        i.reset_frame_flags()
        if not i.board.pem_locked():
            # counting frames wait for the reference: say so now, not by silence
            i.tx.event(P.EV_PEM_UNLOCK, P.SEV_WARNING, "START without a locked PEM reference: "
                       "no usable data until it locks (check the reference cable and "
                       "PEM_CONFIG)")
        if frames:
            return {"acq_id": acq_id, "frames": frames}
        return {"acq_id": acq_id}

    def stop(self, a: dict) -> dict:
        check(a, {})
        i = self.i
        if i.acq.running:
            i.acq.stop()
        if i.state == "running":
            i.state = "idle"
        i.update_trigger()
        return {"frames_sent": i.acq.frames_sent}

    def move(self, a: dict) -> dict:
        a = check(a, {"wavelength_nm": NUM, "position": INT})
        i = self.i
        target = i.mono.validate_move(a)
        nm = i.mono.nm_for(target)
        i.pem.check_wavelength(nm)
        i.mono.move_to(target)
        i.pem.follow_wavelength(nm)
        return {"position": target, "wavelength_nm": nm}

    def home(self, a: dict):
        """Start homing; the main loop answers when it ends (Instrument.end_home)."""
        check(a, {})
        i = self.i
        if i.state == "running":
            raise bad_state("HOME is not allowed while running; STOP first")
        if i.mono.homing():
            raise bad_state("already homing; HOME replies when it ends")
        i.mono.start_home()
        return DEFERRED

    def set_retardation(self, a: dict) -> dict:
        a = check(a, {"a0_rad": NUM, "track_wavelength": BOOL}, ("a0_rad",))
        i = self.i
        track = a.get("track_wavelength", True)
        drive = i.pem.validate_retardation(a["a0_rad"], i.mono.target_nm())
        i.pem.set_retardation(a["a0_rad"], track, drive)
        return {"a0_rad": a["a0_rad"], "drive": drive}

    def set_hv(self, a: dict) -> dict:
        a = check(a, {"volts": NUM}, ("volts",))
        i = self.i
        v = a["volts"]
        if i.hv is not None:
            i.hv.check_volts(v)
        in_range("volts", v, 0.0, i.safety.max_hv_volts, "V (SET_LIMITS max_hv_volts)")
        if v > 0 and i.state == "fault":
            raise bad_state("HV stays off in fault (%s); send CLEAR_FAULT first"
                            % i.fault_text)
        i.board.hv_set(v)
        i.safety.hv_set_volts = v
        return {"hv_set_volts": v, "hv_volts": i.board.hv_read()}

    def shutter(self, a: dict) -> dict:
        a = check(a, {"open": BOOL}, ("open",))
        i = self.i
        if a["open"] and i.state == "fault":
            raise bad_state("the shutter stays closed in fault (%s); send CLEAR_FAULT first"
                            % i.fault_text)
        i.board.shutter_set(a["open"])
        i.safety.shutter_cmd = a["open"]
        i.update_trigger()
        return {"shutter_open": i.board.shutter_open()}

    def status(self, a: dict) -> dict:
        check(a, {})
        return self.i.status()

    def self_test(self, a: dict) -> dict:
        check(a, {})
        i = self.i
        b = i.board
        hv = b.hv_read()
        want = i.safety.hv_set_volts
        checks = {
            "hv_readback": abs(hv - want) <= 0.05 * want + 5.0,
            "shutter_readback": b.shutter_open() == i.safety.shutter_cmd,
            "guard_clear": not b.guard_tripped(),
            "usb_connected": b.usb_connected(),
            "pem_locked": b.pem_locked() or i.pem.drive == 0.0,
        }
        for k, v in b.self_test().items():
            checks[k] = bool(v)
        passed = True
        for v in checks.values():
            passed = passed and v
        return {"passed": passed, "checks": checks}

    def set_limits(self, a: dict) -> dict:
        a = check(a, {"max_count_rate_cps": NUM, "max_adc_level": INT,
                      "max_high_fraction": NUM, "max_hv_volts": NUM})
        s = self.i.safety
        s.apply_limits(s.validate_limits(a))
        return s.limits()

    def clear_fault(self, a: dict) -> dict:
        check(a, {})
        i = self.i
        i.safety.clear()
        if i.state == "fault":
            i.state = "idle"
            i.fault_text = ""
        return {"state": i.state}

    def pem_config(self, a: dict) -> dict:
        a = check(a, {"source": STR, "frequency_hz": NUM, "drive_per_rad_nm": NUM})
        i = self.i
        nm = i.mono.target_nm()
        c = i.pem.validate_config(a, i.state == "running", nm)
        i.acq.check_pem(c["frequency_hz"])
        i.pem.apply_config(c, nm)
        return i.pem.config()

    def mono_config(self, a: dict) -> dict:
        a = check(a, {"steps_per_nm": NUM, "home_nm": NUM, "backlash_steps": INT,
                      "min_nm": NUM, "max_nm": NUM})
        i = self.i
        if i.state == "running":
            raise bad_state("MONO_CONFIG is not allowed while running; STOP first")
        c = i.mono.validate_config(a)
        i.mono.apply_config(c)
        if i.mono.homed:
            i.pem.follow_wavelength(i.mono.wavelength_nm())
        return i.mono.config()

    # --- board life cycle and detector (hvmodel) ---------------------------------------------
    def maintenance(self, a: dict) -> dict:
        """Reply, then shut down and restart into maintenance mode (firmware updates)."""
        check(a, {})
        i = self.i
        if getattr(i.board, "reboot_to_maintenance", None) is None:
            raise bad_state("this board has no maintenance mode")
        if i.state == "running":
            raise bad_state("MAINTENANCE is not allowed while running; STOP first")
        i.maintenance_at = i.clock.update()
        return {"rebooting": "maintenance"}

    def hv_config(self, a: dict) -> dict:
        i = self.i
        if i.hv is None:
            from cpl.hvmodel import HvModel
            i.hv = HvModel()
        hv = i.hv
        c = hv.validate(a, float(i.board.__class__.max_hv_volts), i.safety.hv_set_volts)
        if c["power"] and i.state == "fault":
            raise bad_state("a counting head stays off in fault (%s); send CLEAR_FAULT first"
                            % i.fault_text)
        try:
            hv.apply(i.board, c)
        except ValueError as e:
            raise CommandError(P.ST_OUT_OF_RANGE, str(e))
        i.safety.set_hv_range(c["max_volts"])
        return hv.config()
