"""Device → host output: sequence numbers, control frames queued until the host takes
them, data frames sent from preallocated buffers or dropped (never blocking)."""
import struct

from cpl import protocol as P

MAX_QUEUED = 64


class Tx:
    def __init__(self, board, clock) -> None:
        self._board = board
        self._clock = clock
        self.seq_hi = 0
        self.seq_lo = 0
        self._queue: list = []  # sealed control frames (bytes), oldest first
        self._fb = P.FrameBuf()
        self.frames_sent = 0  # data frames delivered to the USB layer
        self.frames_dropped = 0  # data frames dropped because the host did not read
        self.pending_drops = 0  # drops since the last delivered data frame
        self.frames_late = 0  # counter frames the board dropped: collected too late
        self.pending_late = 0  # of those, not yet reported
        self.control_dropped = 0

    def _advance(self) -> None:
        self.seq_lo = (self.seq_lo + 1) & 0xFFFF
        if self.seq_lo == 0:
            self.seq_hi = (self.seq_hi + 1) & 0xFFFF

    def control(self, ftype: int, payload) -> None:
        """Queue a REPLY / EVENT / STATUS frame; it goes out before any further data frame."""
        n = len(payload)
        fb = self._fb
        fb.payload[:n] = payload
        self._clock.pack_into(fb.buf, 12, self._clock.last)
        frame = bytes(fb.seal(ftype, n, self.seq_hi, self.seq_lo))
        self._advance()
        if len(self._queue) >= MAX_QUEUED:
            self._queue.pop(0)
            self.control_dropped += 1
        self._queue.append(frame)
        self.flush()

    def room(self) -> int:
        """Control frames that can still be queued without dropping the oldest."""
        return MAX_QUEUED - len(self._queue)

    def event(self, code: int, severity: int, text: str) -> None:
        self.control(P.EVENT, struct.pack("<HH", code, severity) + text.encode())

    def reply(self, request_id: int, opcode: int, status: int, body: bytes) -> None:
        self.control(P.REPLY, struct.pack("<HBB", request_id, opcode, status) + body)

    def flush(self) -> bool:
        """Hand queued control frames to USB. True when the queue is empty."""
        q = self._queue
        while q:
            if not self._board.usb_write(q[0]):
                return False
            q.pop(0)
        return True

    def late(self, n: int) -> None:
        """The board dropped n data frames before they were sealed (no sequence gap)."""
        self.frames_late += n
        self.pending_late += n

    def overrun(self) -> bool:
        """True while data frames were lost since the last delivered one (flag OVERRUN)."""
        return self.pending_drops > 0 or self.pending_late > 0

    def report_overrun(self) -> None:
        """EVENT OVERRUN for the losses not yet reported, then forget them."""
        n_usb = self.pending_drops
        n_late = self.pending_late
        if not (n_usb or n_late):
            return
        self.pending_drops = 0
        self.pending_late = 0
        text = "%d data frames dropped" % (n_usb + n_late)
        if n_late:
            text += (" (%d not read by the host, %d collected from the board too late)"
                     % (n_usb, n_late))
        self.event(P.EV_OVERRUN, P.SEV_WARNING, text)

    def data(self, fb, ftype: int, n_payload: int, ticks_us: int) -> bool:
        """Seal and send a data frame built in `fb` (a protocol.FrameBuf) stamped with the
        board time `ticks_us`. Returns False if it was dropped. Allocation-free."""
        self._clock.pack_into(fb.buf, 12, ticks_us)
        frame = fb.seal(ftype, n_payload, self.seq_hi, self.seq_lo)
        self._advance()
        if (not self._queue or self.flush()) and self._board.usb_write(frame):
            self.frames_sent += 1
            if self.pending_drops or self.pending_late:
                self.report_overrun()
            return True
        self.frames_dropped += 1
        self.pending_drops += 1
        return False

    def queued(self) -> int:
        return len(self._queue)
