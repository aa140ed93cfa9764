"""Child process of test_hil_faults.py: a scan with a raw archive that the test SIGKILLs.

    python child_scan.py ARCHIVE

Prints one JSON line with the simulator's process ids, then one per completed point (after
the archive has it), flushed, so the parent knows what the archive must hold.
"""
from __future__ import annotations

import json
import math
import sys

import cplscope


def main() -> None:
    archive = sys.argv[1]
    inst = cplscope.connect("sim", sample="R-Cs4PbBr6", seed=7, speed=200.0)
    print(json.dumps({"hub_pid": inst.sim.hub_pid, "firmware_pid": inst.sim.firmware_pid}),
          flush=True)
    inst.configure_counting(bins=16, periods=5000)
    inst.home()
    inst.set_retardation(math.pi / 2)
    inst.set_hv(800.0)
    inst.open_shutter()

    def report(point, index, accumulation) -> None:
        r = point.result
        print(json.dumps({"index": index, "wavelength_nm": r.wavelength_nm,
                          "g_lum": r.g_lum, "intensity": r.intensity,
                          "n_frames": r.n_frames}), flush=True)

    inst.scan(420.0, 470.0, 1.0, dwell_s=5.0, dark_dwell_s=2.0, archive=archive,
              callback=report)
    print(json.dumps({"done": True}), flush=True)


if __name__ == "__main__":
    main()
