"""Which chip the model is: an RP2040 (Raspberry Pi Pico, the default) or an RP2350 (Pico 2).

Chosen once, before `machine` and `rp2` are imported (rp2run's prelude calls `select`): the
register map (ADC, PWM, watchdog bases; DMA CTRL field positions, 12 or 16 channels; DREQ
numbers), the PIO blocks (two or three), the PWM slices (8 or 12), the system clock (125 or
150 MHz at MicroPython's default), the pads' reset state (an RP2350's pads come up isolated
with their input buffer off until the port configures them), and `sys.implementation._machine`
as the rp2 port of that chip reports it. Values from the chips' datasheets (the pico-sdk's
hardware_regs headers state the same)."""
import sys

NAME = ["RP2040"]
CHIPS = ("RP2040", "RP2350")


class _Implementation:
    """sys.implementation of the rp2 port: its version and `_machine`."""

    def __init__(self, real, machine_name):
        self.name = real.name
        self.version = real.version
        self._machine = machine_name


class _Sys:
    """The `sys` module as the board code sees it: the interpreter's own attributes (the
    same objects, copied once: no lookup hook, which would allocate under heap_lock), but
    for `implementation._machine`."""

    def __init__(self, real, machine_name):
        for name in dir(real):
            if not name.startswith("__"):
                setattr(self, name, getattr(real, name))
        self.implementation = _Implementation(real.implementation, machine_name)


def select(name):
    """Make the model the chip `name` ("RP2040" or "RP2350"); before machine/rp2 import."""
    if name not in CHIPS:
        raise ValueError("chip must be one of %r, got %r" % (CHIPS, name))
    if "machine" in sys.modules or "rp2" in sys.modules:
        raise AssertionError("select the chip before the model is imported")
    NAME[0] = name
    board = "Raspberry Pi Pico2 with RP2350" if name == "RP2350" else \
        "Raspberry Pi Pico with RP2040"
    sys.modules["sys"] = _Sys(sys, board)


def rp2350():
    return NAME[0] == "RP2350"


# the chips' numbers the model uses (RP2040 datasheet / RP2350 datasheet)
def params():
    if rp2350():
        return {"adc_base": 0x400A_0000, "pwm_base": 0x400A_8000,
                "watchdog_base": 0x400D_8000, "pwm_slices": 12, "pios": 3,
                "dma_channels": 16, "clock_hz": 150_000_000, "dreq_adc": 48,
                "ainsel_bits": 4, "pads_isolated": True}
    return {"adc_base": 0x4004_C000, "pwm_base": 0x4005_0000, "watchdog_base": 0x4005_8000,
            "pwm_slices": 8, "pios": 2, "dma_channels": 12, "clock_hz": 125_000_000,
            "dreq_adc": 36, "ainsel_bits": 3, "pads_isolated": False}
