import pytest

from goodprior.measure.stats import bootstrap_mean, wilson


def test_wilson_matches_reference_values():
    est = wilson(5, 20)
    assert est.value == 0.25
    assert est.low == pytest.approx(0.1119, abs=1e-4) and est.high == pytest.approx(0.4687, abs=1e-4)
    assert wilson(0, 10).low == 0.0 and wilson(0, 0).n == 0


def test_bootstrap_interval_contains_mean_and_shrinks_with_n():
    small = bootstrap_mean([0.1, 0.9, 0.5, 0.3])
    large = bootstrap_mean([0.1, 0.9, 0.5, 0.3] * 25)
    assert small.low <= small.value <= small.high
    assert (large.high - large.low) < (small.high - small.low)
    assert bootstrap_mean([0.2, 0.2, 0.2]).fmt() == "20.0% [20.0, 20.0]"
    assert not bootstrap_mean([]).excludes_zero()
