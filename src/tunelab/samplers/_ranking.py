"""One loss per finished trial, for models that fit one number: what "better" means with
constraints and with several objectives.

- One objective, no constraint: the value as a loss (negated when maximised).
- Constraints (Deb's constraint-domination, as NSGA-II ranks): every feasible trial is better than
  every infeasible one; infeasible trials rank by their total violation, placed just above the
  worst feasible loss (so a GP sees a penalty of the feasible range's size, not a cliff); before any
  trial is feasible, the loss is the violation itself and the search heads for feasibility.
- Several objectives (multi-objective TPE, Ozaki et al. 2020): a trial's non-dominated front, and
  inside a front its hypervolume contribution (the trade-offs that add most come first; crowding
  distance on fronts too large for exact contributions). The loss is ``front + 0.5 * (1 - share)``:
  only the order is meaningful, which is all TPE's good/bad split reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tunelab.multiobjective import crowding_distance, hypervolume, losses, non_dominated_sort

MAX_EXACT_FRONT = 40
"""Fronts up to this size get exact hypervolume contributions; larger ones crowding distance."""


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
    span = np.ptp(points, axis=0)
    reference = points.max(axis=0) + 0.1 * np.where(span > 0, span, 1.0)
    for k, front in enumerate(non_dominated_sort(points)):
        out[front] = k + 0.5 * (1.0 - _shares(points[front], reference))
    return out


def _shares(front: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each point's worth to its front, in [0, 1], 1 for the most valuable (ties: equal)."""
    if len(front) <= 2:
        return np.ones(len(front))
    if len(front) <= MAX_EXACT_FRONT:
        total = hypervolume(front, reference)
        worth = np.array([total - hypervolume(np.delete(front, i, axis=0), reference) for i in range(len(front))])
    else:
        worth = crowding_distance(front)
        finite = np.isfinite(worth)
        worth = np.where(finite, worth, (worth[finite].max() if finite.any() else 0.0) * 2 + 1.0)
    top = float(worth.max())
    return worth / top if top > 0 else np.ones(len(front))
