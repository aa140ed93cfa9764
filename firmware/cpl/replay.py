"""The replies of the last few commands, for commands the host sends again (docs/protocol.md,
"Retries").

A host whose reply was lost or corrupt sends the command again with the same request id and
the flag RETRY. If the original reached the board, its reply is kept here and goes out again;
the command is not executed a second time (a retried START starts no second acquisition, a
retried MOVE is not refused because the first one is moving). A command without the flag is
always executed, whatever its request id: a new host session may reuse ids.

Fixed size: SIZE entries in lists made at boot, the oldest replaced first. An entry holds the
reply body already built for the original reply, so keeping it copies nothing. Commands only,
never the streaming path.
"""
from binascii import crc32

SIZE = 4
RETRY = 0x01  # COMMAND flags bit 0


class Replay:
    def __init__(self, size: int = SIZE) -> None:
        self._rid = [-1] * size
        self._op = [0] * size
        self._key = [0] * size  # CRC-32 of the args: a retry is the same command
        self._status = [0] * size
        self._body = [b""] * size
        self._next = 0
        self.replayed = 0  # retries answered from here since boot

    def find(self, rid: int, op: int, key: int) -> int:
        """Index of the kept reply to command (rid, op, args key), or -1."""
        for k in range(len(self._rid)):
            if self._rid[k] == rid and self._op[k] == op and self._key[k] == key:
                return k
        return -1

    def status(self, k: int) -> int:
        return self._status[k]

    def body(self, k: int):
        return self._body[k]

    def keep(self, rid: int, op: int, key: int, status: int, body) -> None:
        """Keep the reply to (rid, op, key); it replaces an older reply with the same id."""
        k = -1
        for i in range(len(self._rid)):
            if self._rid[i] == rid:
                k = i
                break
        if k < 0:
            k = self._next
            self._next = (k + 1) % len(self._rid)
        self._rid[k] = rid
        self._op[k] = op
        self._key[k] = key
        self._status[k] = status
        self._body[k] = body


def args_key(args) -> int:
    """The key of a command's args bytes (a memoryview is fine)."""
    return crc32(args)
