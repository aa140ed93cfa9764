"""Regenerate (or check) the README's seed-paper tables and figures in one command.

    python examples/readme_tables.py            # rewrite README.md's tables and the figures
    python examples/readme_tables.py --check    # exit 1 when README.md's tables are stale

Runs ``examples/seed_paper.py --quick``, ``examples/seed_paper_cd.py --quick`` and
``examples/gated_europium.py`` side by side (each on its own simulated instruments, with the
examples' fixed seeds), takes the table each prints and compares it with, or writes it into,
README.md between its ``<!-- seed-table -->``, ``<!-- cd-table -->`` and
``<!-- gated-table -->`` markers; a regeneration also copies the three figures into
docs/figures/. The simulated instrument is deterministic (same seeds and
commands, same frames on any machine), so the tables are exactly reproducible; the test suite
runs the check (tests/host/test_readme_tables.py).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: (script, its options, README marker, the figure it writes)
EXAMPLES = (("seed_paper.py", ("--quick",), "<!-- seed-table -->", "seed-paper-cpl.png"),
            ("seed_paper_cd.py", ("--quick",), "<!-- cd-table -->", "seed-paper-cd.png"),
            ("gated_europium.py", (), "<!-- gated-table -->", "gated-europium.png"))


def run_examples(out: Path, timeout_s: float = 900.0) -> dict[str, str]:
    """The examples' tables (README marker → markdown table), run in parallel with their
    files in ``out``."""
    procs = []
    for script, options, marker, _ in EXAMPLES:
        folder = out / Path(script).stem
        # an empty settings folder: the examples calibrate the twin with their own seeds
        # instead of using whatever calibration this machine has stored
        env = dict(os.environ, CPLSCOPE_HOME=str(folder / "home"))
        procs.append((marker, script, subprocess.Popen(
            [sys.executable, str(HERE / script), *options, "--out", str(folder)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT),
            env=env)))
    tables = {}
    for marker, script, proc in procs:
        stdout, stderr = proc.communicate(timeout=timeout_s)
        if proc.returncode != 0:
            raise RuntimeError(f"{script} --quick failed ({proc.returncode}):\n{stderr[-4000:]}")
        tables[marker] = last_table(stdout)
    return tables


def last_table(text: str) -> str:
    """The last markdown table in ``text`` (consecutive lines starting with ``|``)."""
    blocks: list[list[str]] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("|"):
            current.append(line.rstrip())
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    if not blocks:
        raise ValueError("no markdown table in the example's output")
    return "\n".join(blocks[-1])


def readme_table(readme: Path, marker: str) -> str:
    """What README.md holds between its pair of ``marker`` lines."""
    parts = readme.read_text(encoding="utf-8").split(marker)
    if len(parts) != 3:
        raise ValueError(f"{readme} must have exactly one pair of {marker} markers")
    return parts[1].strip("\n")


def main() -> int:
    sys.path.insert(0, str(HERE))
    from _readme_table import write_into

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 when stale")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cplscope-readme-") as tmp:
        tables = run_examples(Path(tmp))
        stale = [m for m, t in tables.items() if readme_table(args.readme, m) != t]
        if args.check:
            for marker in stale:
                print(f"{args.readme}: the table at {marker} is stale; it should read:\n"
                      f"{tables[marker]}")
            return 1 if stale else 0
        for script, _options, marker, figure in EXAMPLES:
            write_into(args.readme, marker, tables[marker])
            shutil.copyfile(Path(tmp) / Path(script).stem / figure,
                            ROOT / "docs" / "figures" / figure)
            print(f"figure written into docs/figures/{figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
