"""Figure 7's measures (clutils.diagnostics.spp): the Fréchet distance of two 1-D distributions,
the F value and the weighted squared change, against closed forms."""
import numpy as np
import pytest

from clutils.diagnostics import spp as d


def test_frechet_distance_of_gaussians_matches_the_closed_form():
    rng = np.random.default_rng(0)
    n = 200_000
    a = rng.normal(1.0, 2.0, n)
    b = rng.normal(-0.5, 0.5, n)
    want = d.gaussian_frechet_1d(1.0, 2.0, -0.5, 0.5)  # sqrt(1.5^2 + 1.5^2)
    assert want == pytest.approx(np.sqrt(4.5))
    assert d.frechet_distance_1d(a, b) == pytest.approx(want, rel=0.01)
    # unequal sizes go through the quantile grid
    assert d.frechet_distance_1d(a, b[: n // 3]) == pytest.approx(want, rel=0.01)


def test_frechet_distance_of_a_shift_is_the_shift_and_ignores_order():
    x = np.array([0.3, -1.0, 2.0, 5.0])
    assert d.frechet_distance_1d(x, x + 0.7) == pytest.approx(0.7)
    assert d.frechet_distance_1d(x, x[::-1]) == 0.0
    # equal sizes: the sorted-sample formula
    y = np.array([1.0, 0.0, 4.0, 3.0])
    assert d.frechet_distance_1d(x, y) == pytest.approx(np.sqrt(np.mean((np.sort(x) - np.sort(y)) ** 2)))


def test_f_value_is_one_for_the_same_distribution_and_falls_with_the_distance():
    rng = np.random.default_rng(1)
    a = rng.exponential(1.0, 5000)
    assert d.f_value(a, rng.permutation(a)) == pytest.approx(1.0)
    assert d.f_value(a, 0.9 * a) > d.f_value(a, 0.3 * a) > d.f_value(a, 0.0 * a)
    # all the mass from 0 to the top of the scale: F = 0
    assert d.f_value(np.r_[np.zeros(99), 1.0], np.full(100, 5.0), quantile=1.0) == pytest.approx(1 - np.sqrt(0.99))
    with pytest.raises(ValueError):
        d.f_value(np.zeros(4), np.ones(4))


def test_weighted_change_is_the_weighted_mean_square():
    w = np.array([3.0, 1.0, 0.0])
    before, after = np.zeros(3), np.array([1.0, 2.0, 100.0])
    assert d.weighted_change(w, before, after) == pytest.approx((3 * 1 + 1 * 4) / 4)
    assert np.allclose(d.unimportance(w), [0.0, 2 / 3, 1.0])
    with pytest.raises(ValueError):
        d.weighted_change(w[:2], before, after)
    with pytest.raises(ValueError):
        d.weighted_change(np.zeros(3), before, after)
