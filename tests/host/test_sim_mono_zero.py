"""The twin's monochromator zero agrees with the firmware's homing: the wavelength the firmware
reports (STATUS, and the position in every COUNTS frame) is the one the bench emits at.

The firmware zeroes at the first open step of the home switch going up (cpl.mono); the
simulated board's switch must open at the hub's `home_at`, where the bench's mechanical step
count, and with it `home_nm`, starts. An off-by-one there puts the bench one step (0.1 nm at
10 steps/nm) away from where the firmware thinks it is."""
from __future__ import annotations

import pytest

import cplscope

#: up, further up, down (backlash leg), a wavelength between two steps (rounded by the
#: firmware to its nearest step), back to where homing ended
WAVELENGTHS = (438.0, 612.3, 401.7, 500.04, 200.0)


@pytest.fixture(scope="module")
def inst():
    with cplscope.connect("sim", seed=2) as inst:
        inst.configure_counting(bins=4, periods=50)
        yield inst


@pytest.mark.parametrize("wavelength_nm", WAVELENGTHS)
def test_firmware_wavelength_is_where_the_bench_emits(inst, wavelength_nm):
    reached = inst.move_to(wavelength_nm)
    frames = inst.acquire(n_frames=1)
    status = inst.status()
    bench_nm = inst.sim.stats()["bench_wavelength_nm"]
    assert status["wavelength_nm"] == pytest.approx(reached, abs=1e-9)
    assert abs(reached - wavelength_nm) <= 0.05 + 1e-9  # the nearest of 10 steps/nm
    # the position in the frames the bench computed, converted with the firmware's settings
    position = int(frames.mono_position[-1])
    assert position == status["mono_position"]
    assert 200.0 + position / 10.0 == pytest.approx(reached, abs=1e-9)
    # the bench computed those frames at the wavelength the firmware reports
    assert bench_nm == pytest.approx(reached, abs=1e-6), (
        f"the firmware says {reached} nm, the bench emits at {bench_nm} nm")
