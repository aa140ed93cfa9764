"""cplscope firmware, portable core. Imports nothing board-specific; see board/base.py."""

FIRMWARE_VERSION = "0.1.0"
PROTOCOL_VERSION = 1
