"""Instrument.acquire against a scripted board: bounded STARTs for exactly the frames needed,
another one for a shortfall of usable frames, the end at ACQ_DONE (or, when that event was
lost to a corrupt frame, at STATUS), and the START … STOP fallback for an older firmware."""
from __future__ import annotations

import queue
import threading
from typing import Any

import numpy as np
import pytest

from cplscope.instrument import Instrument
from cplscope.protocol import CommandError, Counts, Event, EventCode, Flags, Opcode, Reply, \
    ReplyStatus
from cplscope.board.transport import LinkHealth

GOOD = Flags.PEM_LOCKED | Flags.SHUTTER_OPEN | Flags.HV_ON
PERIOD_PS = 20_000_000  # 50 kHz
K = 5000  # 0.1-s frames


class ScriptedTransport:
    """Answers commands like the firmware; a START streams its frames from a thread, as the
    USB reader would queue them. ``unusable`` lists the (1-based) frame numbers, counted
    over all acquisitions, that come with MONO_MOVING; ``lose_end`` drops every ACQ_DONE and
    counts a rejected frame instead ("silent": drops it without a trace, as a frame dropped
    whole by the link, with nothing after it, leaves); ``bounded`` False is a firmware without START frames."""

    reconnect_timeout = 1.0
    reply_timeout = 5.0

    def __init__(self, *, unusable: tuple[int, ...] = (), lose_end: bool | str = False,
                 bounded: bool = True) -> None:
        self.data: queue.Queue[Any] = queue.Queue()
        self.on_event: Any = None
        self.connected = True
        self.unusable = set(unusable)
        self.lose_end = lose_end
        self.bounded = bounded
        self.log: list[tuple[Opcode, dict[str, Any] | None]] = []
        self.acq_id = 0
        self.made = 0
        self.state = "idle"
        self.rejected = 0
        self.lose_status = 0  # STATUS replies to lose (corrupt frames), then answer
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def health(self) -> LinkHealth:
        return LinkHealth(rejected=self.rejected)

    def lost_frames(self) -> int:
        return self.rejected

    def drain(self) -> int:
        n = 0
        while not self.data.empty():
            self.data.get_nowait()
            n += 1
        return n

    def wait_connected(self, timeout: float) -> bool:
        return True

    def _frame(self) -> Counts:
        self.made += 1
        flags = GOOD | (Flags.MONO_MOVING if self.made in self.unusable else 0)
        return Counts(4, Flags(flags), K, 0, PERIOD_PS, self.acq_id,
                      np.full(4, self.made, dtype=np.uint32), seq=self.made,
                      timestamp_us=self.made * 100_000)

    def _stream(self, n: int | None) -> None:
        i = 0
        while not self._stop.is_set() and (n is None or i < n):
            self.data.put(self._frame())
            i += 1
        if n is not None:
            self.state = "idle"
            if self.lose_end == "silent":
                pass
            elif self.lose_end:
                self.rejected += 1
            elif self.on_event is not None:
                self.on_event(Event(EventCode.ACQ_DONE, 0, f"acquisition {self.acq_id} "
                                                            f"ended after {n} data frames "
                                                            f"({n} sent)"))

    def command(self, opcode: Opcode, args: dict[str, Any] | None = None, *,
                timeout: float = 5.0) -> dict[str, Any]:
        self.log.append((Opcode(opcode), args))
        if opcode == Opcode.STATUS and self.lose_status:
            self.lose_status -= 1
            raise TimeoutError("STATUS: no reply within 10 s")
        if opcode == Opcode.STATUS:
            return {"state": self.state, "periods": K, "pem_period_ps": PERIOD_PS}
        if opcode == Opcode.START:
            if args and not self.bounded:
                raise CommandError(Reply(1, Opcode.START, ReplyStatus.BAD_ARGS,
                                         error="unknown key 'frames'; allowed: none"))
            self.acq_id += 1
            self.state = "running"
            self._stop.clear()
            n = args.get("frames") if args else None
            self._thread = threading.Thread(target=self._stream, args=(n,), daemon=True)
            self._thread.start()
            return {"acq_id": self.acq_id}
        if opcode == Opcode.STOP:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            self.state = "idle"
            return {"frames_sent": self.made}
        return {}

    def starts(self) -> list[dict[str, Any] | None]:
        return [a for op, a in self.log if op == Opcode.START]


def test_a_duration_is_one_bounded_start_of_exactly_the_frames_it_needs() -> None:
    t = ScriptedTransport()
    fs = Instrument(t).acquire(duration_s=2.0)  # type: ignore[arg-type]
    assert t.starts() == [{"frames": 20}]
    assert fs.n_frames == 20 and fs.dwell_s == pytest.approx(2.0)
    assert Opcode.STOP not in [op for op, _ in t.log]  # the board stopped by itself
    assert fs.seq.tolist() == list(range(1, 21))


def test_unusable_frames_are_counted_again_in_another_bounded_start() -> None:
    t = ScriptedTransport(unusable=(3, 7, 8))
    fs = Instrument(t).acquire(n_frames=10)  # type: ignore[arg-type]
    assert t.starts() == [{"frames": 10}, {"frames": 3}]
    assert fs.n_frames == 10 and fs.excluded == 3 and len(fs.received) == 13
    assert fs.seq.tolist() == [1, 2, 4, 5, 6, 9, 10, 11, 12, 13]


def test_progress_ends_early_and_the_rest_of_its_chunk_is_discarded() -> None:
    t = ScriptedTransport()
    calls: list[int] = []

    def progress(frames: list[Counts], dwell: float) -> bool:
        calls.append(len(frames))
        return len(frames) == 14

    with pytest.warns(DeprecationWarning, match="n_frames"):
        fs = Instrument(t).acquire(duration_s=60.0, progress=progress)  # type: ignore[arg-type]
    assert t.starts() == [{"frames": 10}, {"frames": 10}]  # 1-s chunks
    assert fs.n_frames == 14 and calls == list(range(1, 15))
    assert t.made == 20  # the chunk ran to its end on the board; 6 frames were dropped


def test_a_lost_acq_done_ends_the_acquisition_through_status() -> None:
    t = ScriptedTransport(lose_end=True)
    fs = Instrument(t).acquire(n_frames=5, timeout=20.0)  # type: ignore[arg-type]
    assert fs.n_frames == 5
    assert [op for op, _ in t.log].count(Opcode.STATUS) == 2  # frame time, then the check


def test_an_acq_done_dropped_without_a_trace_ends_it_through_status_once_all_frames_came(
        ) -> None:
    # nothing shows the loss (no rejection, no later frame to reveal a gap): once every data
    # frame is in and the stream is quiet, the instrument asks, well before the stall timeout
    t = ScriptedTransport(lose_end="silent")
    fs = Instrument(t).acquire(n_frames=5, timeout=60.0)  # type: ignore[arg-type]
    assert fs.n_frames == 5
    assert [op for op, _ in t.log].count(Opcode.STATUS) == 2  # frame time, then the check


def test_a_firmware_without_bounded_start_is_stopped_by_the_host() -> None:
    t = ScriptedTransport(bounded=False)
    inst = Instrument(t)  # type: ignore[arg-type]
    fs = inst.acquire(n_frames=4)
    assert fs.n_frames == 4
    assert t.starts() == [{"frames": 4}, None]  # refused, then unbounded
    assert t.log[-1][0] == Opcode.STOP
    inst.acquire(n_frames=2)
    assert t.starts()[-1] is None  # remembered: no second refusal


def test_a_status_the_transport_got_no_reply_to_is_not_asked_again() -> None:
    # the transport sends a command whose reply was lost again itself
    # (tests/reliability/test_link_faults.py); when it gives up, the instrument does not
    # multiply its wait by asking again
    t = ScriptedTransport()
    t.lose_status = 1
    with pytest.raises(TimeoutError, match="STATUS"):
        Instrument(t).acquire(n_frames=3)  # type: ignore[arg-type]
    assert [op for op, _ in t.log] == [Opcode.STATUS]
