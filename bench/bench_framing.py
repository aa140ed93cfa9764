"""Throughput of the host frame decoder (cplscope.protocol.StreamDecoder) on a COUNTS stream.

    python bench/bench_framing.py [--frames 50000] [--repeats 5]

A realistic device stream: COUNTS frames with B = 16 bins (108 bytes each), Poisson counts,
consecutive sequence numbers, fed in 64-byte chunks (one USB full-speed packet) and in 4 KiB
chunks (a typical bulk read). Side by side on the same bytes and chunks:

- ``zlib.crc32`` over the chunks (running form): the cost of just touching the bytes once;
- ``_framing.crc32``, the kernel's slicing-by-8 CRC, the same way;
- ``_framing.scan`` alone (sync scan + CRC check, no payload decoding), on the whole stream;
- ``StreamDecoder`` (kernel scan + typed Counts with numpy arrays): the figure that matters;
- the same StreamDecoder driven by the plain-Python reference scanner of
  tests/host/test_framing_kernel.py (on --ref-frames frames, it is slow).

Best of --repeats. The device sends 100–1000 frames/s, so any decoder rate far above that is
head-room for the Python layers above it.
"""
from __future__ import annotations

import argparse
import importlib.util
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from _timing import best_time

from cplscope import _framing
from cplscope.protocol import Flags, FrameType, StreamDecoder, encode_counts, encode_frame

N_BINS = 16


def counts_stream(n_frames: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    flags = Flags.PEM_LOCKED | Flags.HV_ON | Flags.SHUTTER_OPEN
    counts = rng.poisson(2000, size=(n_frames, N_BINS))
    return b"".join(
        encode_frame(FrameType.COUNTS, seq, 1_000 * seq,
                     encode_counts(counts[seq], flags=flags, periods=500, mono_position=1234,
                                   pem_period_ps=20_000_000, acq_id=1))
        for seq in range(n_frames))


def load_reference_scan() -> Callable:
    path = Path(__file__).resolve().parents[1] / "tests" / "host" / "test_framing_kernel.py"
    spec = importlib.util.spec_from_file_location("_framing_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reference_scan


def decode_all(chunks: list[bytes], scanner=None) -> int:
    dec = StreamDecoder(scanner=scanner)
    n = sum(len(dec.feed(c)) for c in chunks) + len(dec.flush())
    if n != len(chunks) and dec.stats.rejected:  # a wrong stream would make the figures moot
        raise RuntimeError(f"decoder rejected frames of a clean stream: {dec.stats}")
    return n


def running_crc(crc: Callable[[bytes, int], int], chunks: list[bytes]) -> int:
    value = 0
    for c in chunks:
        value = crc(c, value)
    return value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=50_000)
    ap.add_argument("--ref-frames", type=int, default=5_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    stream = counts_stream(args.frames)
    frame_size = len(stream) // args.frames
    ref_stream = stream[:args.ref_frames * frame_size]
    reference_scan = load_reference_scan()
    print(f"StreamDecoder on COUNTS B = {N_BINS} ({frame_size} bytes/frame): {args.frames} frames "
          f"= {len(stream) / 1e6:.2f} MB (reference: {args.ref_frames} frames), "
          f"best of {args.repeats}")
    header = f"{'chunk':>6}  {'what':<40} {'MB/s':>9} {'frames/s':>11}"
    print(header)
    print("-" * len(header))

    def row(chunk_label: str, what: str, seconds: float, n_bytes: int) -> None:
        print(f"{chunk_label:>6}  {what:<40} {n_bytes / seconds / 1e6:9.1f} "
              f"{n_bytes / frame_size / seconds:11.0f}")

    assert _framing.crc32(stream) == zlib.crc32(stream)
    row("-", "_framing.scan, whole stream at once", best_time(
        lambda: _framing.scan(stream), args.repeats), len(stream))
    for size, label in ((64, "64 B"), (4096, "4 KiB")):
        chunks = [stream[i:i + size] for i in range(0, len(stream), size)]
        ref_chunks = [ref_stream[i:i + size] for i in range(0, len(ref_stream), size)]
        assert running_crc(_framing.crc32, chunks) == running_crc(zlib.crc32, chunks)
        row(label, "zlib.crc32 (running, per chunk)",
            best_time(lambda: running_crc(zlib.crc32, chunks), args.repeats), len(stream))
        row(label, "_framing.crc32 (running, per chunk)",
            best_time(lambda: running_crc(_framing.crc32, chunks), args.repeats), len(stream))
        row(label, "StreamDecoder (kernel)",
            best_time(lambda: decode_all(chunks), args.repeats), len(stream))
        row(label, "StreamDecoder (pure-Python reference scan)",
            best_time(lambda: decode_all(ref_chunks, reference_scan), max(1, args.repeats // 2)),
            len(ref_stream))


if __name__ == "__main__":
    main()
