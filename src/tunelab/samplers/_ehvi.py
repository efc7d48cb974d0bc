"""Log expected hypervolume improvement (LogEHVI) with constraints: the acquisition of the
Gaussian-process sampler on studies with several objectives.

Each objective has its own GP (independent posteriors), in its standardised loss units (minimised;
an affine map, so hypervolumes keep their ratios); the Pareto front of the feasible trials and the
reference point are in the same units.

* **Box decomposition.** The region below the reference point that the front does not dominate is
  cut into disjoint boxes ``[lower, upper]`` (lower bounds may be ``-inf``), exactly: a grid on the
  front's coordinates of the first ``m - 1`` objectives, one box per grid cell reaching down to
  ``-inf`` in the last objective, up to the lowest last loss of the front points that dominate the
  cell's lower corner; runs of cells with the same height are merged. Two objectives give
  ``n + 1`` boxes; three at most ``(n + 1)^2`` (fewer after merging). A front that would need more
  than :data:`MAX_CELLS` cells (over 62 points in three objectives, 14 in four) keeps its points of
  largest exclusive hypervolume contribution.
* **Exact expectation.** The improvement of a point ``y`` is ``sum_k prod_j (u_kj - max(l_kj, y_j))^+``
  and the objectives are independent, so ``EHVI = sum_k prod_j psi_kj`` with, for ``Y ~ N(mu, s^2)``,
  ``psi = E[(u - max(l, Y))^+] = s (h((u - mu) / s) - h((l - mu) / s))``, ``h(z) = phi(z) + z Phi(z)``.
  Everything is computed in log space (``log h`` as in log EI, Ament et al. 2023), so the
  acquisition and its gradient stay finite where EHVI underflows. No Monte Carlo is needed, for
  any number of objectives.
* **Constraints** (constrained EI, Gardner et al. 2014): one GP per constraint on its signed
  margin (``<= 0``: it holds), standardised; ``log P(feasible) = sum_c log Phi((t_c - mu_c) / s_c)``
  is added to log EHVI. With no feasible trial yet the acquisition is ``log P(feasible)`` alone.
  Where a constraint cuts the front off, the hypervolume just past the bound is a whole slab that
  the feasible front cannot reach, so log EHVI rises steeply across it and the sum peaked just past
  the predicted bound, at P(feasible) ~0.35: half of such proposals were infeasible. Below
  :data:`FEASIBLE_TARGET` (0.9) the shortfall ``log P - log 0.9`` is therefore counted
  :data:`FEASIBLE_PENALTY` (10) more times, which keeps proposals on the feasible side of the
  predicted bound by about 1.3 posterior standard deviations of the margin (closer as it is learnt).
  Only where every margin is known (posterior variance at most :data:`KNOWN_VARIANCE_SHARE` of the
  prior's): in unexplored parts another feasible region may lie, and there log P counts once. With
  the penalty everywhere the GP stayed in the feasible regions it had found (two of C2-DTLZ2's four
  caps, 100-trial hypervolume 2.05 against 2.34 with the gate, 4 seeds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.special

from tunelab.multiobjective import pareto_mask
from tunelab.samplers._gp import Acquisition, GaussianProcess, _log1mexp, _log_h

__all__ = ["MAX_CELLS", "LogEHVI", "box_decomposition", "log_ehvi", "reference_point"]

Array = np.ndarray

MAX_CELLS = 4_000
"""The most grid cells of a box decomposition; a larger front keeps its most valuable points."""

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
FEASIBLE_TARGET = 0.9
"""The probability of feasibility below which the acquisition penalises a point more (see :class:`LogEHVI`)."""
FEASIBLE_PENALTY = 10.0
"""Below :data:`FEASIBLE_TARGET`, ``log P(feasible)`` counts ``1 + FEASIBLE_PENALTY`` times (the excess only)."""
KNOWN_VARIANCE_SHARE = 0.25
"""The penalty applies where every constraint's margin is known: its posterior variance at most this share
of its prior variance (near a learnt bound). Where a margin is unexplored (another feasible region may lie
there) ``log P(feasible)`` counts once, as in constrained EI: with the penalty everywhere, the GP stayed in
the feasible regions it had found (two of C2-DTLZ2's four caps)."""
_CHUNK = 400_000  # candidates x boxes x objectives per vectorised block


def reference_point(Y: Array) -> Array:
    """The worst observed loss of each objective (rows of ``Y``), pushed out by a tenth of its span
    (by 0.1 where the objective is constant)."""
    Y = np.asarray(Y, dtype=np.float64)
    span = np.ptp(Y, axis=0)
    return np.asarray(Y.max(axis=0) + 0.1 * np.where(span > 0, span, 1.0), dtype=np.float64)


def box_decomposition(front: Array, reference: Array) -> tuple[Array, Array]:
    """Disjoint boxes covering the part below ``reference`` that no row of ``front`` (losses) dominates.

    Returns ``(lower, upper)``, each (k, m); lower bounds may be ``-inf``. Rows not strictly below
    the reference are ignored; an empty front gives the one box ``(-inf, reference]``.
    """
    ref = np.asarray(reference, dtype=np.float64)
    m = ref.size
    P = np.asarray(front, dtype=np.float64).reshape(-1, m)
    P = P[np.all(np.isfinite(P), axis=1) & np.all(P < ref, axis=1)]
    if len(P):
        P = np.unique(P, axis=0)
        P = P[pareto_mask(P)]
    if not len(P):
        return np.full((1, m), -np.inf), ref[None, :].copy()
    if m == 1:
        return np.full((1, 1), -np.inf), np.array([[P[:, 0].min()]])
    P = _thin(P, ref)
    grids = [np.concatenate([[-np.inf], np.unique(P[:, j]), [ref[j]]]) for j in range(m - 1)]
    shape = tuple(len(g) - 1 for g in grids)
    # covers[..., i]: front point i dominates the lower corner of the cell (in the first m - 1 losses)
    covers = np.ones((*shape, len(P)), dtype=bool)
    for j, g in enumerate(grids):
        view = [1] * (m - 1) + [len(P)]
        view[j] = shape[j]
        covers &= (P[:, j][None, :] <= g[:-1][:, None]).reshape(view)
    height = np.where(covers, P[:, -1], ref[-1]).min(axis=-1)
    height = np.minimum(height, ref[-1])
    # Merge runs of equal height along the last grid dimension.
    rows = height.reshape(-1, shape[-1])
    starts = np.ones_like(rows, dtype=bool)
    starts[:, 1:] = rows[:, 1:] != rows[:, :-1]
    first = np.flatnonzero(starts.ravel())
    last = np.append(first[1:], rows.size) - 1
    cells_lo = np.stack(np.unravel_index(first, shape), axis=1)
    cells_hi = np.stack(np.unravel_index(last, shape), axis=1)
    lower = np.empty((len(first), m))
    upper = np.empty((len(first), m))
    for j, g in enumerate(grids):
        lower[:, j] = g[cells_lo[:, j]]
        upper[:, j] = g[cells_hi[:, j] + 1]
    lower[:, -1] = -np.inf
    upper[:, -1] = rows.ravel()[first]
    return lower, upper


def _thin(P: Array, ref: Array) -> Array:
    """At most as many front points as keep the grid within :data:`MAX_CELLS` cells: those of largest
    exclusive hypervolume contribution."""
    m = P.shape[1]
    keep = len(P)
    while keep > 1 and (keep + 1) ** (m - 1) > MAX_CELLS:
        keep -= 1
    if keep == len(P):
        return P
    from tunelab.multiobjective import hypervolume

    total = hypervolume(P, ref)
    worth = np.array([total - hypervolume(np.delete(P, i, axis=0), ref) for i in range(len(P))])
    return P[np.argsort(-worth, kind="stable")[:keep]]


def _log_psi(mu: Array, sigma: Array, lower: Array, upper: Array, grad: bool) -> tuple[Array, Array, Array]:
    """``log psi`` (see the module docstring), broadcast over ``mu``, ``sigma`` (n, 1, m) and the boxes
    ``lower``, ``upper`` (1, k, m); with ``grad``, also ``d log psi / d mu`` and ``d log psi / d sigma``."""
    zu = (upper - mu) / sigma
    open_below = np.broadcast_to(np.isneginf(lower), zu.shape)
    with np.errstate(invalid="ignore"):
        zl = np.where(open_below, 0.0, (lower - mu) / sigma)
    log_sigma = np.log(sigma)
    log_hu = _log_h(zu.ravel()).reshape(zu.shape)
    above = ~open_below & (zl > 0.0)  # the whole box below the mean: h(z) = z + h(-z) keeps precision
    middle = ~open_below & ~above
    inner = np.where(open_below, log_hu, 0.0)
    if above.any():
        a_u, a_l = zu[above], zl[above]
        width = a_u - a_l
        tail = np.exp(_log_h(-a_l)) - np.exp(_log_h(-a_u))  # >= 0, at most Phi(-zl) * width
        inner[above] = np.log(width) + np.log1p(-np.minimum(tail / width, 0.5))
    if middle.any():
        log_hl = _log_h(zl[middle])
        inner[middle] = log_hu[middle] + _log1mexp(np.minimum(log_hl - log_hu[middle], -1e-300))
    log_psi = log_sigma + inner
    if not grad:
        return log_psi, np.empty(0), np.empty(0)
    # d psi / d mu = -(Phi(zu) - Phi(zl)); d psi / d sigma = phi(zu) - phi(zl).
    lnu = scipy.special.log_ndtr(zu)
    log_a = np.where(open_below, lnu, 0.0)
    if above.any():
        s_l, s_u = scipy.special.log_ndtr(-zl[above]), scipy.special.log_ndtr(-zu[above])
        log_a[above] = s_l + _log1mexp(np.minimum(s_u - s_l, -1e-300))
    if middle.any():
        lnl = scipy.special.log_ndtr(zl[middle])
        log_a[middle] = lnu[middle] + _log1mexp(np.minimum(lnl - lnu[middle], -1e-300))
    lphi_u = -0.5 * zu * zu - _LOG_SQRT_2PI
    lphi_l = np.where(open_below, -np.inf, -0.5 * zl * zl - _LOG_SQRT_2PI)
    hi, lo = np.maximum(lphi_u, lphi_l), np.minimum(lphi_u, lphi_l)
    with np.errstate(divide="ignore"):
        log_b = hi + _log1mexp_safe(lo - hi)
    sign = np.where(lphi_u >= lphi_l, 1.0, -1.0)
    d_mu = -np.exp(log_a - log_psi)
    d_sigma = sign * np.exp(log_b - log_psi)
    return log_psi, d_mu, d_sigma


def _log1mexp_safe(x: Array) -> Array:
    """log(1 - exp(x)) for x <= 0 (``-inf`` at 0, 0 at ``-inf``)."""
    out = np.full_like(x, -np.inf)
    ok = x < 0.0
    out[ok] = _log1mexp(x[ok])
    return out


def log_ehvi(mean: Array, var: Array, lower: Array, upper: Array) -> Array:
    """log EHVI of independent Gaussian losses (rows of ``mean``, ``var``: (n, m)) over the boxes
    ``lower``, ``upper`` (k, m) of :func:`box_decomposition`: (n,)."""
    return _log_ehvi(np.asarray(mean, dtype=np.float64), np.asarray(var, dtype=np.float64), lower, upper, False)[0]


def _log_ehvi(mean: Array, var: Array, lower: Array, upper: Array, grad: bool) -> tuple[Array, Array, Array]:
    """log EHVI (n,) and, with ``grad``, its derivatives wrt each mean and standard deviation (n, m)."""
    n, m = mean.shape
    sigma = np.sqrt(var)
    value = np.empty(n)
    g_mu, g_sigma = (np.empty((n, m)), np.empty((n, m))) if grad else (np.empty(0), np.empty(0))
    step = max(1, _CHUNK // max(1, len(lower) * m))
    lo, up = lower[None, :, :], upper[None, :, :]
    for start in range(0, n, step):
        rows = slice(start, min(n, start + step))
        log_psi, d_mu, d_sigma = _log_psi(mean[rows, None, :], sigma[rows, None, :], lo, up, grad)
        total = log_psi.sum(axis=2)  # (rows, k): log of each box's expected share
        value[rows] = scipy.special.logsumexp(total, axis=1)
        if grad:
            w = np.exp(total - value[rows][:, None])
            g_mu[rows] = np.einsum("ik,ikj->ij", w, d_mu)
            g_sigma[rows] = np.einsum("ik,ikj->ij", w, d_sigma)
    return value, g_mu, g_sigma


class LogEHVI(Acquisition):
    """log EHVI over a feasible front plus log P(feasible), for :func:`~tunelab.samplers._gp.maximize_log_ei`.

    Args:
        objectives: one GP per objective (losses, in their own units).
        front: (p, m) the feasible front (and believed values of pending points) in those units.
        reference: (m,) the reference point.
        constraints: (GP of a constraint's standardised margin, its threshold) pairs.
        hint_X, hint_y: points worth perturbing for candidates, best (lowest ``hint_y``) first.
        improve: False when no trial is feasible yet: the acquisition is log P(feasible) alone.
    """

    def __init__(
        self,
        objectives: Sequence[GaussianProcess],
        front: Array,
        reference: Array,
        constraints: Sequence[tuple[GaussianProcess, float]],
        hint_X: Array,
        hint_y: Array,
        improve: bool = True,
    ) -> None:
        first = objectives[0]
        self.cat_sizes, self.numeric = first.cat_sizes, first.numeric
        self.objectives = list(objectives)
        self.constraints = list(constraints)
        self.improve = improve or not self.constraints
        self.lower, self.upper = box_decomposition(front, reference)
        self.X, self.y = np.asarray(hint_X, dtype=np.float64), np.asarray(hint_y, dtype=np.float64)

    def values(self, Xq: Array) -> Array:
        Xq = np.atleast_2d(np.asarray(Xq, dtype=np.float64))
        out = np.zeros(len(Xq))
        if self.improve:
            stats = [g.predict(Xq) for g in self.objectives]
            mean = np.stack([s[0] for s in stats], axis=1)
            var = np.stack([s[1] for s in stats], axis=1)
            out += _log_ehvi(mean, var, self.lower, self.upper, False)[0]
        log_p = np.zeros(len(Xq))
        known = np.ones(len(Xq), dtype=bool)
        for gp, threshold in self.constraints:
            mu, var = gp.predict(Xq)
            log_p += scipy.special.log_ndtr((threshold - mu) / np.sqrt(var))
            known &= var <= KNOWN_VARIANCE_SHARE * float(gp.params.signal_variance)
        if self.constraints:
            out += log_p + FEASIBLE_PENALTY * np.where(known, np.minimum(0.0, log_p - math.log(FEASIBLE_TARGET)), 0.0)
        return out

    def values_and_grad(self, Xq: Array) -> tuple[Array, Array]:
        Xq = np.atleast_2d(np.asarray(Xq, dtype=np.float64))
        n_num = int(self.numeric.sum())
        out, grad = np.zeros(len(Xq)), np.zeros((len(Xq), n_num))
        if self.improve:
            parts = [g._predict_with_grad(Xq) for g in self.objectives]
            mean = np.stack([p[0] for p in parts], axis=1)
            var = np.stack([p[1] for p in parts], axis=1)
            value, g_mu, g_sigma = _log_ehvi(mean, var, self.lower, self.upper, True)
            out += value
            sigma = np.sqrt(var)
            for j, (_, _, d_mean, d_var) in enumerate(parts):
                grad += g_mu[:, j, None] * d_mean + (g_sigma[:, j] / (2.0 * sigma[:, j]))[:, None] * d_var
        log_p, g_p = np.zeros(len(Xq)), np.zeros((len(Xq), n_num))
        known = np.ones(len(Xq), dtype=bool)
        for gp, threshold in self.constraints:
            mu, var, d_mean, d_var = gp._predict_with_grad(Xq)
            known &= var <= KNOWN_VARIANCE_SHARE * float(gp.params.signal_variance)
            sigma = np.sqrt(var)
            z = (threshold - mu) / sigma
            log_cdf = scipy.special.log_ndtr(z)
            log_p += log_cdf
            ratio = np.exp(-0.5 * z * z - _LOG_SQRT_2PI - log_cdf)  # phi(z) / Phi(z)
            g_p += (-ratio / sigma)[:, None] * d_mean + (-ratio * z / sigma / (2.0 * sigma))[:, None] * d_var
        if self.constraints:
            short = (log_p < math.log(FEASIBLE_TARGET)) & known
            out += log_p + FEASIBLE_PENALTY * np.where(short, log_p - math.log(FEASIBLE_TARGET), 0.0)
            grad += g_p * (1.0 + FEASIBLE_PENALTY * short)[:, None]
        return out, grad
