"""The README's seed-paper and gated-CPL tables are what the examples give today (issues 21
and 24).

Runs ``examples/seed_paper.py --quick``, ``examples/seed_paper_cd.py --quick`` and
``examples/gated_europium.py`` on the deterministic twin, side by side (about 45 s of wall
time on the 2-core machine), and compares their tables exactly with README.md's
``<!-- seed-table -->``, ``<!-- cd-table -->`` and ``<!-- gated-table -->`` sections.
Regenerate them with ``python examples/readme_tables.py``.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "readme_tables.py"


def _tool():
    spec = importlib.util.spec_from_file_location("readme_tables", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not (ROOT / "README.md").is_file() or not SCRIPT.is_file(),
                    reason="needs the source checkout (README.md, examples/)")
def test_the_readme_tables_are_what_the_examples_give(tmp_path) -> None:
    tool = _tool()
    tables = tool.run_examples(tmp_path)
    assert len(tables) == 3
    for marker, table in tables.items():
        assert tool.readme_table(ROOT / "README.md", marker) == table, (
            f"README.md's table at {marker} is stale: run `python examples/readme_tables.py`; "
            f"the example gives:\n{table}")


def test_a_table_is_found_in_an_examples_output() -> None:
    tool = _tool()
    out = "progress\n| a | b |\n| --- | --- |\n| 1 | 2 |\n\nreport\n| x |\n| --- |\n| 3 |\n"
    assert tool.last_table(out) == "| x |\n| --- |\n| 3 |"
    with pytest.raises(ValueError, match="no markdown table"):
        tool.last_table("nothing here")
