"""Reproduce the CPL results of the seed paper on the simulated instrument.

Zhao, Wang, Wang, Wang, Inorg. Chem. Front. 2024, 11, 4424 (doi 10.1039/d4qi01006j) measured
R- and S-Cs4PbBr6 nanocrystals (mirror-image CPL, |g_lum| ≈ 6e-4 over 425–525 nm), achiral
N-Cs4PbBr6 (no emission) and achiral CsPbBr3 (g = 0) on a JASCO CPL-300.

    python examples/seed_paper.py [--out DIR] [--quick] [--readme README.md]

Writes one CSV per sample, the CPL figure of the R/S pair with its mirror-symmetry report
(docs/figures/seed-paper-cpl.png in the repository), and prints the results table. The
simulated instrument is deterministic (same seeds, same commands, same data), so the table is
the same on every machine; ``--quick --readme README.md`` writes it into the README between
its ``<!-- seed-table -->`` markers (``examples/readme_tables.py`` does both examples and the
figures). Each sample has its own seed: R and S are independent measurements.
"""

import numpy as np
from _readme_table import example_args, markdown, write_into

import cplscope
from cplscope.plans.calibrate import calibrate_simulated
from cplscope.plot.cpl import mirror_report, plot_cpl

args = example_args(__doc__, "seed-paper", "coarser steps, shorter dwell",
                    "<!-- seed-table -->")
# --quick: 4-nm steps, a looser target, 1-s frames (the README's table is this run's)
step, target, max_dwell = (4.0, 3e-4, 200.0) if args.quick else (2.0, 1.5e-4, 600.0)
periods = 50_000 if args.quick else 10_000

results = {}
for i, sample in enumerate(("R-Cs4PbBr6", "S-Cs4PbBr6", "N-Cs4PbBr6", "CsPbBr3")):
    with cplscope.connect("sim", sample=sample, seed=10 + i) as inst:
        if inst.calibration.is_default:
            inst.calibration = calibrate_simulated()
        inst.prepare(periods=periods)
        results[sample] = inst.scan(410, 530, step, target_sigma=target, max_dwell_s=max_dwell,
                                    sample=sample, output=args.out / f"{sample}.csv",
                                    progress=True)

r, s = results["R-Cs4PbBr6"], results["S-Cs4PbBr6"]
report = mirror_report(r, s)
plot_cpl([r, s], args.out / "seed-paper-cpl.png", mirror=report,
         title="R-/S-Cs4PbBr6 NCs: CPL and g$_{lum}$ (the seed paper's Fig. 3b/d)")
band = (r.wavelength_nm >= 425) & (r.wavelength_nm <= 525)


def weighted(spec, mask):
    g, sg = spec.g_lum[mask], spec.sigma_g[mask]
    ok = np.isfinite(g) & (sg > 0)
    w = 1 / sg[ok] ** 2
    mean = float((g[ok] * w).sum() / w.sum())
    chi2 = float((((g[ok] - mean) / sg[ok]) ** 2).sum())
    return mean, float(w.sum() ** -0.5), chi2, int(ok.sum())


print(report.text())
rows = [("sample", "paper", "recovered (weighted mean over the main band)")]
m_r, e_r, _, _ = weighted(r, band & (r.intensity > 1e5))
m_s, e_s, _, _ = weighted(s, band & (s.intensity > 1e5))
rows.append(("R-Cs4PbBr6", "+6e-4 over 425–525 nm", f"{m_r:+.2e} ± {e_r:.1e}"))
rows.append(("S-Cs4PbBr6", "−6e-4 (mirror image)",
             f"{m_s:+.2e} ± {e_s:.1e}; g_R + g_S: χ² = {report.chi2:.1f}/{report.dof}, "
             f"p = {report.p_value:.2f}; g_R/(−g_S) = {report.ratio:.2f} ± {report.sigma_ratio:.2f}"))
n_spec = results["N-Cs4PbBr6"]
rows.append(("N-Cs4PbBr6", "no emission", f"{int(n_spec.has_flag('no_emission').sum())} of "
             f"{len(n_spec)} points `no_emission`"))
c = results["CsPbBr3"]
m, e, chi2, n = weighted(c, c.intensity > 1e4)
rows.append(("CsPbBr3", "g = 0", f"{m:+.1e} ± {e:.1e}; χ² of g = 0: "
             f"{chi2 + (m / e) ** 2:.1f} over {n} points"))
table = markdown(rows)
print(table)
if args.readme is not None:
    write_into(args.readme, "<!-- seed-table -->", table)
