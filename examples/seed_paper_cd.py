"""Reproduce the CD results of the seed paper (its Fig. 3a/c) on the simulated instrument.

Zhao, Wang, Wang, Wang, Inorg. Chem. Front. 2024, 11, 4424 (doi 10.1039/d4qi01006j) measured
mirror-image CD of R- and S-Cs4PbBr6 nanocrystals over 300–450 nm (g_abs up to +8.5e-3 and
−8.8e-3) and none for the achiral N-Cs4PbBr6 and CsPbBr3, on a Bio-Logic MOS-450. Here the
same board and PEM measure it in the CD light path (docs/cd.md): a solvent baseline, then
each sample against it.

    python examples/seed_paper_cd.py [--out DIR] [--quick] [--readme README.md]

Writes one CD CSV per sample, the CD figure of the R/S pair with its mirror report
(docs/figures/seed-paper-cd.png in the repository), and prints a summary.
"""

import numpy as np
from _readme_table import example_args, markdown, write_into

import cplscope
from cplscope.plans.calibrate import calibrate_simulated, prepare
from cplscope.plans.cd_scan import cd_scan
from cplscope.plot.cd import cd_mirror_report, plot_cd

args = example_args(__doc__, "seed-paper-cd", "coarser steps, looser target",
                    "<!-- cd-table -->")
# --quick: 4-nm steps, a looser target, 1-s frames (the README's table is this run's)
step, target, max_dwell = (4.0, 1e-3, 150.0) if args.quick else (2.0, 5e-4, 300.0)
periods = 50_000 if args.quick else 10_000
CD = {"bench_options": {"geometry": "cd"}}
START, STOP = 270.0, 460.0

cal = None


def instrument(sample, seed):
    global cal
    inst = cplscope.connect("sim", sample=sample, seed=seed, **CD)
    if inst.calibration.is_default:
        if cal is None:   # A0 and φ0: the same PEM as in the CPL light path
            cal = calibrate_simulated(save=False)
        inst.calibration = cal
    prepare(inst, periods=periods)
    return inst


with instrument("solvent", 20) as inst:
    baseline = cd_scan(inst, START, STOP, step, dwell_s=2 * max_dwell, sample="solvent",
                       output=args.out / "solvent.csv", progress=True)
results = {}
for i, sample in enumerate(("R-Cs4PbBr6", "S-Cs4PbBr6", "N-Cs4PbBr6", "CsPbBr3")):
    with instrument(sample, 21 + i) as inst:
        results[sample] = cd_scan(inst, START, STOP, step, target_sigma_g_abs=target,
                                  max_dwell_s=max_dwell, baseline=baseline, sample=sample,
                                  output=args.out / f"{sample}.csv", progress=True)

r, s = results["R-Cs4PbBr6"], results["S-Cs4PbBr6"]
report = cd_mirror_report(r, s)
plot_cd([r, s], args.out / "seed-paper-cd.png", mirror=report,
        title="R-/S-Cs4PbBr6 NCs: CD and g$_{abs}$ (the seed paper's Fig. 3a/c)")
print(report.text())
rows = [("sample", "paper (Fig. 3a/c)", "recovered on the twin")]
paper = {"R-Cs4PbBr6": "g_abs max +8.5e-3", "S-Cs4PbBr6": "g_abs max −8.8e-3 (mirror image)",
         "N-Cs4PbBr6": "no CD", "CsPbBr3": "no CD"}
for name, pick in (("R-Cs4PbBr6", np.nanargmax), ("S-Cs4PbBr6", np.nanargmin)):
    spec = results[name]
    lam = spec.wavelength_nm
    band = (lam >= 300) & (lam <= 450) & (spec.sigma_g_abs < 2 * target)
    g = np.where(band, spec.g_abs, np.nan)
    i = int(pick(g))
    print(f"{name}: extreme g_abs over 300–450 nm = {spec.g_abs[i]:+.2e} ± "
          f"{spec.sigma_g_abs[i]:.1e} at {spec.wavelength_nm[i]:g} nm; "
          f"{int(spec.has_flag('opaque').sum())} opaque points below "
          f"{spec.wavelength_nm[~spec.has_flag('opaque')].min():g} nm")
    extra = (f"; g_R + g_S: χ² = {report.chi2:.1f}/{report.dof}, p = {report.p_value:.2f}; "
             f"g_R/(−g_S) = {report.ratio:.2f} ± {report.sigma_ratio:.2f}"
             if name == "S-Cs4PbBr6" else "")
    rows.append((name, paper[name], f"{spec.g_abs[i]:+.2e} ± {spec.sigma_g_abs[i]:.1e} at "
                 f"{spec.wavelength_nm[i]:g} nm{extra}"))
for name in ("N-Cs4PbBr6", "CsPbBr3"):
    spec = results[name]
    ok = np.isfinite(spec.delta_a) & (spec.sigma_delta_a > 0)
    chi2 = float(np.sum((spec.delta_a[ok] / spec.sigma_delta_a[ok]) ** 2))
    print(f"{name}: ΔA = 0: χ² = {chi2:.1f} over {int(ok.sum())} points "
          f"({int(spec.has_flag('opaque').sum())} opaque)")
    rows.append((name, paper[name], f"ΔA = 0: χ² = {chi2:.1f} over {int(ok.sum())} points"))
table = markdown(rows)
print(table)
if args.readme is not None:
    write_into(args.readme, "<!-- cd-table -->", table)
