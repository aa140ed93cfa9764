"""Shared by the seed-paper examples: their command line, a markdown table, and writing it
into the README."""
import argparse
from pathlib import Path


def example_args(doc: str, out: str, quick_help: str, marker: str) -> argparse.Namespace:
    """The seed-paper examples' options (--out, --quick, --readme), parsed; the output folder
    made. The README shows the --quick run's table, so --readme requires --quick."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(out))
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--readme", type=Path, default=None,
                        help=f"write the table into this README between {marker} markers")
    args = parser.parse_args()
    if args.readme is not None and not args.quick:
        parser.error("the README shows the --quick run's table: add --quick, or run "
                     "examples/readme_tables.py (both tables and figures)")
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def markdown(rows: list[tuple[str, ...]]) -> str:
    """``rows`` (the header first) as a markdown table."""
    lines = ["| " + " | ".join(rows[0]) + " |", "| " + " | ".join("---" for _ in rows[0]) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def write_into(readme: Path, marker: str, table: str) -> None:
    """Replace what stands between the two ``marker`` lines of ``readme`` with ``table``."""
    text = readme.read_text(encoding="utf-8")
    head, sep, rest = text.partition(marker)
    _, sep2, tail = rest.partition(marker)
    if not (sep and sep2):
        raise SystemExit(f"{readme} has no pair of {marker} markers")
    readme.write_text(f"{head}{marker}\n{table}\n{marker}{tail}", encoding="utf-8")
    print(f"table written into {readme}")
