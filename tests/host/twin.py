"""The simulated instrument set up as the host tests use it."""
import math

from cplscope.settings.calibration import Calibration

#: The simulated bench in its CD (transmission) geometry.
CD = {"bench_options": {"geometry": "cd"}}


def calibrated(inst):
    """``inst`` with the twin's PEM constants (as a linear-polarizer calibration finds them),
    prepared for counting."""
    inst.calibration = Calibration(a0_rad=math.pi / 2, phase_offset_rad=0.3, handedness=1,
                                   dead_time_s=18e-9, serial=inst.info()["serial"],
                                   date="2026-01-01T00:00:00+00:00", source="test",
                                   a0_command_rad=math.pi / 2)
    inst.prepare(bins=16, periods=10000, hv_volts=800)
    return inst
