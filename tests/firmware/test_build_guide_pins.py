"""docs/build.md's wiring table is the circuit the firmware assumes: every row of
firmware/board/rp2_pins.py's table() (GPIO, kind, pull, level) must be in it, word for word,
and it must name no pin the table does not have; rp2.py takes its pins from that table."""
import ast
import importlib.util
import re

from fwpaths import FIRMWARE, ROOT

ROW = re.compile(r"^\| GP(\d+) \| (\w+) \| (\w+) \| ([\w-]+) \| ([^|]+) \| ([^|]+) \|$")


def _pins():
    spec = importlib.util.spec_from_file_location("rp2_pins", FIRMWARE / "board" / "rp2_pins.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def guide_rows(text: str) -> dict:
    rows = {}
    for line in text.splitlines():
        m = ROW.match(line.strip())
        if m:
            gpio, name, kind, pull, level, _ = m.groups()
            assert int(gpio) not in rows, "GP%s twice in docs/build.md" % gpio
            rows[int(gpio)] = (name, kind, pull, level.strip())
    return rows


def test_build_guide_states_the_firmwares_pins():
    pins = _pins()
    guide = guide_rows((ROOT / "docs" / "build.md").read_text())
    table = {gpio: (name, kind, pull, level) for name, gpio, kind, pull, level in pins.table()}
    assert len(table) == len(pins.table()), "a GPIO twice in rp2_pins.table()"
    assert guide == table


def test_pin_table_is_consistent():
    pins = _pins()
    for name, gpio, kind, pull, level in pins.table():
        assert getattr(pins, name.upper(), gpio) == gpio or name.startswith("adc"), name
        assert kind in ("in", "out", "analog") and pull in ("up", "down", "none", "ext-down")
        if kind == "analog":
            assert pull == "none" and 26 <= gpio <= 29, name
        if pull == "ext-down":
            assert kind == "out", name
    # the HV enable and the shutter are set pins of the guard: consecutive, in that order
    assert pins.SHUTTER == pins.HV_EN + 1


def test_rp2_board_takes_every_pin_from_the_table():
    """No GPIO number literal in rp2.py's pin definitions: each is an rp2_pins name."""
    tree = ast.parse((FIRMWARE / "board" / "rp2.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name.startswith("PIN_") or name.startswith("ADC_") and name in (
                    "ADC_PMT", "ADC_HV", "ADC_PEM_PICKUP"):
                assert not isinstance(node.value, ast.Constant), (
                    "%s is a number in rp2.py; take it from rp2_pins" % name)


def test_a_changed_guide_row_is_caught():
    pins = _pins()
    text = (ROOT / "docs" / "build.md").read_text()
    table = {gpio: (name, kind, pull, level) for name, gpio, kind, pull, level in pins.table()}
    wrong = text.replace("| GP12 | hv_en | out | ext-down |", "| GP12 | hv_en | out | down |")
    assert wrong != text and guide_rows(wrong) != table
