"""The numerical core of the Gaussian-process sampler: arrays in, arrays out.

The model
---------
Inputs are encoded by the caller: numeric dimensions in the unit cube (log already applied,
integers at cell centres), categorical dimensions as the choice index ``0.0 .. k-1``, with
``cat_sizes[i]`` = 0 for a numeric dimension and ``k`` for a categorical one. Targets are
minimised.

* **Output warping.** The targets are scaled robustly (median, interquartile range: one huge
  value must not squash the others), Gaussianised with a Yeo-Johnson power transform whose
  exponent maximises the likelihood (as HEBO does; it tames heavy tails such as Rosenbrock's,
  where a few huge values would otherwise flatten the model near the minimum), and
  standardised. The transform is monotone, so the incumbent is unchanged.
* **Kernel.** Matern 5/2 with one inverse squared lengthscale per dimension (ARD):
  ``r² = Σ_numeric ils_i (x_i - x'_i)² + Σ_categorical ils_j [x_j ≠ x'_j]`` and
  ``k = s² (1 + √5 r + 5/3 r²) exp(-√5 r)``, zero prior mean, Gaussian noise.
* **Hyperparameters** by MAP: log marginal likelihood plus log priors, maximised by L-BFGS-B in
  log-parameter space with analytic gradients. The priors are Optuna's (densities on the raw
  parameters): ``-0.1 (1/ils + ils)`` on each inverse squared lengthscale (a soft box around
  lengthscale 1 on the unit cube), Gamma(2, 1) on the signal variance, Gamma(1.1, 30) on the
  noise variance, which is bounded below by :data:`MIN_NOISE_VAR`. (The dimension-scaled
  log-normal lengthscale prior of Hvarfner et al. 2024 was tried: worse on Levy-10 and
  Hartmann-6 at 25-100 evaluations.) The pairwise difference tensor is built once per fit
  (condensed: pairs ``i < j`` only), so one evaluation is a matrix-vector product, a Cholesky
  factorisation and an inverse. Several starting points (the previous fit's parameters when
  given, the priors' modes, a few random draws) are scored with one evaluation each, and
  L-BFGS-B runs from the best of them (and from the previous fit's parameters, always).
* **Acquisition.** Log expected improvement (Ament et al. 2023, "Unexpected improvements to
  expected improvement"), finite and with a useful gradient even where EI underflows. It is
  maximised by scoring scrambled Sobol candidates plus perturbations of the best training
  points, running one stacked L-BFGS-B from the best of them over the numeric dimensions, and
  a discrete local search over each categorical dimension; the caller's ``snap`` maps the
  finalists to valid values before the final choice.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias

import numpy as np
import scipy.optimize
import scipy.special
import scipy.stats
from scipy.linalg import lapack
from scipy.stats import qmc

from tunelab.samplers.transfer import shifted_query

__all__ = [
    "MIN_NOISE_VAR",
    "Acquisition",
    "GaussianProcess",
    "KernelParams",
    "LogPrior",
    "fit_gp",
    "log_expected_improvement",
    "maximize_log_ei",
    "warp_targets",
]

Array = np.ndarray

MIN_NOISE_VAR = 1e-6
"""The smallest noise variance, in standardised output units; a deterministic objective uses it."""

_SQRT5 = math.sqrt(5.0)
# Bounds of the log-parameters: inverse squared lengthscales (lengthscales 0.01 .. ~30 on the
# unit cube), signal variance, noise variance.
_LOG_ILS_BOUNDS = (math.log(1e-3), math.log(1e4))
_LOG_SIGNAL_BOUNDS = (math.log(1e-2), math.log(1e2))
_LOG_NOISE_BOUNDS = (math.log(MIN_NOISE_VAR), math.log(1.0))
# Priors (see _log_prior).
_ILS_PRIOR_RATE = 0.1
_NOISE_PRIOR_SHAPE, _NOISE_PRIOR_RATE = 1.1, 30.0
_MIN_POINTS_TO_WARP = 4
_FIT_FTOL, _FIT_GTOL = 1e-7, 1e-3


@dataclass(frozen=True)
class KernelParams:
    """Kernel hyperparameters, in the standardised output space."""

    inverse_squared_lengthscales: Array
    signal_variance: float
    noise_variance: float


# ---------------------------------------------------------------------------------------------
# Output warping


def warp_targets(y: Array) -> Array:
    """Standardise, Yeo-Johnson (maximum-likelihood exponent) and standardise again.

    Monotone increasing, so the order of the targets is kept. Constant targets map to zeros;
    fewer than four points are only standardised. The exponent is the best of a grid over
    [-2, 4] (step 0.05), evaluated in one vectorised pass.
    """
    y = np.asarray(y, dtype=np.float64)
    z = standardise(y)
    if len(z) < _MIN_POINTS_TO_WARP or not z.any():
        return z
    # Robust scaling first (median, interquartile range): one huge value must not squash the rest.
    top = float(np.max(np.abs(y)))
    q1, median, q3 = np.percentile(y / top, [25.0, 50.0, 75.0])  # (in units of the largest |y|: any scale)
    if q3 - q1 > 1e-12:
        z = (y / top - median) / (q3 - q1)
    with np.errstate(all="ignore"):
        psi = _yeo_johnson(z[None, :], _YJ_GRID[:, None])  # (grid, n)
        log_var = np.log(psi.var(axis=1))
        jacobian = np.sum(np.sign(z) * np.log1p(np.abs(z)))
        llf = -0.5 * len(z) * log_var + (_YJ_GRID - 1.0) * jacobian
        llf[~np.isfinite(llf)] = -np.inf
        if not np.isfinite(llf).any():
            return standardise(y)
        warped = standardise(psi[int(np.argmax(llf))])
    if not np.all(np.isfinite(warped)) or not warped.any():
        return standardise(y)
    return warped


_YJ_GRID = np.linspace(-2.0, 4.0, 121)


def _yeo_johnson(x: Array, lam: Array) -> Array:
    """The Yeo-Johnson transform of ``x`` with exponent ``lam`` (broadcast together)."""
    pos = x >= 0.0
    lp = np.log1p(np.where(pos, x, 0.0))  # log(1 + x) for x >= 0
    ln = np.log1p(np.where(pos, 0.0, -x))  # log(1 - x) for x < 0
    a = np.where(np.abs(lam) < 1e-8, 1.0, lam)
    b = np.where(np.abs(2.0 - lam) < 1e-8, 1.0, 2.0 - lam)
    up = np.where(np.abs(lam) < 1e-8, lp, np.expm1(lam * lp) / a)
    down = np.where(np.abs(2.0 - lam) < 1e-8, -ln, -np.expm1((2.0 - lam) * ln) / b)
    return np.where(pos, up, down)  # type: ignore[no-any-return]


def standardise(y: Array) -> Array:
    """``y`` centred and scaled to unit variance (zeros when constant)."""
    if len(y) == 0:
        return np.array(y, dtype=np.float64)
    # In units of the largest |y| first: the same result for c * y at any scale c (values of 1e-300 or 1e300
    # were read as constant, by an absolute threshold or an overflow of the squares).
    top = float(np.max(np.abs(y)))
    if not np.isfinite(top) or top == 0.0:
        return np.zeros_like(y, dtype=np.float64)
    u = np.asarray(y, dtype=np.float64) / top
    centred = u - u.mean()
    scale = float(np.sqrt(np.mean(centred**2)))
    if not np.isfinite(scale) or scale <= 1e-12:
        return np.zeros_like(u)
    return np.asarray(centred / scale, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# Kernel pieces


def _matern(r2: Array, signal: float) -> tuple[Array, Array]:
    """k(r²) and dk/d(r²) of the Matern 5/2 kernel (both finite at r = 0)."""
    r = np.sqrt(r2)
    e = signal * np.exp(-_SQRT5 * r)
    k = (1.0 + _SQRT5 * r + (5.0 / 3.0) * r2) * e
    dk = (-5.0 / 6.0) * (1.0 + _SQRT5 * r) * e
    return k, dk


def _cross_r2(Xq: Array, X: Array, ils: Array, numeric: Array) -> Array:
    """Squared scaled distances between the rows of ``Xq`` (m, d) and ``X`` (n, d): (m, n)."""
    num = np.flatnonzero(numeric)
    if len(num):
        scale = np.sqrt(ils[num])
        a = Xq[:, num] * scale
        b = X[:, num] * scale
        r2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
        np.maximum(r2, 0.0, out=r2)
    else:
        r2 = np.zeros((len(Xq), len(X)))
    for j in np.flatnonzero(~numeric):
        r2 += ils[j] * (Xq[:, j, None] != X[None, :, j])
    return np.asarray(r2, dtype=np.float64)


def _cholesky(K: Array) -> Array:
    """Lower Cholesky factor of ``K`` (only its lower triangle is read), adding jitter if needed."""
    c, info = lapack.dpotrf(K, lower=1, clean=1, overwrite_a=0)
    if info == 0:
        return c  # type: ignore[no-any-return]
    base = float(np.mean(np.abs(np.diag(K)))) or 1.0
    eye = np.eye(len(K))
    for exponent in range(-9, 0):
        c, info = lapack.dpotrf(K + (base * 10.0**exponent) * eye, lower=1, clean=1, overwrite_a=0)
        if info == 0:
            return c  # type: ignore[no-any-return]
    raise np.linalg.LinAlgError("the kernel matrix is not positive definite even with jitter")


def _cho_inverse(c: Array) -> Array:
    """The full symmetric inverse from a lower Cholesky factor."""
    inv, info = lapack.dpotri(c, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError("dpotri failed")
    inv = np.tril(inv)
    return inv + np.tril(inv, -1).T  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------------
# The marginal likelihood


class _FitData:
    """What one fit reuses at every evaluation: condensed pairwise differences, indices."""

    def __init__(self, X: Array, y: Array, numeric: Array) -> None:
        n, d = X.shape
        self.n, self.d, self.y = n, d, y
        rows, cols = np.triu_indices(n, 1)  # pairs i < j
        self.rows, self.cols = rows, cols
        self.lower = cols * n + rows  # flat indices of the pairs in the lower triangle
        self.diag = np.arange(n) * (n + 1)
        self.D = np.empty((d, len(rows)))  # squared differences (numeric) or mismatches (categorical)
        for i in range(d):
            diff = X[rows, i] - X[cols, i]
            self.D[i] = diff * diff if numeric[i] else diff != 0.0

    def kernel(self, ils: Array, signal: float, noise: float) -> tuple[Array, Array, Array]:
        """Kernel matrix (lower triangle filled), and condensed k and dk/dr²."""
        kc, dkc = _matern(ils @ self.D, signal)
        K = np.zeros((self.n, self.n))
        flat = K.reshape(-1)
        flat[self.lower] = kc
        flat[self.diag] = signal + noise
        return K, kc, dkc


def _log_prior(theta: Array, d: int, fit_noise: bool) -> tuple[float, Array]:
    """Log prior density (up to a constant) and its gradient in log-parameter space.

    Densities are on the raw parameters (as in Optuna), so the mode of the lengthscale prior is
    at ils = 1: ``-0.1 (1/ils + ils)`` per dimension, Gamma(2, 1) on the signal variance and
    Gamma(1.1, 30) on the noise variance.
    """
    grad = np.empty_like(theta)
    ils = np.exp(theta[:d])
    lp = -_ILS_PRIOR_RATE * float(np.sum(1.0 / ils + ils))
    grad[:d] = _ILS_PRIOR_RATE * (1.0 / ils - ils)
    signal = math.exp(theta[d])
    lp += theta[d] - signal
    grad[d] = 1.0 - signal
    if fit_noise:
        noise = math.exp(theta[d + 1])
        lp += (_NOISE_PRIOR_SHAPE - 1.0) * theta[d + 1] - _NOISE_PRIOR_RATE * noise
        grad[d + 1] = (_NOISE_PRIOR_SHAPE - 1.0) - _NOISE_PRIOR_RATE * noise
    return lp, grad


def _neg_log_posterior(theta: Array, data: _FitData, fixed_noise: float | None) -> tuple[float, Array]:
    """Negative (log marginal likelihood + log prior) and its gradient wrt ``theta``.

    ``theta`` is ``[log ils (d), log signal variance]`` followed by ``log noise variance`` unless
    ``fixed_noise`` is given.
    """
    d = data.d
    ils = np.exp(theta[:d])
    signal = math.exp(theta[d])
    noise = fixed_noise if fixed_noise is not None else math.exp(theta[d + 1])
    K, kc, dkc = data.kernel(ils, signal, noise)
    try:
        c = _cholesky(K)
    except np.linalg.LinAlgError:
        return 1e25, np.zeros_like(theta)
    alpha, _ = lapack.dpotrs(c, data.y, lower=1)
    Kinv, info = lapack.dpotri(c, lower=1)  # lower triangle only
    if info != 0:
        return 1e25, np.zeros_like(theta)
    log_det = 2.0 * float(np.sum(np.log(np.diag(c))))
    nll = 0.5 * float(data.y @ alpha) + 0.5 * log_det + 0.5 * data.n * math.log(2.0 * math.pi)
    # d nll / d theta = -1/2 tr(W dK/d theta), W = alpha alpha^T - K^-1; off-diagonal pairs count twice.
    Kinv_flat = Kinv.reshape(-1)
    Wc = alpha[data.rows] * alpha[data.cols] - Kinv_flat.take(data.lower)
    trace_w = float(alpha @ alpha - Kinv_flat.take(data.diag).sum())
    grad = np.empty_like(theta)
    grad[:d] = -(data.D @ (Wc * dkc)) * ils
    grad[d] = -0.5 * (2.0 * float(Wc @ kc) + signal * trace_w)
    if fixed_noise is None:
        grad[d + 1] = -0.5 * noise * trace_w
    lp, lp_grad = _log_prior(theta, d, fixed_noise is None)
    value = nll - lp
    if not math.isfinite(value):
        return 1e25, np.zeros_like(theta)
    return value, grad - lp_grad


# ---------------------------------------------------------------------------------------------
# The fitted model


class GaussianProcess:
    """A fitted GP on (X, y) in the transformed and standardised output space.

    ``y`` here is already transformed; :func:`fit_gp` builds this from raw targets.
    ``predict`` returns the latent function's posterior (no observation noise).
    """

    def __init__(
        self,
        X: Array,
        y: Array,
        cat_sizes: Array,
        params: KernelParams,
        *,
        best_observed: float | None = None,
        noise: Array | None = None,
    ) -> None:
        self.X = np.asarray(X, dtype=np.float64)
        self.y = np.asarray(y, dtype=np.float64)
        self.cat_sizes = np.asarray(cat_sizes, dtype=np.int64)
        self.numeric = self.cat_sizes == 0
        self.params = params
        self.best_observed = float(np.min(self.y)) if best_observed is None else float(best_observed)
        ils = np.asarray(params.inverse_squared_lengthscales, dtype=np.float64)
        self._ils = ils
        self._signal = float(params.signal_variance)
        K, _ = _matern(_cross_r2(self.X, self.X, ils, self.numeric), self._signal)
        self._noise = np.full(len(self.y), params.noise_variance) if noise is None else np.asarray(noise, dtype=float)
        K[np.diag_indices_from(K)] += self._noise
        c = _cholesky(K)
        self._alpha: Array = lapack.dpotrs(c, self.y, lower=1)[0]
        self._Kinv = _cho_inverse(c)
        self._var_floor = 1e-10 * self._signal

    def predict(self, Xq: Array) -> tuple[Array, Array]:
        """Posterior mean and variance of the latent function at the rows of ``Xq``."""
        Xq = np.atleast_2d(np.asarray(Xq, dtype=np.float64))
        k, _ = _matern(_cross_r2(Xq, self.X, self._ils, self.numeric), self._signal)
        mean = k @ self._alpha
        var = self._signal - np.einsum("ij,ij->i", k @ self._Kinv, k)
        return mean, np.maximum(var, self._var_floor)

    def _predict_with_grad(self, Xq: Array) -> tuple[Array, Array, Array, Array]:
        """Mean, variance and their gradients wrt the numeric coordinates of ``Xq``: (m, d_num)."""
        num = np.flatnonzero(self.numeric)
        k, dk = _matern(_cross_r2(Xq, self.X, self._ils, self.numeric), self._signal)
        Kk = k @ self._Kinv
        mean = k @ self._alpha
        raw_var = self._signal - np.einsum("ij,ij->i", Kk, k)
        var = np.maximum(raw_var, self._var_floor)
        Xn, Xqn, ils_n = self.X[:, num], Xq[:, num], self._ils[num]
        # dk_j/dx_i = dk/dr² · 2 ils_i (x_i - X_ji)
        G = dk * self._alpha[None, :]
        d_mean = 2.0 * ils_n * (Xqn * G.sum(1)[:, None] - G @ Xn)
        H = dk * Kk
        d_var = -4.0 * ils_n * (Xqn * H.sum(1)[:, None] - H @ Xn)
        d_var[raw_var <= self._var_floor] = 0.0
        return mean, var, d_mean, d_var

    def loo_means(self) -> Array:
        """Leave-one-out posterior means at the training points (closed form: ``y - alpha / diag(K^-1)``)."""
        return np.asarray(self.y - self._alpha / np.diag(self._Kinv), dtype=np.float64)

    def with_pending(self, X_pending: Array) -> GaussianProcess:
        """Kriging believer: condition on pending points at their posterior mean, same kernel.

        The mean is unchanged everywhere; the variance shrinks near the pending points, to almost
        nothing at them: the believed values are noise-free (with the fitted noise, a pending point
        where the model is unsure keeps most of its variance, hence its expected improvement, and
        the next proposal lands on it again). They count as observations for the incumbent too
        (``best_observed`` becomes the lower of the best real value and the best believed one):
        otherwise a pending point predicted to beat the incumbent keeps an expected improvement of
        about that margin.
        """
        Xp = np.atleast_2d(np.asarray(X_pending, dtype=np.float64))
        if Xp.size == 0:
            return self
        mean, _ = self.predict(Xp)
        noise = np.concatenate([self._noise, np.full(len(Xp), MIN_NOISE_VAR)])
        return GaussianProcess(
            np.vstack([self.X, Xp]),
            np.concatenate([self.y, mean]),
            self.cat_sizes,
            self.params,
            best_observed=min(self.best_observed, float(np.min(mean))),
            noise=noise,
        )


def fit_gp(
    X: Array,
    y: Array,
    cat_sizes: Array,
    *,
    rng: np.random.Generator,
    initial: KernelParams | None = None,
    deterministic_objective: bool = False,
    warp: bool = True,
    n_prior_starts: int = 4,
    n_restarts: int | None = None,
) -> GaussianProcess:
    """Fit the kernel hyperparameters by MAP and return the conditioned GP.

    ``initial`` (e.g. the previous fit's ``gp.params``) is a starting point; such a warm start
    usually converges in a few iterations. The starting points (``initial``, the priors' modes
    and ``n_prior_starts`` random draws) are scored with one evaluation each, and L-BFGS-B runs
    from the ``n_restarts`` best (default: 2 up to 100 points, 1 beyond, where an evaluation
    costs more and the warm start is nearly always the best). ``warp=False`` only standardises
    the targets. ``deterministic_objective`` fixes the noise variance at :data:`MIN_NOISE_VAR`.
    """
    X = np.asarray(X, dtype=np.float64)
    cat_sizes = np.asarray(cat_sizes, dtype=np.int64)
    numeric = cat_sizes == 0
    d = X.shape[1]
    y_t = warp_targets(y) if warp else standardise(np.asarray(y, dtype=np.float64))
    fixed_noise = MIN_NOISE_VAR if deterministic_objective else None
    data = _FitData(X, y_t, numeric)

    bounds = [_LOG_ILS_BOUNDS] * d + [_LOG_SIGNAL_BOUNDS]
    if fixed_noise is None:
        bounds.append(_LOG_NOISE_BOUNDS)
    lo, hi = np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])

    def pack(log_ils: Array, log_signal: float, log_noise: float) -> Array:
        values = [*log_ils, log_signal] + ([log_noise] if fixed_noise is None else [])
        return np.clip(np.array(values, dtype=np.float64), lo, hi)

    # The priors' modes, then draws around them (log ils ~ N(0, 1): lengthscales ~0.4 .. 2.7).
    starts = [pack(np.zeros(d), 0.0, math.log(1e-3))]
    for _ in range(n_prior_starts):
        log_noise = float(rng.normal(math.log(1e-3), 2.0))
        starts.append(pack(np.asarray(rng.normal(0.0, 1.0, size=d)), math.log(rng.gamma(2.0, 1.0)), log_noise))
    if initial is not None and np.shape(initial.inverse_squared_lengthscales) == (d,):
        warm = pack(
            np.log(np.maximum(initial.inverse_squared_lengthscales, 1e-300)),
            math.log(max(initial.signal_variance, 1e-300)),
            math.log(max(initial.noise_variance, 1e-300)),
        )
        starts.insert(0, warm)
    scores = [_neg_log_posterior(s, data, fixed_noise)[0] for s in starts]
    if n_restarts is None:
        n_restarts = 2 if len(y_t) <= 100 else 1
    chosen = [starts[i] for i in np.argsort(scores, kind="stable")[: max(n_restarts, 1)]]

    best_theta, best_value = chosen[0], math.inf
    for theta0 in chosen:
        res = scipy.optimize.minimize(
            _neg_log_posterior,
            theta0,
            args=(data, fixed_noise),
            jac=True,
            method="L-BFGS-B",
            bounds=list(zip(lo, hi, strict=True)),
            options={"maxiter": 200, "ftol": _FIT_FTOL, "gtol": _FIT_GTOL},
        )
        if np.all(np.isfinite(res.x)) and res.fun < best_value:
            best_theta, best_value = res.x, float(res.fun)

    params = KernelParams(
        inverse_squared_lengthscales=np.exp(best_theta[:d]),
        signal_variance=float(math.exp(best_theta[d])),
        noise_variance=float(fixed_noise if fixed_noise is not None else math.exp(best_theta[d + 1])),
    )
    return GaussianProcess(X, y_t, cat_sizes, params)


# ---------------------------------------------------------------------------------------------
# Log expected improvement

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_HALF_LOG_PI_2 = 0.5 * math.log(math.pi / 2.0)
_INV_SQRT_EPS = 1.0 / math.sqrt(np.finfo(np.float64).eps)


def _log1mexp(x: Array) -> Array:
    """log(1 - exp(x)) for x < 0, accurately."""
    out = np.empty_like(x)
    near = x > -math.log(2.0)
    out[near] = np.log(-np.expm1(x[near]))
    out[~near] = np.log1p(-np.exp(x[~near]))
    return out


def _log_h(z: Array) -> Array:
    """log(φ(z) + z Φ(z)), accurate for every z (Ament et al. 2023, eq. 9)."""
    out = np.empty_like(z)
    upper = z > -1.0
    zu = z[upper]
    out[upper] = np.log(np.exp(-0.5 * zu * zu) / math.sqrt(2.0 * math.pi) + zu * scipy.special.ndtr(zu))
    middle = ~upper & (z > -_INV_SQRT_EPS)
    zm = z[middle]
    out[middle] = (
        -0.5 * zm * zm
        - _LOG_SQRT_2PI
        + _log1mexp(np.log(scipy.special.erfcx(-zm / math.sqrt(2.0)) * np.abs(zm)) + _HALF_LOG_PI_2)
    )
    lower = ~(upper | middle)
    zl = z[lower]
    out[lower] = -0.5 * zl * zl - _LOG_SQRT_2PI - 2.0 * np.log(np.abs(zl))
    return out


def log_expected_improvement(gp: GaussianProcess | PriorMeanGP, Xq: Array) -> Array:
    """log E[max(best_observed - f(x), 0)] at the rows of ``Xq``, finite everywhere."""
    mean, var = gp.predict(Xq)
    sigma = np.sqrt(var)
    return np.asarray(_log_h((gp.best_observed - mean) / sigma) + np.log(sigma), dtype=np.float64)


def _log_ei_and_grad(gp: GaussianProcess | PriorMeanGP, Xq: Array) -> tuple[Array, Array]:
    """logEI at the rows of ``Xq`` and its gradient wrt their numeric coordinates."""
    mean, var, d_mean, d_var = gp._predict_with_grad(Xq)
    sigma = np.sqrt(var)
    z = (gp.best_observed - mean) / sigma
    log_h = _log_h(z)
    dlogh_dz = np.exp(scipy.special.log_ndtr(z) - log_h)  # h'(z) = Φ(z)
    d_sigma = d_var / (2.0 * sigma[:, None])
    dz = (-d_mean - z[:, None] * d_sigma) / sigma[:, None]
    grad = dlogh_dz[:, None] * dz + d_sigma / sigma[:, None]
    return log_h + np.log(sigma), grad


# ---------------------------------------------------------------------------------------------
# Acquisition optimisation


def _random_candidates(n: int, cat_sizes: Array, rng: np.random.Generator) -> Array:
    numeric = cat_sizes == 0
    out = np.empty((n, len(cat_sizes)))
    n_num = int(numeric.sum())
    if n_num:
        sobol = qmc.Sobol(d=n_num, scramble=True, seed=rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # balance warning when n is not a power of two
            out[:, numeric] = sobol.random(n)
    for j in np.flatnonzero(~numeric):
        out[:, j] = rng.integers(0, cat_sizes[j], size=n)
    return out


def _perturb(gp: Model, n: int, rng: np.random.Generator) -> Array:
    """Gaussian perturbations of the best training points (categoricals resampled rarely)."""
    cat_sizes, numeric = gp.cat_sizes, gp.numeric
    n_best = min(5, len(gp.y))
    best = gp.X[np.argsort(gp.y)[:n_best]]
    out = best[rng.integers(0, n_best, size=n)].copy()
    num = np.flatnonzero(numeric)
    if len(num):
        scale = rng.choice(np.array([0.005, 0.02, 0.08]), size=(n, 1))
        out[:, num] = np.clip(out[:, num] + scale * rng.standard_normal((n, len(num))), 0.0, 1.0)
    cats = np.flatnonzero(~numeric)
    if len(cats):
        flip = rng.random((n, len(cats))) < 1.0 / len(cat_sizes)
        for col, j in enumerate(cats):
            rows = np.flatnonzero(flip[:, col])
            out[rows, j] = rng.integers(0, cat_sizes[j], size=len(rows))
    return np.asarray(out, dtype=np.float64)


class LogPrior(Protocol):
    """A term added to log EI (piBO's ``(beta / n) * log prior(x)``): values at rows, gradient on numeric ones."""

    def __call__(self, X: Array) -> Array: ...

    def gradient(self, X: Array) -> Array: ...


class Acquisition:
    """A log-scale acquisition other than log EI, for :func:`maximize_log_ei` (e.g. the log expected
    hypervolume improvement of :mod:`tunelab.samplers._ehvi`).

    Subclasses set ``cat_sizes`` and ``numeric`` (as a GP does), ``X`` / ``y`` (points worth perturbing
    for candidates, best = lowest ``y``) and implement :meth:`values` and :meth:`values_and_grad`.
    """

    cat_sizes: Array
    numeric: Array
    X: Array
    y: Array

    def values(self, Xq: Array) -> Array:
        """The acquisition at the rows of ``Xq``."""
        raise NotImplementedError

    def values_and_grad(self, Xq: Array) -> tuple[Array, Array]:
        """The acquisition at the rows of ``Xq`` and its gradient wrt their numeric coordinates."""
        raise NotImplementedError


Model: TypeAlias = "GaussianProcess | PriorMeanGP | Acquisition"
"""What :func:`maximize_log_ei` maximises: log EI of a GP, or another :class:`Acquisition`."""


def _acquisition(gp: Model, Xq: Array, log_prior: LogPrior | None) -> Array:
    """log EI (or the :class:`Acquisition`) at the rows of ``Xq``, plus ``log_prior`` when given."""
    value = gp.values(Xq) if isinstance(gp, Acquisition) else log_expected_improvement(gp, Xq)
    return value if log_prior is None else value + log_prior(Xq)


def _local_numeric(gp: Model, starts: Array, log_prior: LogPrior | None = None) -> Array:
    """One stacked L-BFGS-B over the numeric coordinates of every start (categoricals fixed)."""
    num = np.flatnonzero(gp.numeric)
    if not len(num):
        return starts
    s = len(starts)
    work = starts.copy()

    def objective(flat: Array) -> tuple[float, Array]:
        work[:, num] = flat.reshape(s, len(num))
        value, grad = gp.values_and_grad(work) if isinstance(gp, Acquisition) else _log_ei_and_grad(gp, work)
        if log_prior is not None:
            value, grad = value + log_prior(work), grad + log_prior.gradient(work)
        return -float(value.sum()), -grad.ravel()

    x0 = starts[:, num].ravel()
    res = scipy.optimize.minimize(
        objective, x0, jac=True, method="L-BFGS-B", bounds=[(0.0, 1.0)] * len(x0), options={"maxiter": 200}
    )
    out = starts.copy()
    out[:, num] = np.clip(res.x.reshape(s, len(num)), 0.0, 1.0)
    return np.asarray(out, dtype=np.float64)


def _local_categorical(
    gp: Model, points: Array, scores: Array, max_passes: int = 3,
    log_prior: LogPrior | None = None,
) -> tuple[Array, Array]:
    """Coordinate search over categorical dimensions: try every choice of each, keep the best."""
    cats = np.flatnonzero(~gp.numeric)
    points, scores = points.copy(), scores.copy()
    for _ in range(max_passes):
        improved = False
        for j in cats:
            k = int(gp.cat_sizes[j])
            variants = np.repeat(points, k, axis=0)
            variants[:, j] = np.tile(np.arange(k, dtype=np.float64), len(points))
            values = _acquisition(gp, variants, log_prior).reshape(len(points), k)
            best = values.argmax(1)
            better = values[np.arange(len(points)), best] > scores + 1e-12
            if better.any():
                improved = True
                points[better, j] = best[better]
                scores[better] = values[better, best[better]]
        if not improved:
            break
    return points, scores


def maximize_log_ei(
    gp: Model,
    cat_sizes: Array,
    *,
    rng: np.random.Generator,
    n_candidates: int = 2048,
    n_local: int = 10,
    snap: Callable[[Array], Array] | None = None,
    include: Array | None = None,
    log_prior: LogPrior | None = None,
    novel: Callable[[Array], Array] | None = None,
) -> Array:
    """The point, shape (d,), with the highest logEI found (after ``snap``, if given).

    ``snap`` maps rows of encoded points to valid encoded values (integer steps, grids), and is
    applied to every finalist before the final comparison; ``include`` rows are scored as
    extra candidates (e.g. points the caller wants considered); ``log_prior`` is added to logEI
    everywhere (candidates, local searches, finalists): piBO's weighting by the users' priors.
    ``novel`` marks the rows that are not a configuration already tried
    (:class:`~tunelab.samplers.model_based.TriedPoints`): the best novel finalist is returned, else
    the best novel candidate of the whole (snapped) pool, and a repeat only when every candidate is one
    (a small discrete space, all of it tried).
    """
    cat_sizes = np.asarray(cat_sizes, dtype=np.int64)
    candidates = [_random_candidates(n_candidates, cat_sizes, rng), _perturb(gp, max(n_candidates // 4, 1), rng)]
    if include is not None and np.size(include):
        candidates.append(np.atleast_2d(np.asarray(include, dtype=np.float64)))
    pool = np.vstack(candidates)
    scores = _acquisition(gp, pool, log_prior)
    order = np.argsort(-scores)
    starts = pool[order[:n_local]]

    finals = [starts, pool[order[: 4 * n_local]]]
    points = _local_numeric(gp, starts, log_prior)
    point_scores = _acquisition(gp, points, log_prior)
    if (~gp.numeric).any():
        points, point_scores = _local_categorical(gp, points, point_scores, log_prior=log_prior)
        if gp.numeric.any():
            points = _local_numeric(gp, points, log_prior)
    finals.append(points)
    final = np.vstack(finals)
    if snap is not None:
        final = np.asarray(snap(final), dtype=np.float64)
    final_scores = _acquisition(gp, final, log_prior)
    if novel is not None:
        fresh = novel(final)
        if not fresh.any():  # every finalist snaps onto a trial: the best new configuration of the pool
            snapped_pool = np.asarray(snap(pool), dtype=np.float64) if snap is not None else pool
            fresh_pool = snapped_pool[novel(snapped_pool)]
            if len(fresh_pool):
                final, final_scores = fresh_pool, _acquisition(gp, fresh_pool, log_prior)
        else:
            final, final_scores = final[fresh], final_scores[fresh]
    best = final[int(np.nanargmax(final_scores))] if np.isfinite(final_scores).any() else final[0]
    return np.array(best, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# Warm starts: a GP whose prior mean comes from GPs fitted to earlier studies


class ShiftedGP:
    """A source's GP read at ``x - shift``, kept inside the unit cube: its surface moved by ``shift``
    (zero on categorical coordinates; see :func:`tunelab.samplers.transfer.fit_shift`). ``X`` holds its trials moved the
    same way, clipped to the unit cube (the points worth perturbing)."""

    def __init__(self, gp: GaussianProcess, shift: Array) -> None:
        self.gp = gp
        self.shift = np.asarray(shift, dtype=np.float64)
        self.params = gp.params
        self.numeric = gp.numeric
        self.X = np.where(self.numeric, np.clip(gp.X + self.shift, 0.0, 1.0), gp.X)
        self.y = gp.y

    def predict(self, Xq: Array) -> tuple[Array, Array]:
        Xq = np.atleast_2d(np.asarray(Xq, dtype=np.float64))
        return self.gp.predict(shifted_query(Xq, self.shift, self.numeric)[0])

    def _predict_with_grad(self, Xq: Array) -> tuple[Array, Array, Array, Array]:
        moved, inside = shifted_query(np.asarray(Xq, dtype=np.float64), self.shift, self.numeric)
        mean, var, d_mean, d_var = self.gp._predict_with_grad(moved)
        return mean, var, d_mean * inside, d_var * inside


class PriorMeanGP:
    """``z(x) = c0 * sum_s w_s mu_s(x) + c1 + r(x)``: the sources' posterior means ``mu_s`` (GPs fitted
    to earlier studies), weighted, as the prior mean of a GP ``r`` on what they do not explain.

    Quacks like :class:`GaussianProcess` for :func:`maximize_log_ei` (``predict``,
    ``_predict_with_grad``, ``with_pending``, ``best_observed``, and ``X`` / ``y`` of the points worth
    perturbing). ``residual`` None: no trial of the target yet (the variance is the prior's).
    """

    def __init__(
        self,
        residual: GaussianProcess | None,
        sources: Sequence[GaussianProcess | ShiftedGP],
        weights: Array,
        c0: float,
        c1: float,
        cat_sizes: Array,
        params: KernelParams,
        best_observed: float,
        hint_X: Array,
        hint_y: Array,
    ) -> None:
        self.residual = residual
        self.sources = list(sources)
        self.weights = np.asarray(weights, dtype=np.float64)
        self.c0, self.c1 = float(c0), float(c1)
        self.cat_sizes = np.asarray(cat_sizes, dtype=np.int64)
        self.numeric = self.cat_sizes == 0
        self.params = params
        self.best_observed = float(best_observed)
        self.X, self.y = hint_X, hint_y

    def prior_mean(self, Xq: Array) -> Array:
        out = np.full(len(Xq), self.c1)
        for w, g in zip(self.weights, self.sources, strict=True):
            if w > 0:
                out += self.c0 * w * g.predict(Xq)[0]
        return out

    def predict(self, Xq: Array) -> tuple[Array, Array]:
        Xq = np.atleast_2d(np.asarray(Xq, dtype=np.float64))
        if self.residual is None:
            return self.prior_mean(Xq), np.full(len(Xq), float(self.params.signal_variance))
        mean, var = self.residual.predict(Xq)
        return mean + self.prior_mean(Xq), var

    def _predict_with_grad(self, Xq: Array) -> tuple[Array, Array, Array, Array]:
        n_num = int(self.numeric.sum())
        if self.residual is None:
            mean, var = np.full(len(Xq), self.c1), np.full(len(Xq), float(self.params.signal_variance))
            d_mean, d_var = np.zeros((len(Xq), n_num)), np.zeros((len(Xq), n_num))
        else:
            mean, var, d_mean, d_var = self.residual._predict_with_grad(Xq)
            mean = mean + self.c1
        for w, g in zip(self.weights, self.sources, strict=True):
            if w > 0:
                m, _, dm, _ = g._predict_with_grad(Xq)
                mean = mean + self.c0 * w * m
                d_mean = d_mean + self.c0 * w * dm
        return mean, var, d_mean, d_var

    def with_pending(self, X_pending: Array) -> PriorMeanGP:
        """Kriging believer on the residual (see :meth:`GaussianProcess.with_pending`)."""
        Xp = np.atleast_2d(np.asarray(X_pending, dtype=np.float64))
        if Xp.size == 0:
            return self
        full, _ = self.predict(Xp)
        if self.residual is None:
            residual = GaussianProcess(Xp, np.zeros(len(Xp)), self.cat_sizes, self.params,
                                       noise=np.full(len(Xp), MIN_NOISE_VAR))
        else:
            residual = self.residual.with_pending(Xp)
        return PriorMeanGP(residual, self.sources, self.weights, self.c0, self.c1, self.cat_sizes, self.params,
                           min(self.best_observed, float(np.min(full))), self.X, self.y)
