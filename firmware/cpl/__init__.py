"""cplscope firmware, portable core. Imports nothing board-specific; see board/base.py."""

FIRMWARE_VERSION = "0.1.0"
PROTOCOL_VERSION = 1
# revision 2: commands sent again with the flag RETRY are answered from a reply cache
PROTOCOL_REVISION = 2
