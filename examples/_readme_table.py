"""Shared by the seed-paper examples: a markdown table, and writing it into the README."""
from pathlib import Path


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
