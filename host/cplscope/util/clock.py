"""Wall-clock time stamps for files and calibrations."""
from datetime import datetime, timezone


def utc_now_iso() -> str:
    """Now, UTC, ISO 8601 to the second (e.g. ``2026-11-24T03:00:00+00:00``)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
