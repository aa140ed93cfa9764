"""cplscope firmware, portable core. Imports nothing board-specific; see board/base.py."""

FIRMWARE_VERSION = "0.1.0"
PROTOCOL_VERSION = 1
# revision 2: commands sent again with the flag RETRY are answered from a reply cache
# revision 3: gated counting under pulsed excitation (CONFIGURE mode "gated", GATED_COUNTS)
PROTOCOL_REVISION = 3
