"""The default ADC block: the longest one a board sends at the rate and PEM frequency (its
edges fit the 1024 an rp2 board carries, its frame the protocol's payload), at most 4096."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import cplscope
from cplscope.board.controller import MAX_BLOCK_EDGES, MAX_BLOCK_SAMPLES, analog_block_samples
from cplscope.protocol import MAX_PAYLOAD


def fits(n: int, rate: float, pem: float) -> bool:
    edges = int(n / rate * pem * 1.05) + 2
    return edges <= MAX_BLOCK_EDGES and 32 + 2 * (edges - 1) + 3 * n // 2 <= MAX_PAYLOAD


@given(st.floats(1000.0, 250_000.0), st.floats(1000.0, 200_000.0))
def test_the_default_block_is_the_longest_that_fits(rate: float, pem: float) -> None:
    n = analog_block_samples(rate, pem)
    assert n % 2 == 0 and 2 <= n <= MAX_BLOCK_SAMPLES
    assert fits(n, rate, pem) or n == 2
    assert n == MAX_BLOCK_SAMPLES or not fits(n + 2, rate, pem)


def test_the_default_rate_with_a_50_khz_pem_takes_4096_samples() -> None:
    assert analog_block_samples(48e6 / 192.25, 50_000.0) == 4096
    assert analog_block_samples(48e6 / 192.25, 80_000.0) == 3040  # its edges would not fit


@pytest.mark.parametrize("rate, pem", [(0.0, 50_000.0), (2e5, -1.0)])
def test_nonsense_rates_are_refused(rate: float, pem: float) -> None:
    with pytest.raises(ValueError, match="> 0 Hz"):
        analog_block_samples(rate, pem)


def test_configure_analog_uses_it_for_the_configured_pem() -> None:
    with cplscope.connect("sim", seed=1) as inst:
        assert inst.configure_analog()["block_samples"] == 4096
        inst.configure_counting(bins=16, periods=500)  # a faster PEM than 4096 samples allow
        inst.configure_pem(frequency_hz=80_000.0)
        assert inst.configure_analog()["block_samples"] == 3040
        assert inst.configure_analog(block_samples=1024)["block_samples"] == 1024
