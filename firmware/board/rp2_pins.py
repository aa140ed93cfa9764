"""The rp2 board's pins, in one table: `rp2.py` takes its GPIO numbers and pad settings from
here, and the wiring table of docs/build.md states the same rows (`table()`)
(tests/firmware/test_build_guide_pins.py compares the two).

Each row of table(): (name, GPIO, kind, pull, level). kind: "in" (digital input), "out" (driven by the
board), "analog" (ADC input: digital input off, no pull). pull: the pad's own pull ("up",
"down") or "none"; "ext-down" means the circuit must hold the line low with a 10 kΩ resistor
(the line is an output, and from reset until the firmware drives it the pad is an input with
only its weak pull-down). level: what the board reads or drives, in the words of the guide."""

PHOTON = 2          # discriminator pulses (pulse-stretched, non-retriggerable)
PEM_REF = 3         # PEM controller 1f reference (external mode)
GATE0 = 4           # gate monitors (PIO0), test points only
GATE1 = 5
PEM_DRIVE = 6       # PWM square wave at resonance (internal mode); the reference then
PEM_CTRL = 8        # PWM → RC filter: PEM controller retardation input (external mode)
HV_CTRL = 10        # PWM → RC filter: HV module control input
HV_KEEPALIVE = 11   # toggled by every pass of the main loop: the keep-alive of HV enable
HV_EN = 12          # HV / detector enable (1 = on); the guard state machines own it
SHUTTER = 13        # excitation shutter (1 = open); owned by the guard, follows HV_EN
STEP = 14
DIR = 15
HOME = 16           # home switch to GND, closed at/below home
PHOTON_LEVEL = 17   # the photon line again (a jumper from GP2): PWM slice 0 B, level-gated, its
                    # counter sums the time the line is high (the guard's high-time trip)
TRIGGER = 18        # excitation trigger (PWM slice 1 A): TTL to an LED driver or laser
GSTART = 19         # gate start (PWM slice 1 B, inverted; or PIO2 after an external sync)
GATED_PHOTON = 20   # photon pulses inside the gate (PIO1 gate_window), counted in gated mode
SYNC_IN = 21        # an external laser's sync output (rising edge = pulse), RP2350 only:
                    # PIO2's sync_delay and PWM slice 2 B (its pulse counter) read it
MAINTENANCE = 22    # strap to GND at power-up: maintenance mode (the firmware does not start)
ADC0 = 26           # ADC0: analog PMT signal (biased transimpedance amplifier)
ADC1 = 27           # ADC1: HV monitor, divided to 0 … 3.3 V
ADC2 = 28           # ADC2: rectified PEM pickup amplitude (internal mode)


def table() -> tuple:
    """The rows (made on each call: the board's heap need not hold them)."""
    return (
        ("photon", PHOTON, "in", "down", "high = pulse"),
        ("pem_ref", PEM_REF, "in", "down", "rising edge = phase 0"),
        ("gate0", GATE0, "out", "none", "test point"),
        ("gate1", GATE1, "out", "none", "test point"),
        ("pem_drive", PEM_DRIVE, "out", "none", "low = drive off"),
        ("pem_ctrl", PEM_CTRL, "out", "none", "duty 0 = 0 V"),
        ("hv_ctrl", HV_CTRL, "out", "none", "duty 0 = 0 V"),
        ("hv_keepalive", HV_KEEPALIVE, "out", "none", "toggles while the firmware runs"),
        ("hv_en", HV_EN, "out", "ext-down", "high = HV on"),
        ("shutter", SHUTTER, "out", "ext-down", "high = open"),
        ("step", STEP, "out", "none", "rising edge = one step"),
        ("dir", DIR, "out", "none", "high = longer wavelengths"),
        ("home", HOME, "in", "up", "low = at or below home"),
        ("photon_level", PHOTON_LEVEL, "in", "down", "high = pulse (same line as GP2)"),
        ("trigger", TRIGGER, "out", "ext-down", "high = excitation pulse"),
        ("gate_start", GSTART, "out", "none", "test point: rises as the gate opens"),
        ("gated_photon", GATED_PHOTON, "out", "none", "test point: photons inside the gate"),
        ("sync_in", SYNC_IN, "in", "down", "rising edge = laser pulse"),
        ("maintenance", MAINTENANCE, "in", "up", "low at power-up = maintenance mode"),
        ("adc_pmt", ADC0, "analog", "none", "0 … 3.3 V, dark above 0"),
        ("adc_hv_monitor", ADC1, "analog", "none", "0 … 3.3 V"),
        ("adc_pem_pickup", ADC2, "analog", "none", "0 … 3.3 V"),
    )


# the ADC channel of an analog GPIO (GP26 … GP29 on both chips' 30-GPIO packages)
ADC_FIRST_GPIO = 26


def adc_channel(gpio: int) -> int:
    return gpio - ADC_FIRST_GPIO
