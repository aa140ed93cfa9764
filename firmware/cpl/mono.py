"""Emission monochromator: steps ↔ nm, homing, and backlash-free positioning.

Positions are in steps from the home position (the point where the home switch opens when
approached upward). Every move ends travelling upward (+ steps): a target below the current
position is approached by first going `backlash_steps` below it.
"""
from board.base import TICKS_MASK
from cpl import protocol as P
from cpl.args import CommandError, bad_state, in_range

MOVE_TIMEOUT_US = 120_000_000

# MONO_CONFIG at boot (a host restores the stored calibration with MONO_CONFIG)
DEFAULT_CONFIG = {"steps_per_nm": 10.0, "home_nm": 200.0, "backlash_steps": 50,
                  "min_nm": 200.0, "max_nm": 900.0}


class Mono:
    def __init__(self, board) -> None:
        self._board = board
        self.apply_config(DEFAULT_CONFIG)
        self.homed = False
        self._offset = 0  # board position of home
        self._legs: list = []  # pending absolute targets (home-relative steps)
        self.last_dir = 0  # direction of the last completed leg: +1 / -1 / 0 unknown
        self._phases: list = []  # homing: (steps per leg, switch closed at end, limit, what)
        self._phase_moved = 0
        self._step_t0 = 0
        self.home_error = ""  # why the last homing failed ("" if it did not)

    # conversions --------------------------------------------------------------------------
    def position(self) -> int:
        """Steps from home (from boot position until homed)."""
        return self._board.position() - self._offset

    def steps_for(self, nm: float) -> int:
        return int(round((nm - self.home_nm) * self.steps_per_nm))

    def nm_for(self, steps: int) -> float:
        return self.home_nm + steps / self.steps_per_nm

    def wavelength_nm(self):
        """Current wavelength in nm, None until homed."""
        return self.nm_for(self.position()) if self.homed else None

    def target_nm(self):
        """Wavelength (nm) the monochromator is at or moving to, None until homed."""
        if not self.homed:
            return None
        return self.nm_for(self._legs[-1]) if self._legs else self.wavelength_nm()

    def moving(self) -> bool:
        return bool(self._legs) or bool(self._phases) or self._board.moving()

    def homing(self) -> bool:
        """True from `start_home()` until homing has ended (homed, or `home_error`)."""
        return bool(self._phases)

    # configuration ----------------------------------------------------------------------
    def validate_config(self, a: dict) -> dict:
        """Merge MONO_CONFIG args with the current values and check them; returns the new
        configuration without applying it."""
        c = self.config()
        c.update(a)
        in_range("steps_per_nm", c["steps_per_nm"], 0.01, 100000.0, "steps/nm")
        in_range("home_nm", c["home_nm"], 0.0, 20000.0, "nm")
        in_range("backlash_steps", c["backlash_steps"], 0, 100000, "steps")
        in_range("min_nm", c["min_nm"], 0.0, 20000.0, "nm")
        in_range("max_nm", c["max_nm"], 0.0, 20000.0, "nm")
        if not c["min_nm"] < c["max_nm"]:
            raise CommandError(P.ST_OUT_OF_RANGE, "min_nm=%s must be below max_nm=%s"
                               % (c["min_nm"], c["max_nm"]))
        span = (c["max_nm"] - min(c["min_nm"], c["home_nm"])) * c["steps_per_nm"]
        in_range("travel in steps ((max_nm - min(min_nm, home_nm)) * steps_per_nm)",
                 span, 0, 1 << 29)
        if self.moving():
            raise bad_state("the monochromator is moving; wait until it stops")
        return c

    def apply_config(self, c: dict) -> None:
        self.steps_per_nm = c["steps_per_nm"]
        self.home_nm = c["home_nm"]
        self.backlash_steps = c["backlash_steps"]
        self.min_nm = c["min_nm"]
        self.max_nm = c["max_nm"]

    def config(self) -> dict:
        return {"steps_per_nm": self.steps_per_nm, "home_nm": self.home_nm,
                "backlash_steps": self.backlash_steps, "min_nm": self.min_nm,
                "max_nm": self.max_nm}

    # moves --------------------------------------------------------------------------------
    def validate_move(self, a: dict) -> int:
        """Target in steps for MOVE args ({'wavelength_nm'} or {'position'}), checked."""
        if ("wavelength_nm" in a) == ("position" in a):
            raise CommandError(P.ST_BAD_ARGS, "give exactly one of wavelength_nm, position")
        if self._phases:
            raise bad_state("the monochromator is homing; wait for HOME's reply")
        if not self.homed:
            raise bad_state("the monochromator is not homed; send HOME first")
        if self.moving():
            raise bad_state("the monochromator is moving; wait until it stops")
        if "wavelength_nm" in a:
            in_range("wavelength_nm", a["wavelength_nm"], self.min_nm, self.max_nm, "nm")
            return self.steps_for(a["wavelength_nm"])
        target = a["position"]
        lo = self.steps_for(self.min_nm)
        hi = self.steps_for(self.max_nm)
        in_range("position", target, lo, hi, "steps (min_nm..max_nm)")
        return target

    def move_to(self, target: int) -> None:
        """Start a move (non-blocking; `poll()` drives it)."""
        here = self.position()
        if target < here or (target == here and self.last_dir < 0):
            self._legs = [target - self.backlash_steps, target]
        elif target > here:
            self._legs = [target]
        else:
            self._legs = []
        self.poll()

    def poll(self) -> None:
        """Issue the next leg of a move, or the next step of homing, when the stepper is
        idle. Call from the main loop."""
        if self._phases:
            self._poll_home()
        elif self._legs and not self._board.moving():
            here = self.position()
            nxt = self._legs[0]
            if here == nxt:
                self._legs.pop(0)
                if self._legs:
                    self.poll()
                return
            self.last_dir = 1 if nxt > here else -1
            self._board.step(nxt - here)

    # homing -------------------------------------------------------------------------------
    def start_home(self) -> None:
        """Begin to find the home switch and zero the position there; `poll()` drives it
        and the main loop goes on meanwhile. It ends with `homed` true, or with
        `home_error` saying why (the switch not found within 1.2 x the travel, or a stepper
        that does not stop)."""
        chunk = max(1, int(self.steps_per_nm))
        travel = int((self.max_nm - min(self.min_nm, self.home_nm)) * self.steps_per_nm * 1.2)
        travel += 2 * self.backlash_steps + 2 * chunk
        self._legs = []
        self.homed = False
        self.home_error = ""
        # leave the switch upward, then seek it downward, then creep up to its edge
        self._phases = [(chunk, False, travel, "leave the home switch"),
                        (-chunk, True, travel, "find the home switch"),
                        (1, False, 2 * chunk + self.backlash_steps + 2,
                         "find the home switch edge")]
        self._phase_moved = 0
        self._step_t0 = self._board.ticks_us()
        self._poll_home()

    def _poll_home(self) -> None:
        b = self._board
        if b.moving():
            if (b.ticks_us() - self._step_t0) & TICKS_MASK > MOVE_TIMEOUT_US:
                self._fail_home("the stepper did not stop within %d s"
                                % (MOVE_TIMEOUT_US // 1_000_000))
            return
        n, closed, limit, what = self._phases[0]
        if b.home_switch() == closed:
            self._phases.pop(0)
            self._phase_moved = 0
            if not self._phases:
                self._offset = b.position()
                self.homed = True
                self.last_dir = 1
            return
        if self._phase_moved >= limit:
            self._fail_home("could not %s within %d steps" % (what, limit))
            return
        b.step(n)
        self._phase_moved += abs(n)
        self._step_t0 = b.ticks_us()

    def _fail_home(self, why: str) -> None:
        self._phases = []
        self.home_error = why
