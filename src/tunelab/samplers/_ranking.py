"""One loss per finished trial, for models that fit one number: what "better" means with
constraints and with several objectives.

- One objective, no constraint: the value as a loss (negated when maximised).
- Constraints (Deb's constraint-domination, as NSGA-II ranks): every feasible trial is better than
  every infeasible one; infeasible trials rank by their total violation, placed just above the
  worst feasible loss (so a GP sees a penalty of the feasible range's size, not a cliff); before any
  trial is feasible, the loss is the violation itself and the search heads for feasibility.
- Several objectives (multi-objective TPE, Ozaki et al. 2020): a trial's non-dominated front, and
  inside a front its hypervolume contribution with two objectives (the trade-offs that add most
  come first); with more, the order of NSGA-III's reference-direction niching (spread evenly).
  The loss is ``front + 0.5 * (1 - share)``:
  only the order is meaningful, which is all TPE's good/bad split reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tunelab.multiobjective import losses, non_dominated_sort, unit_scales


def scalar_losses(values: np.ndarray, violation: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """One loss per row (smaller is better; NaN where a value is missing or not finite).

    Args:
        values: (n, m) objective values, NaN where not measured.
        violation: (n,) total constraint violation, 0 for a feasible trial.
        directions: the m objectives' directions.
    """
    L = losses(values, directions)
    n = len(L)
    y = np.full(n, np.nan)
    measured = np.all(np.isfinite(L), axis=1) if L.shape[1] else np.zeros(n, dtype=bool)
    feasible = measured & ~(violation > 0)
    infeasible = measured & (violation > 0)
    if feasible.any():
        y[feasible] = L[feasible, 0] if L.shape[1] == 1 else pareto_scores(L[feasible])
    if infeasible.any():
        v = violation[infeasible]
        if feasible.any():
            lo, hi = float(np.min(y[feasible])), float(np.max(y[feasible]))
            span = hi - lo if hi > lo else max(1.0, abs(hi))
            y[infeasible] = hi + span * (0.1 + v / float(np.max(v)))
        else:
            y[infeasible] = v
    return y


def pareto_scores(points: np.ndarray) -> np.ndarray:
    """``front + 0.5 * (1 - share)`` for each row of ``points`` (finite losses, shape (n, m)), where
    ``share`` is the row's hypervolume contribution (or crowding distance) relative to its front's
    largest: the first front's most valuable trade-off scores 0."""
    out = np.empty(len(points))
    if not len(points):
        return out
    points = points / unit_scales(points)  # exact; shares are ratios: the same, without overflow (1e200)
    span = np.ptp(points, axis=0)
    reference = points.max(axis=0) + 0.1 * np.where(span > 0, span, 1.0)
    for k, front in enumerate(non_dominated_sort(points)):
        out[front] = k + 0.5 * (1.0 - _shares(points[front], reference))
    return out


def _shares(front: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each point's worth to its front, in [0, 1], 1 for the most valuable (ties: equal): its exact
    hypervolume contribution with two objectives, its crowding distance with more (exact
    contributions cost too much there to compute at every proposal)."""
    if len(front) <= 2:
        return np.ones(len(front))
    if front.shape[1] == 2:
        worth = contributions_2d(front, reference)
    else:
        worth = spread_order(front)
    top = float(worth.max())
    return worth / top if top > 0 else np.ones(len(front))


def spread_order(front: np.ndarray) -> np.ndarray:
    """Worth by NSGA-III's niching (three objectives or more): the order in which reference-direction
    niching would keep the front's points, first = most worth, so a good set taken from the top is
    spread evenly over the front (exact hypervolume contributions cost too much here; crowding
    distance favours the front's extremes)."""
    from tunelab.samplers.nsga3 import das_dennis, default_divisions, niche_select

    n, m = front.shape
    references = das_dennis(m, default_divisions(m, max(n, m)))
    order = niche_select(front, np.empty(0, dtype=int), np.arange(n), n, references, np.random.default_rng(0))
    worth = np.empty(n)
    worth[order] = np.arange(n, 0, -1, dtype=float)
    return worth


def contributions_2d(front: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The exact hypervolume contribution of each point of a two-objective front (losses; no point
    dominates another), bounded by ``reference``: O(n log n)."""
    order = np.argsort(front[:, 0], kind="stable")
    x, y = front[order, 0], front[order, 1]
    right = np.append(x[1:], reference[0])  # the next point's first loss (the reference after the last)
    above = np.insert(y[:-1], 0, reference[1])  # the previous point's second loss (the reference before the first)
    out = np.empty(len(front))
    out[order] = np.maximum(right - x, 0.0) * np.maximum(above - y, 0.0)
    return out
