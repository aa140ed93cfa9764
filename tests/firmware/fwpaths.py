"""Paths of the firmware tests (a module of its own: `conftest` is not importable by name
reliably once other test folders grow conftests)."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"
MP_TESTS = Path(__file__).resolve().parent / "mp"
VECTORS = ROOT / "tests" / "vectors" / "frames.json"
