"""A test-side stand-in for MicroPython's `rp2` module: it runs `@rp2.asm_pio` functions
under CPython and encodes their instructions into 16-bit PIO words (RP2040 datasheet §3.4),
so the firmware's own PIO programs can run in the `pioemu` emulator.

This file also checks the encoder against words assembled by pioasm.
Other test modules load it with `load_shim()` / `load_rp2_pio()`.
"""
import importlib.util
import sys
import types
from pathlib import Path

import pytest

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"


class PioAsmError(ValueError):
    pass


class _Instr:
    """What a DSL call returns: lets `.side(v)`, `.delay(d)` and `[d]` patch its word."""

    def __init__(self, prog: "Program", index: int) -> None:
        self._prog = prog
        self._index = index

    def side(self, value: int) -> "_Instr":
        n = self._prog.sideset_count
        if n == 0:
            raise PioAsmError("side() used but the program declares no side-set pins")
        if not 0 <= value < (1 << n):
            raise PioAsmError("side value %d does not fit %d side-set bits" % (value, n))
        self._prog.sides[self._index] = value
        return self

    def delay(self, cycles: int) -> "_Instr":
        self._prog.delays[self._index] = cycles
        return self

    def __getitem__(self, cycles: int) -> "_Instr":
        return self.delay(cycles)


class Program:
    """An assembled program: `words`, `wrap_target`, `wrap` (indices) and the decorator's
    keyword arguments in `config`."""

    def __init__(self, fn, config: dict) -> None:
        self.name = fn.__name__
        self.config = config
        init = config.get("sideset_init")
        if init is None:
            self.sideset_count = 0
        elif isinstance(init, (tuple, list)):
            self.sideset_count = len(init)
        else:
            self.sideset_count = 1
        self.words: list[int] = []
        self.sides: dict[int, int] = {}
        self.delays: dict[int, int] = {}
        self.labels: dict[str, int] = {}
        self.fixups: list[tuple[int, str]] = []
        self.wrap_target = 0
        self.wrap: int | None = None
        fn_globals = dict(fn.__globals__)
        fn_globals.update(self._dsl())
        types.FunctionType(fn.__code__, fn_globals)()
        for index, name in self.fixups:
            if name not in self.labels:
                raise PioAsmError("%s: unknown label %r" % (self.name, name))
            self.words[index] |= self.labels[name]
        # Like MicroPython: side-set becomes optional (one more bit, the enable bit 12) when
        # some instruction has no .side(); the delay gets the bits that are left.
        bits = self.sideset_count
        self.sideset_opt = bool(bits) and len(self.sides) != len(self.words)
        if self.sideset_opt:
            bits += 1
        delay_max = 31 >> bits
        for index, cycles in self.delays.items():
            if not 0 <= cycles <= delay_max:
                raise PioAsmError("%s: delay %d exceeds the maximum %d"
                                  % (self.name, cycles, delay_max))
            self.words[index] |= cycles << 8
        for index, value in self.sides.items():
            self.words[index] |= value << (13 - bits)
            if self.sideset_opt:
                self.words[index] |= 1 << 12
        if len(self.words) > 32:
            raise PioAsmError("%s has %d instructions, a PIO holds 32" % (self.name,
                                                                          len(self.words)))
        if self.wrap is None:
            self.wrap = len(self.words) - 1

    def _emit(self, word: int) -> _Instr:
        self.words.append(word)
        return _Instr(self, len(self.words) - 1)

    def _dsl(self) -> dict:
        def wrap_target():
            self.wrap_target = len(self.words)

        def wrap():
            self.wrap = len(self.words) - 1

        def label(name):
            if name in self.labels:
                raise PioAsmError("duplicate label %r" % name)
            self.labels[name] = len(self.words)

        def word(instr, label=None):
            if label is not None:
                self.fixups.append((len(self.words), label))
            return self._emit(instr & 0xFFFF)

        def jmp(cond, label=None):
            if label is None:
                cond, label = 0, cond
            self.fixups.append((len(self.words), label))
            return self._emit(0x0000 | (cond << 5))

        def wait(polarity, src, index):
            if src == 6:  # `pin`
                src = 1
            elif src != 0:  # `irq`
                src = 2
            return self._emit(0x2000 | (polarity << 7) | (src << 5) | index)

        def in_(src, bits):
            return self._emit(0x4000 | (src << 5) | (bits & 0x1F))

        def out(dest, bits):
            return self._emit(0x6000 | (dest << 5) | (bits & 0x1F))

        def _push_pull(base, value, value2):
            value |= value2
            if not value & 1:
                value |= 0x20
            return self._emit(base | (value & 0x60))

        def push(value=0, value2=0):
            return _push_pull(0x8000, value, value2)

        def pull(value=0, value2=0):
            return _push_pull(0x8080, value, value2)

        def mov(dest, src):
            return self._emit(0xA000 | (dest << 5) | src)

        def irq(mod, index=None):
            if index is None:
                mod, index = 0, mod
            return self._emit(0xC000 | (mod & 0x60) | index)

        def set_(dest, data):
            return self._emit(0xE000 | (dest << 5) | data)

        def nop():
            return mov(2, 2)

        return {
            "wrap_target": wrap_target, "wrap": wrap, "label": label, "word": word,
            "jmp": jmp, "wait": wait, "in_": in_, "out": out, "push": push, "pull": pull,
            "mov": mov, "irq": irq, "set": set_, "nop": nop,
            "gpio": 0, "pins": 0, "x": 1, "y": 2, "null": 3, "pindirs": 4, "pc": 5,
            "status": 5, "isr": 6, "osr": 7,
            "invert": lambda v: v | 0x08, "reverse": lambda v: v | 0x10,
            "not_x": 1, "x_dec": 2, "not_y": 3, "y_dec": 4, "x_not_y": 5, "pin": 6,
            "not_osre": 7, "noblock": 0x01, "block": 0x21, "clear": 0x40, "iffull": 0x40,
            "ifempty": 0x40, "rel": lambda v: v | 0x10,
        }


def _make_shim() -> types.ModuleType:
    shim = types.ModuleType("rp2")

    class PIO:
        IN_LOW, IN_HIGH, OUT_LOW, OUT_HIGH = 0, 1, 2, 3
        SHIFT_LEFT, SHIFT_RIGHT = 0, 1
        JOIN_NONE, JOIN_TX, JOIN_RX = 0, 1, 2

    def asm_pio(**config):
        def assemble(fn):
            return Program(fn, config)
        return assemble

    shim.PIO = PIO
    shim.asm_pio = asm_pio
    return shim


def load_shim() -> types.ModuleType:
    return _make_shim()


def load_rp2_pio() -> types.ModuleType:
    """Import firmware/board/rp2_pio.py under CPython with the shim as `rp2`."""
    saved = sys.modules.get("rp2")
    sys.modules["rp2"] = _make_shim()
    try:
        spec = importlib.util.spec_from_file_location("cplscope_fw_rp2_pio",
                                                      FIRMWARE / "board" / "rp2_pio.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            del sys.modules["rp2"]
        else:
            sys.modules["rp2"] = saved
    return module


# --- the encoder against pioasm ------------------------------------------------------------

rp2 = _make_shim()


@rp2.asm_pio(set_init=rp2.PIO.OUT_LOW)
def squarewave():
    set(pindirs, 1)  # noqa: F821 (DSL names exist only inside asm_pio)
    label("again")  # noqa: F821
    set(pins, 1)[1]  # noqa: F821
    set(pins, 0)  # noqa: F821
    jmp("again")  # noqa: F821


@rp2.asm_pio(sideset_init=rp2.PIO.OUT_LOW, out_shiftdir=rp2.PIO.SHIFT_LEFT)
def ws2812():
    wrap_target()  # noqa: F821
    label("bitloop")  # noqa: F821
    out(x, 1).side(0)[2]  # noqa: F821
    jmp(not_x, "do_zero").side(1)[1]  # noqa: F821
    jmp("bitloop").side(1)[4]  # noqa: F821
    label("do_zero")  # noqa: F821
    nop().side(0)[4]  # noqa: F821
    wrap()  # noqa: F821


@rp2.asm_pio()
def assorted():
    wait(1, pin, 0)  # noqa: F821
    wait(0, gpio, 5)  # noqa: F821
    wait(1, irq, rel(2))  # noqa: F821
    mov(x, invert(null))  # noqa: F821
    mov(isr, invert(x))  # noqa: F821
    mov(x, reverse(osr))  # noqa: F821
    pull(block)  # noqa: F821
    pull(noblock)  # noqa: F821
    push(block)  # noqa: F821
    push(iffull, noblock)  # noqa: F821
    in_(pins, 32)  # noqa: F821
    out(y, 31)  # noqa: F821
    irq(rel(0))  # noqa: F821
    irq(block, 3)  # noqa: F821
    irq(clear, 1)  # noqa: F821
    label("t")  # noqa: F821
    jmp(y_dec, "t")  # noqa: F821
    jmp(pin, "t")  # noqa: F821
    jmp(not_osre, "t")  # noqa: F821


def test_encoder_matches_pioasm_squarewave():
    # pico-examples squarewave.pio as pioasm assembles it
    assert squarewave.words == [0xE081, 0xE101, 0xE000, 0x0001]


def test_encoder_matches_pioasm_ws2812_with_side_set():
    # pico-examples ws2812.pio (T1=2, T2=5, T3=3) as pioasm assembles it
    assert ws2812.words == [0x6221, 0x1123, 0x1400, 0xA442]
    assert (ws2812.wrap_target, ws2812.wrap) == (0, 3)


def test_encoder_field_layout():
    # Each expected word built by hand from the datasheet's instruction tables.
    assert assorted.words == [
        0x20A0,  # wait 1 pin 0
        0x2005,  # wait 0 gpio 5
        0x20D2,  # wait 1 irq 2 rel
        0xA02B,  # mov x, ~null
        0xA0C9,  # mov isr, ~x
        0xA037,  # mov x, ::osr
        0x80A0,  # pull block
        0x8080,  # pull noblock
        0x8020,  # push block
        0x8040,  # push iffull noblock
        0x4000,  # in pins, 32
        0x605F,  # out y, 31
        0xC010,  # irq 0 rel
        0xC023,  # irq wait 3
        0xC041,  # irq clear 1
        0x008F,  # jmp y--, 15
        0x00CF,  # jmp pin, 15
        0x00EF,  # jmp !osre, 15
    ]


@rp2.asm_pio(sideset_init=rp2.PIO.OUT_LOW)
def optional_side():
    nop().side(1)  # noqa: F821
    nop()[3]  # noqa: F821


def test_encoder_makes_side_set_optional_when_an_instruction_has_none():
    # side-set opt: bit 12 enables, bit 11 is the value, 3 delay bits remain
    assert optional_side.sideset_opt
    assert optional_side.words == [0xB842, 0xA342]


def test_encoder_rejects_what_pioasm_rejects():
    with pytest.raises(PioAsmError):
        @rp2.asm_pio(sideset_init=(rp2.PIO.OUT_LOW, rp2.PIO.OUT_LOW))
        def too_long_delay():
            nop()[8]  # noqa: F821  (2 side-set bits leave 3 delay bits)

    with pytest.raises(PioAsmError):
        @rp2.asm_pio()
        def missing_label():
            jmp("nowhere")  # noqa: F821


def test_firmware_programs_assemble_and_fit_their_pio_blocks():
    pio = load_rp2_pio()
    # PIO0: gate + two copies of the counter (one program); PIO1: period timer, guard,
    # stepper and gated counting's gate_window (sync_delay needs a third block: RP2350)
    assert len(pio.pem_gate.words) + len(pio.photon_counter.words) <= 32
    assert (len(pio.period_timer.words) + len(pio.overload_guard.words)
            + len(pio.stepper.words) + len(pio.gate_window.words)) <= 32
    assert len(pio.sync_delay.words) > 32 - (len(pio.period_timer.words)
                                             + len(pio.overload_guard.words)
                                             + len(pio.stepper.words)
                                             + len(pio.gate_window.words))
    # docs/hardware.md states the slots used
    doc = (FIRMWARE.parent / "docs" / "hardware.md").read_text()
    pio0 = len(pio.pem_gate.words) + len(pio.photon_counter.words)
    pio1 = (len(pio.period_timer.words) + len(pio.overload_guard.words)
            + len(pio.stepper.words))
    assert "%d of 32\n  instruction slots" % pio0 in doc and "%d of 32 slots" % pio1 in doc
    assert "SM8 `sync_delay` (%d of 32 slots)" % len(pio.sync_delay.words) in doc
    # the timing of gate and stepper relies on their delays; side-set must stay mandatory
    assert not pio.pem_gate.sideset_opt and not pio.stepper.sideset_opt
