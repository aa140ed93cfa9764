"""The rp2 board's interrupt paths obey the rules of a hard IRQ on the 32-bit rp2 port.

* Static: every handler the board registers (`.irq(...)`, `Timer(callback=...)`) and every
  function it calls in this package does no arithmetic with a constant ≥ 2**30 and reads
  no `mem32` register: on the 32-bit port such a value is a long int, and making one in a
  hard IRQ raises MemoryError (the unix port is 64-bit, so only this check finds it).
* Dynamic (MicroPython unix port, rp2model/): each handler runs with the heap locked, so
  any allocation fails; so do the streaming paths (`counter_poll`, `adc_poll`, `wait`).
* The PEM lock follows the reference at low PEM frequencies and comes back in analog mode.
"""
import ast

from fwpaths import FIRMWARE
from rp2run import run_mp

BOARD = FIRMWARE / "board"
SMALL = 1 << 30


def _module_constants(tree):
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            t = node.targets[0]
            if isinstance(t, ast.Name):
                try:
                    out[t.id] = ast.literal_eval(node.value)
                except ValueError:
                    pass
    return out


def _functions(tree):
    """name → FunctionDef for module functions and methods (methods as 'self.name')."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            out[node.name] = node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    out["self." + item.name] = item
    return out


def _is_viper(fn):
    return any(isinstance(d, ast.Attribute) and d.attr in ("viper", "native")
               for d in fn.decorator_list)


def _handlers(tree):
    """Names of the methods registered as interrupt handlers."""
    out = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        cands = []
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr == "irq":
            cands += node.args[:1] + [k.value for k in node.keywords if k.arg == "handler"]
        cands += [k.value for k in node.keywords if k.arg == "callback"]
        for c in cands:
            for sub in ast.walk(c):
                if (isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name)
                        and sub.value.id == "self"):
                    out.add("self." + sub.attr)
    return out


def _irq_problems(path):
    tree = ast.parse(path.read_text())
    consts = _module_constants(tree)
    funcs = _functions(tree)
    problems = []

    def big(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return abs(node.value) >= SMALL
        if isinstance(node, ast.Name) and isinstance(consts.get(node.id), int):
            return abs(consts[node.id]) >= SMALL
        if isinstance(node, ast.Name) and isinstance(consts.get(node.id), tuple):
            return any(isinstance(v, int) and abs(v) >= SMALL for v in consts[node.id])
        return False

    seen = set()
    todo = sorted(_handlers(tree))
    roots = list(todo)
    while todo:
        name = todo.pop()
        if name in seen or name not in funcs:
            continue
        seen.add(name)
        fn = funcs[name]
        if _is_viper(fn):
            continue  # native code: machine-word arithmetic
        for node in ast.walk(fn):
            if isinstance(node, (ast.BinOp, ast.AugAssign)):
                operands = ([node.left, node.right] if isinstance(node, ast.BinOp)
                            else [node.target, node.value])
                for op in operands:
                    for sub in ast.walk(op):
                        if big(sub):
                            problems.append("%s:%d in %s: arithmetic with %s ≥ 2**30"
                                            % (path.name, node.lineno, name, ast.unparse(sub)))
            if isinstance(node, ast.Subscript) and ast.unparse(node.value).endswith("mem32"):
                problems.append("%s:%d in %s: mem32 access (a peripheral address ≥ 2**30)"
                                % (path.name, node.lineno, name))
            if isinstance(node, ast.Call):
                f = node.func
                if (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name)
                        and f.value.id == "self"):
                    todo.append("self." + f.attr)
                elif isinstance(f, ast.Name):
                    todo.append(f.id)
    return roots, sorted(seen), problems


def test_irq_paths_make_no_long_ints_on_a_32_bit_port():
    roots, reached, problems = _irq_problems(BOARD / "rp2.py")
    # the handlers the board has: counter and ADC DMA, PIO guard, the guard's timer (high
    # time, ADC level)
    assert {"self._rx_irq_0", "self._rx_irq_1", "self._adc_irq", "self._guard_irq",
            "self._guard_tick"} <= set(roots), roots
    assert {"self._trip", "self._check_high", "self._check_adc"} <= set(reached), reached
    assert not problems, "\n".join(problems)


def test_the_static_check_finds_a_long_int_in_an_irq_path(tmp_path):
    src = tmp_path / "bad.py"
    src.write_text(
        "_BASE = 0x5000_0000\n"
        "class B:\n"
        "    def start(self, dma):\n"
        "        dma.irq(self._h, hard=True)\n"
        "    def _h(self, dma):\n"
        "        self._addr(3)\n"
        "    def _addr(self, ch):\n"
        "        return _BASE + ch * 0x40\n")
    _, _, problems = _irq_problems(src)
    assert len(problems) == 1 and "_BASE" in problems[0]


SCRIPT = r'''
import struct
import micropython
import machine
import rp2
from board import rp2 as R
from board import rp2_pio as P


from harness import Clock, install
install(R)
b = R.Rp2Board(usb=False)
sms = rp2.StateMachine.all
CLK = machine.freq()                   # 125 MHz (RP2040) or 150 MHz (RP2350)

def locked(fn, arg=None):
    """fn() or fn(arg) with the heap locked: any allocation raises MemoryError (a call with
    *args would allocate by itself)."""
    micropython.heap_lock()
    try:
        return fn() if arg is None else fn(arg)
    finally:
        micropython.heap_unlock()

def periods(n, cycles):
    for _ in range(n):
        sms[4].push_rx((cycles - 4) // 2)

# --- PEM lock: external reference at 1 kHz, one edge per ms
b.pem_configure("external", 1000.0)
sms[4].push_rx(0)                      # the timer's start-up word
periods(20, CLK // 1000)
Clock.us += 500
locked(b._service)                     # lock detection allocates nothing
assert b.pem_locked() and b.pem_period_ps() == 1000000000, b.pem_period_ps()
# between two edges (no new word since the last call) it stays locked
for _ in range(3):
    Clock.us += 300
    locked(b._service)
    assert b.pem_locked()
Clock.us += 7000                       # over 4 periods + 2 ms without an edge: lost
locked(b._service)
assert not b.pem_locked() and b.pem_period_ps() == 0
periods(1, CLK // 1000)
locked(b._service)
assert b.pem_locked()
locked(b.wait, 0)                      # wait() too

# --- counting: the DMA completion IRQs (heap locked in the model) and counter_poll
b.pem_configure("external", 50000.0)
periods(20, CLK // 50000)
locked(b._service)
assert b.pem_locked()
b.counter_configure(16, 4)
b.counter_start()
for c in (0, 1):
    assert all(ch.handler is None or ch.hard for ch in b._counter_dma[c])
for frame in range(6):
    for _ in range(4):
        for p in range(8):
            sms[1].count_bin(1)
            sms[2].count_bin(2)
    f = b.counter_poll() if frame < 2 else locked(b.counter_poll)
    assert f is not None and struct.unpack("<16I", f.counts)[:2] == (4, 8)
b.counter_stop()

# --- the slowest PEM, 2 bins, the most periods: the saturation limit counter_poll compares
# with is worked out at START, a small int on the 32-bit port. Computed per frame, as
# before, the product was 1.24e9 at 150 MHz (RP2350): a long int, an allocation per frame
b.pem_configure("external", 1000.0)
Clock.us += 100_000                    # the 50 kHz lock is gone: START takes 1 kHz
b._service()
b.counter_configure(2, 100000)
b.counter_start()
assert 0 < b._saturation < 1 << 30, b._saturation
product = b._periods * (b._t_bin // P.MIN_PULSE_PERIOD_CYCLES + 1)
assert (product >= 1 << 30) == (CLK == 150_000_000), product
b.counter_stop()
b.pem_configure("external", 50000.0)

# --- the PIO guard IRQ
b.guard_arm(1e6, 4094)
sms[5].raise_irq()
assert b.guard_tripped()
b.guard_reset()

# --- analog: the DMA turn IRQ, the level-guard timer, adc_poll; the lock comes back
b.adc_configure(100000.0, 64)
b.adc_start()
sms[4].push_rx(0)
periods(1000, CLK // 50000)
adc = machine.ADC_MODEL
adc.source[0] = lambda i: 100 + i % 7
for k in range(8):
    adc.convert(64)
    machine.Timer.fire_all()
    blk = b.adc_poll() if k < 3 else locked(b.adc_poll)
    assert blk is not None
Clock.us += 1000
locked(b._service)
assert b.pem_locked()
Clock.us += 3000                       # reference gone in analog mode ...
locked(b._service)
assert not b.pem_locked()
periods(20, CLK // 50000)                      # ... and back
Clock.us += 10
locked(b._service)
assert b.pem_locked(), "the lock does not come back in analog mode"
# a DMA turn ends: its IRQ under heap lock (the model runs it at completion)
ch = b._adc_dma[0]
ch.live = 1
adc.convert(1)
assert b._adc_turns[0] == 1
# every handler the board registered was hard
for ch in rp2.DMA.channels:
    assert ch.handler is None or ch.hard
assert all(t.hard for t in machine.Timer.all)
assert sms[5].hard
b.adc_stop()
assert machine.VIOLATIONS == [], machine.VIOLATIONS
print("OK")
'''


def test_irq_handlers_and_streaming_paths_run_with_the_heap_locked(micropython, tmp_path, chip):
    run_mp(micropython, SCRIPT, tmp_path, chip=chip)
