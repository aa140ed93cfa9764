"""Photoelastic modulator: configuration, retardation with A0 held constant across
wavelengths (drive ∝ λ), and lock/unlock detection.

Model: A0 [rad] = drive / (λ [nm] · drive_per_rad_nm), drive ∈ [0, 1] of full scale.
"""
import math

from cpl import protocol as P
from cpl.args import CommandError, bad_state, in_range, one_of

SOURCES = ("external", "internal")


class Pem:
    def __init__(self, board) -> None:
        self._board = board
        self.source = "external"
        self.frequency_hz = 50000.0
        self.drive_per_rad_nm = 0.0006366  # drive 0.5 gives π/2 at 500 nm
        self.a0_rad = 0.0  # requested peak retardation, 0 = PEM off
        self.track = True
        self.drive = 0.0
        self.locked = False

    def apply_board(self) -> None:
        self._board.pem_configure(self.source, self.frequency_hz)
        self._board.pem_set_drive(self.drive)

    def drive_for(self, a0_rad: float, nm: float, dprn: float = 0.0) -> float:
        return a0_rad * nm * (dprn or self.drive_per_rad_nm)

    def _check_drive(self, d: float, a0: float, nm: float) -> None:
        if d > 1.0:
            raise CommandError(P.ST_OUT_OF_RANGE,
                               "a0_rad=%.4g at %.2f nm needs drive %.3f > 1 (full scale); "
                               "lower a0_rad or the wavelength" % (a0, nm, d))

    def a0_at(self, nm) -> float:
        """Actual peak retardation (rad) at wavelength nm with the present drive."""
        if nm is None or nm <= 0:
            return self.a0_rad
        return self.drive / (nm * self.drive_per_rad_nm)

    # commands ----------------------------------------------------------------------------
    def validate_config(self, a: dict, running: bool, nm) -> dict:
        if running:
            raise bad_state("PEM_CONFIG is not allowed while running; STOP first")
        c: dict = {"source": self.source, "frequency_hz": self.frequency_hz,
                   "drive_per_rad_nm": self.drive_per_rad_nm}
        c.update(a)
        one_of("source", c["source"], SOURCES)
        in_range("frequency_hz", c["frequency_hz"], 1000.0, 200000.0, "Hz")
        in_range("drive_per_rad_nm", c["drive_per_rad_nm"], 1e-7, 0.1, "per rad per nm")
        if self.a0_rad > 0 and self.track and nm is not None:
            self._check_drive(self.drive_for(self.a0_rad, nm, c["drive_per_rad_nm"]),
                              self.a0_rad, nm)
        return c

    def apply_config(self, c: dict, nm) -> None:
        self.source = c["source"]
        self.frequency_hz = c["frequency_hz"]
        self.drive_per_rad_nm = c["drive_per_rad_nm"]
        if self.a0_rad > 0 and self.track and nm is not None:
            self.drive = self.drive_for(self.a0_rad, nm)
        self.apply_board()

    def config(self) -> dict:
        return {"source": self.source, "frequency_hz": self.frequency_hz,
                "drive_per_rad_nm": self.drive_per_rad_nm}

    def validate_retardation(self, a0: float, nm) -> float:
        in_range("a0_rad", a0, 0.0, math.pi, "rad")
        if a0 <= 0.0:
            raise CommandError(P.ST_OUT_OF_RANGE, "a0_rad must be > 0 (0 < a0_rad <= pi)")
        if nm is None:
            raise bad_state("the wavelength is unknown (not homed); the drive for a0_rad "
                            "depends on it: send HOME first")
        d = self.drive_for(a0, nm)
        self._check_drive(d, a0, nm)
        return d

    def set_retardation(self, a0: float, track: bool, drive: float) -> None:
        self.a0_rad = a0
        self.track = track
        self.drive = drive
        self._board.pem_set_drive(drive)

    def check_wavelength(self, nm: float) -> None:
        """Raise if tracking could not hold A0 at nm (before a MOVE changes anything)."""
        if self.track and self.a0_rad > 0:
            self._check_drive(self.drive_for(self.a0_rad, nm), self.a0_rad, nm)

    def follow_wavelength(self, nm: float) -> None:
        if self.track and self.a0_rad > 0:
            # capped at full scale: MOVE checks beforehand, HOME/MONO_CONFIG cannot refuse
            self.drive = min(1.0, self.drive_for(self.a0_rad, nm))
            self._board.pem_set_drive(self.drive)

    def poll_lock(self) -> int:
        """0, or EV_PEM_LOCK / EV_PEM_UNLOCK when the lock state changed."""
        now = self._board.pem_locked()
        if now == self.locked:
            return 0
        self.locked = now
        return P.EV_PEM_LOCK if now else P.EV_PEM_UNLOCK
