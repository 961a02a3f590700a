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


def test_mde_matches_the_closed_form():
    from goodprior.measure.stats import mde

    # differences with sample sd 2 over n = 16: (1.95996 + 0.84162) * 2 / 4
    diffs = [1.0, -1.0] * 8
    sd = (sum((d - 0) ** 2 for d in diffs) / 15) ** 0.5
    assert mde(diffs) == pytest.approx((1.959964 + 0.841621) * sd / 4, rel=1e-6)
    assert mde([0.3]) != mde([0.3])  # nan: one unit has no spread


def test_bootstrap_slope_recovers_a_linear_dose_response():
    from goodprior.measure.stats import bootstrap_slope

    xs = [3.0, 3.5, 4.0]
    cols = [[2 * x + e for e in (-0.1, 0.0, 0.1, 0.05)] for x in xs]
    est = bootstrap_slope(xs, cols)
    assert est.value == pytest.approx(2.0) and est.low <= 2.0 <= est.high
