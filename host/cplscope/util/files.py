"""Atomic file writes: a crash or Ctrl-C leaves the previous complete file, never half of one."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8, ``\\n`` newlines) to ``path`` via a temporary file in the same
    folder, fsync and rename; the file gets the permissions the umask allows (not mkstemp's
    0600). Returns the path."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix="." + target.name, suffix=".tmp",
                               dir=target.parent if str(target.parent) else ".")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
