"""Simulated optical bench: statistics of counting frames and ADC blocks against the model.

Every statistical assertion uses a fixed seed and a tolerance derived from the expected
scatter (χ² quantiles, or a number of standard errors); each would fail if the modelled
effect (sign of S_k, dead time, common-mode flicker, ENF, …) were wrong.
"""
import math

import numpy as np
import pytest
from scipy import special, stats

from cplscope.sim.bench import (AdcBlock, Bench, CountsFrame, InstrumentState, bialkali_qe,
                                 bin_integrals)
from cplscope.sim.samples import Sample, load_sample

QUIET = dict(flicker_rms=0.0, drift_rel=0.0)


def state(bench, wavelength_nm, a0=math.pi / 2, *, shutter=True, hv=800.0, t=0.0):
    """A state whose PEM drive gives retardation ``a0`` at ``wavelength_nm``."""
    drive = a0 * bench.pem_drive_per_rad_nm * wavelength_nm
    return InstrumentState(wavelength_nm, drive, shutter, hv, t)


def flat_sample(g=0.0, u=0.0, peak_rate_cps=1e6):
    lam = np.array([300.0, 900.0])
    return Sample("flat", lam, np.ones(2), np.full(2, g), np.full(2, u), peak_rate_cps)


def brute_force_bins(n_bins, a0, phi0, per_bin=20000):
    """Midpoint-rule S_k, C_k (independent of the bench's Gauss–Legendre)."""
    k = np.arange(n_bins)[:, None]
    theta = 2 * np.pi * (k + (np.arange(per_bin) + 0.5) / per_bin) / n_bins
    delta = a0 * np.sin(theta - phi0)
    h = 1.0 / (n_bins * per_bin)
    return np.sin(delta).sum(axis=1) * h, np.cos(delta).sum(axis=1) * h


def plateau(bench, hv):
    return 1.0 / (1.0 + math.exp(-(hv - bench.hv_plateau_volts) / bench.hv_plateau_width_volts))


# --- modulation model ---------------------------------------------------------------------------

@pytest.mark.parametrize("n_bins", [2, 5, 16, 64])
@pytest.mark.parametrize("a0", [0.5, math.pi / 2, 2.4048, 3.0])
def test_bin_integrals_sum_rules_and_brute_force(n_bins, a0):
    s, c = bin_integrals(n_bins, a0, 0.3)
    assert s.sum() == pytest.approx(0.0, abs=1e-14)
    assert c.sum() == pytest.approx(special.j0(a0), abs=1e-14)
    s_ref, c_ref = brute_force_bins(n_bins, a0, 0.3)
    np.testing.assert_allclose(s, s_ref, atol=1e-9)
    np.testing.assert_allclose(c, c_ref, atol=1e-9)


def test_sign_convention_left_light_peaks_where_delta_is_positive():
    bench = Bench("circular-polarizer-L", seed=1, **QUIET)
    st = state(bench, 450.0)
    mu = bench.expected_counts(st, 16, 100)
    s, _ = bin_integrals(16, math.pi / 2, bench.pem_phase_offset_rad)
    assert np.argmax(mu) == np.argmax(s) and np.argmin(mu) == np.argmin(s)


def test_retardation_follows_drive_over_wavelength():
    bench = Bench("linear-polarizer-45", seed=2, dark_rate_cps=0.0, dead_time_s=0.0, **QUIET)
    k = bench.pem_drive_per_rad_nm
    st = InstrumentState(400.0, 0.8, True, 800.0)
    assert bench.retardation(st) == pytest.approx(0.8 / (k * 400.0))

    def shape(drive, lam):
        mu = bench.expected_counts(InstrumentState(lam, drive, True, 800.0), 16, 100)
        return mu / mu.sum()

    # Doubling drive and wavelength together keeps A0, so the u = 1 bin pattern is unchanged...
    np.testing.assert_allclose(shape(0.8, 400.0), shape(1.6, 800.0), rtol=1e-12)
    # ...and that pattern is w_k + C_k(A0 = drive/(kλ)) of the measurement model.
    a0 = 0.8 / (k * 400.0)
    _, c_ref = brute_force_bins(16, a0, bench.pem_phase_offset_rad)
    np.testing.assert_allclose(shape(0.8, 400.0), (1 / 16 + c_ref) / (1 + special.j0(a0)),
                               rtol=1e-8)
    # Doubling the wavelength alone halves A0 and changes the pattern.
    assert np.max(np.abs(shape(0.8, 400.0) - shape(0.8, 800.0))) > 1e-2


def test_expected_counts_follow_the_binned_model():
    u, g = 0.3, 0.8
    bench = Bench(flat_sample(g=g, u=u), seed=3, dead_time_s=0.0, **QUIET)
    st = state(bench, 450.0, a0=1.9)
    mu = bench.expected_counts(st, 16, 500)
    dark = bench.expected_counts(state(bench, 450.0, a0=1.9, shutter=False), 16, 500)
    s_ref, c_ref = brute_force_bins(16, 1.9, bench.pem_phase_offset_rad)
    model = 1 / 16 + u * c_ref + (g / 2) * s_ref
    total_m = (mu - dark).sum() / (1 + u * special.j0(1.9))
    np.testing.assert_allclose(mu - dark, total_m * model, rtol=1e-8)
    np.testing.assert_allclose(dark, 20.0 * plateau(bench, 800.0) * 500 * 2e-5 / 16)


# --- counting statistics ------------------------------------------------------------------------

def test_frames_are_poisson_around_the_model_means():
    bench = Bench(flat_sample(g=0.8, u=0.3), seed=4, dead_time_s=0.0, **QUIET)
    st = state(bench, 450.0)
    n_frames, n_bins, periods = 400, 16, 200
    frames = np.array([bench.counts_frame(st, n_bins, periods).counts for _ in range(n_frames)],
                      dtype=float)
    mu = bench.expected_counts(st, n_bins, periods)
    assert mu.min() > 50  # the modulation is strong, the normal approximation fine
    # Bin means over all frames (a wrong S_k sign or φ0 would give χ² in the thousands).
    chi2_sum = np.sum((frames.sum(0) - n_frames * mu) ** 2 / (n_frames * mu))
    assert chi2_sum < stats.chi2.ppf(0.9999, n_bins)
    # Frame-to-frame scatter is Poisson: χ² over all frames and bins ≈ its dof.
    dof = n_frames * n_bins
    chi2_all = np.sum((frames - mu) ** 2 / mu)
    assert abs(chi2_all - dof) < 5 * math.sqrt(2 * dof)


def test_counts_frame_types_and_fields():
    bench = Bench("R-Cs4PbBr6", seed=5)
    frame = bench.counts_frame(state(bench, 438.0), 16, 1000)
    assert isinstance(frame, CountsFrame)
    counts, period, saturated, overload = frame
    assert counts.dtype == np.uint32 and counts.shape == (16,)
    assert period == pytest.approx(2e-5) and saturated is False
    # The guard sees the true anode rate: ~ peak_rate_cps at the emission peak.
    assert overload == pytest.approx(1.5e6, rel=0.05)


def test_dead_time_compresses_as_non_paralyzable():
    tau = 18e-9
    bench = Bench(flat_sample(g=1.0, peak_rate_cps=2e7), seed=6, dead_time_s=tau,
                  dark_rate_cps=0.0, **QUIET)
    st = state(bench, 400.0)
    n_frames, n_bins, periods = 2000, 16, 50
    frames = np.array([bench.counts_frame(st, n_bins, periods).counts for _ in range(n_frames)],
                      dtype=float)
    mu = bench.expected_counts(st, n_bins, periods, dead_time=False)
    live = periods * bench.pem_period_s / n_bins
    rho = mu * tau / live
    m = mu / (1 + rho)
    np.testing.assert_allclose(bench.expected_counts(st, n_bins, periods), m, rtol=1e-12)
    assert rho.max() > 0.3  # a strong effect, far beyond the statistical resolution
    # Means: non-paralyzable expectation, variance m/(1 + ρ)² of the renewal process.
    var_model = m / (1 + rho) ** 2 + 1 / 12
    z = (frames.mean(0) - m) / np.sqrt(var_model / n_frames)
    assert np.sum(z**2) < stats.chi2.ppf(0.9999, n_bins)
    assert np.all((mu - m) / np.sqrt(var_model / n_frames) > 100)
    ratio = frames.var(0, ddof=1).sum() / var_model.sum()
    assert ratio == pytest.approx(1.0, abs=4 * math.sqrt(2 / (n_bins * (n_frames - 1))))
    # The guard's rate is the true rate, above what the counter sees.
    frame = bench.counts_frame(st, n_bins, periods)
    assert frame.overload_rate_cps == pytest.approx(mu.sum() / (periods * 2e-5), rel=1e-12)


def _flicker_variance_of_mean(sigma, a):
    return sigma**2 * 2 * (a - 1 + math.exp(-a)) / a**2


@pytest.mark.parametrize("a", [0.2, 5.0])
def test_flicker_is_common_mode_with_the_configured_rms(a):
    sigma, tau = 0.1, 1e-3
    bench = Bench("circular-polarizer-L", seed=7, flicker_rms=sigma, flicker_time_s=tau,
                  drift_rel=0.0, dead_time_s=0.0, dark_rate_cps=0.0)
    periods = round(a * tau * bench.pem_frequency_hz)
    n_frames, n_bins = 1500, 16
    # Frames 1 s apart (1000 correlation times): independent draws of the flicker.
    frames = np.array([bench.counts_frame(state(bench, 450.0, t=float(i)), n_bins, periods).counts
                       for i in range(n_frames)], dtype=float)
    mu = bench.expected_counts(state(bench, 450.0), n_bins, periods)
    totals = frames.sum(1)
    m_tot = mu.sum()
    predicted = m_tot + m_tot**2 * _flicker_variance_of_mean(sigma, a)
    assert m_tot**2 * _flicker_variance_of_mean(sigma, a) > 0.4 * m_tot  # flicker is visible
    assert totals.var(ddof=1) == pytest.approx(predicted, rel=4 * math.sqrt(2 / (n_frames - 1)))
    assert totals.mean() == pytest.approx(m_tot, abs=4 * math.sqrt(predicted / n_frames))
    # Given each frame's total, the bins are multinomial with the unchanged model shape.
    p = mu / m_tot
    expected = totals[:, None] * p
    chi2 = np.sum((frames - expected) ** 2 / expected)
    dof = n_frames * (n_bins - 1)
    assert abs(chi2 - dof) < 5 * math.sqrt(2 * dof)


def test_flicker_continues_across_adjacent_frames():
    # Back-to-back frames much shorter than the correlation time see almost the same flicker.
    bench = Bench(flat_sample(peak_rate_cps=5e7), seed=8, flicker_rms=0.05, flicker_time_s=1.0,
                  drift_rel=0.0, dead_time_s=0.0, dark_rate_cps=0.0)
    totals = []
    for i in range(400):
        st = state(bench, 400.0, t=i * 1e-3)
        totals.append(bench.counts_frame(st, 4, 50).counts.sum())
    rel = np.array(totals) / np.mean(totals) - 1
    # Poisson alone would give a lag-1 correlation ≈ 0; the OU flicker gives ≈ 0.9 here.
    assert np.corrcoef(rel[:-1], rel[1:])[0, 1] > 0.7


def test_drift_scales_the_signal_slowly():
    bench = Bench("R-Cs4PbBr6", seed=9, flicker_rms=0.0, drift_rel=0.05, drift_period_s=100.0,
                  dark_rate_cps=0.0, dead_time_s=0.0)
    up = bench.expected_counts(state(bench, 438.0, t=25.0 - 0.01), 16, 1000).sum()
    down = bench.expected_counts(state(bench, 438.0, t=75.0 - 0.01), 16, 1000).sum()
    assert up / down == pytest.approx(1.05 / 0.95, rel=1e-6)


def test_seed_makes_runs_reproducible():
    def run(seed):
        bench = Bench("R-Cs4PbBr6", seed=seed)
        out = [bench.counts_frame(state(bench, 438.0, t=0.02 * i), 16, 1000).counts
               for i in range(5)]
        out.append(bench.adc_block(state(bench, 438.0, t=1.0), 512, 2e5).samples)
        return np.concatenate([o.astype(np.int64) for o in out])

    np.testing.assert_array_equal(run(11), run(11))
    assert np.any(run(11) != run(12))


# --- instrument response ------------------------------------------------------------------------

def test_peak_rate_calibration_and_spectral_response():
    bench = Bench("R-Cs4PbBr6", seed=10, dark_rate_cps=0.0, dead_time_s=0.0, **QUIET)
    frame_s = 1000 * bench.pem_period_s

    def rate(lam):
        return bench.expected_counts(state(bench, lam), 16, 1000).sum() / frame_s

    rates = [rate(lam) for lam in np.arange(432.0, 442.0, 0.05)]
    assert max(rates) == pytest.approx(1.5e6, rel=1e-4)
    # The weak 504 nm band: 3 % of the main peak, times the lower QE there.
    expected = 0.03 * bialkali_qe(504.0) / bialkali_qe(438.0)
    assert rate(504.0) / rate(438.0) == pytest.approx(expected, rel=0.02)
    assert bench.truth(state(bench, 438.0)).g_lum == pytest.approx(6e-4)


def test_high_voltage_controls_the_counting_efficiency():
    bench = Bench("blank", seed=11, **QUIET)
    frame_s = 50_000 * bench.pem_period_s  # 1 s frames
    assert np.all(bench.counts_frame(state(bench, 438.0, hv=0.0), 16, 50_000).counts == 0)
    totals = [bench.counts_frame(state(bench, 438.0, t=i), 16, 50_000).counts.sum()
              for i in range(50)]
    # Dark counts alone on the plateau: Poisson around 20 cps.
    assert np.mean(totals) / frame_s == pytest.approx(20.0, abs=4 * math.sqrt(20 / 50))
    lit = Bench("R-Cs4PbBr6", seed=11, dead_time_s=0.0, **QUIET)

    def rate(hv):
        return lit.expected_counts(state(lit, 438.0, hv=hv), 16, 1000).sum()

    assert rate(500.0) / rate(800.0) < 0.25  # steep rise below the plateau
    assert rate(900.0) / rate(800.0) == pytest.approx(1.0, abs=0.01)  # flat on the plateau


def test_closed_shutter_leaves_dark_only():
    bench = Bench("R-Cs4PbBr6", seed=12, **QUIET)
    closed = bench.expected_counts(state(bench, 438.0, shutter=False), 16, 50_000)
    assert closed.sum() == pytest.approx(20.0 * plateau(bench, 800.0), rel=1e-6)


def test_n_cs4pbbr6_gives_no_signal():
    bench = Bench("N-Cs4PbBr6", seed=13)
    mu = bench.expected_counts(state(bench, 438.0), 16, 1000)
    np.testing.assert_allclose(mu, mu[0])  # dark only: flat across bins
    assert mu.sum() / (1000 * bench.pem_period_s) < 21


# --- input checks -------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, pattern", [
    ({"dead_time_s": -1e-9}, "dead_time_s must be a finite number ≥ 0"),
    ({"pem_frequency_hz": 0.0}, "pem_frequency_hz must be a finite number > 0"),
    ({"enf": 0.9}, "enf"),
    ({"flicker_rms": 0.7}, "flicker_rms"),
    ({"slit_fwhm_nm": float("nan")}, "slit_fwhm_nm"),
])
def test_bad_bench_parameters(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        Bench("blank", seed=0, **kwargs)


def test_bad_states_and_arguments():
    bench = Bench("R-Cs4PbBr6", seed=0)
    good = state(bench, 438.0)
    for bad, pattern in [
        (InstrumentState(float("nan"), 0.5, True, 800.0), "wavelength_nm"),
        (InstrumentState(438.0, -0.5, True, 800.0), "pem_drive"),
        (InstrumentState(438.0, 0.5, True, -10.0), "hv_volts"),
        (InstrumentState(438.0, 0.5, True, 800.0, float("inf")), "time_s"),
    ]:
        with pytest.raises(ValueError, match=pattern):
            bench.counts_frame(bad, 16, 100)
        with pytest.raises(ValueError, match=pattern):
            bench.adc_block(bad, 64, 2e5)
    with pytest.raises(ValueError, match="n_bins"):
        bench.counts_frame(good, 1, 100)
    with pytest.raises(ValueError, match="periods"):
        bench.counts_frame(good, 16, 0)
    with pytest.raises(ValueError, match="n_samples"):
        bench.adc_block(good, 0, 2e5)
    with pytest.raises(ValueError, match="sample_rate_hz"):
        bench.adc_block(good, 64, -1.0)


# --- analog mode --------------------------------------------------------------------------------

def _phases_from_edges(times, edges, period):
    """PEM phase of each sample time from the reported reference edges only."""
    idx = np.searchsorted(edges, times, side="right") - 1
    last = np.where(idx >= 0, edges[np.maximum(idx, 0)], edges[0] - period)
    return 2 * np.pi * (times - last) / period


def test_adc_blocks_follow_the_model_in_phase_level_and_noise():
    bench = Bench("circular-polarizer-L", seed=14, **QUIET)
    a0, fs, n = math.pi / 2, 196_000.0, 2048
    st = state(bench, 450.0, a0=a0)
    period = bench.pem_period_s
    n_bins, blocks = 8, 200
    sums, sq, cnt, model_sums = (np.zeros(n_bins) for _ in range(4))
    resid2 = var_pred = 0.0
    phi0, scale = bench.pem_phase_offset_rad, bench.adc_counts_per_mcps * 1e-6 / bench.adc_window_s
    # Expected photoelectron rate of the signal (v = 1): counting rate on the plateau / ε.
    frame = 1000 * period
    m_sig = bench.expected_counts(st, 16, 1000, dead_time=False).sum() / frame
    c_expected = scale * bench.adc_window_s * m_sig / plateau(bench, 800.0)
    for b in range(blocks):
        t0 = 10.0 + b * 0.0137 + 1e-7 * b
        block = bench.adc_block(st, n, fs, t0)
        assert isinstance(block, AdcBlock) and block.samples.dtype == np.uint16
        assert not block.clipped and block.samples.max() <= 4095
        times = t0 + np.arange(n) / fs
        theta = _phases_from_edges(times, block.edge_times_s, period)
        shape = 1 + np.sin(a0 * np.sin(theta - phi0))
        x = block.samples.astype(float)
        k = np.minimum((theta / (2 * np.pi) * n_bins).astype(int), n_bins - 1)
        sums += np.bincount(k, x, n_bins)
        sq += np.bincount(k, x * x, n_bins)
        cnt += np.bincount(k, minlength=n_bins)
        model_sums += np.bincount(k, shape, n_bins)
        pe = c_expected * shape / scale
        resid2 += np.sum((x - bench.adc_offset - c_expected * shape) ** 2)
        var_pred += np.sum(scale**2 * bench.enf**2 * pe + bench.adc_read_noise**2 + 1 / 12)
    mean = sums / cnt
    sem = np.sqrt((sq / cnt - mean**2) / cnt)
    design = model_sums / cnt
    # One-parameter fit of the level scale c in mean_k = offset + c·<1 + sin δ>_k.
    w = 1 / sem**2
    c = np.sum(w * design * (mean - bench.adc_offset)) / np.sum(w * design**2)
    c_sigma = 1 / math.sqrt(np.sum(w * design**2))
    chi2 = np.sum(w * (mean - bench.adc_offset - c * design) ** 2)
    assert chi2 < stats.chi2.ppf(0.9999, n_bins - 1)
    assert c == pytest.approx(c_expected, abs=4 * c_sigma)
    # Sample variance: shot noise with the excess-noise factor, plus read noise.
    assert resid2 / var_pred == pytest.approx(1.0, abs=0.03)


def test_adc_edges_are_at_the_pem_period():
    bench = Bench("R-Cs4PbBr6", seed=15)
    t0, fs, n = 1234.5 + 3.3e-6, 2e5, 2048
    block = bench.adc_block(state(bench, 438.0), n, fs, t0)
    edges = block.edge_times_s
    duration = n / fs
    assert np.all((edges >= t0) & (edges < t0 + duration))
    np.testing.assert_allclose(np.diff(edges), bench.pem_period_s, atol=1e-10)
    assert len(edges) in (math.floor(duration / bench.pem_period_s),
                          math.ceil(duration / bench.pem_period_s))
    # Edges sit at whole PEM periods of instrument time.
    cycles = edges * bench.pem_frequency_hz
    np.testing.assert_allclose(cycles, np.round(cycles), atol=1e-6)
    # A block that starts on an edge reports it first.
    on_edge = bench.adc_block(state(bench, 438.0), 64, fs, 2.0)
    assert on_edge.edge_times_s[0] == pytest.approx(2.0, abs=1e-12)
    # Default start time is the state's time.
    assert bench.adc_block(state(bench, 438.0, t=3.0), 64, fs).edge_times_s[0] == pytest.approx(3.0)


def test_adc_dark_level_and_clipping():
    bench = Bench("R-Cs4PbBr6", seed=16, **QUIET)
    dark = bench.adc_block(state(bench, 438.0, shutter=False), 4096, 2e5, 5.0)
    assert not dark.clipped
    sd = math.sqrt(bench.adc_read_noise**2 + 1 / 12)
    assert dark.samples.mean() == pytest.approx(bench.adc_offset, abs=5 * sd / 64)
    # Raising the HV raises the analog gain ∝ HV**7 until the ADC clips at 4095.
    bright = bench.adc_block(state(bench, 438.0, hv=1000.0), 4096, 2e5, 6.0)
    assert bright.clipped and bright.samples.max() == 4095
    # An offset of 0 clips the read noise at the bottom rail.
    low = Bench("blank", seed=16, adc_offset=0.0, **QUIET)
    block = low.adc_block(state(low, 438.0), 4096, 2e5, 1.0)
    assert block.clipped and block.samples.min() == 0


def test_adc_hv_off_gives_offset_only():
    bench = Bench("R-Cs4PbBr6", seed=17, adc_read_noise=0.0, **QUIET)
    block = bench.adc_block(state(bench, 438.0, hv=0.0), 256, 2e5, 1.0)
    assert np.all(block.samples == round(bench.adc_offset))


# --- end to end with the estimator -------------------------------------------------------------

def _estimate_from_bench(sample, wavelength_nm, n_frames, periods, seed, a0=1.9159):
    from cplscope.demod import estimate

    bench = Bench(sample, seed=seed)  # default flicker, drift and dead time
    n_bins, period = 16, bench.pem_period_s
    frames = np.array([bench.counts_frame(state(bench, wavelength_nm, a0, t=i * periods * period),
                                          n_bins, periods).counts for i in range(n_frames)])
    frame_s = periods * bench.pem_period_s
    dark = bench.expected_counts(state(bench, wavelength_nm, a0, shutter=False), n_bins, periods,
                                 dead_time=False)
    est = estimate(frames, a0, phase_offset=bench.pem_phase_offset_rad, dark=dark,
                   dead_time=bench.dead_time_s, frame_time=frame_s)
    return est, bench.truth(state(bench, wavelength_nm))


def test_end_to_end_r_cs4pbbr6_g_recovered_by_the_estimator():
    est, truth = _estimate_from_bench("R-Cs4PbBr6", 438.0, 6000, 5000, seed=21)
    assert est.sigma_g < 1.2e-4  # enough photons (≈ 9e8) to see g = 6e-4 at > 5σ
    assert abs(est.g_lum - truth.g_lum) < 3 * est.sigma_g
    assert abs(est.linear - truth.linear) < 3 * est.sigma_linear


@pytest.mark.parametrize("sample, wavelength", [
    ("circular-polarizer-L", 450.0),
    ("circular-polarizer-R", 450.0),
    ("Eu(facam)3", 595.0),
    ("linear-polarizer-45", 450.0),
])
def test_end_to_end_reference_samples(sample, wavelength):
    est, truth = _estimate_from_bench(sample, wavelength, 200, 2000, seed=22)
    assert abs(est.g_lum - truth.g_lum) < 3 * est.sigma_g
    assert abs(est.linear - truth.linear) < 3 * est.sigma_linear


# --- transmission (CD) geometry -------------------------------------------------------------------

from cplscope.sim.samples import Absorption  # noqa: E402
from cplscope.sim.bench import uv_bialkali_qe, xenon_lamp  # noqa: E402

LN10 = math.log(10.0)


def cd_sample(a=0.5, delta_a=0.0, ld=0.0, name="cd-flat"):
    lam = np.array([150.0, 1200.0])
    ab = Absorption(lam, np.full(2, a), np.full(2, delta_a), np.full(2, ld))
    return Sample(name, lam, np.zeros(2), np.zeros(2), np.zeros(2), 0.0, absorption=ab)


def flat_cd_bench(sample, **kw):
    """A CD bench with a flat lamp and QE, so the empty-beam rate is lamp_rate_cps exactly."""
    opts = dict(geometry="cd", lamp=lambda lam: np.ones_like(lam),
                qe=lambda lam: np.full_like(lam, 0.2), dead_time_s=0.0, **QUIET)
    seed = kw.pop("seed", 21)
    opts.update(kw)
    return Bench(sample, seed=seed, **opts)


def test_cd_geometry_keeps_the_cpl_default_bit_identical():
    a = Bench("R-Cs4PbBr6", seed=9)
    b = Bench("R-Cs4PbBr6", seed=9, geometry="cpl")
    for lam in (420.0, 438.0, 504.0):
        fa, fb = a.counts_frame(state(a, lam), 16, 2000), b.counts_frame(state(b, lam), 16, 2000)
        assert np.array_equal(fa.counts, fb.counts)
    assert a.qe is bialkali_qe and Bench("solvent", seed=1, geometry="cd").qe is uv_bialkali_qe


@pytest.mark.parametrize("a, delta_a, ld", [(0.5, 0.0, 0.0), (0.8, 4e-3, 0.0),
                                            (1.2, -0.05, 0.0), (0.3, 0.0, 0.02)])
def test_cd_expected_counts_follow_the_transmission_model(a, delta_a, ld):
    bench = flat_cd_bench(cd_sample(a, delta_a, ld), lamp_rate_cps=5e5)
    a0, n_bins, periods = 1.9, 16, 500
    st = state(bench, 300.0, a0=a0)
    mu = bench.expected_counts(st, n_bins, periods)
    dark = bench.expected_counts(state(bench, 300.0, a0=a0, shutter=False), n_bins, periods)
    # r(θ) ∝ T(1 + u cos δ + v sin δ), T = (T_L + T_R)/2 with A_L,R = A ± ΔA/2 (and LD alike)
    t_l, t_r = 10 ** -(a + delta_a / 2), 10 ** -(a - delta_a / 2)
    v = (t_l - t_r) / (t_l + t_r)
    assert v == pytest.approx(-math.tanh(LN10 * delta_a / 2), abs=1e-15)
    u = -math.tanh(LN10 * ld / 2)
    t_mean = 10 ** -a * math.cosh(LN10 * delta_a / 2) * math.cosh(LN10 * ld / 2)
    s_ref, c_ref = brute_force_bins(n_bins, a0, bench.pem_phase_offset_rad)
    expected = 5e5 * t_mean * periods * bench.pem_period_s * (1 / 16 + u * c_ref + v * s_ref)
    np.testing.assert_allclose(mu - dark, expected, rtol=1e-8)
    truth = bench.cd_truth(300.0)
    assert truth.absorbance == pytest.approx(a, abs=1e-12)
    assert truth.delta_a == pytest.approx(delta_a, abs=1e-12)
    assert truth.linear_dichroism == pytest.approx(ld, abs=1e-12)


def test_cd_frames_are_poisson_around_the_model_means():
    bench = flat_cd_bench(cd_sample(0.7, 0.2), seed=22)
    st = state(bench, 350.0)
    n_frames, n_bins, periods = 400, 16, 500
    frames = np.array([bench.counts_frame(st, n_bins, periods).counts for _ in range(n_frames)],
                      dtype=float)
    mu = bench.expected_counts(st, n_bins, periods)
    assert mu.min() > 50
    chi2_sum = np.sum((frames.sum(0) - n_frames * mu) ** 2 / (n_frames * mu))
    assert chi2_sum < stats.chi2.ppf(0.9999, n_bins)
    dof = n_frames * n_bins
    assert abs(np.sum((frames - mu) ** 2 / mu) - dof) < 5 * math.sqrt(2 * dof)
    # The sample's CD is visible: left-circular light (δ > 0 half) is absorbed more.
    s, _ = bin_integrals(n_bins, math.pi / 2, bench.pem_phase_offset_rad)
    assert np.sum(frames.sum(0) * s) < -10 * math.sqrt(np.sum(frames.sum(0) * s**2))


def test_cd_lamp_shutter_and_rate_follow_absorbance():
    solvent, sample = Bench("solvent", seed=23, geometry="cd"), Bench("R-Cs4PbBr6", seed=23,
                                                                      geometry="cd")
    st = state(solvent, 436.0)
    dark = sample.expected_counts(state(sample, 436.0, shutter=False), 16, 1000, dead_time=False)
    np.testing.assert_allclose(dark, 20.0 * plateau(sample, 800.0) * 1000 * 2e-5 / 16)
    i0 = (solvent.expected_counts(st, 16, 1000, dead_time=False) - dark).sum()
    i = (sample.expected_counts(st, 16, 1000, dead_time=False) - dark).sum()
    truth = sample.cd_truth(436.0, "solvent")
    # M ∝ T and the ratio of the totals carries A (J0 term: u = 0 here)
    assert -math.log10(i / i0) - 0.5 * math.log10(1 - truth.v**2) == pytest.approx(
        truth.absorbance, abs=1e-9)
    assert 0.3 < truth.absorbance < 1.5


def test_cd_empty_beam_rate_and_uv_response():
    bench = Bench("blank", seed=24, geometry="cd", dead_time_s=0.0, **QUIET)
    lam = np.arange(180.0, 900.0, 1.0)
    rates = np.array([bench.expected_counts(state(bench, x), 16, 1000, dead_time=False).sum()
                      for x in lam]) / (1000 * bench.pem_period_s)
    dark = 20.0 * plateau(bench, 800.0)
    assert rates.max() - dark == pytest.approx(1e6, rel=1e-3)
    # The UV window and the xenon continuum leave light for the CSA bands.
    at = dict(zip(lam, rates))
    assert at[290.0] > 2e5 and at[193.0] > 1e4
    assert xenon_lamp(np.array([480.0]))[0] == pytest.approx(1.0, abs=1e-3)
    assert uv_bialkali_qe(np.array([290.0]))[0] > 5 * bialkali_qe(np.array([290.0]))[0]


def test_cd_polarizer_at_minus_45_flips_the_signals():
    plus = flat_cd_bench(cd_sample(0.5, 0.01, 0.005), seed=25)
    minus = flat_cd_bench(cd_sample(0.5, 0.01, 0.005), seed=25, cd_polarizer_deg=-45)
    assert minus._at_wavelength(400.0) == pytest.approx(
        (plus._at_wavelength(400.0)[0], -plus._at_wavelength(400.0)[1],
         -plus._at_wavelength(400.0)[2]))
    assert minus.cd_truth(400.0).delta_a == pytest.approx(-0.01, abs=1e-12)


def test_cd_calibration_samples_give_the_cpl_patterns():
    """The polarizers as CD samples reproduce u = 1 and v = +1 (to their extinction)."""
    for name, u, v in (("linear-polarizer-45", 1.0, 0.0), ("circular-polarizer-L", 0.0, 1.0),
                       ("circular-polarizer-R", 0.0, -1.0)):
        bench = Bench(name, seed=26, geometry="cd")
        rate, u_cd, v_cd = bench._at_wavelength(450.0)
        assert rate > 1e5
        assert u_cd == pytest.approx(u, abs=1e-4) and v_cd == pytest.approx(v, abs=1e-4)


@pytest.mark.parametrize("kwargs, pattern", [
    ({"geometry": "absorption"}, r"geometry must be 'cpl'.*'cd'"),
    ({"geometry": "cd", "cd_polarizer_deg": 30}, r"cd_polarizer_deg must be 45 or -45"),
    ({"geometry": "cd", "lamp_rate_cps": 0}, r"lamp_rate_cps must be a finite number > 0"),
])
def test_bad_cd_parameters(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        Bench("solvent", seed=0, **kwargs)


def test_cd_geometry_needs_absorption_data():
    with pytest.raises(ValueError, match=r"'Eu\(facam\)3' has no absorbance data.*'absorbance'"):
        Bench("Eu(facam)3", seed=0, geometry="cd")
    bench = Bench("solvent", seed=0, geometry="cd")
    with pytest.raises(ValueError, match="no absorbance data"):
        bench.set_sample("Eu(facam)3")


def test_cd_adc_level_follows_the_transmission_model():
    """Analog mode sees the same light: ADC level ∝ T·(1 + v·sin δ) in the CD geometry."""
    delta_a = 0.05
    bench = flat_cd_bench(cd_sample(0.4, delta_a), dark_rate_cps=0.0, lamp_rate_cps=2e6)
    st = state(bench, 400.0, a0=math.pi / 2)
    t = np.arange(64) / (64 * bench.pem_frequency_hz)
    level = bench.expected_adc(st, t) - bench.adc_offset
    delta = math.pi / 2 * np.sin(2 * np.pi * bench.pem_frequency_hz * t
                                 - bench.pem_phase_offset_rad)
    v = -math.tanh(LN10 * delta_a / 2)
    shape = 1 + v * np.sin(delta)
    np.testing.assert_allclose(level / level.mean(), shape / shape.mean(), rtol=1e-12)
    empty = flat_cd_bench(cd_sample(0.0), dark_rate_cps=0.0, lamp_rate_cps=2e6)
    ratio = level.mean() / (empty.expected_adc(st, t) - empty.adc_offset).mean()
    assert ratio == pytest.approx(10 ** -0.4 * math.cosh(LN10 * delta_a / 2), rel=1e-12)
