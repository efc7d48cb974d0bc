"""Warm starts: what the model-based samplers learn from earlier studies.

``create_study(..., warm_start=["cnn-2026-10"])`` hands the samplers the finished trials of other
studies (:class:`~tunelab.history.SourceStudy`). They inform the model and are never trials of the
new study. This module turns them into rows of the new study's space and into models:

- :func:`source_observations`: a source's COMPLETE trials as rows of the target space (a source
  may have a subset of the parameters: missing ones are inactive; a row with a value outside the
  target's range is left out) and losses (its own direction);
- the Gaussian process (:class:`WarmGP`): one GP per source, fitted once, gives a *prior mean*
  for the target's GP: ``m(x) = sum_s a_s mu_s(x)``, in the target's warped and standardised
  units. The weights ``a_s`` start at an even share (nothing is known of the target yet) and are
  fitted to the target's own trials as they come (an affine link: non-negative least squares of the
  centred values on the centred predictions, the intercept left to the residual), so a source whose
  optimum is shifted or whose scale or offset differs is rescaled, and one that turns out unrelated
  (no positive rank agreement) drops to weight 0: the model is then the ordinary GP. The target's
  GP models what the sources do not explain (the residual), with the sources' kernel while it has
  fewer than five trials of its own.
  Each source may also be *shifted* (:func:`fit_shift`): ``mu_s(x - delta_s)``, ``delta_s`` fitted
  to the target's trials from :data:`SHIFT_FIT_AT` of them on (and more than half as many as the
  coordinates it moves) and kept only when it explains them clearly better than no shift, so a target whose
  optimum moved (more data, a perturbed problem) is searched where the source's optimum now lies,
  not where it was. From :data:`OWN_MODEL_AT`
  trials on, where the sources rank the trials of the basin the search is in (those nearest the
  incumbent) worse than the target's own warped GP does (:func:`source_fails_locally`), that GP
  proposes inside the basin's box (:func:`trust_region`): the sources found the basin, but a
  source's model is too coarse to place the optimum inside it, and it keeps its weight elsewhere;
  once the trials nearest the incumbent lie in a small box and a quadratic explains them (a smooth,
  noise-free basin), its minimum is the next trial (:func:`quadratic_step`): no GP of all the trials
  resolves a minimum below its noise floor;
- TPE: source trials join the good and bad estimators with a weight that shrinks as the target's
  own trials accumulate and vanishes for a source without positive rank agreement
  (:func:`source_weights`).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from tunelab.errors import ConfigError
from tunelab.records import FrozenTrial, TrialState
from tunelab.samplers._ranking import scalar_losses

MAX_SOURCE_ROWS = 300
"""Rows of one source a GP is fitted on: the best 100 and 200 more drawn evenly (the fit is cubic)."""
MIN_SOURCE_ROWS = 3
"""A source with fewer usable trials informs nothing."""
RESIDUAL_FIT_AT = 5
"""Target trials from which the residual GP's kernel is fitted rather than taken from the sources."""
AGREEMENT_FLOOR = 0.1
"""A source whose predictions agree with the target's values less than this (Spearman's rank
correlation, from 5 target trials on) gets weight 0."""


SHIFT_FIT_AT = 4
"""Target trials from which an input shift of each source is fitted (:func:`fit_shift`)."""
MAX_SHIFT = 0.3
"""The largest shift of a source, per numeric coordinate of the unit cube."""
SHIFT_MIN_GAIN = 1.0
"""How much better (in log posterior) a shift must explain the target's trials than none to be kept."""
SHIFT_PRIOR_SD = 0.1
"""The shift's prior standard deviation per coordinate: small moves are expected, large ones need evidence."""
SHIFT_RSS_FLOOR = 1e-3
"""The share of the target's variance below which a closer fit is no evidence for a shift."""
PLAIN_UNITS_MARGIN = 0.5
"""The sources are linked to the target in the objective's standardised units, not warped ones, when
that leaves at most this share of the warped link's unexplained variance."""


OWN_MODEL_AT = 8
"""Target trials from which each source is compared with the target's own model (see :func:`source_weights`)."""
OWN_MARGIN = 0.2
"""How much worse than the target's own model (in rank correlation) a source may rank before it is silenced."""


@dataclass(frozen=True)
class SourceData:
    """One source study's trials as rows of the target's space (see :func:`source_observations`)."""

    name: str
    X: np.ndarray  # (n, d), NaN where the source lacks the parameter
    y: np.ndarray  # (n,) losses: smaller is better


def source_observations(
    name: str, direction: str, trials: Sequence[FrozenTrial], names: Sequence[str], encode_unclipped: object
) -> SourceData:
    """``trials``' COMPLETE rows in the target space: ``encode_unclipped(params)`` gives a row with
    values outside [0, 1] where a value lies outside the target's range (those rows are left out)."""
    rows, values, violations = [], [], []
    for t in trials:
        if t.state != TrialState.COMPLETE or t.value is None or not math.isfinite(t.value):
            continue
        if not any(n in t.params for n in names):
            continue
        row = encode_unclipped(t.params)  # type: ignore[operator]
        given = np.array([n in t.params for n in names], dtype=bool)
        if np.isnan(row[given]).any():  # a choice the target does not have
            continue
        present = ~np.isnan(row)
        if np.any((row[present] < -1e-9) | (row[present] > 1 + 1e-9)):  # outside the target's range
            continue
        rows.append(row)
        values.append(float(t.value))
        violations.append(t.violation)
    X = np.array(rows, dtype=float).reshape(len(rows), len(names))
    # Losses as the target ranks its own trials: a trial that broke one of the source's constraints ranks
    # after every feasible one (by its violation), never by a value it was not allowed to reach.
    y = scalar_losses(np.array(values, dtype=float).reshape(-1, 1), np.array(violations, dtype=float), [direction])
    return SourceData(name, X, y)


def subsample(data: SourceData) -> SourceData:
    """At most :data:`MAX_SOURCE_ROWS` rows: the best 100, then rows spread over the rest (a fixed
    choice for a given source, so every worker fits the same model)."""
    n = len(data.y)
    if n <= MAX_SOURCE_ROWS:
        return data
    order = np.argsort(data.y, kind="stable")
    rest = order[100:]
    rng = np.random.default_rng(zlib.crc32(data.name.encode()))
    keep = np.concatenate([order[:100], np.sort(rng.choice(rest, size=MAX_SOURCE_ROWS - 100, replace=False))])
    return SourceData(data.name, data.X[keep], data.y[keep])


class MeanModel(Protocol):
    """What :func:`fit_shift` needs of a source's GP."""

    numeric: np.ndarray

    def _predict_with_grad(self, Xq: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]: ...


def shifted_query(X: np.ndarray, shift: np.ndarray, numeric: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where a source moved by ``shift`` is read for the rows of ``X``: ``x - shift`` kept inside the
    unit cube (a point moved past the source's edge reads the edge, not the source GP's reversion to
    its mean, which would make the target's edges look unexplored), and (n, d_numeric) ones where
    the numeric coordinate stayed inside (the gradient wrt ``x``), zeros where it was clipped."""
    moved = X - shift
    numeric_moved = moved[:, numeric]
    inside = ((numeric_moved >= 0.0) & (numeric_moved <= 1.0)).astype(float)
    moved[:, numeric] = np.clip(numeric_moved, 0.0, 1.0)
    return moved, inside


@dataclass(frozen=True)
class ShiftFit:
    """A source moved onto the target's trials (:func:`fit_shift`)."""

    shift: np.ndarray  # (d,), zero on categorical coordinates and when no shift was kept
    unexplained: float  # share of the better half's variance the affine fit leaves (1 - R^2 there)


def fit_shift(source: MeanModel, source_X: np.ndarray, source_y: np.ndarray, X: np.ndarray,
              y: np.ndarray) -> ShiftFit:
    """The input shift ``delta`` (zero on categorical coordinates) for which the source's mean at
    ``x - delta``, up to an affine map ``a mu + b`` (``a >= 0``), best explains the target's values
    ``y`` at ``X``; zeros when no shift explains them clearly better than none (see
    :data:`SHIFT_MIN_GAIN`) or when there are too few trials to tell: fewer than :data:`SHIFT_FIT_AT`,
    or no more than half the numeric coordinates (with so few, some shift fits any values: on 10-d
    Rosenbrock 4-5 trials were matched to 1e-3 by a shift that jumped from trial to trial). Also how
    much of the variance of the better half of ``y`` (where the search goes; on a heavy-tailed
    objective a few bad trials would otherwise make any fit look good) that fit leaves unexplained.

    The fit is a maximum a posteriori one: ``n/2 log(RSS(delta)/n) + |delta|^2 / (2 sd^2)`` with
    ``sd =`` :data:`SHIFT_PRIOR_SD`, from a start at no shift and starts that move the source's best
    trials (``source_X``, ``source_y``) onto the target's best.
    """
    from scipy.optimize import minimize

    numeric = np.asarray(source.numeric, dtype=bool)
    k, n = int(numeric.sum()), len(y)
    none = np.zeros(X.shape[1])
    if n < 4:
        return ShiftFit(none, 1.0)
    yc = y - y.mean()
    syy = float(yc @ yc)
    if syy <= 1e-12:
        return ShiftFit(none, 1.0)
    floor = SHIFT_RSS_FLOOR * syy  # below this, a better fit is the source model's noise, not a move

    def rss_and_grad(shift: np.ndarray) -> tuple[float, np.ndarray]:
        full = none.copy()
        full[numeric] = shift
        moved, inside = shifted_query(X, full, numeric)
        mu, _, d_mu, _ = source._predict_with_grad(moved)
        d_mu = d_mu * inside
        mc = mu - mu.mean()
        smm = float(mc @ mc)
        a = float(mc @ yc) / smm if smm > 1e-12 else 0.0
        if a <= 0.0:
            return syy, np.zeros(k)
        r = yc - a * mc
        rss = float(r @ r)
        # d rss / d shift = sum_i 2 r_i a d mu / dx (x_i - shift): mu(x - s) moves by -grad per unit s,
        # and a, b at their optimum contribute nothing (envelope theorem).
        grad = 2.0 * a * (r @ d_mu)
        return rss, np.asarray(grad, dtype=float)

    def objective(shift: np.ndarray) -> tuple[float, np.ndarray]:
        rss, grad = rss_and_grad(shift)
        rss = rss + floor
        value = 0.5 * n * math.log(rss / n) + float(shift @ shift) / (2 * SHIFT_PRIOR_SD**2)
        return value, 0.5 * n * grad / rss + shift / SHIFT_PRIOR_SD**2

    def unexplained(shift: np.ndarray) -> float:
        """1 - R^2 of the fit on all trials, measured on the better half of them."""
        full = none.copy()
        full[numeric] = shift
        mu = source._predict_with_grad(shifted_query(X, full, numeric)[0])[0]
        mc = mu - mu.mean()
        smm = float(mc @ mc)
        a = max(0.0, float(mc @ yc) / smm) if smm > 1e-12 else 0.0
        good = y <= np.median(y)
        r = (yc - a * mc)[good]
        yg = y[good] - y[good].mean()
        return float((r - r.mean()) @ (r - r.mean())) / max(float(yg @ yg), 1e-12)

    if k == 0 or n < SHIFT_FIT_AT or 2 * n <= k:
        return ShiftFit(none, unexplained(np.zeros(k)))
    base = objective(np.zeros(k))[0]
    starts = [np.zeros(k)]
    best_target = X[np.argsort(y, kind="stable")[:3]][:, numeric]
    best_source = np.nan_to_num(source_X[np.argsort(source_y, kind="stable")[:3]][:, numeric], nan=0.5)
    for t in best_target:
        for s_ in best_source:
            starts.append(np.clip(t - s_, -MAX_SHIFT, MAX_SHIFT))
    bounds = [(-MAX_SHIFT, MAX_SHIFT)] * k
    best_value, best_shift = base, np.zeros(k)
    for start in starts:
        res = minimize(objective, start, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": 60})
        if np.isfinite(res.fun) and res.fun < best_value:
            best_value, best_shift = float(res.fun), np.asarray(res.x, dtype=float)
    if base - best_value <= SHIFT_MIN_GAIN:
        best_shift = np.zeros(k)
    out = none.copy()
    out[numeric] = best_shift
    return ShiftFit(np.asarray(out, dtype=float), unexplained(best_shift))


def nearest_values(source: SourceData, X: np.ndarray) -> np.ndarray:
    """The source's value at its trial nearest to each row of ``X`` (absent coordinates at 0.5): a
    cheap prediction, for measuring whether the source ranks the target's trials as they came out."""
    if len(X) == 0 or len(source.y) == 0:
        return np.zeros(len(X))
    Xs, Xt = np.nan_to_num(source.X, nan=0.5), np.nan_to_num(X, nan=0.5)
    d = ((Xt[:, None, :] - Xs[None, :, :]) ** 2).sum(axis=2)
    return np.asarray(source.y[np.argmin(d, axis=1)], dtype=float)


def rank_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of ``a`` and ``b`` (0 when either is constant)."""
    if len(a) < 2:
        return 0.0
    ra, rb = _ranks(a), _ranks(b)
    sa, sb = ra.std(), rb.std()
    if sa <= 0 or sb <= 0:
        return 0.0
    return float(np.mean((ra - ra.mean()) * (rb - rb.mean())) / (sa * sb))


def _ranks(v: np.ndarray) -> np.ndarray:
    order = np.argsort(v, kind="stable")
    ranks = np.empty(len(v))
    ranks[order] = np.arange(len(v), dtype=float)
    return ranks


def source_weights(predictions: np.ndarray, y: np.ndarray, own: np.ndarray | None = None) -> np.ndarray:
    """Weights of the sources' prior means, ``predictions`` (s, n) at the target's ``n`` trials with
    values ``y`` (n,), both in standardised units.

    With fewer than 3 target trials every source gets an even share. From 3 on, the link is affine,
    ``y ~ b + sum_s w_s mu_s`` with ``w >= 0``: non-negative least squares of the centred values on
    the centred predictions (the intercept ``b`` is the residual's mean, see
    :meth:`~tunelab.samplers.gp.GPSampler._propose_warm`). A link through the origin would read the
    target's values, standardised on its own trials (mean 0), against the source's predictions
    there, all low because those trials sit where the source is good: a source that ranked them
    perfectly got a weight near 0 and the search lost it from the third trial on (Hartmann-6 with a
    moved optimum: 0.02-0.17 at rank agreement 0.8-1.0).

    From :data:`RESIDUAL_FIT_AT` trials on, a source whose rank agreement with the target is below
    :data:`AGREEMENT_FLOOR` gets 0. ``own``: the target's own model's leave-one-out predictions;
    from :data:`OWN_MODEL_AT` trials on, a source that ranks the target's trials worse than that
    model does fades out (to 0 when :data:`OWN_MARGIN` worse): a related source whose optimum moved
    helps the first trials, then stops holding the search where it was.
    """
    s, n = predictions.shape
    if s == 0:
        return np.zeros(0)
    if n < 3:
        return np.full(s, 1.0 / s)
    from scipy.optimize import nnls

    weights, _ = nnls((predictions - predictions.mean(axis=1, keepdims=True)).T, y - y.mean())
    if n >= RESIDUAL_FIT_AT:
        own_agreement = rank_agreement(own, y) if own is not None and n >= OWN_MODEL_AT else None
        for i in range(s):
            agreement = rank_agreement(predictions[i], y)
            if agreement < AGREEMENT_FLOOR:
                weights[i] = 0.0
            elif own_agreement is not None:
                weights[i] *= min(1.0, max(0.0, 1.0 + (agreement - own_agreement) / OWN_MARGIN))
    return np.asarray(np.minimum(weights, 3.0), dtype=float)


LOCAL_SHARE = 3
"""The basin the search is in: the ``max(LOCAL_MIN, n // LOCAL_SHARE)`` trials nearest the incumbent."""
LOCAL_MIN = 5
"""The fewest trials of the basin the local check (:func:`source_fails_locally`) ranks."""
LOCAL_MARGIN = 0.2
"""How much better (in rank correlation) the target's own model must rank the basin's trials than the
sources for the own model to take over there."""
REGION_TRIALS = 3
"""The trust region around the incumbent is the box of this many trials of the basin nearest it."""
MIN_REGION = 0.02
"""The smallest half-width of the trust region around the incumbent (unit cube, per numeric coordinate)."""
MAX_REGION = 0.25
"""The largest half-width of the trust region around the incumbent."""


def local_trials(X: np.ndarray, y: np.ndarray, numeric: np.ndarray) -> np.ndarray:
    """Indices of the trials of the basin the search is in: the ``max(LOCAL_MIN, n // LOCAL_SHARE)``
    nearest the incumbent (the best trial, itself included; numeric coordinates by Euclidean distance
    in the unit cube, a categorical mismatch counts 1), nearest first."""
    n = len(y)
    k = min(n, max(LOCAL_MIN, n // LOCAL_SHARE))
    best = X[int(np.argmin(y))]
    num = np.asarray(numeric, dtype=bool)
    d2 = ((X[:, num] - best[num]) ** 2).sum(axis=1) + (X[:, ~num] != best[~num]).sum(axis=1)
    return np.argsort(d2, kind="stable")[:k]


def source_fails_locally(prior: np.ndarray, own: np.ndarray, y: np.ndarray, local: np.ndarray) -> bool:
    """Whether the target's own model (leave-one-out means ``own``) ranks the basin's trials
    (``local``) better than the sources' prior mean ``prior`` does, by :data:`LOCAL_MARGIN`: the
    sources still rank the whole space (so they keep their weight), but not where the search is."""
    if len(local) < LOCAL_MIN:
        return False
    yl = y[local]
    return rank_agreement(own[local], yl) > rank_agreement(prior[local], yl) + LOCAL_MARGIN


def trust_region(X: np.ndarray, local: np.ndarray, numeric: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre (the incumbent, ``X[local[0]]``) and per-coordinate half-widths of the box spanned by
    the :data:`REGION_TRIALS` of the basin's trials nearest it, within [:data:`MIN_REGION`,
    :data:`MAX_REGION`] (zero on categorical coordinates: they are not bounded)."""
    centre = X[local[0]].copy()
    num = np.asarray(numeric, dtype=bool)
    half = np.zeros(X.shape[1])
    half[num] = np.clip(np.abs(X[local[:REGION_TRIALS]][:, num] - centre[num]).max(axis=0), MIN_REGION, MAX_REGION)
    return centre, half


QUADRATIC_REGION = 0.1
"""The largest distance (unit cube, per coordinate) from the incumbent of the trials :func:`quadratic_step`
fits: a basin, not the whole space."""
QUADRATIC_FIT = 0.999
"""The share of the variance of the basin's values a quadratic must explain for :func:`quadratic_step` to
step to its minimum: a smooth, noise-free objective, not a noisy one."""


def quadratic_step(X: np.ndarray, y: np.ndarray, numeric: np.ndarray) -> np.ndarray | None:
    """The minimum of a quadratic fitted to the trials nearest the incumbent, or None.

    Once the sources have led the search into a basin, a GP of all the trials cannot place the minimum
    more finely than its noise floor (values standardised over the whole range). Near a smooth minimum
    the objective is a quadratic: fitted by least squares to the ``(d + 1)(d + 2) / 2 + d`` trials nearest
    the incumbent (``d`` numeric coordinates, no categorical ones; all within :data:`QUADRATIC_REGION` of
    it), in those trials' own units, and
    explaining at least :data:`QUADRATIC_FIT` of their variance with a positive definite curvature, its
    minimum is the next trial, moved no further than those trials lie from the incumbent. None when a
    coordinate is categorical, there are too few trials, the fit is worse (a noisy or non-smooth
    objective) or the step would repeat a trial.
    """
    num = np.asarray(numeric, dtype=bool)
    n, d = X.shape
    if d == 0 or not num.all():
        return None
    m = (d + 1) * (d + 2) // 2 + d
    if n < m:
        return None
    best = X[int(np.argmin(y))]
    near = np.argsort(((X - best) ** 2).sum(axis=1), kind="stable")[:m]
    span = np.abs(X[near] - best).max(axis=0)
    if not (span > 0).all() or span.max() > QUADRATIC_REGION:
        return None
    Z = (X[near] - best) / span
    v = y[near] - y[near].min()
    pairs = [(i, j) for i in range(d) for j in range(i, d)]
    features = np.column_stack([np.ones(m), Z, *(Z[:, i] * Z[:, j] for i, j in pairs)])
    coef, *_ = np.linalg.lstsq(features, v, rcond=None)
    total = float(((v - v.mean()) ** 2).sum())
    if total <= 0 or float(((features @ coef - v) ** 2).sum()) > (1 - QUADRATIC_FIT) * total:
        return None
    g = coef[1:d + 1]
    H = np.zeros((d, d))
    for c, (i, j) in zip(coef[d + 1:], pairs, strict=True):
        H[i, j] += c
        H[j, i] += c
    if np.linalg.eigvalsh(H).min() <= 0:
        return None
    step = -np.linalg.solve(H, g)
    step /= max(1.0, float(np.abs(step).max()))  # no further than the fitted trials lie
    x = np.clip(best + step * span, 0.0, 1.0)
    if np.abs(X - x).max(axis=1).min() < 1e-9:
        return None
    return np.asarray(x, dtype=float)


class LogTerm(Protocol):
    """A term added to the log acquisition (as :class:`tunelab.samplers._gp.LogPrior`)."""

    def __call__(self, X: np.ndarray) -> np.ndarray: ...

    def gradient(self, X: np.ndarray) -> np.ndarray: ...


class TrustRegionPenalty:
    """A log-acquisition term (a :class:`~tunelab.samplers._gp.LogPrior`) that keeps proposals in a
    box: ``-PENALTY * sum_i max(0, |x_i - c_i| - h_i)^2`` over the numeric coordinates, plus an
    optional other term (the parameters' priors)."""

    PENALTY = 1e5

    def __init__(self, centre: np.ndarray, half: np.ndarray, numeric: np.ndarray,
                 other: LogTerm | None = None) -> None:
        self.num = np.flatnonzero(np.asarray(numeric, dtype=bool))
        self.centre, self.half = centre[self.num], half[self.num]
        self.other = other

    def _excess(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        diff = X[:, self.num] - self.centre
        return np.maximum(np.abs(diff) - self.half, 0.0), np.sign(diff)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        excess, _ = self._excess(X)
        out = -self.PENALTY * (excess**2).sum(axis=1)
        return np.asarray(out if self.other is None else out + self.other(X), dtype=float)

    def gradient(self, X: np.ndarray) -> np.ndarray:
        """The gradient wrt the numeric coordinates, (m, d_numeric)."""
        excess, sign = self._excess(X)
        grad = -2.0 * self.PENALTY * excess * sign
        return np.asarray(grad if self.other is None else grad + self.other.gradient(X), dtype=float)


def tpe_source_weight(agreement: float, n_target: int, n_source: int) -> float:
    """The weight of one source trial in TPE's estimators: an even share against the target's own
    trials at first, shrinking as they accumulate (``1 / (1 + n_target / 5)``), times the rank
    agreement once it is measured (5 target trials), and spread over the source's trials so a big
    source does not drown the target: ``n_source`` rows weigh at most as much as 10 target trials."""
    trust = 1.0 if n_target < RESIDUAL_FIT_AT else max(0.0, agreement)
    if trust <= 0.0 or n_source == 0:
        return 0.0
    return trust / (1.0 + n_target / 5.0) * min(1.0, 10.0 / n_source)


def check_warm_start(value: object) -> list[tuple[str, str | None]]:
    """``create_study(warm_start=...)`` as ``[(study name, storage URL or None), ...]``."""
    if value is None:
        return []
    if isinstance(value, str) or (isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], str)
                                  and "://" in value[1]):  # one name, or one (name, URL) pair
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(
            f"warm_start must be a list of study names (or (name, storage URL) pairs), got {value!r}"
        )
    out: list[tuple[str, str | None]] = []
    for item in value:
        if isinstance(item, str) and item.strip():
            source: tuple[str, str | None] = (item, None)
        elif (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) and item[0].strip()
              and isinstance(item[1], str) and item[1].strip()):
            source = (item[0], item[1])
        else:
            raise ConfigError(
                f"warm_start: {item!r} is neither a study name nor a (name, storage URL) pair; e.g. "
                "warm_start=['cnn-2026-10', ('mlp', 'sqlite:///old.db')]"
            )
        if source in out:  # its trials would count twice
            raise ConfigError(f"warm_start names {item!r} twice; name each source study once")
        out.append(source)
    return out
