"""Wire protocol v1 (docs/protocol.md): frame sealing into preallocated buffers and
reassembly of the host → device byte stream. No allocation per frame."""
import struct
from binascii import crc32

from board.base import TICKS_MASK

VERSION = 1
SYNC0 = 0xC5
SYNC1 = 0x5C
HEADER = 20
OVERHEAD = 24
MAX_PAYLOAD = 8192
MAX_FRAME = OVERHEAD + MAX_PAYLOAD

# frame types
COUNTS = 0x01
ADC_BLOCK = 0x02
STATUS = 0x03
EVENT = 0x04
REPLY = 0x05
GATED_COUNTS = 0x06
COMMAND = 0x10

# data frame flags
F_SATURATED = 1
F_OVERLOAD = 2
F_SHUTTER_OPEN = 4
F_PEM_LOCKED = 8
F_MONO_MOVING = 16
F_HV_ON = 32
F_OVERRUN = 64

# event codes
EV_BOOT = 1
EV_OVERLOAD = 2
EV_PEM_LOCK = 3
EV_PEM_UNLOCK = 4
EV_WATCHDOG = 5
EV_OVERRUN = 6
EV_MONO = 7
EV_FAULT = 8
EV_BAD_FRAME = 9
EV_ACQ_DONE = 10

SEV_INFO = 0
SEV_WARNING = 1
SEV_ERROR = 2

OP_HOME = 6  # the one command answered later, by the main loop

# reply status codes
OK = 0
ST_BAD_FRAME = 1
ST_UNKNOWN_COMMAND = 2
ST_BAD_ARGS = 3
ST_OUT_OF_RANGE = 4
ST_BAD_STATE = 5
ST_HARDWARE = 6
ST_INTERNAL = 7


class FrameBuf:
    """A preallocated outgoing frame. Write the payload into `payload`, then `seal()`.

    Views of the first n bytes are cached per length, so sealing frames of a recurring size
    allocates nothing. `crc_into(buf, n)`, if given, writes the CRC-32 of buf[0:n] into
    buf[n:n+4] (a board's native CRC, `Board.crc32_into`); without it `binascii.crc32` is used,
    which makes a long int for CRCs ≥ 2**30 on a 32-bit port.
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD, crc_into=None) -> None:
        self.buf = bytearray(OVERHEAD + max_payload)
        self.mv = memoryview(self.buf)
        self.payload = self.mv[HEADER:HEADER + max_payload]
        self._views: dict = {}
        self._crc_into = crc_into

    def view(self, n: int) -> memoryview:
        v = self._views.get(n)
        if v is None:
            v = self._views[n] = self.mv[:n]
        return v

    def seal(self, ftype: int, n_payload: int, seq_hi: int, seq_lo: int) -> memoryview:
        """Fill in the header (all but the timestamp at bytes 12..19, which the caller
        packs) and the CRC. The sequence number comes as two 16-bit halves so it stays a
        small int on a 32-bit port. Returns a view of the whole frame."""
        buf = self.buf
        struct.pack_into("<BBBBHHHH", buf, 0, SYNC0, SYNC1, VERSION, ftype, n_payload, 0,
                         seq_lo, seq_hi)
        end = HEADER + n_payload
        if self._crc_into is not None:
            self._crc_into(buf, end)
        else:
            c = crc32(self.view(end))
            struct.pack_into("<HH", buf, end, c & 0xFFFF, (c >> 16) & 0xFFFF)
        return self.view(end + 4)


def encode(ftype: int, seq: int, timestamp_us: int, payload: bytes) -> bytes:
    """Build one frame as new bytes (tests and the rare control frames; allocates)."""
    fb = FrameBuf(len(payload))
    fb.payload[:len(payload)] = payload
    struct.pack_into("<Q", fb.buf, 12, timestamp_us)
    return bytes(fb.seal(ftype, len(payload), (seq >> 16) & 0xFFFF, seq & 0xFFFF))


class Reader:
    """Reassembles frames from a byte stream (host → device).

    Call `poll(now_us)` repeatedly; it returns a memoryview of one complete, CRC-checked
    frame, or None when more bytes are needed. The view is valid until the next `poll`.
    Rejected frames (bad version, length or CRC) are counted in `rejected`; the scan resumes
    one byte after their sync, as the protocol requires. A partial frame older than
    `stale_us` (a truncated frame whose remainder never came) is rejected too.
    """

    def __init__(self, stale_us: int = 200_000) -> None:
        self.buf = bytearray(2 * MAX_FRAME)
        self.mv = memoryview(self.buf)
        self.fill = 0
        self.rejected = 0
        self.last_reject = ""
        self._consume = 0
        self._stale_us = stale_us
        self._partial_since = -1

    def pending(self) -> bool:
        """True while bytes of an incomplete frame wait for the rest (after `poll` returned
        None): the core must let time pass so that a truncated frame goes stale."""
        return self.fill > self._consume

    def space(self) -> memoryview:
        """The free tail of the buffer, to read new bytes into (then call `added`)."""
        self._drop(self._consume)
        self._consume = 0
        # the buffer is almost always empty between commands: reuse that view
        return self.mv if self.fill == 0 else self.mv[self.fill:]

    def added(self, n: int) -> None:
        self.fill += n

    def _drop(self, k: int) -> None:
        if k:
            n = self.fill - k
            self.buf[:n] = self.mv[k:self.fill]
            self.fill = n
            self._partial_since = -1

    def _reject(self, why: str) -> None:
        self.rejected += 1
        self.last_reject = why
        self._drop(1)

    def poll(self, now_us: int):
        self._drop(self._consume)
        self._consume = 0
        b = self.buf
        while True:
            n = self.fill
            if n < 2:
                if n == 1 and b[0] != SYNC0:
                    self._drop(1)
                return None
            if b[0] != SYNC0 or b[1] != SYNC1:
                i = b.find(b"\xc5\x5c", 1, n)
                if i < 0:
                    # keep a trailing first sync byte; it may be completed by the next read
                    self._drop(n - 1 if b[n - 1] == SYNC0 else n)
                    continue
                self._drop(i)
                continue
            if n < HEADER:
                return self._wait_more(now_us)
            if b[2] != VERSION:
                self._reject("version %d is not 1" % b[2])
                continue
            length = b[4] | (b[5] << 8)
            if length > MAX_PAYLOAD:
                self._reject("length %d > %d" % (length, MAX_PAYLOAD))
                continue
            end = HEADER + length
            if n < end + 4:
                return self._wait_more(now_us)
            c = crc32(self.mv[:end])
            got = b[end] | (b[end + 1] << 8) | (b[end + 2] << 16) | (b[end + 3] << 24)
            if c != got:
                self._reject("CRC mismatch")
                continue
            self._consume = end + 4
            return self.mv[:end + 4]

    def _wait_more(self, now_us: int):
        if self._partial_since < 0:
            self._partial_since = now_us
        elif (now_us - self._partial_since) & TICKS_MASK > self._stale_us:
            self._reject("truncated frame")
            return self.poll(now_us)
        return None


def frame_type(frame) -> int:
    return frame[3]


def frame_seq(frame) -> int:
    return struct.unpack_from("<I", frame, 8)[0]


def frame_payload(frame):
    return frame[HEADER:len(frame) - 4]
