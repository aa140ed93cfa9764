"""Tail probabilities for the estimator's tests, without a SciPy dependency at run time.

Each function is a textbook method (series and continued fractions of the incomplete gamma and
beta functions, evaluated with the modified Lentz algorithm), accurate to about 1e-12
relative in the ranges the estimator uses; ``tests/host/test_estimator.py`` compares them
with SciPy.
"""
from __future__ import annotations

import math
from statistics import NormalDist

_NORMAL = NormalDist()
_TINY = 1e-300
_EPS = 1e-15
#: most terms of a series or continued fraction before giving up
_MAX_TERMS = 20_000
#: largest p-value distance from 0 and 1 that z_from_upper_tail resolves (z within ±37.5)
P_FLOOR = 1e-307


def z_from_upper_tail(p: float) -> float:
    """Normal-equivalent score of an upper-tail probability: z with P(N(0,1) ≥ z) = p.

    p is clipped to [1e-307, 1 − 1e-16], so z stays finite (within about ±37.5).
    """
    p = min(max(float(p), P_FLOOR), 1.0 - 1e-16)
    return -_NORMAL.inv_cdf(p)


def upper_tail_from_z(z: float) -> float:
    """P(N(0,1) ≥ z)."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def gamma_p(a: float, x: float) -> float:
    """Regularized lower incomplete gamma P(a, x) for a > 0, x ≥ 0."""
    if x <= 0.0:
        return 0.0
    if x < a + 1.0:
        return _gamma_series(a, x)
    return 1.0 - _gamma_cf(a, x)


def gamma_q(a: float, x: float) -> float:
    """Regularized upper incomplete gamma Q(a, x) = 1 − P(a, x)."""
    if x <= 0.0:
        return 1.0
    if x < a + 1.0:
        return 1.0 - _gamma_series(a, x)
    return _gamma_cf(a, x)


def _gamma_series(a: float, x: float) -> float:
    term = total = 1.0 / a
    ap = a
    for _ in range(_MAX_TERMS):
        ap += 1.0
        term *= x / ap
        total += term
        if abs(term) < abs(total) * _EPS:
            break
    return total * math.exp(-x + a * math.log(x) - math.lgamma(a))


def _lentz_step(an: float, bn: float, c: float, d: float) -> tuple[float, float, float]:
    """One step of the modified Lentz method for a continued fraction with partial numerator
    ``an`` and denominator ``bn``: the new (c, d) and the factor that multiplies the value."""
    d = bn + an * d
    d = 1.0 / (_TINY if abs(d) < _TINY else d)
    c = bn + an / c
    c = _TINY if abs(c) < _TINY else c
    return c, d, d * c


def _gamma_cf(a: float, x: float) -> float:
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, _MAX_TERMS):
        b += 2.0
        c, d, delta = _lentz_step(-i * (i - a), b, c, d)
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return math.exp(-x + a * math.log(x) - math.lgamma(a)) * h


def poisson_upper_tail(n: float, lam: float) -> float:
    """P(X ≥ n) for X ~ Poisson(λ), n ≥ 0 (continued to real n as P(n, λ), the regularized
    lower incomplete gamma function, which is exact at integer n).

    For n and λ above 1e5 (where the series would need thousands of terms) it uses the
    Wilson–Hilferty cube-root approximation of the gamma distribution, whose normal score
    is then accurate to about 1e-3 at z = 5.
    """
    if n <= 0.0:
        return 1.0
    if lam <= 0.0:
        return 0.0
    if n > 1e5 and lam > 1e5:
        z = 3.0 * math.sqrt(n) * (1.0 - 1.0 / (9.0 * n) - (lam / n) ** (1.0 / 3.0))
        return upper_tail_from_z(z)
    return gamma_p(n, lam)


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) for a, b > 0 and 0 ≤ x ≤ 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_cf(a, b, x) / a
    return 1.0 - front * _beta_cf(b, a, 1.0 - x) / b


def _beta_cf(a: float, b: float, x: float) -> float:
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = _TINY if abs(d) < _TINY else d
    d = 1.0 / d
    h = d
    for m in range(1, _MAX_TERMS):
        m2 = 2 * m
        c, d, delta = _lentz_step(m * (b - m) * x / ((qam + m2) * (a + m2)), 1.0, c, d)
        h *= delta
        c, d, delta = _lentz_step(-(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)), 1.0, c, d)
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return h


def t_upper_tail(t: float, dof: float) -> float:
    """P(T ≥ t) for Student's t with ``dof`` > 0 degrees of freedom (inf: normal)."""
    if math.isinf(dof):
        return upper_tail_from_z(t)
    x = dof / (dof + t * t)
    half = 0.5 * betainc(0.5 * dof, 0.5, x)
    return half if t >= 0 else 1.0 - half


def t_quantile(p: float, dof: float) -> float:
    """The t with P(T ≤ t) = p, Student's t with ``dof`` > 0 (bisection on t_upper_tail)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p!r}")
    if math.isinf(dof):
        return _NORMAL.inv_cdf(p)
    if p < 0.5:
        return -t_quantile(1.0 - p, dof)
    lo, hi = 0.0, 1.0
    while t_upper_tail(hi, dof) > 1.0 - p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_upper_tail(mid, dof) > 1.0 - p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * hi:
            break
    return 0.5 * (lo + hi)


def f_upper_tail(f: float, d1: float, d2: float) -> float:
    """P(X ≥ f) for X ~ F(d1, d2)."""
    if f <= 0.0:
        return 1.0
    return betainc(0.5 * d2, 0.5 * d1, d2 / (d2 + d1 * f))


def chi2_equivalent(p_upper: float, dof: int) -> float:
    """χ²/dof whose Wilson–Hilferty upper tail at ``dof`` is ``p_upper``.

    A test statistic with another null distribution (F, Hotelling's T²) is reported through
    this value, so that one χ²(dof) threshold rule decides on every statistic.
    """
    z = z_from_upper_tail(p_upper)
    c = 2.0 / (9.0 * dof)
    return max(1.0 - c + z * math.sqrt(c), 0.0) ** 3
