"""Files that survive a crash and a full disk: atomic writes (a crash or Ctrl-C leaves the
previous complete file, never half of one), the one overwrite policy of every output, and
the disk-full error every write site raises."""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["DiskFullError", "check_new_file", "disk_full_guard", "free_bytes", "fsync_dir",
           "is_disk_full", "write_text_atomic"]

#: errno values that mean "no room to write": no space left, quota exceeded, file too large.
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it was raised from) says the disk or quota is full."""
    seen = 0
    while exc is not None and seen < 16:   # bounded: a cause chain can loop
        if isinstance(exc, OSError) and exc.errno in _NO_ROOM:
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
        seen += 1
    return False


class DiskFullError(OSError):
    """The disk (or quota) filled up while writing ``path``.

    ``points`` measured points are safe in ``safe_in`` (None: not known yet); ``resume`` is
    the archive that ``cplscope <command> --resume`` finishes the run from (None: the run
    has no archive); ``complete``: every point had been measured (only a file written after
    them failed). ``str()`` is the one line the CLI prints.
    """

    def __init__(self, path: str | os.PathLike[str], *, points: int | None = None,
                 safe_in: str | os.PathLike[str] | None = None,
                 resume: str | os.PathLike[str] | None = None, command: str = "scan",
                 complete: bool = False) -> None:
        super().__init__(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        self.path = Path(path)
        self.points = points
        self.safe_in = Path(safe_in) if safe_in is not None else None
        self.resume = Path(resume) if resume is not None else None
        self.command = command
        self.complete = complete

    def __str__(self) -> str:
        head = f"disk full while writing {self.path}"
        if self.points is None or self.safe_in is None:
            return f"{head}; free space and run the command again"
        if self.points == 0 and self.resume is None:
            return f"{head}: no point had been measured yet; free space and run it again"
        safe = f"{self.points} point{'s' if self.points != 1 else ''} " \
               f"{'are' if self.points != 1 else 'is'} safe in {self.safe_in}"
        if self.resume is not None:
            return (f"{head}: {safe}; free space and run `cplscope {self.command} --resume "
                    f"{self.resume}`")
        if self.complete:
            return f"{head}: {safe} (all of them); free space and write {self.path.name} again"
        return (f"{head}: {safe}; free space and measure the rest again (a scan with "
                f"--archive can be finished with `cplscope {self.command} --resume`)")

    def __reduce__(self):  # picklable with its fields
        return (_disk_full, (str(self.path), self.points,
                             None if self.safe_in is None else str(self.safe_in),
                             None if self.resume is None else str(self.resume), self.command,
                             self.complete))


def _disk_full(path, points, safe_in, resume, command, complete) -> DiskFullError:
    return DiskFullError(path, points=points, safe_in=safe_in, resume=resume, command=command,
                         complete=complete)


@contextmanager
def disk_full_guard(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn a no-room OSError raised inside into a :class:`DiskFullError` for ``path``."""
    try:
        yield
    except DiskFullError:
        raise
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(path) from exc
        raise


def free_bytes(path: str | os.PathLike[str]) -> int | None:
    """Bytes free for this user on the file system of ``path`` (or of its nearest existing
    parent); None when it cannot be told."""
    p = Path(path).absolute()
    for folder in (p, *p.parents):
        if folder.exists():
            try:
                return int(shutil.disk_usage(folder).free)
            except OSError:
                return None
    return None


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Make a rename or a new file in ``folder`` durable (where the OS allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass   # some file systems cannot fsync a folder; the rename is still atomic
    finally:
        os.close(fd)


def check_new_file(path: str | os.PathLike[str], *, overwrite: bool,
                   also: tuple[str | os.PathLike[str], ...] = ()) -> None:
    """The overwrite policy of every output (CSV, archive, figure, export), for the API and
    the CLI alike: an existing file (or one of ``also``, files that belong to it) is refused
    with FileExistsError unless ``overwrite``."""
    if overwrite:
        return
    for p in (Path(path), *map(Path, also)):
        if p.exists():
            exc = FileExistsError(f"{p} exists; choose a new file name, or allow replacing "
                                  "it (overwrite=True; --overwrite on the command line)")
            exc.filename = str(p)
            raise exc


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8, ``\\n`` newlines) to ``path`` via a temporary file in the same
    folder, fsync, rename and fsync the folder; the file gets the permissions the umask
    allows (not mkstemp's 0600). Returns the path.

    Raises:
        DiskFullError: no room for the file; the previous version of ``path`` is untouched
            and no temporary file is left behind.
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    data = text.encode("utf-8")
    with disk_full_guard(target):
        fd, tmp = tempfile.mkstemp(prefix="." + target.name, suffix=".tmp", dir=folder)
        try:
            try:
                os.fchmod(fd, 0o666 & ~_umask())
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        fsync_dir(folder)
    return target
