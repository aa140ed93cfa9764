"""Limits and the PMT overload guard. The board cuts HV and closes the shutter itself on a
trip (within 1 ms); this module keeps the limits, arms the guard, and latches the fault."""
from cpl.args import CommandError, in_range
from cpl import protocol as P


class Safety:
    def __init__(self, board) -> None:
        self._board = board
        self.max_count_rate_cps = 2.0e6
        self.max_adc_level = 4000
        # the photon input's high time per guard window that trips (docs/hardware.md, "PMT
        # overload guard"): above the duty of a non-retriggerable stretcher at the count
        # limit (2e6 … 1e7 counts/s × 30 ns = 6 … 30 %), far below a stuck input (100 %)
        self.max_high_fraction = 0.5
        self.max_hv_volts = float(board.max_hv_volts)
        self.overload = False  # latched until CLEAR_FAULT
        self.hv_set_volts = 0.0
        self.shutter_cmd = False

    def arm(self) -> None:
        self._board.guard_arm(self.max_count_rate_cps, self.max_adc_level,
                              self.max_high_fraction)

    def validate_limits(self, a: dict) -> dict:
        c = self.limits()
        c.update(a)
        in_range("max_count_rate_cps", c["max_count_rate_cps"], 1.0, 1.0e9, "counts/s")
        # the level check is `sample > max_adc_level`: at 4095 it could never trip
        in_range("max_adc_level", c["max_adc_level"], 0, 4094)
        # a window is never more than 100 % high: at 1 the trip could never come
        in_range("max_high_fraction", c["max_high_fraction"], 0.01, 0.99)
        in_range("max_hv_volts", c["max_hv_volts"], 0.0, float(self._board.max_hv_volts), "V")
        if self.hv_set_volts > c["max_hv_volts"]:
            raise CommandError(P.ST_OUT_OF_RANGE,
                               "HV is set to %s V, above the new max_hv_volts=%s; "
                               "lower it with SET_HV first" % (self.hv_set_volts,
                                                                 c["max_hv_volts"]))
        return c

    def apply_limits(self, c: dict) -> None:
        self.max_count_rate_cps = c["max_count_rate_cps"]
        self.max_adc_level = c["max_adc_level"]
        self.max_high_fraction = c["max_high_fraction"]
        self.max_hv_volts = c["max_hv_volts"]
        self.arm()

    def limits(self) -> dict:
        return {"max_count_rate_cps": self.max_count_rate_cps,
                "max_adc_level": self.max_adc_level,
                "max_high_fraction": self.max_high_fraction, "max_hv_volts": self.max_hv_volts}

    def check_trip(self):
        """The guard's reason text on a new trip, else None."""
        if not self.overload and self._board.guard_tripped():
            self.overload = True
            self.make_safe()
            return self._board.guard_reason()
        return None

    def set_hv_range(self, max_volts: float) -> None:
        """A new HV model: max_hv_volts follows its range (SET_LIMITS may lower it)."""
        self.max_hv_volts = max_volts

    def check_guard(self):
        """The reason a guard stopped guarding (its heartbeat stopped), else None."""
        reason = self._board.guard_fault()
        if reason:
            self.make_safe()
            return reason
        return None

    def make_safe(self) -> None:
        """HV off and shutter closed (again; the board already did it on a trip)."""
        self._board.hv_set(0.0)
        self._board.shutter_set(False)
        self.hv_set_volts = 0.0
        self.shutter_cmd = False

    def clear(self) -> None:
        self._board.guard_reset()
        self.overload = False
