"""An append-only, checksummed, fsync'd journal of records: the durable form of a run's raw
archive while the run is going (docs/data-files.md, "Durability").

A journal is a file header and then records, each written with one ``write`` and made
durable with ``fsync`` before the writer returns. A crash at any instant (SIGKILL, power
loss) leaves every record that was completely written and at most one torn record at the
end; a full disk leaves no torn record at all (the writer cuts it off again). The reader
never trusts a byte it has not checked: a record counts only when its header checksum and
its payload checksum are right, and a damaged stretch is skipped to the next record that
checks out, in one forward pass (the work is linear in the file's size, so no file can make
it hang).

File layout (little-endian)::

    header   b"CPLSCOPE-JOURNAL" (16 bytes) | version u16 | reserved u16 | reserved u32
    record   b"CPLR" | kind u8 | reserved u8 | reserved u16 | tag_a i32 | tag_b i32
             | length u32 | header CRC-32 u32 (of the 20 bytes before it)
             | payload (length bytes) | payload CRC-32 u32

``kind`` and the two tags are the journal user's (the archive uses them for the record type
and for the point's plan index and accumulation, so a record whose payload is damaged still
says which point was lost).
"""
from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Sequence, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..util.files import DiskFullError, fsync_dir, is_disk_full

__all__ = ["Damage", "JournalError", "JournalScan", "JournalWriter", "Record", "scan_journal"]

FILE_MAGIC = b"CPLSCOPE-JOURNAL"
FILE_VERSION = 1
_FILE_HEADER = struct.Struct("<16sHHI")
RECORD_MAGIC = b"CPLR"
_HEAD = struct.Struct("<4sBBHiiI")          # magic, kind, 0, 0, tag_a, tag_b, length
_CRC = struct.Struct("<I")
HEADER_SIZE = _HEAD.size + _CRC.size       # 28
OVERHEAD = HEADER_SIZE + _CRC.size          # bytes a record adds to its payload
#: the largest payload a record may claim (a point of 2**31 bytes would be 30 million frames)
MAX_PAYLOAD = 1 << 31
_CHUNK = 1 << 20


class JournalError(ValueError):
    """A file that is not a journal, or one whose file header is damaged."""


def _crc(data: bytes | memoryview, start: int = 0) -> int:
    return zlib.crc32(data, start) & 0xFFFFFFFF


def encode_record(kind: int, payload: bytes, tag: tuple[int, int] = (0, 0)) -> bytes:
    """One record's bytes."""
    if not 0 <= kind < 256:
        raise ValueError(f"record kind must be 0 … 255, got {kind}")
    if len(payload) >= MAX_PAYLOAD:
        raise ValueError(f"a record holds less than {MAX_PAYLOAD} bytes, got {len(payload)}")
    head = _HEAD.pack(RECORD_MAGIC, kind, 0, 0, int(tag[0]), int(tag[1]), len(payload))
    return b"".join((head, _CRC.pack(_crc(head)), payload, _CRC.pack(_crc(payload))))


# --- writer -------------------------------------------------------------------------------

def _link_new(tmp: Path, path: Path) -> None:
    """Give the finished file ``tmp`` the name ``path`` (FileExistsError if that exists)."""
    try:
        os.link(tmp, path)                # atomic, and refuses an existing name
    except FileExistsError:
        raise
    except OSError:                       # a file system without hard links
        if path.exists():
            raise FileExistsError(f"{path} exists") from None
        os.replace(tmp, path)
        return
    tmp.unlink()


class JournalWriter:
    """Appends records to a journal; each :meth:`append` is durable when it returns (with
    ``durable``, the default: ``fsync`` after every record).

    A write that fails (a full disk) is cut off again, so the journal ends with the last
    complete record, and :class:`~cplscope.util.files.DiskFullError` (or the OSError) is
    raised.
    """

    def __init__(self, path: Path, fd: int, size: int, durable: bool) -> None:
        self.path, self._fd, self.size, self.durable = path, fd, size, durable

    @classmethod
    def create(cls, path: str | os.PathLike[str], *, durable: bool = True,
               records: Sequence[tuple[int, bytes]] = ()) -> JournalWriter:
        """A new journal at ``path`` that starts with ``records`` (kind, payload)
        (FileExistsError if there is a file).

        The file appears complete or not at all: it is written and synced under a temporary
        name and then linked into place, so a crash never leaves a journal without the run's
        description.
        """
        p = Path(path)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except OSError as exc:
            if is_disk_full(exc):
                raise DiskFullError(p) from exc
            raise
        self = cls(p, fd, 0, durable)
        try:
            self._write(_FILE_HEADER.pack(FILE_MAGIC, FILE_VERSION, 0, 0) + b"".join(
                encode_record(kind, payload) for kind, payload in records))
            _link_new(tmp, p)
            fsync_dir(p.parent if str(p.parent) else Path("."))
            self._fd = os.open(p, os.O_WRONLY)      # go on through the journal's own name
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        return self

    @classmethod
    def append_to(cls, path: str | os.PathLike[str], *,
                  durable: bool = True) -> JournalWriter:
        """Continue an existing journal. A torn record at its end (a crash while it was
        written) is cut off first; damage earlier in the file is left as it is (the reader
        skips it)."""
        p = Path(path)
        scan = scan_journal(p)
        fd = os.open(p, os.O_WRONLY)
        try:
            if scan.size > scan.end:
                os.ftruncate(fd, scan.end)
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        return cls(p, fd, scan.end, durable)

    def _write(self, data: bytes) -> None:
        start = self.size
        try:
            os.lseek(self._fd, start, os.SEEK_SET)
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            if self.durable:
                os.fsync(self._fd)
        except OSError as exc:
            try:                      # leave no torn record behind: cut it off again
                os.ftruncate(self._fd, start)
            except OSError:
                pass
            if is_disk_full(exc):
                raise DiskFullError(self.path) from exc
            raise
        self.size = start + len(data)

    def append(self, kind: int, payload: bytes, tag: tuple[int, int] = (0, 0)) -> None:
        """Write one record (durably, with ``durable``)."""
        if self._fd < 0:
            raise ValueError(f"journal {self.path} is closed")
        self._write(encode_record(kind, payload, tag))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @property
    def closed(self) -> bool:
        return self._fd < 0


# --- reader -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Record:
    """A record that checks out: its ``kind``, ``tag`` and where its payload lies."""

    kind: int
    tag: tuple[int, int]
    offset: int
    length: int


@dataclass(frozen=True)
class Damage:
    """Bytes ``start`` … ``stop`` that are not a good record. ``kind``/``tag`` are known when
    the record's header checked out and only its payload is damaged; ``at_end``: nothing
    good follows (a record cut short by a crash, or a truncated file)."""

    start: int
    stop: int
    kind: int | None = None
    tag: tuple[int, int] | None = None
    at_end: bool = False


@dataclass
class JournalScan:
    """What :func:`scan_journal` found: the good records in order, the damaged stretches,
    where the good part ends (``end``) and the file's size."""

    path: Path
    records: list[Record] = field(default_factory=list)
    damage: list[Damage] = field(default_factory=list)
    end: int = _FILE_HEADER.size
    size: int = 0


def _read_at(f: BinaryIO, offset: int, n: int) -> bytes:
    f.seek(offset)
    return f.read(n)


def _payload_crc(f: BinaryIO, offset: int, length: int) -> int:
    crc = 0
    f.seek(offset)
    left = length
    while left > 0:
        chunk = f.read(min(_CHUNK, left))
        if not chunk:
            break
        crc = zlib.crc32(chunk, crc)
        left -= len(chunk)
    return crc & 0xFFFFFFFF


def _next_magic(f: BinaryIO, start: int, size: int) -> int:
    """Offset of the next record magic at or after ``start``, or ``size``."""
    pos = start
    while pos < size:
        chunk = _read_at(f, pos, _CHUNK + len(RECORD_MAGIC) - 1)
        i = chunk.find(RECORD_MAGIC)
        if i >= 0:
            return pos + i
        if len(chunk) < len(RECORD_MAGIC):
            break
        pos += max(1, len(chunk) - len(RECORD_MAGIC) + 1)
    return size


def scan_journal(path: str | os.PathLike[str]) -> JournalScan:
    """Every good record of the journal at ``path`` and every damaged stretch, in one
    forward pass over the file (a file being appended to is read up to its last complete
    record).

    Raises:
        JournalError: the file is not a journal (or its file header is damaged).
        OSError: the file cannot be read.
    """
    p = Path(path)
    if p.exists() and not p.is_file():     # a FIFO or a device would block the open
        raise JournalError(f"{p} is not a file")
    with open(p, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(_FILE_HEADER.size)
        if len(head) < _FILE_HEADER.size or head[:16] != FILE_MAGIC:
            raise JournalError(f"{p} is not a cplscope journal (its first bytes are not "
                               f"{FILE_MAGIC.decode()!r})")
        version = _FILE_HEADER.unpack(head)[1]
        if version != FILE_VERSION:
            raise JournalError(f"{p}: journal version {version} is not supported (this "
                               f"cplscope reads version {FILE_VERSION}); update cplscope")
        out = JournalScan(p, size=size)
        return _scan_records(f, out)


def _scan_records(f: BinaryIO, out: JournalScan) -> JournalScan:
    size = out.size
    pos = _FILE_HEADER.size
    bad_from: int | None = None
    while pos < size:
        record = _record_at(f, pos, size)
        if isinstance(record, Record):
            if bad_from is not None:
                out.damage.append(Damage(bad_from, pos))
                bad_from = None
            out.records.append(record)
            pos = record.offset + record.length + _CRC.size
            out.end = pos
        elif isinstance(record, Damage):      # a good header, a damaged payload
            if bad_from is not None:
                out.damage.append(Damage(bad_from, pos))
                bad_from = None
            out.damage.append(record)
            pos = record.stop
            out.end = pos
        else:                                 # not a record here: skip to the next magic
            if bad_from is None:
                bad_from = pos
            pos = _next_magic(f, pos + 1, size)
    if bad_from is not None:
        # the stretch after the last good record reaches the end: a torn tail (or damage)
        out.damage.append(Damage(bad_from, size, at_end=True))
    return out


def _record_at(f: BinaryIO, pos: int, size: int) -> Record | Damage | None:
    raw = _read_at(f, pos, HEADER_SIZE)
    if len(raw) < HEADER_SIZE or raw[:4] != RECORD_MAGIC:
        return None
    if _crc(raw[:_HEAD.size]) != _CRC.unpack_from(raw, _HEAD.size)[0]:
        return None
    _, kind, _, _, a, b, length = _HEAD.unpack_from(raw)
    start = pos + HEADER_SIZE
    if start + length + _CRC.size > size:
        return None                           # cut short: a torn record (or a bad length)
    stored = _CRC.unpack(_read_at(f, start + length, _CRC.size))[0]
    if _payload_crc(f, start, length) != stored:
        return Damage(pos, start + length + _CRC.size, kind, (a, b))
    return Record(kind, (a, b), start, length)


def iter_payloads(path: str | os.PathLike[str],
                  records: list[Record]) -> Iterator[tuple[Record, bytes]]:
    """The payload bytes of ``records`` (from :func:`scan_journal` of ``path``)."""
    with open(path, "rb") as f:
        for r in records:
            yield r, _read_at(f, r.offset, r.length)
