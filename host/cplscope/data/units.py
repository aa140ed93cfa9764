"""Units of every quantity cplscope records, by the name it has in the CSV files and the
documents ("" for a dimensionless one): what the Bluesky descriptors and the NeXus archive
carry. Imports nothing, so the archive's helper process can use it."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["INTENSITY_QUANTITIES", "UNITS", "intensity_unit"]

#: Units of every quantity a stream or table carries ("" for dimensionless).
UNITS: dict[str, str] = {
    "wavelength_nm": "nm", "intensity": "counts/s", "i_left": "counts/s",
    "i_right": "counts/s", "delta_i": "counts/s", "sigma_intensity": "counts/s",
    "g_lum": "", "sigma_g": "", "linear": "", "sigma_linear": "", "chi2_red": "",
    "n_frames": "", "dwell_s": "s", "flags": "", "accumulations": "", "emission_z": "",
    "exclusion_z": "", "dof_sigma": "",
    "absorbance": "", "sigma_absorbance": "", "delta_a": "", "sigma_delta_a": "",
    "g_abs": "", "sigma_g_abs": "", "ellipticity_mdeg": "mdeg", "linear_dichroism": "",
    "sigma_linear_dichroism": "", "index": "", "accumulation": "", "budget_left_s": "s",
    "rate_cps": "counts/s", "sigma_rate_cps": "counts/s", "total_rate_cps": "counts/s",
    "level": "ADC counts", "sigma_level": "ADC counts", "merit": "",
}

#: The quantities in the spectrum's intensity unit (counts/s when counting, ADC counts in
#: analog mode).
INTENSITY_QUANTITIES = frozenset({"intensity", "i_left", "i_right", "delta_i",
                                  "sigma_intensity"})


def intensity_unit(metadata: Mapping[str, Any]) -> str:
    """The unit of a run's intensities, from its metadata: ``ADC counts`` for an analog
    scan (period-mean levels), else the metadata's ``units.intensity`` with ``cps`` spelled
    ``counts/s``."""
    settings = metadata.get("settings")
    if isinstance(settings, Mapping) and settings.get("mode") == "analog":
        return "ADC counts"
    units = metadata.get("units")
    unit = units.get("intensity", "cps") if isinstance(units, Mapping) else "cps"
    return "counts/s" if unit in ("cps", None, "") else str(unit)
