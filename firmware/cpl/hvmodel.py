"""The detector's HV model (HV_CONFIG): which kind of detector the HV enable (GP12) and HV
control (GP10) outputs drive, and how. The host keeps it per board serial and sends it after
every connect (cplscope.board_settings); a board boots with the `supply` model.

kinds:
- supply: a PMT on an HV supply with a control input and an HV monitor (ADC1): SET_HV sets
  0 … max_volts; the self-test compares the monitor with the value set.
- module: an analog PMT module (H10720/H7826-class): a 0.5 … 1.1 V control input sets the
  gain, no monitor, about 0.2 s to settle. SET_HV sets 0 (off) or min_volts … max_volts
  (control voltage = volts / volts_per_control_v).
- counting_head: a photon-counting head (H10682-class): no HV control and no monitor; HV
  enable powers it. It is powered as soon as this is set with power=true (never through
  SET_HV, which then takes only 0, power off), off in fault, on again at CLEAR_FAULT.
"""
from cpl.args import BOOL, INT, NUM, STR, CommandError, check, in_range, one_of
from cpl import protocol as P

SUPPLY = "supply"
MODULE = "module"
COUNTING_HEAD = "counting_head"

# per kind: volts_per_control_v, min_volts, max_volts, monitor, settle_ms
DEFAULTS = {
    SUPPLY: (1250.0 / 3.3, 0.0, 1250.0, True, 0),
    MODULE: (1000.0, 500.0, 1100.0, False, 200),
    COUNTING_HEAD: (1.0, 0.0, 0.0, False, 200),
}
SPEC = {"kind": STR, "volts_per_control_v": NUM, "min_volts": NUM, "max_volts": NUM,
        "monitor": BOOL, "settle_ms": INT, "power": BOOL}
CONTROL_MAX_V = 3.3  # the filtered PWM's full scale


class HvModel:
    def __init__(self) -> None:
        self.kind = SUPPLY
        vpc, lo, hi, mon, settle = DEFAULTS[SUPPLY]
        self.c = {"kind": SUPPLY, "volts_per_control_v": vpc, "min_volts": lo,
                  "max_volts": hi, "monitor": mon, "settle_ms": settle, "power": False}

    def validate(self, a: dict, board_max: float, hv_set: float) -> dict:
        a = check(a, SPEC, ("kind",))
        kind = a["kind"]
        one_of("kind", kind, (SUPPLY, MODULE, COUNTING_HEAD))
        vpc, lo, hi, mon, settle = DEFAULTS[kind]
        c = {"kind": kind, "volts_per_control_v": vpc, "min_volts": lo, "max_volts": hi,
             "monitor": mon, "settle_ms": settle, "power": kind == COUNTING_HEAD}
        c.update(a)
        if kind == COUNTING_HEAD:
            for k in ("volts_per_control_v", "min_volts", "max_volts", "monitor"):
                if k in a:
                    raise CommandError(P.ST_BAD_ARGS, "%s does not apply to a counting head "
                                       "(no HV control, no monitor)" % k)
        else:
            if a.get("power"):
                raise CommandError(P.ST_BAD_ARGS, "power applies to a counting head only; "
                                   "SET_HV switches a %s on" % kind)
            c["power"] = False
            in_range("volts_per_control_v", c["volts_per_control_v"], 1.0, 1.0e5, "V/V")
            in_range("max_volts", c["max_volts"], 1.0,
                     min(board_max, c["volts_per_control_v"] * CONTROL_MAX_V), "V")
            in_range("min_volts", c["min_volts"], 0.0, c["max_volts"], "V")
        in_range("settle_ms", c["settle_ms"], 0, 10_000, "ms")
        if hv_set > 0:
            raise CommandError(P.ST_BAD_STATE, "HV is on (%s V): SET_HV 0 before changing "
                               "the HV model" % hv_set)
        return c

    def check_volts(self, v: float) -> None:
        """SET_HV's value against the model (before the limits)."""
        if self.kind == COUNTING_HEAD and v > 0:
            raise CommandError(P.ST_BAD_ARGS, "the detector is a counting head (HV_CONFIG): "
                               "it has no HV control and is powered by HV_CONFIG power=true; "
                               "SET_HV takes only 0 (power off)")
        lo = float(self.c["min_volts"])  # type: ignore[arg-type]
        if 0 < v < lo:
            raise CommandError(P.ST_OUT_OF_RANGE, "the HV module works from %s V: SET_HV 0 "
                               "(off) or %s … %s V" % (lo, lo, self.c["max_volts"]))

    def apply(self, board, c: dict) -> None:
        board.hv_configure(c["kind"], c["volts_per_control_v"], c["min_volts"],
                           c["max_volts"], c["monitor"], c["settle_ms"], c["power"])
        self.kind = c["kind"]
        self.c = c

    def config(self) -> dict:
        return dict(self.c)
