"""NSGA-II (Deb et al. 2002): a genetic algorithm for several objectives, define-by-run.

Trials are grouped into generations by number (``population_size`` trials each). The first
generation is random. Every later trial plans its parameters when it starts: the population is
the ``population_size`` best COMPLETE trials of the earlier generations (elitist selection over
all of them: non-dominated fronts, then crowding distance; with constraints, feasible trials
first and infeasible ones by their total violation, Deb's constraint-domination), two parents
are picked by binary tournaments (lower front, then larger crowding distance), and the child is
their simulated binary crossover (SBX) with polynomial mutation in unit coordinates; categorical
and boolean parameters take uniform crossover and a random choice on mutation.

Each trial draws from its own generator, seeded by (study seed, trial number), so parallel
workers plan distinct children without talking, and a sequential run is reproducible. A
parameter the parents never had (define-by-run, or a new branch of a conditional space) is drawn
at random.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from tunelab.distributions import Bool, Categorical, Distribution, ParamValue
from tunelab.errors import ConfigError
from tunelab.history import History
from tunelab.multiobjective import crowding_distance, losses, non_dominated_sort
from tunelab.records import FrozenTrial
from tunelab.samplers.base import Sampler, SamplingContext

RECORD_KEY = "nsga2"
"""The trial system attribute where the sampler records the trial's generation and parents."""


class NSGAIISampler(Sampler):
    """NSGA-II for studies with several objectives (and constraints); works for one objective too.

    Args:
        population_size: trials per generation, and survivors kept from one to the next.
        mutation_prob: probability that a parameter mutates; default ``1 / number of parameters``.
        crossover_prob: probability that a child is a crossover of its parents (else a copy of the
            first parent, mutated).
        crossover_eta: the distribution index of SBX (larger: children closer to their parents).
        mutation_eta: the distribution index of polynomial mutation (larger: smaller steps).

    Examples:
        Two objectives, the default population of 50 (random for the first 50 trials):

        >>> import tunelab
        >>> def objective(trial):
        ...     x = trial.suggest_float("x", 0.0, 1.0)
        ...     y = trial.suggest_float("y", 0.0, 1.0)
        ...     return x, (1.0 + y) * (1.0 - x ** 0.5)
        >>> study = tunelab.create_study(directions=["minimize", "minimize"], seed=0,
        ...                              sampler=tunelab.NSGAIISampler(population_size=10))
        >>> study.optimize(objective, n_trials=40)
        >>> front = study.best_trials
        >>> len(front) > 3, all(t.state.value == "COMPLETE" for t in front)
        (True, True)
    """

    replayable = False
    not_replayable_because = "its parents are whichever earlier trials have finished"

    def __init__(
        self,
        population_size: int = 50,
        mutation_prob: float | None = None,
        crossover_prob: float = 0.9,
        crossover_eta: float = 20.0,
        mutation_eta: float = 20.0,
    ) -> None:
        if isinstance(population_size, bool) or not isinstance(population_size, int) or population_size < 2:
            raise ConfigError(f"NSGAIISampler(population_size=...) must be an integer >= 2, got {population_size!r}")
        if mutation_prob is not None and not _probability(mutation_prob):
            raise ConfigError(f"NSGAIISampler(mutation_prob=...) must be in [0, 1] or None, got {mutation_prob!r}")
        if not _probability(crossover_prob):
            raise ConfigError(f"NSGAIISampler(crossover_prob=...) must be in [0, 1], got {crossover_prob!r}")
        for what, eta in (("crossover_eta", crossover_eta), ("mutation_eta", mutation_eta)):
            if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not math.isfinite(eta) or eta < 0:
                raise ConfigError(f"NSGAIISampler({what}=...) must be a number >= 0, got {eta!r}")
        self.population_size = population_size
        self.mutation_prob = None if mutation_prob is None else float(mutation_prob)
        self.crossover_prob = float(crossover_prob)
        self.crossover_eta = float(crossover_eta)
        self.mutation_eta = float(mutation_eta)

    def describe(self) -> dict[str, Any]:
        return {
            "name": type(self).__name__,
            "population_size": self.population_size,
            "mutation_prob": self.mutation_prob,
            "crossover_prob": self.crossover_prob,
            "crossover_eta": self.crossover_eta,
            "mutation_eta": self.mutation_eta,
        }

    # -- the protocol ----------------------------------------------------------------------
    def plan(self, history: History, trial: SamplingContext) -> dict[str, ParamValue]:
        generation = trial.number // self.population_size
        if generation == 0:
            return {}
        candidates = [t for t in history.completed_values() if t.number < generation * self.population_size]
        if len(candidates) < 2:
            return {}
        population, rank, crowd = self._select(candidates, history.directions, trial.seed, generation)
        rng = trial.rng(RECORD_KEY)
        first = _tournament(rng, rank, crowd)
        second = _tournament(rng, rank, crowd)
        if second == first and len(population) > 1:  # two distinct parents when there are two
            second = (first + 1 + int(rng.integers(len(population) - 1))) % len(population)
        p1, p2 = population[first], population[second]
        child = self._child(rng, p1, p2)
        trial.record(RECORD_KEY, {"generation": generation, "parents": [p1.number, p2.number]})
        return child

    def sample(self, history: History, trial: SamplingContext, name: str, distribution: Distribution) -> ParamValue:
        return distribution.sample(trial.rng(name))

    def _select(
        self, candidates: Sequence[FrozenTrial], directions: Sequence[str], seed: int, generation: int
    ) -> tuple[list[FrozenTrial], np.ndarray, np.ndarray]:
        """The parents' population: NSGA-II's survivors (fronts, then crowding distance)."""
        return select_population(candidates, directions, self.population_size)

    # -- variation ---------------------------------------------------------------------------
    def _child(self, rng: np.random.Generator, p1: FrozenTrial, p2: FrozenTrial) -> dict[str, ParamValue]:
        names = sorted(set(p1.params) | set(p2.params))
        p_mut = self.mutation_prob if self.mutation_prob is not None else 1.0 / max(len(names), 1)
        cross = bool(rng.random() < self.crossover_prob)
        child: dict[str, ParamValue] = {}
        for name in names:
            # A parameter only one parent has is inherited from it (it may be conditional).
            a = p1 if name in p1.params else p2
            b = p2 if name in p2.params else p1
            dist = a.distributions.get(name)
            if dist is None:
                continue
            va, vb = a.params[name], b.params[name]
            if isinstance(dist, (Categorical, Bool)):
                value = vb if cross and rng.random() < 0.5 else va
                if rng.random() < p_mut:
                    value = dist.sample(rng)
                child[name] = value
                continue
            try:
                ua, ub = float(dist.to_unit(va)), float(dist.to_unit(vb))
            except (TypeError, ValueError):  # a value the distribution cannot read: draw afresh
                child[name] = dist.sample(rng)
                continue
            u = _sbx(rng, ua, ub, self.crossover_eta) if cross else ua
            if rng.random() < p_mut:
                u = _polynomial_mutation(rng, u, self.mutation_eta)
            child[name] = dist.from_unit(min(max(u, 0.0), 1.0))
        return child


def select_population(
    trials: Sequence[FrozenTrial], directions: Sequence[str], size: int,
    cut: Callable[[np.ndarray, list[int], np.ndarray, int], np.ndarray] | None = None,
) -> tuple[list[FrozenTrial], np.ndarray, np.ndarray]:
    """NSGA-II's survivors among ``trials``: feasible fronts first (the last one cut by crowding
    distance, or by ``cut``), then infeasible trials by total violation. Returns them with their
    rank (front index; infeasible trials rank after every front) and crowding distance.

    ``cut(points, chosen, front, room)`` picks ``room`` of the last front's rows (indices into
    ``front``) given the losses of every feasible trial and the rows ``chosen`` so far (NSGA-III's
    reference-point niching); the crowding distance is then 0 for every survivor.
    """
    feasible = [t for t in trials if t.feasible]
    infeasible = sorted((t for t in trials if not t.feasible), key=lambda t: (t.violation, t.number))
    chosen: list[FrozenTrial] = []
    rows: list[int] = []
    ranks: list[float] = []
    crowds: list[float] = []
    if feasible:
        points = losses([t.values for t in feasible], directions)  # type: ignore[misc]
        fronts = non_dominated_sort(points)
        for r, front in enumerate(fronts):
            room = size - len(chosen)
            if cut is not None and len(front) > room:
                take_rows = front[cut(points, rows, front, room)]
                crowd = np.zeros(len(take_rows))
            else:
                crowd_all = crowding_distance(points[front])
                order = np.argsort(-crowd_all, kind="stable")[:room]
                take_rows = front[order]
                crowd = crowd_all[order] if cut is None else np.zeros(len(order))
            chosen.extend(feasible[i] for i in take_rows)
            rows.extend(int(i) for i in take_rows)
            ranks.extend([float(r)] * len(take_rows))
            crowds.extend(crowd.tolist())
            if len(chosen) >= size:
                break
        last_rank = float(len(fronts))
    else:
        last_rank = 0.0
    for i, t in enumerate(infeasible[: size - len(chosen)]):
        chosen.append(t)
        ranks.append(last_rank + i)  # each violation level is its own, worse, rank
        crowds.append(0.0)
    return chosen, np.array(ranks), np.array(crowds)


def _tournament(rng: np.random.Generator, rank: np.ndarray, crowd: np.ndarray) -> int:
    """The winner of a binary tournament: lower rank, then larger crowding distance."""
    i, j = (int(x) for x in rng.integers(len(rank), size=2))
    if rank[i] != rank[j]:
        return i if rank[i] < rank[j] else j
    if crowd[i] != crowd[j]:
        return i if crowd[i] > crowd[j] else j
    return i


def _sbx(rng: np.random.Generator, a: float, b: float, eta: float) -> float:
    """One child of simulated binary crossover of ``a`` and ``b`` in [0, 1] (Deb and Agrawal 1995),
    with the bounded spread of Deb's NSGA-II code; each variable crosses with probability 0.5."""
    if rng.random() >= 0.5 or abs(a - b) < 1e-14:
        return a
    lo, hi = min(a, b), max(a, b)
    u = float(rng.random())
    children = []
    for beta_edge in (1.0 + 2.0 * lo / (hi - lo), 1.0 + 2.0 * (1.0 - hi) / (hi - lo)):
        alpha = 2.0 - beta_edge ** -(eta + 1.0)
        if u <= 1.0 / alpha:
            beta_q = (u * alpha) ** (1.0 / (eta + 1.0))
        else:
            beta_q = (1.0 / (2.0 - u * alpha)) ** (1.0 / (eta + 1.0))
        children.append(beta_q)
    c1 = 0.5 * ((lo + hi) - children[0] * (hi - lo))
    c2 = 0.5 * ((lo + hi) + children[1] * (hi - lo))
    child = float(c1 if rng.random() < 0.5 else c2)
    return min(max(child, 0.0), 1.0)


def _polynomial_mutation(rng: np.random.Generator, x: float, eta: float) -> float:
    """Deb's polynomial mutation of ``x`` in [0, 1] (the bounded form of NSGA-II's code)."""
    u = float(rng.random())
    power = 1.0 / (eta + 1.0)
    if u < 0.5:
        xy = 1.0 - x
        val = 2.0 * u + (1.0 - 2.0 * u) * xy ** (eta + 1.0)
        delta = val ** power - 1.0
    else:
        xy = x
        val = 2.0 * (1.0 - u) + 2.0 * (u - 0.5) * xy ** (eta + 1.0)
        delta = 1.0 - val ** power
    return min(max(float(x + delta), 0.0), 1.0)


def _probability(p: object) -> bool:
    return not isinstance(p, bool) and isinstance(p, (int, float)) and 0.0 <= float(p) <= 1.0


def parents_of(trial: FrozenTrial) -> list[int]:
    """The numbers of the parents NSGA-II recorded for ``trial`` (empty for a random one)."""
    record = trial.system_attrs.get(RECORD_KEY)
    return list(record.get("parents", [])) if isinstance(record, Mapping) else []
