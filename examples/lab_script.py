"""An example lab script: calibrate once, then measure an enantiomer pair and compare.

Run against the simulated instrument (default) or a real board:

    python examples/lab_script.py            # simulator
    python examples/lab_script.py usb        # the first board on the USB bus

On a real instrument, change the sample by hand where the script asks for it.

Every run writes into a new folder, runs/DATE_TIME/: each spectrum's CSV and raw archive
(every frame, for `cplscope reprocess` and `--resume`) and the pair's figure. Running the
script again never replaces the files of an earlier run (the scans refuse an existing file:
overwrite=False).
"""
import sys
from datetime import datetime
from pathlib import Path

import cplscope
from cplscope.plans.calibrate import calibrate_simulated, prepare
from cplscope.plot.cpl import mirror_report, plot_cpl

address = sys.argv[1] if len(sys.argv) > 1 else "sim"
out = Path("runs") / datetime.now().strftime("%Y-%m-%d_%H%M%S")
out.mkdir(parents=True)          # a new folder per run (an existing one is an error)
spectra = []
# On the simulator each enantiomer gets its own seed: a mirror report of two spectra that
# share one noise realization would judge the noise, not the samples.
for seed, sample in enumerate(("R-Cs4PbBr6", "S-Cs4PbBr6"), start=1):
    sim = {"sample": sample, "seed": seed} if address == "sim" else {}
    with cplscope.connect(address, **sim) as inst:
        if inst.calibration.is_default:
            if address != "sim":
                sys.exit("calibrate first: cplscope calibrate --device " + address)
            inst.calibration = calibrate_simulated()      # once; stored per serial
        if address != "sim":
            input(f"put {sample} in the sample holder, then press Enter ")
        prepare(inst, bins=16, periods=10000, hv_volts=800)
        print(inst.info())

        def show(point, index, accumulation):
            r = point.result
            print(f"{r.wavelength_nm:6.1f} nm  g = {r.g_lum:+.2e} ± {r.sigma_g:.1e}  {r.flags}")

        spectra.append(inst.scan(420, 460, 4, target_sigma=2e-4, max_dwell_s=300,
                                 callback=show, sample=sample, output=out / f"{sample}.csv",
                                 archive=out / f"{sample}.h5"))

report = mirror_report(*spectra)
print(report.text())
plot_cpl(spectra, out / "pair.png", mirror=report)
print(f"wrote {out}: R-Cs4PbBr6.csv/.h5, S-Cs4PbBr6.csv/.h5 and pair.png")
