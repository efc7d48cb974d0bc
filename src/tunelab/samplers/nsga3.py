"""NSGA-III (Deb and Jain 2014): NSGA-II with reference points, for three objectives or more.

With many objectives most trials are non-dominated, and crowding distance stops telling a
spread-out front from a clumped one. NSGA-III keeps NSGA-II's generations, fronts and variation
(SBX crossover, polynomial mutation; see :mod:`tunelab.samplers.nsga`) and changes one thing:
the last front that fits only in part is cut by *niching* on a set of reference directions
spread evenly over the objectives' simplex (Das and Dennis's lattice). The objectives are
normalised (ideal point, extreme points, the hyperplane through them), each trial is associated
with its nearest reference direction, and survivors are taken from the least crowded directions
first, so the population covers the whole front.

The niching draws ties from a generator seeded by (study seed, generation): every trial of a
generation, in any worker, sees the same population.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np

from tunelab.errors import ConfigError
from tunelab.multiobjective import unit_scales
from tunelab.records import FrozenTrial
from tunelab.samplers.nsga import NSGAIISampler, select_population


class NSGAIIISampler(NSGAIISampler):
    """NSGA-III for studies with three or more objectives (works for two as well).

    Args:
        population_size: trials per generation, and survivors kept from one to the next.
        dividing_parameter: divisions of each objective's axis in the reference lattice
            (``C(m + p - 1, p)`` points for ``m`` objectives). None: the largest that gives at most
            ``population_size`` points (8 for 3 objectives and 50 trials: 45 points).
        reference_points: your own reference directions, shape (k, objectives), non-negative, in the
            objectives' order (in the sense of losses: a maximised objective counts negated). Replaces
            the lattice.
        mutation_prob: see :class:`~tunelab.samplers.NSGAIISampler`.
        crossover_prob: see :class:`~tunelab.samplers.NSGAIISampler`.
        crossover_eta: see :class:`~tunelab.samplers.NSGAIISampler`.
        mutation_eta: see :class:`~tunelab.samplers.NSGAIISampler`.

    Examples:
        Three objectives (DTLZ2's sphere: the front is the positive octant of the unit sphere):

        >>> import math, tunelab
        >>> def objective(trial):
        ...     a, b = trial.suggest_float("a", 0.0, 1.0), trial.suggest_float("b", 0.0, 1.0)
        ...     g = sum((trial.suggest_float(f"x{i}", 0.0, 1.0) - 0.5) ** 2 for i in range(3))
        ...     c, s = math.cos, math.sin
        ...     h = math.pi / 2
        ...     return ((1 + g) * c(a * h) * c(b * h), (1 + g) * c(a * h) * s(b * h), (1 + g) * s(a * h))
        >>> study = tunelab.create_study(directions=["minimize"] * 3, seed=0,
        ...                              sampler=tunelab.NSGAIIISampler(population_size=20))
        >>> study.optimize(objective, n_trials=80)
        >>> len(study.best_trials) > 5
        True
    """

    def __init__(
        self,
        population_size: int = 50,
        dividing_parameter: int | None = None,
        reference_points: Sequence[Sequence[float]] | np.ndarray | None = None,
        mutation_prob: float | None = None,
        crossover_prob: float = 0.9,
        crossover_eta: float = 20.0,
        mutation_eta: float = 20.0,
    ) -> None:
        super().__init__(population_size, mutation_prob, crossover_prob, crossover_eta, mutation_eta)
        if dividing_parameter is not None and (
            isinstance(dividing_parameter, bool) or not isinstance(dividing_parameter, int) or dividing_parameter < 1
        ):
            raise ConfigError(
                f"NSGAIIISampler(dividing_parameter=...) must be an integer >= 1 or None, got {dividing_parameter!r}"
            )
        self.dividing_parameter = dividing_parameter
        self.reference_points = None if reference_points is None else _check_points(reference_points)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(), "dividing_parameter": self.dividing_parameter,
            "reference_points": None if self.reference_points is None else self.reference_points.tolist(),
        }

    def check_objectives(self, n_objectives: int) -> None:
        self.references(n_objectives)  # reference points of another dimension: refused before any trial

    def references(self, n_objectives: int) -> np.ndarray:
        """The reference directions for ``n_objectives`` objectives, shape (k, n_objectives)."""
        if self.reference_points is not None:
            if self.reference_points.shape[1] != n_objectives:
                raise ConfigError(
                    f"NSGAIIISampler(reference_points=...) has {self.reference_points.shape[1]} coordinates per "
                    f"point, but the study has {n_objectives} objectives"
                )
            return self.reference_points
        p = self.dividing_parameter or default_divisions(n_objectives, self.population_size)
        return das_dennis(n_objectives, p)

    def _select(
        self, candidates: Sequence[FrozenTrial], directions: Sequence[str], seed: int, generation: int
    ) -> tuple[list[FrozenTrial], np.ndarray, np.ndarray]:
        references = self.references(len(directions))
        rng = np.random.default_rng([seed, generation, 3])

        def cut(points: np.ndarray, chosen: list[int], front: np.ndarray, room: int) -> np.ndarray:
            return niche_select(points, np.asarray(chosen, dtype=int), front, room, references, rng)

        return select_population(candidates, directions, self.population_size, cut)


def das_dennis(n_objectives: int, divisions: int) -> np.ndarray:
    """Das and Dennis's evenly spread points on the unit simplex: every vector of ``n_objectives``
    multiples of ``1 / divisions`` that sum to 1, shape (C(m + p - 1, p), m)."""
    m, p = n_objectives, divisions
    points = []
    for bars in combinations(range(p + m - 1), m - 1):  # stars and bars
        edges = (-1, *bars, p + m - 1)
        points.append([edges[i + 1] - edges[i] - 1 for i in range(m)])
    return np.array(points, dtype=float) / p


def default_divisions(n_objectives: int, population_size: int) -> int:
    """The largest number of divisions whose lattice has at most ``population_size`` points (at least 1)."""
    if n_objectives < 2:
        return 1  # one objective: the lattice is one point however it is divided
    p = 1
    while math.comb(n_objectives + p, p + 1) <= population_size:
        p += 1
    return p


def niche_select(
    points: np.ndarray, chosen: np.ndarray, front: np.ndarray, room: int, references: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """``room`` positions in ``front`` (indices into it) chosen by NSGA-III's niching.

    Args:
        points: losses of every candidate row, shape (n, m).
        chosen: rows already kept (the earlier fronts).
        front: the rows of the front being cut.
        room: how many of them to keep.
        references: reference directions, shape (k, m).
        rng: breaks ties between equally crowded directions and picks members of crowded ones.
    """
    members = np.concatenate([chosen, front]).astype(int)
    normalized = normalize(points[members])
    nearest, distance = associate(normalized, references)
    counts = np.bincount(nearest[: len(chosen)], minlength=len(references))
    front_nearest, front_distance = nearest[len(chosen):], distance[len(chosen):]
    open_refs = np.ones(len(references), dtype=bool)
    left = np.ones(len(front), dtype=bool)
    picked: list[int] = []
    while len(picked) < room:
        low = counts[open_refs].min()
        candidates = np.flatnonzero(open_refs & (counts == low))
        j = int(rng.choice(candidates))
        mine = np.flatnonzero(left & (front_nearest == j))
        if not len(mine):
            open_refs[j] = False
            continue
        k = int(mine[np.argmin(front_distance[mine])]) if counts[j] == 0 else int(rng.choice(mine))
        picked.append(k)
        left[k] = False
        counts[j] += 1
    return np.array(picked, dtype=int)


def normalize(points: np.ndarray) -> np.ndarray:
    """Losses translated to the ideal point and divided by the intercepts of the hyperplane through
    the extreme points (the per-objective spread where that plane is degenerate)."""
    points = points / unit_scales(points, above=2.0**500)  # exact; the result is scale-free (no overflow)
    shifted = points - points.min(axis=0)
    m = points.shape[1]
    weights = np.full((m, m), 1e-6) + np.eye(m) * (1 - 1e-6)
    extremes = np.array([shifted[np.argmin(np.max(shifted / w, axis=1))] for w in weights])
    spread = shifted.max(axis=0)
    try:
        plane = np.linalg.solve(extremes, np.ones(m))
        intercepts = 1.0 / plane
        if not np.all(np.isfinite(intercepts)) or np.any(intercepts <= 1e-10):
            intercepts = spread
    except np.linalg.LinAlgError:
        intercepts = spread
    intercepts = np.where(intercepts > 1e-10, intercepts, 1.0)
    normalized: np.ndarray = shifted / intercepts
    return normalized


def associate(points: np.ndarray, references: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each point's nearest reference direction (by perpendicular distance to its line through the
    origin) and that distance."""
    unit = references / np.linalg.norm(references, axis=1, keepdims=True)
    along = points @ unit.T  # (n, k): the projection's length on each direction
    distance = np.sqrt(np.maximum((points**2).sum(axis=1, keepdims=True) - along**2, 0.0))
    nearest = np.argmin(distance, axis=1)
    return nearest, distance[np.arange(len(points)), nearest]


def _check_points(points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    try:
        array = np.asarray(points, dtype=float)
    except (TypeError, ValueError):
        array = np.empty((0, 0))
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 2 or not np.all(np.isfinite(array)) \
            or np.any(array < 0) or np.any(array.sum(axis=1) <= 0):
        raise ConfigError(
            "NSGAIIISampler(reference_points=...) must be a list of points with one non-negative coordinate per "
            "objective (not all zero), e.g. [[1, 0, 0], [0.5, 0.5, 0], ...]; or None for an even lattice"
        )
    return array
