"""The Gaussian-process core (samplers/_gp.py): gradients, posterior, logEI, acquisition search."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
import scipy.special
import scipy.stats

from tunelab.samplers import _gp


def _branin(u: np.ndarray) -> np.ndarray:
    """Branin on the unit square, shifted so that the global minimum is 0."""
    x1, x2 = 15.0 * u[:, 0] - 5.0, 15.0 * u[:, 1]
    b, c, t = 5.1 / (4.0 * math.pi**2), 5.0 / math.pi, 1.0 / (8.0 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6.0) ** 2 + 10.0 * (1.0 - t) * np.cos(x1) + 10.0 - 0.397887  # type: ignore[no-any-return]


def _mixed_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.random((n, 4))
    X[:, 3] = rng.integers(0, 3, n)
    y = np.sin(5.0 * X[:, 0]) + X[:, 1] ** 2 + 0.5 * X[:, 3] + 0.1 * rng.standard_normal(n)
    return X, y, np.array([0, 0, 0, 3])


@pytest.mark.parametrize("fixed_noise", [None, _gp.MIN_NOISE_VAR])
def test_log_posterior_gradient_matches_finite_differences(fixed_noise: float | None) -> None:
    X, y, cat_sizes = _mixed_data(30, 0)
    data = _gp._FitData(X, _gp.warp_targets(y), cat_sizes == 0)
    rng = np.random.default_rng(1)
    for _ in range(3):
        theta = np.r_[rng.normal(0.0, 1.0, 4), rng.normal(0.0, 0.5), [] if fixed_noise else [rng.uniform(-6, -1)]]
        _, grad = _gp._neg_log_posterior(theta, data, fixed_noise)
        numeric = scipy.optimize.approx_fprime(theta, lambda t: _gp._neg_log_posterior(t, data, fixed_noise)[0], 1e-7)
        np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(numeric).max())))


def test_log_ei_gradient_matches_finite_differences() -> None:
    X, y, cat_sizes = _mixed_data(25, 2)
    gp = _gp.fit_gp(X, y, cat_sizes, rng=np.random.default_rng(0))
    rng = np.random.default_rng(3)
    Xq = rng.random((20, 4))
    Xq[:, 3] = rng.integers(0, 3, 20)
    _, grad = _gp._log_ei_and_grad(gp, Xq)
    numeric = np.empty((20, 3))
    h = 1e-6
    for i in range(3):
        step = np.zeros(4)
        step[i] = h
        numeric[:, i] = (_gp.log_expected_improvement(gp, Xq + step) - _gp.log_expected_improvement(gp, Xq - step)) / (
            2 * h
        )
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(numeric).max())))


def test_posterior_interpolates_noise_free_data() -> None:
    rng = np.random.default_rng(0)
    X = rng.random((15, 2))
    y = np.sin(3.0 * X[:, 0]) + np.cos(2.0 * X[:, 1])
    gp = _gp.fit_gp(X, y, np.zeros(2, dtype=int), rng=rng, deterministic_objective=True)
    assert gp.params.noise_variance == pytest.approx(_gp.MIN_NOISE_VAR)
    mean, var = gp.predict(X)
    np.testing.assert_allclose(mean, gp.y, atol=1e-3)
    assert np.all(var < 1e-4)
    assert gp.best_observed == pytest.approx(gp.y.min())
    assert int(np.argmin(gp.y)) == int(np.argmin(y))  # the output warping is monotone
    _, far_var = gp.predict(np.array([[5.0, 5.0]]))
    assert far_var[0] == pytest.approx(gp.params.signal_variance, rel=1e-6)


def test_log_h_equals_naive_where_well_conditioned_and_stays_finite_beyond() -> None:
    z = np.linspace(-8.0, 8.0, 161)
    naive = np.log(z * scipy.special.ndtr(z) + np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi))
    np.testing.assert_allclose(_gp._log_h(z), naive, rtol=1e-9, atol=1e-12)
    far = -np.logspace(1.6, 12, 60)
    with np.errstate(all="ignore"):
        naive_far = np.log(far * scipy.special.ndtr(far) + np.exp(-0.5 * far * far) / math.sqrt(2.0 * math.pi))
    assert not np.isfinite(naive_far).any()  # the naive formula underflows...
    log_h = _gp._log_h(far)
    assert np.isfinite(log_h).all()  # ...logEI does not, and it keeps ordering points
    assert np.all(np.diff(log_h) < 0)
    # Close to the asymptote log h(z) ~ -z²/2 - log(√(2π)) - 2 log|z| far out.
    asymptote = -0.5 * far**2 - 0.5 * math.log(2.0 * math.pi) - 2.0 * np.log(-far)
    np.testing.assert_allclose(log_h[-10:], asymptote[-10:], rtol=1e-12)


def test_log_expected_improvement_equals_naive_ei() -> None:
    X, y, cat_sizes = _mixed_data(20, 4)
    gp = _gp.fit_gp(X, y, cat_sizes, rng=np.random.default_rng(0))
    rng = np.random.default_rng(5)
    Xq = rng.random((50, 4))
    Xq[:, 3] = rng.integers(0, 3, 50)
    mean, var = gp.predict(Xq)
    sigma = np.sqrt(var)
    z = (gp.best_observed - mean) / sigma
    naive = sigma * (z * scipy.special.ndtr(z) + np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi))
    ok = naive > 1e-100
    assert ok.sum() > 10
    np.testing.assert_allclose(_gp.log_expected_improvement(gp, Xq)[ok], np.log(naive[ok]), rtol=1e-8)


def test_log_ei_is_finite_far_from_the_incumbent() -> None:
    X = np.array([[0.1], [0.2], [0.9]])
    y = np.array([0.0, 1.0, 1e6])
    gp = _gp.fit_gp(X, y, np.zeros(1, dtype=int), rng=np.random.default_rng(0), deterministic_objective=True)
    values = _gp.log_expected_improvement(gp, np.linspace(0.0, 1.0, 101)[:, None])
    assert np.isfinite(values).all()


def test_with_pending_shrinks_variance_and_keeps_the_mean() -> None:
    X, y, cat_sizes = _mixed_data(20, 6)
    gp = _gp.fit_gp(X, y, cat_sizes, rng=np.random.default_rng(0))
    pending = np.array([[0.5, 0.5, 0.5, 1.0], [0.1, 0.9, 0.2, 0.0]])
    believer = gp.with_pending(pending)
    mean0, var0 = gp.predict(pending)
    mean1, var1 = believer.predict(pending)
    np.testing.assert_allclose(mean1, mean0, atol=1e-6)
    assert np.all(var1 < 0.1 * var0)
    assert believer.best_observed == min(gp.best_observed, float(mean0.min()))  # believed values count
    assert believer.params is gp.params
    assert np.all(_gp.log_expected_improvement(believer, pending) < _gp.log_expected_improvement(gp, pending))
    # Far from the pending points nothing changes.
    far = np.array([[0.9, 0.1, 0.9, 2.0]])
    np.testing.assert_allclose(believer.predict(far)[1], gp.predict(far)[1], rtol=0.2)


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize(("noise", "apart"), [(0.0, 1e-4), (0.3, 1e-2)])
def test_a_pending_point_is_not_proposed_again(deterministic: bool, noise: float, apart: float) -> None:
    # A second worker that knows the first one's point must go elsewhere, also where the model
    # believes the point beats the incumbent and where it fitted noise. (Without noise the
    # minimum is known to about 1e-3 after 25 points: the search refines it in smaller steps.)
    rng = np.random.default_rng(3)
    X = rng.random((25, 2))
    y = (X[:, 0] - 0.3) ** 2 + (X[:, 1] - 0.7) ** 2 + noise * rng.standard_normal(25)
    gp = _gp.fit_gp(X, y, np.zeros(2, dtype=int), rng=np.random.default_rng(0), deterministic_objective=deterministic)
    first = _gp.maximize_log_ei(gp, np.zeros(2, dtype=int), rng=np.random.default_rng(1))
    believer = gp.with_pending(first[None, :])
    assert believer.predict(first[None, :])[1][0] < 0.5 * gp.predict(first[None, :])[1][0]
    for seed in (1, 2):  # the same generator as the first worker, and another
        second = _gp.maximize_log_ei(believer, np.zeros(2, dtype=int), rng=np.random.default_rng(seed))
        assert np.max(np.abs(second - first)) > apart


def test_maximize_log_ei_finds_the_minimum_of_a_quadratic() -> None:
    rng = np.random.default_rng(0)
    X = rng.random((20, 2))
    y = (X[:, 0] - 0.3) ** 2 + (X[:, 1] - 0.7) ** 2
    gp = _gp.fit_gp(X, y, np.zeros(2, dtype=int), rng=rng)
    x = _gp.maximize_log_ei(gp, np.zeros(2, dtype=int), rng=rng)
    assert x.shape == (2,)
    assert np.linalg.norm(x - [0.3, 0.7]) < 0.08


@pytest.mark.parametrize("with_numeric", [True, False])
def test_categorical_dimension_is_optimised_to_the_right_choice(with_numeric: bool) -> None:
    rng = np.random.default_rng(1)
    cats = np.tile(np.arange(4), 4).astype(np.float64)
    value_of = np.array([3.0, 1.0, 0.0, 2.0])
    if with_numeric:
        X = np.column_stack([rng.random(16), cats])
        cat_sizes = np.array([0, 4])
    else:
        X = np.column_stack([cats, rng.integers(0, 2, 16).astype(np.float64)])
        cat_sizes = np.array([4, 2])
    y = value_of[cats.astype(int)]
    gp = _gp.fit_gp(X, y, cat_sizes, rng=rng)
    x = _gp.maximize_log_ei(gp, cat_sizes, rng=rng)
    cat_column = 1 if with_numeric else 0
    assert x[cat_column] == 2.0
    assert np.all(x[cat_sizes > 0] == np.round(x[cat_sizes > 0]))


def test_snap_is_applied_to_the_result() -> None:
    rng = np.random.default_rng(2)
    X = rng.random((12, 2))
    y = (X[:, 0] - 0.33) ** 2 + (X[:, 1] - 0.61) ** 2

    def snap(rows: np.ndarray) -> np.ndarray:
        out = np.array(rows, dtype=np.float64)
        out[:, 0] = (np.floor(out[:, 0] * 5.0).clip(0, 4) + 0.5) / 5.0  # an integer with 5 values
        return out

    gp = _gp.fit_gp(X, y, np.zeros(2, dtype=int), rng=rng)
    x = _gp.maximize_log_ei(gp, np.zeros(2, dtype=int), rng=rng, snap=snap)
    assert x[0] in {0.1, 0.3, 0.5, 0.7, 0.9}


@pytest.mark.parametrize(
    ("name", "X", "y"),
    [
        ("one point", np.array([[0.5, 0.5]]), np.array([3.0])),
        ("two points", np.array([[0.2, 0.5], [0.8, 0.1]]), np.array([1.0, -1.0])),
        ("constant", np.random.default_rng(0).random((10, 2)), np.full(10, 7.0)),
        ("duplicates", np.repeat(np.random.default_rng(1).random((4, 2)), 5, axis=0), np.arange(20.0) % 7),
        ("huge range", np.random.default_rng(2).random((12, 2)), np.r_[1e8, -1e8, np.arange(10.0)]),
        ("tiny range", np.random.default_rng(3).random((12, 2)), 1e-12 * np.arange(12.0) + 5.0),
    ],
)
@pytest.mark.parametrize("deterministic", [False, True])
def test_degenerate_data_gives_finite_sensible_results(
    name: str, X: np.ndarray, y: np.ndarray, deterministic: bool
) -> None:
    cat_sizes = np.zeros(2, dtype=int)
    rng = np.random.default_rng(0)
    gp = _gp.fit_gp(X, y, cat_sizes, rng=rng, deterministic_objective=deterministic)
    assert np.isfinite(gp.params.inverse_squared_lengthscales).all()
    mean, var = gp.predict(np.random.default_rng(4).random((50, 2)))
    assert np.isfinite(mean).all() and np.isfinite(var).all() and np.all(var > 0)
    x = _gp.maximize_log_ei(gp, cat_sizes, rng=rng, n_candidates=256)
    assert x.shape == (2,) and np.all((x >= 0) & (x <= 1))
    assert np.isfinite(_gp.log_expected_improvement(gp.with_pending(x[None, :]), X)).all()


@pytest.mark.parametrize("scale", [1e-300, 1e-20, 1e20, 1e300])
def test_standardising_and_warping_give_the_same_at_any_scale(scale: float) -> None:
    # Values of 1e-300 or 1e-20 fell under an absolute threshold and 1e300 overflowed the squares: all read as
    # constant (zeros), so the GP saw a flat objective and searched at random.
    y = np.array([3.0, 1.0, 4.0, 1.5, 9.0, 2.6, 5.0])
    np.testing.assert_allclose(_gp.standardise(scale * y), _gp.standardise(y), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(_gp.warp_targets(scale * y), _gp.warp_targets(y), rtol=1e-9, atol=1e-12)


def test_warp_targets_is_monotone_and_standardised() -> None:
    y = np.exp(np.random.default_rng(0).normal(0.0, 3.0, 40))  # heavy right tail
    warped = _gp.warp_targets(y)
    order = np.argsort(y)
    assert np.all(np.diff(warped[order]) > 0)
    assert abs(warped.mean()) < 1e-9 and warped.std() == pytest.approx(1.0)
    assert abs(scipy.stats.skew(warped)) < abs(scipy.stats.skew(y)) / 5
    np.testing.assert_array_equal(_gp.warp_targets(np.full(5, 2.0)), np.zeros(5))


def test_warm_start_reaches_the_same_fit() -> None:
    X, y, cat_sizes = _mixed_data(40, 7)
    cold = _gp.fit_gp(X, y, cat_sizes, rng=np.random.default_rng(0))
    warm = _gp.fit_gp(X, y, cat_sizes, rng=np.random.default_rng(1), initial=cold.params)
    data = _gp._FitData(X, cold.y, cat_sizes == 0)

    def objective(gp: _gp.GaussianProcess) -> float:
        p = gp.params
        theta = np.r_[np.log(p.inverse_squared_lengthscales), math.log(p.signal_variance), math.log(p.noise_variance)]
        return _gp._neg_log_posterior(theta, data, None)[0]

    assert objective(warm) <= objective(cold) + 1e-6
    # A previous fit of another dimension is ignored, not an error.
    other = _gp.KernelParams(np.ones(7), 1.0, 1e-3)
    assert _gp.fit_gp(X, y, cat_sizes, rng=np.random.default_rng(0), initial=other).params.signal_variance > 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bayesian_optimisation_loop_solves_branin(seed: int) -> None:
    rng = np.random.default_rng(seed)
    cat_sizes = np.zeros(2, dtype=int)
    X = rng.random((5, 2))
    y = _branin(X)
    params = None
    while len(y) < 30:
        gp = _gp.fit_gp(X, y, cat_sizes, rng=rng, initial=params)
        params = gp.params
        x = _gp.maximize_log_ei(gp, cat_sizes, rng=rng)
        X = np.vstack([X, x])
        y = np.append(y, _branin(x[None, :]))
    assert y.min() < 0.5, f"regret {y.min():.3f} after 30 evaluations"
