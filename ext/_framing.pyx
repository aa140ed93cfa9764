# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Hot loops of the wire-protocol receiver (docs/protocol.md, version 1).

- :func:`crc32`: CRC-32 (IEEE 802.3), bit-identical to ``zlib.crc32`` including its running form
  ``crc32(b, crc32(a)) == crc32(a + b)``. Slicing-by-8 with tables built at import.
- :func:`scan`: one pass over a receive buffer that applies the protocol's receiver rules and
  returns where the valid frames are.

Both accept any C-contiguous buffer of unsigned bytes (bytes, bytearray, memoryview, read-only
buffers, ``numpy.uint8`` arrays) and run without the GIL.
"""
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memchr, memset

SYNC0 = 0xC5
SYNC1 = 0x5C
VERSION = 1
HEADER_SIZE = 20
OVERHEAD = 24
MAX_PAYLOAD = 8192

cdef enum:
    _SYNC0 = 0xC5
    _SYNC1 = 0x5C
    _VERSION = 1
    _HEADER = 20
    _OVERHEAD = 24
    _MAX_PAYLOAD = 8192

cdef uint32_t _T[8][256]


cdef void _build_tables() noexcept:
    cdef uint32_t c
    cdef int i, k
    for i in range(256):
        c = <uint32_t>i
        for k in range(8):
            if c & 1:
                c = (c >> 1) ^ <uint32_t>0xEDB88320
            else:
                c = c >> 1
        _T[0][i] = c
    for i in range(256):
        for k in range(1, 8):
            _T[k][i] = (_T[k - 1][i] >> 8) ^ _T[0][_T[k - 1][i] & 0xFF]


_build_tables()


cdef inline uint32_t _le32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0]) | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef inline uint64_t _le64(const uint8_t* p) noexcept nogil:
    return (<uint64_t>_le32(p)) | ((<uint64_t>_le32(p + 4)) << 32)


cdef uint32_t _crc_update(uint32_t crc, const uint8_t* p, Py_ssize_t n) noexcept nogil:
    """Running CRC-32: ``crc`` is a previous result (0 to start), as in ``zlib.crc32``."""
    cdef uint32_t a, b
    crc = ~crc
    while n >= 8:
        a = _le32(p) ^ crc
        b = _le32(p + 4)
        crc = (_T[7][a & 0xFF] ^ _T[6][(a >> 8) & 0xFF] ^ _T[5][(a >> 16) & 0xFF] ^ _T[4][a >> 24]
               ^ _T[3][b & 0xFF] ^ _T[2][(b >> 8) & 0xFF] ^ _T[1][(b >> 16) & 0xFF] ^ _T[0][b >> 24])
        p += 8
        n -= 8
    while n > 0:
        crc = (crc >> 8) ^ _T[0][(crc ^ p[0]) & 0xFF]
        p += 1
        n -= 1
    return ~crc


def crc32(const unsigned char[::1] data, value=0):
    """CRC-32 (IEEE 802.3) of ``data``, continuing from ``value``; same result as ``zlib.crc32``.

    ``value`` is masked to 32 bits like zlib does. Returns an int in 0 … 2³²−1.
    """
    cdef uint32_t crc = <uint32_t>(value & 0xFFFFFFFF)
    cdef Py_ssize_t n = data.shape[0]
    if n == 0:
        return crc
    with nogil:
        crc = _crc_update(crc, &data[0], n)
    return crc


cdef struct _Found:
    Py_ssize_t offset
    uint32_t ftype
    uint32_t length
    uint32_t seq
    uint64_t timestamp_us


cdef struct _Tally:
    Py_ssize_t n_found
    Py_ssize_t rej_version
    Py_ssize_t rej_length
    Py_ssize_t rej_crc
    Py_ssize_t rej_truncated
    Py_ssize_t skipped
    Py_ssize_t keep


cdef void _scan(const uint8_t* p, Py_ssize_t n, bint final, _Found* found, _Tally* t) noexcept nogil:
    cdef Py_ssize_t i = 0, j, total, keep_from
    cdef const uint8_t* hit
    cdef uint32_t length = 0
    while True:
        # Next sync: the byte pair C5 5C starting at j.
        j = i
        while True:
            if j >= n - 1:
                j = n
                break
            hit = <const uint8_t*>memchr(p + j, _SYNC0, n - 1 - j)
            if hit == NULL:
                j = n
                break
            j = hit - p
            if p[j + 1] == _SYNC1:
                break
            j += 1
        if j >= n:
            # No complete sync. A final C5 may be the first half of one: keep it.
            keep_from = n
            if n > i and p[n - 1] == _SYNC0 and not final:
                keep_from = n - 1
            t.skipped += keep_from - i
            t.keep = n - keep_from
            return
        t.skipped += j - i
        # Candidate at j. Every verdict below depends only on bytes already present, so the
        # outcome cannot depend on how the stream was split into calls.
        if j + 2 < n and p[j + 2] != _VERSION:
            t.rej_version += 1
            t.skipped += 1
            i = j + 1
            continue
        if j + 6 <= n:
            length = p[j + 4] | (<uint32_t>p[j + 5] << 8)
            if length > _MAX_PAYLOAD:
                t.rej_length += 1
                t.skipped += 1
                i = j + 1
                continue
            total = _OVERHEAD + length
        else:
            total = n + 1  # header incomplete: treat like a frame not yet complete
        if j + total > n:
            if final:
                t.rej_truncated += 1
                t.skipped += 1
                i = j + 1
                continue
            t.keep = n - j
            return
        if _crc_update(0, p + j, _HEADER + length) != _le32(p + j + _HEADER + length):
            t.rej_crc += 1
            t.skipped += 1
            i = j + 1
            continue
        found[t.n_found].offset = j
        found[t.n_found].ftype = p[j + 3]
        found[t.n_found].length = length
        found[t.n_found].seq = _le32(p + j + 8)
        found[t.n_found].timestamp_us = _le64(p + j + 12)
        t.n_found += 1
        i = j + total


def scan(const unsigned char[::1] buf, bint final=False):
    """Find the valid frames in ``buf`` by the receiver rules of docs/protocol.md.

    A candidate is a sync ``C5 5C``; it is rejected when its version is not 1, its length is
    above 8192, or its CRC does not match, and the scan resumes one byte after its sync. A
    candidate whose bytes are not all present yet stops the scan: its bytes are *kept* for the
    next call (with the new data appended). With ``final=True`` (end of stream) such a candidate
    is rejected as truncated instead and nothing is kept.

    Returns ``(frames, rejected_version, rejected_length, rejected_crc, rejected_truncated,
    skipped, keep)``:

    - ``frames``: list of ``(offset, type, payload_length, seq, timestamp_us)`` of the frames
      with a good CRC, in order; ``offset`` is the index of the sync byte in ``buf``;
    - ``rejected_*``: candidates rejected, by reason;
    - ``skipped``: bytes of ``buf`` that belong to no valid frame and are not kept;
    - ``keep``: bytes at the end of ``buf`` to prepend to the next call.

    ``sum(24 + length) + skipped + keep == len(buf)`` always holds.
    """
    cdef Py_ssize_t n = buf.shape[0]
    cdef _Tally t
    cdef _Found* found
    cdef Py_ssize_t k
    memset(&t, 0, sizeof(t))
    if n == 0:
        return [], 0, 0, 0, 0, 0, 0
    found = <_Found*>PyMem_Malloc((n // _OVERHEAD + 1) * sizeof(_Found))
    if found == NULL:
        raise MemoryError("cannot allocate the frame index for a buffer of %d bytes" % n)
    try:
        with nogil:
            _scan(&buf[0], n, final, found, &t)
        frames = [
            (found[k].offset, found[k].ftype, found[k].length, found[k].seq, found[k].timestamp_us)
            for k in range(t.n_found)
        ]
    finally:
        PyMem_Free(found)
    return frames, t.rej_version, t.rej_length, t.rej_crc, t.rej_truncated, t.skipped, t.keep
