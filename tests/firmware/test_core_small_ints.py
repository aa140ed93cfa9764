"""The firmware core (firmware/cpl/) and the rp2 board's loop code make no long int on a
32-bit port.

MicroPython's small ints end at 2**30 on the rp2 port: arithmetic with a larger constant
(``TICKS_PERIOD = 1 << 30``, a literal ``1 << 30``) makes a heap-allocated long int every
time. The emulated Pico found three per data frame from the clock's ``TICKS_PERIOD``
arithmetic (the unix port is 64-bit, so only a static check sees it). Every function of the
core is checked; the ones that may allocate (commands, configuration) do not use such
constants either, except those listed here, which run outside the streaming loop."""
from __future__ import annotations

import ast
from pathlib import Path

from fwpaths import FIRMWARE

SMALL = 1 << 30
#: functions that may make a long int on purpose (not in the streaming loop)
ALLOWED = {"clock.py:now_us",  # the 64-bit device time for STATUS
           "rp2.py:counter_start"}  # DMA set-up at START (it allocates anyway)


def _value(node: ast.AST, consts: dict[str, int]) -> int | None:
    """The int value of a constant expression (literals, known names, + - * << //), else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.Name):
        return consts.get(node.id)
    if isinstance(node, ast.BinOp):
        a, b = _value(node.left, consts), _value(node.right, consts)
        if a is None or b is None:
            return None
        ops = {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Mult: lambda: a * b,
               ast.LShift: lambda: a << b, ast.FloorDiv: lambda: a // b if b else None}
        f = ops.get(type(node.op))
        return f() if f else None
    return None


def _constants(tree: ast.Module, base: dict[str, int]) -> dict[str, int]:
    consts: dict[str, int] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "board.base":
            for alias in node.names:
                if alias.name in base:
                    consts[alias.asname or alias.name] = base[alias.name]
        elif (isinstance(node, ast.Assign) and len(node.targets) == 1
              and isinstance(node.targets[0], ast.Name)):
            v = _value(node.value, consts)
            if v is not None:
                consts[node.targets[0].id] = v
    return consts


def long_int_arithmetic(path: Path, base: dict[str, int]) -> list[str]:
    """Arithmetic or comparisons inside the functions of `path` with an operand ≥ 2**30."""
    tree = ast.parse(path.read_text())
    consts = _constants(tree, base)
    problems = []
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef) or f"{path.name}:{fn.name}" in ALLOWED:
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.BinOp):
                operands = [node.left, node.right]
            elif isinstance(node, ast.AugAssign):
                operands = [node.value]
            elif isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
            else:
                continue
            for op in operands:
                v = _value(op, consts)
                if v is not None and abs(v) >= SMALL:
                    problems.append(f"{path.name}:{node.lineno} in {fn.name}: "
                                    f"{ast.unparse(op)} = {v:#x} ≥ 2**30")
    return problems


def _base_constants() -> dict[str, int]:
    return _constants(ast.parse((FIRMWARE / "board" / "base.py").read_text()), {})


def test_the_core_and_the_rp2_board_do_no_arithmetic_with_long_ints() -> None:
    base = _base_constants()
    assert base["TICKS_PERIOD"] == 1 << 30 and base["TICKS_MASK"] == (1 << 30) - 1
    files = [*sorted((FIRMWARE / "cpl").glob("*.py")), FIRMWARE / "board" / "rp2.py",
             FIRMWARE / "board" / "rp2_usb.py"]
    problems = [p for f in files for p in long_int_arithmetic(f, base)]
    assert not problems, "\n".join(problems)


def test_the_check_finds_the_clocks_old_arithmetic(tmp_path: Path) -> None:
    src = tmp_path / "clock.py"
    src.write_text(
        "from board.base import TICKS_PERIOD\n"
        "class Clock:\n"
        "    def _wraps_of(self, ticks):\n"
        "        if (ticks - self.last) & (TICKS_PERIOD - 1) < TICKS_PERIOD // 2:\n"
        "            return 1\n"
        "    def elapsed(self, t0, t):\n"
        "        return (t - t0) % (1 << 30)\n"
        "    def now_us(self):\n"
        "        return self.wraps * TICKS_PERIOD\n")
    problems = long_int_arithmetic(src, _base_constants())
    assert len(problems) == 3, problems  # TICKS_PERIOD // 2 and 1 << 30; now_us is allowed
    assert any("_wraps_of" in p for p in problems) and any("elapsed" in p for p in problems)
