"""The learning-curve model: where a curve is going, with an interval.

A curve (values at steps) is fitted by an ensemble of parametric families of saturating curves
(Domhan, Springenberg and Hutter, IJCAI 2015): ``pow3``, ``log_power``, ``exp3``, ``janoschek``,
``mmf`` and ``weibull``. Each family is fitted by bounded least squares from a few starts; its
noise is the Gaussian whose variance is the fit's mean squared residual; the families are weighted
by their BIC (a Laplace approximation of their marginal likelihood, with the noise as a parameter).
A family's prediction at a later step is Gaussian: its fitted value, with the parameter uncertainty
of the Laplace approximation (the covariance ``s^2 (J^T J)^-1`` at the optimum, carried by the
delta method), the observation noise, and an extrapolation term that grows with the distance
predicted (the families are only approximations of real curves). The prediction of the ensemble
is the mixture of the families' predictions; its quantiles are read from the mixture's CDF.

Curves are read in the direction given: ``minimize`` (a loss: lower is better) or ``maximize``;
internally every curve is turned into a "goodness" (higher is better) that the families model as
rising to an asymptote. Steps are divided by the step predicted at, values by the curve's range,
so that the bounds of the parameters hold for any scale.

The families know no bounds, so predictions are kept within the metric's natural range, read from the
fitted values (:meth:`CurveModel.natural_range`): a minimised curve of positive values (a loss) stays at
least 0, a maximised curve in [0, 1] (an accuracy) stays in [0, 1]. The mean and both ends of the
interval are clipped alike, in :meth:`CurveModel.predict` and :meth:`CurveModel.continuation`, which
the pruners' evidence and the diagnosis both report.

The module is plain numpy and scipy (imported when a curve is first fitted) and knows nothing of
studies: :func:`fit_curve` takes steps and values and returns a :class:`CurveModel`.

Examples:
    >>> import numpy as np
    >>> steps = np.arange(1, 11)
    >>> loss = 0.2 + 1.5 * steps ** -0.8                     # a pow3 curve, observed for 10 epochs
    >>> model = fit_curve(steps, loss, direction="minimize", horizon=50)
    >>> p = model.predict(50)
    >>> round(p.mean, 2), p.low <= 0.2 + 1.5 * 50 ** -0.8 <= p.high
    (0.27, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tunelab.errors import ConfigError

FloatArray = NDArray[np.float64]
ModelFn = Callable[[FloatArray, FloatArray], FloatArray]

MIN_POINTS = 4
"""Fewer finite points than this fit no family (every family has 3 or 4 parameters)."""
EXTRAPOLATION_SD = 0.25
"""The model error: a family's predicted gain beyond its last fitted point has this relative sd (on
top of the parameter and noise uncertainty)..."""
DRIFT_SD = 0.4
"""... and a gain it does not predict has this sd, in ranges of the observed curve, times how much the
curve still moved over its second half (in ranges, plus its noise; at most 1) and the square root of the
distance ahead (in multiples of the steps observed): a flat, quiet curve gets almost none. Both are
set so that 90% intervals cover the truth at least 90% of the time on curves of the families and of shapes outside them
(tests/test_curve_pruner.py, which reports the rate)."""
WARM_NFEV = 10
"""A refit from a previous fit's parameters gets this many evaluations per parameter (25 from the data's
starts): most converge in under 3; those that do not sit on a flat direction where more do not help."""
FIT_TOL = 1e-6
"""Relative tolerances of the least-squares fits (cost, parameters, gradient): the curves are scaled to
a range of 1 and their noise is rarely below 1e-3 of it, so tighter fits change no prediction."""
_TINY = 1e-12


# -- the families, on u = step / horizon (0 < u <= 1 at the horizon) and goodness scaled to its range;
# each with its Jacobian d f / d theta, (len(u), n_params)
def _pow3(u: FloatArray, t: FloatArray) -> FloatArray:
    c, a, alpha = t
    return np.asarray(c - a * np.power(u, -alpha), dtype=float)


def _pow3_jac(u: FloatArray, t: FloatArray) -> FloatArray:
    _, a, alpha = t
    q = np.power(u, -alpha)
    return np.stack([np.ones_like(u), -q, a * q * np.log(u)], axis=1)


def _sigmoid(z: FloatArray) -> FloatArray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0))), dtype=float)


def _log_power(u: FloatArray, t: FloatArray) -> FloatArray:
    off, a, b, c = t
    return np.asarray(off + a * _sigmoid(c * (np.log(u) - b)), dtype=float)


def _log_power_jac(u: FloatArray, t: FloatArray) -> FloatArray:
    _, a, b, c = t
    lu = np.log(u) - b
    s = _sigmoid(c * lu)
    ds = s * (1.0 - s)
    return np.stack([np.ones_like(u), s, -a * c * ds, a * lu * ds], axis=1)


def _exp3(u: FloatArray, t: FloatArray) -> FloatArray:
    c, a, b = t
    return np.asarray(c - np.exp(np.clip(-a * u + b, -50.0, 50.0)), dtype=float)


def _exp3_jac(u: FloatArray, t: FloatArray) -> FloatArray:
    _, a, b = t
    e = np.exp(np.clip(-a * u + b, -50.0, 50.0))
    return np.stack([np.ones_like(u), u * e, -e], axis=1)


def _janoschek(u: FloatArray, t: FloatArray) -> FloatArray:
    alpha, beta, kappa, delta = t
    return np.asarray(alpha - (alpha - beta) * np.exp(-kappa * np.power(u, delta)), dtype=float)


def _janoschek_jac(u: FloatArray, t: FloatArray) -> FloatArray:
    alpha, beta, kappa, delta = t
    ud = np.power(u, delta)
    e = np.exp(-kappa * ud)
    return np.stack([1.0 - e, e, (alpha - beta) * e * ud, (alpha - beta) * e * kappa * ud * np.log(u)], axis=1)


def _mmf(u: FloatArray, t: FloatArray) -> FloatArray:
    alpha, beta, kappa, delta = t
    return np.asarray(alpha - (alpha - beta) / (1.0 + np.power(kappa * u, delta)), dtype=float)


def _mmf_jac(u: FloatArray, t: FloatArray) -> FloatArray:
    alpha, beta, kappa, delta = t
    ku = kappa * u
    p = np.power(ku, delta)
    d2 = (1.0 + p) ** 2
    return np.stack([1.0 - 1.0 / (1.0 + p), 1.0 / (1.0 + p),
                     (alpha - beta) * delta * np.power(ku, delta - 1.0) * u / d2,
                     (alpha - beta) * p * np.log(ku) / d2], axis=1)


def _weibull(u: FloatArray, t: FloatArray) -> FloatArray:
    alpha, beta, kappa, delta = t
    return np.asarray(alpha - (alpha - beta) * np.exp(-np.power(kappa * u, delta)), dtype=float)


def _weibull_jac(u: FloatArray, t: FloatArray) -> FloatArray:
    alpha, beta, kappa, delta = t
    ku = kappa * u
    p = np.power(ku, delta)
    e = np.exp(-p)
    return np.stack([1.0 - e, e, (alpha - beta) * e * delta * np.power(ku, delta - 1.0) * u,
                     (alpha - beta) * e * p * np.log(ku)], axis=1)


@dataclass(frozen=True)
class Family:
    """One parametric family: ``fn(u, theta)`` with bounds, on scaled steps and goodness.

    Attributes:
        name: its short name.
        fn: the curve, vectorised over ``u``.
        jac: its Jacobian in the parameters, ``(len(u), n_params)``.
        lower: lower bounds of the parameters.
        upper: upper bounds.
        formula: the curve in words (of the step ``x``), for the docs and the evidence.
    """

    name: str
    fn: ModelFn
    jac: ModelFn
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    formula: str

    @property
    def n_params(self) -> int:
        return len(self.lower)


# Goodness is scaled so that the observed curve spans about [0, 1]; asymptotes may lie up to
# 3 ranges above it (a curve observed early may still gain a lot), never more.
FAMILIES: tuple[Family, ...] = (
    Family("pow3", _pow3, _pow3_jac, (-2.0, 0.0, 0.01), (4.0, 50.0, 4.0), "c - a x^-alpha"),
    Family("log_power", _log_power, _log_power_jac, (-3.0, 0.0, -6.0, 0.1), (2.0, 8.0, 3.0, 6.0),
           "off + a / (1 + (x / e^b)^-c)"),
    Family("exp3", _exp3, _exp3_jac, (-2.0, 0.0, -6.0), (4.0, 200.0, 8.0), "c - exp(-a x + b)"),
    Family("janoschek", _janoschek, _janoschek_jac, (-2.0, -20.0, 0.0, 0.05), (4.0, 2.0, 500.0, 4.0),
           "alpha - (alpha - beta) exp(-kappa x^delta)"),
    Family("mmf", _mmf, _mmf_jac, (-2.0, -20.0, 1e-3, 0.05), (4.0, 2.0, 500.0, 4.0),
           "alpha - (alpha - beta) / (1 + (kappa x)^delta)"),
    Family("weibull", _weibull, _weibull_jac, (-2.0, -20.0, 1e-3, 0.05), (4.0, 2.0, 500.0, 4.0),
           "alpha - (alpha - beta) exp(-(kappa x)^delta)"),
)
"""The ensemble (Domhan et al. 2015), each rising to an asymptote with the step."""

FAMILY_NAMES = tuple(f.name for f in FAMILIES)


def _starts(family: str, u: FloatArray, y: FloatArray) -> list[list[float]]:
    """Starting points in the scaled units, from the data: the last level and a little above it."""
    last = float(np.mean(y[-2:]))
    first = float(y[0])
    u0 = float(u[0])
    out: list[list[float]] = []
    for top in (last + 0.1, last + 0.6):
        if family == "pow3":
            out.append([top, max(top - first, 0.05) * u0**0.5, 0.5])
        elif family == "log_power":
            out.append([first - 0.1, max(top - first, 0.05) + 0.1, math.log(max(float(u[len(u) // 2]), 1e-3)), 1.5])
        elif family == "exp3":
            a = 3.0 / max(float(u[-1]), 1e-3)
            out.append([top, a, math.log(max(top - first, 0.05)) + a * u0])
        else:
            kappa = 1.0 / max(float(u[len(u) // 2]), 1e-3)
            out.append([top, first - 0.05, kappa, 1.0])
    return out


# -- one family's fit ----------------------------------------------------------------------------
@dataclass(frozen=True)
class FamilyFit:
    """A family fitted to a scaled curve.

    Attributes:
        family: the family.
        theta: its fitted parameters (scaled units).
        cov: their Laplace covariance ``s^2 (J^T J)^+``.
        sigma2: the noise variance (mean squared residual, with the degrees of freedom left).
        bic: its BIC (lower is better), noise included as a parameter.
        dof: points minus parameters.
    """

    family: Family
    theta: FloatArray
    cov: FloatArray
    sigma2: float
    bic: float
    dof: int

    def mean(self, u: FloatArray) -> FloatArray:
        return self.family.fn(u, self.theta)

    def variance(self, u: FloatArray) -> FloatArray:
        """The parameter part of the predictive variance at ``u`` (delta method)."""
        grads = _gradient(self.family, self.theta, u)
        return np.asarray(np.maximum(np.einsum("ij,jk,ik->i", grads, self.cov, grads), 0.0), dtype=float)


def _gradient(family: Family, theta: FloatArray, u: FloatArray) -> FloatArray:
    """d fn / d theta at ``u``: (len(u), n_params)."""
    with np.errstate(all="ignore"):
        g = np.asarray(family.jac(u, theta), dtype=float)
    return np.where(np.isfinite(g), g, 0.0)


def _rescaled(family: str, theta: FloatArray, k: float) -> list[float]:
    """``theta`` of ``family`` for the same curve with its goodness multiplied by ``k`` (> 0)."""
    t = [float(v) for v in theta]
    if family == "pow3":
        return [k * t[0], k * t[1], t[2]]
    if family == "log_power":
        return [k * t[0], k * t[1], t[2], t[3]]
    if family == "exp3":
        return [k * t[0], t[1], t[2] + math.log(k)]
    return [k * t[0], k * t[1], t[2], t[3]]  # janoschek, mmf, weibull: alpha, beta scale


def _fit_family(family: Family, u: FloatArray, y: FloatArray, warm: Sequence[float] | None = None) -> FamilyFit | None:
    """Bounded least squares from the data's starts (the second only while the first did not
    converge), or from ``warm`` alone (a previous fit's parameters, in these units) when given: a
    family whose fit does not converge there (a flat direction) would not do better from the
    data's starts at many times the cost; they are used only when the warm start fails."""
    from scipy.optimize import least_squares

    n, p = y.size, family.n_params
    if n < p + 1:
        return None
    lo, hi = np.asarray(family.lower, dtype=float), np.asarray(family.upper, dtype=float)
    best: Any = None
    starts = [list(warm)] if warm is not None else _starts(family.name, u, y)
    if warm is not None:
        starts += _starts(family.name, u, y)
    with np.errstate(all="ignore"):
        for i, start in enumerate(starts):
            if best is not None and (best.status > 0 or (warm is not None and i >= 1)):
                break  # the first start converged (or was warm): the second is for when it did not
            x0 = np.clip(np.asarray(start, dtype=float), lo + 1e-9, hi - 1e-9)

            def residual(t: FloatArray) -> FloatArray:
                r = family.fn(u, t) - y
                return np.where(np.isfinite(r), r, 1e6)

            def jacobian(t: FloatArray) -> FloatArray:
                return _gradient(family, t, u)

            try:
                res = least_squares(residual, x0, jac=jacobian, bounds=(lo, hi), method="trf",
                                    max_nfev=(WARM_NFEV if warm is not None and i == 0 else 25) * p,
                                    ftol=FIT_TOL, xtol=FIT_TOL, gtol=FIT_TOL)
            except (ValueError, np.linalg.LinAlgError):
                continue
            if not np.all(np.isfinite(res.fun)):
                continue
            if best is None or res.cost < best.cost:
                best = res
    if best is None:
        return None
    rss = float(2.0 * best.cost)
    dof = n - p
    sigma2 = max(rss / dof, _TINY)
    jac = np.asarray(best.jac, dtype=float)
    try:
        cov = sigma2 * np.linalg.pinv(jac.T @ jac, rcond=1e-10)
    except np.linalg.LinAlgError:
        return None
    mle = max(rss / n, _TINY)
    bic = n * math.log(mle) + (p + 1) * math.log(n)
    return FamilyFit(family, np.asarray(best.x, dtype=float), cov, sigma2, bic, dof)


# -- the ensemble --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Prediction:
    """The predictive distribution of the value a curve will show at ``step``.

    Attributes:
        step: where.
        mean: the mixture's mean, in the metric's units (within the metric's natural range).
        low: the lower end of the ``interval`` (the metric's units; ``low <= high`` whatever the direction;
            within the natural range, as ``mean``).
        high: the upper end.
        interval: the probability between ``low`` and ``high`` (e.g. 0.9).
        direction: the metric's direction.
    """

    step: int
    mean: float
    low: float
    high: float
    interval: float
    direction: str
    _weights: tuple[float, ...]
    _means: tuple[float, ...]  # goodness
    _sds: tuple[float, ...]
    _sign: float

    def prob_better(self, value: float) -> float:
        """The probability that the value at ``step`` is better than ``value`` (strictly)."""
        from scipy.special import ndtr

        g = self._sign * value
        w, m, s = np.asarray(self._weights), np.asarray(self._means), np.asarray(self._sds)
        return float(np.clip(np.sum(w * (1.0 - ndtr((g - m) / s))), 0.0, 1.0))

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "mean": self.mean, "low": self.low, "high": self.high, "interval": self.interval}


class CurveModel:
    """The ensemble fitted to one curve; :meth:`predict` gives a :class:`Prediction` at any later step.

    Attributes:
        steps: the fitted steps.
        values: the fitted values (the metric's units).
        direction: 'minimize' or 'maximize'.
        fits: the families that could be fitted.
        weights: their weights (summing to 1).
        horizon: the step the steps were scaled by.
    """

    def __init__(self, steps: FloatArray, values: FloatArray, direction: str, horizon: float,
                 fits: Sequence[FamilyFit], offset: float, scale: float) -> None:
        self.steps, self.values, self.direction, self.horizon = steps, values, direction, horizon
        self.fits = list(fits)
        self._sign = 1.0 if direction == "maximize" else -1.0
        self._offset, self._scale = offset, scale
        self._floor, self._ceiling = self.natural_range()
        # how much the curve still moved over its second half (scaled, at most 1), plus its noise: the
        # drift a family did not predict is in proportion (a flat, quiet curve gets almost none)
        g = self._sign * (values - offset) / scale if values.size else np.zeros(0)
        half = g[g.size // 2:] if g.size >= 4 else g
        noise = math.sqrt(min(f.sigma2 for f in fits)) if fits else 1.0
        self._recent = min(1.0, float(np.ptp(half)) + noise) if half.size else 1.0
        if self.fits:
            bic = np.asarray([f.bic for f in self.fits])
            w = np.exp(-0.5 * (bic - bic.min()))
            self.weights: FloatArray = w / w.sum()
        else:
            self.weights = np.zeros(0)

    @property
    def ok(self) -> bool:
        """Whether any family was fitted (else :meth:`predict` raises ValueError)."""
        return bool(self.fits)

    def natural_range(self) -> tuple[float, float]:
        """The range predictions are kept in, read from the fitted values: ``(0, inf)`` for a minimised
        curve of positive values (a loss), ``(0, 1)`` for a maximised curve in [0, 1] (an accuracy),
        else unbounded."""
        v = self.values
        if not v.size:
            return -math.inf, math.inf
        if self.direction == "maximize" and bool(np.all((v >= 0) & (v <= 1))):
            return 0.0, 1.0
        if self.direction == "minimize" and bool(np.all(v > 0)):
            return 0.0, math.inf
        return -math.inf, math.inf

    def _clip(self, value: float) -> float:
        return min(max(value, self._floor), self._ceiling)

    def family_weights(self) -> dict[str, float]:
        """Each fitted family's weight, by name."""
        return {f.family.name: float(w) for f, w in zip(self.fits, self.weights, strict=True)}

    def _components(self, steps: Sequence[float]) -> tuple[FloatArray, FloatArray]:
        """Means and sds of every family at ``steps``, in scaled goodness: (families, steps) each."""
        u = np.asarray(steps, dtype=float) / self.horizon
        u_last = float(self.steps[-1]) / self.horizon
        means, sds = [], []
        for f in self.fits:
            m = f.mean(u)
            last = float(f.mean(np.asarray([u_last]))[0])
            ahead = np.clip((u - u_last) / max(u_last, _TINY), 0.0, None)
            model_error = EXTRAPOLATION_SD * np.abs(m - last) + DRIFT_SD * self._recent * np.sqrt(ahead)
            var = f.variance(u) + f.sigma2 + model_error**2
            means.append(m)
            sds.append(np.sqrt(np.maximum(var, _TINY)))
        return np.asarray(means), np.asarray(sds)

    def predict(self, step: float, interval: float = 0.9) -> Prediction:
        """The value predicted at ``step``, with its central ``interval``, both kept within the metric's
        natural range (:meth:`natural_range`)."""
        if not self.fits:
            raise ValueError("no family could be fitted to this curve")
        means, sds = self._components([step])
        m, s = means[:, 0], sds[:, 0]
        lo_g, hi_g = _mixture_quantiles(self.weights, m, s, ((1 - interval) / 2, (1 + interval) / 2))
        mean_g = float(np.sum(self.weights * m))
        a, b = self._clip(self._to_metric(lo_g)), self._clip(self._to_metric(hi_g))
        return Prediction(
            step=int(round(step)), mean=self._clip(self._to_metric(mean_g)), low=min(a, b), high=max(a, b),
            interval=interval,
            direction=self.direction, _weights=tuple(float(w) for w in self.weights),
            _means=tuple(float(self._sign * self._to_metric(v)) for v in m),
            _sds=tuple(float(v * self._scale) for v in s), _sign=self._sign,
        )

    def continuation(self, steps: Sequence[float], interval: float = 0.9) -> dict[str, list[float]]:
        """The predicted mean and interval at each of ``steps``: ``{"steps", "mean", "low", "high"}`` (within
        the metric's natural range, as :meth:`predict`)."""
        out: dict[str, list[float]] = {"steps": [], "mean": [], "low": [], "high": []}
        if not len(steps):
            return out
        if not self.fits:
            raise ValueError("no family could be fitted to this curve")
        means, sds = self._components(steps)
        qs = _mixture_quantiles_at(self.weights, means, sds, ((1 - interval) / 2, (1 + interval) / 2))
        for i, s in enumerate(steps):
            a, b = self._clip(self._to_metric(float(qs[0, i]))), self._clip(self._to_metric(float(qs[1, i])))
            out["steps"].append(int(round(s)))
            out["mean"].append(self._clip(self._to_metric(float(np.sum(self.weights * means[:, i])))))
            out["low"].append(min(a, b))
            out["high"].append(max(a, b))
        return out

    def _to_metric(self, scaled_goodness: float) -> float:
        return float(self._sign * (self._offset + self._scale * scaled_goodness))


def _mixture_quantiles(w: FloatArray, m: FloatArray, s: FloatArray, qs: Sequence[float]) -> list[float]:
    """The ``qs`` quantiles of the mixture of normals ``(w, m, s)`` (one step)."""
    return [float(v) for v in _mixture_quantiles_at(w, m[:, None], s[:, None], qs)[:, 0]]


def _mixture_quantiles_at(w: FloatArray, m: FloatArray, s: FloatArray, qs: Sequence[float]) -> FloatArray:
    """The ``qs`` quantiles of the mixtures at several steps at once: ``m`` and ``s`` are (families,
    steps); returns (len(qs), steps). Bisection on [min(m - 8s), max(m + 8s)] of each step."""
    from scipy.special import ndtr

    q = np.asarray(qs, dtype=float)[:, None]                       # (qs, 1)
    a = np.broadcast_to(np.min(m - 8 * s, axis=0), (q.size, m.shape[1])).copy()
    b = np.broadcast_to(np.max(m + 8 * s, axis=0), (q.size, m.shape[1])).copy()
    wk, mk, sk = w[:, None, None], m[:, None, :], s[:, None, :]       # (families, 1, steps)
    for _ in range(60):
        mid = 0.5 * (a + b)
        below = np.sum(wk * ndtr((mid[None] - mk) / sk), axis=0) < q
        a = np.where(below, mid, a)
        b = np.where(below, b, mid)
    return np.asarray(0.5 * (a + b), dtype=float)


def fit_curve(
    steps: Sequence[float] | FloatArray,
    values: Sequence[float] | FloatArray,
    *,
    direction: str = "minimize",
    horizon: float | None = None,
    families: Sequence[str] | None = None,
    previous: CurveModel | None = None,
) -> CurveModel:
    """Fit the ensemble to a curve.

    Args:
        steps: the steps (positive; any order, non-finite values are dropped).
        values: the metric at those steps.
        direction: 'minimize' (lower is better) or 'maximize'.
        horizon: the step predictions are mostly made at (e.g. the full budget); it only scales
            the steps. Default: the last step.
        families: names of the families to use (default all of :data:`FAMILY_NAMES`).
        previous: the model of an earlier part of the same curve (same first point, same
            ``horizon``): each family's least squares starts from its previous parameters, so that
            refitting a growing curve takes a few iterations (the data's own starts are still tried
            when that one does not converge).

    A curve with fewer than :data:`MIN_POINTS` finite points gives a model whose ``ok`` is False.
    """
    if direction not in ("minimize", "maximize"):
        raise ConfigError(f"fit_curve(direction=...) must be 'minimize' or 'maximize', got {direction!r}")
    chosen = FAMILIES if families is None else tuple(f for f in FAMILIES if f.name in set(families))
    unknown = set(families or ()) - set(FAMILY_NAMES)
    if unknown:
        raise ConfigError(f"fit_curve(families=...): unknown families {sorted(unknown)}; known: {list(FAMILY_NAMES)}")
    x = np.asarray(steps, dtype=float)
    y = np.asarray(values, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0)
    x, y = x[keep], y[keep]
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    h = float(horizon) if horizon is not None else (float(x[-1]) if x.size else 1.0)
    h = max(h, float(x[-1]) if x.size else h, _TINY)
    sign = 1.0 if direction == "maximize" else -1.0
    g = sign * y
    if x.size < MIN_POINTS:
        return CurveModel(x, y, direction, h, [], 0.0, 1.0)
    offset = float(g[0])
    scale = float(np.ptp(g))
    scale = max(scale, 1e-6 * max(abs(offset), 1.0), _TINY)
    yn = (g - offset) / scale
    u = x / h
    warm: dict[str, list[float]] = {}
    if (previous is not None and previous.ok and previous.direction == direction and previous.horizon == h
            and previous._offset == offset):
        k = previous._scale / scale
        warm = {f.family.name: _rescaled(f.family.name, f.theta, k) for f in previous.fits}
    fits = [f for f in (_fit_family(fam, u, yn, warm.get(fam.name)) for fam in chosen) if f is not None]
    return CurveModel(x, y, direction, h, fits, offset, scale)
