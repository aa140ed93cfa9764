"""Register accesses that must happen together (rp2 board).

A native (viper) function runs from RAM without interpreter dispatch in between, so two
accesses in one call are a fixed few cycles apart; the caller disables interrupts around it
so that no handler runs between them. The tests replace these functions by a model of the
chip."""
import micropython


@micropython.viper
def store2(addr1: uint, value1: uint, addr2: uint, value2: uint):
    """*addr1 = value1, then at once *addr2 = value2 (32-bit stores)."""
    p = ptr32(addr1)
    q = ptr32(addr2)
    p[0] = value1
    q[0] = value2


@micropython.viper
def load2(addr1: uint, addr2: uint, out):
    """out[0] = *addr1, then at once out[1] = *addr2 (32-bit loads; out: array('I'))."""
    o = ptr32(out)
    p = ptr32(addr1)
    q = ptr32(addr2)
    o[0] = p[0]
    o[1] = q[0]


@micropython.viper
def load1(addr: uint) -> int:
    """*addr (a 32-bit load) of a register whose value is below 2**30: an interrupt handler's
    read of a peripheral register, whose address would be a long int in mem32[addr]."""
    p = ptr32(addr)
    return int(p[0])


@micropython.viper
def store_halves(addr: uint, hi: uint, lo: uint):
    """*addr = hi << 16 | lo (a 32-bit store of two 16-bit fields, e.g. a PWM slice's CC):
    an interrupt handler's write whose address and value would be long ints in
    mem32[addr] = value."""
    p = ptr32(addr)
    p[0] = (hi << 16) | lo
