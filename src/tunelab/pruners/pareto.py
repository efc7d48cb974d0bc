"""Early stopping for studies with several objectives: Pareto ASHA and a Pareto median rule.

A single-objective pruner compares one number per step. With several objectives (accuracy and
latency, say) a trial is only "worse" than others when it is *dominated*: no better anywhere,
worse somewhere. Both pruners here read every objective's metric at the step just reported,
from the storage (so any number of workers decide alike), and store their evidence as the
single-metric pruners do.

- :class:`ParetoSuccessiveHalvingPruner` (multi-objective ASHA, as in Schmucker et al. 2021 and
  Syne Tune's MOASHA): at each rung a trial goes on when it ranks within the best
  ``1/reduction_factor`` of the trials that reached the rung, ranked by non-dominated front, ties
  in a front broken by crowding distance (the least crowded, i.e. the most distinct
  trade-offs, first; a front's two ends first, or with ``end_crowding="gap"`` by their gap).
- :class:`ParetoMedianPruner`: a trial stops when its best value so far in *every* objective is
  worse than the median of the complete trials at that step: the median point dominates it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from tunelab.errors import ConfigError
from tunelab.history import History
from tunelab.multiobjective import crowding_distance, losses, non_dominated_sort, unit_scales
from tunelab.pruners.asha import _check_eta, rung_after, rung_judged, rung_steps
from tunelab.pruners.base import NO_DECISION, PruneDecision, Pruner, check_int, last_step, previous_step
from tunelab.pruners.median import due_after, interval_due
from tunelab.records import TrialState, check_direction


class ParetoPruner(Pruner):
    """Base class of the pruners that read several metrics at once (one per objective).

    Args:
        metrics: the reported metric of each objective, e.g. ``["val_acc", "latency_ms"]``.
            None: the study's objective names (``create_study(objective_names=...)``), which the
            objective then reports under those names: ``trial.report(epoch, val_acc=..., latency_ms=...)``.
        directions: each metric's direction. None: the study's directions.
    """

    multi_metric = True

    def __init__(self, metrics: Sequence[str] | None = None, directions: Sequence[str] | None = None) -> None:
        super().__init__(None, None)
        owner = type(self).__name__
        if metrics is not None:
            metrics = list(metrics) if isinstance(metrics, Iterable) and not isinstance(metrics, str) else metrics
            if not isinstance(metrics, list) or not all(isinstance(m, str) and m for m in metrics) or len(metrics) < 2:
                raise ConfigError(f"{owner}(metrics=...) must name two or more reported metrics, e.g. "
                                  f"['val_acc', 'latency_ms'], got {metrics!r}")
            if len(set(metrics)) != len(metrics):
                raise ConfigError(f"{owner}(metrics=...) names a metric twice: {list(metrics)!r}")
        if directions is not None:
            if isinstance(directions, str) or not isinstance(directions, Iterable):
                raise ConfigError(f"{owner}(directions=...) must be a list such as ['maximize', 'minimize'], "
                                  f"got {directions!r}")
            directions = [check_direction(d) for d in directions]
            if metrics is None or len(directions) != len(metrics):
                raise ConfigError(f"{owner}(directions=...) needs metrics=... of the same length (one direction per "
                                  f"metric), got metrics={metrics!r}, directions={list(directions)!r}")
        self.metrics: tuple[str, ...] | None = None if metrics is None else tuple(metrics)
        self.directions: tuple[str, ...] | None = None if directions is None else tuple(directions)

    def check_objectives(self, n_objectives: int) -> None:
        """ConfigError when the metrics this pruner names cannot take their directions from a study with
        ``n_objectives`` objectives (checked when the study is created or loaded, before any trial)."""
        if self.metrics is not None and self.directions is None and len(self.metrics) != n_objectives:
            raise ConfigError(
                f"{type(self).__name__} compares {len(self.metrics)} metrics {list(self.metrics)} but the study has "
                f"{n_objectives} objective(s): give directions=[...] (one per metric)"
            )

    def resolve(
        self, objective_names: Sequence[str], directions: Sequence[str]
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The metrics and directions this pruner compares in a study with these objectives."""
        metrics = self.metrics if self.metrics is not None else tuple(objective_names)
        if self.directions is not None:
            return metrics, self.directions
        self.check_objectives(len(directions))
        return metrics, tuple(directions)

    def metric_of(self, reported: Mapping[str, float], direction: str | None = None) -> str:
        raise ConfigError(f"{type(self).__name__} compares several metrics: ask decide_many, not metric_of")

    def decide(self, history: History, number: int, metric: str, curve: Mapping[int, float]) -> PruneDecision | None:
        raise ConfigError(f"{type(self).__name__} compares several metrics: ask decide_many, not decide")

    def decide_many(
        self, history: History, number: int, metrics: Sequence[str], directions: Sequence[str],
        curves: Mapping[str, Mapping[int, float]],
    ) -> PruneDecision | None:
        """A decision to stop trial ``number`` now, from every metric's curve so far; None: go on.

        ``curves[m]`` is the trial's own curve of metric ``m``; the step just reported is the last one.
        """
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"name": type(self).__name__,
                "metrics": None if self.metrics is None else list(self.metrics),
                "directions": None if self.directions is None else list(self.directions)}


def _vectors_at(history: History, metrics: Sequence[str], step: int,
                states: tuple[TrialState, ...] | None = None) -> dict[int, list[float]]:
    """Each trial's values of every metric at ``step`` (only trials that reported all of them there)."""
    by_trial: dict[int, dict[str, float]] = {}
    for m in metrics:
        for p in history.metric_at(m, [step]):
            if states is None or p.state in states:
                by_trial.setdefault(p.number, {})[m] = p.value
    return {n: [v[m] for m in metrics] for n, v in by_trial.items() if len(v) == len(metrics)}


END_CROWDING = ("gap", "inf")


def gap_crowding(points: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """The crowding distance of each row of one front (losses) with finite ends: along each objective,
    an interior row adds its two gaps to its neighbours and an end row twice its one gap, each gap
    divided by that objective's range ``high - low`` (of all the rows being ranked, not only this
    front's). A front of one row gets 1.0.

    With Deb's ``inf`` at the ends, the row with the smallest value of any objective always ranks first
    in its front, however bad its other values; here an end ranks by how distinct it is, like any row.
    """
    p = np.asarray(points, dtype=float)
    out = np.zeros(len(p))
    if len(p) == 1:
        return out + 1.0
    scales = unit_scales(np.vstack([p, low, high]))  # exact: gaps over spans without overflow (1e200)
    p, low, high = p / scales, np.asarray(low) / scales, np.asarray(high) / scales
    for k in range(p.shape[1]):
        order = np.argsort(p[:, k], kind="stable")
        span = high[k] - low[k]
        gaps = np.diff(p[order, k]) / span if span > 0 else np.zeros(len(p) - 1)
        out[order[0]] += 2.0 * gaps[0]
        out[order[-1]] += 2.0 * gaps[-1]
        if len(p) > 2:
            out[order[1:-1]] += gaps[:-1] + gaps[1:]
    return out


def pareto_order(points: np.ndarray, end_crowding: str = "inf") -> tuple[np.ndarray, np.ndarray]:
    """Each row's (front, crowding distance): front 0 is non-dominated, -1 marks a row with a NaN;
    crowding inside the row's front. ``points`` are losses, shape (n, m). ``end_crowding``: ``"inf"``,
    Deb's crowding distance (``inf`` at a front's ends); ``"gap"``, :func:`gap_crowding`.

    Rows rank by front, then by crowding distance descending (the most distinct trade-offs first).
    """
    n = len(points)
    finite = np.all(np.isfinite(points), axis=1)
    front_of = np.full(n, -1, dtype=int)
    crowd = np.zeros(n)
    idx = np.flatnonzero(finite)
    if len(idx):
        low, high = points[idx].min(axis=0), points[idx].max(axis=0)
        for k, front in enumerate(non_dominated_sort(points[idx])):
            members = idx[front]
            front_of[members] = k
            if end_crowding == "gap":
                crowd[members] = gap_crowding(points[members], low, high)
            else:
                crowd[members] = crowding_distance(points[members])
    return front_of, crowd


def _key(front: int, crowd: float) -> tuple[float, float]:
    """The sort key of a row of :func:`pareto_order`: smaller is better; NaN rows last."""
    return (np.inf if front < 0 else float(front), -crowd)


def _shown(metrics: Sequence[str], values: Sequence[float]) -> str:
    return ", ".join(f"{m} {v:.6g}" for m, v in zip(metrics, values, strict=True))


class ParetoSuccessiveHalvingPruner(ParetoPruner):
    """Multi-objective ASHA: at each rung, keep the trials in the best non-dominated fronts.

    Rungs sit at ``min_resource * reduction_factor ** k`` as in
    :class:`~tunelab.pruners.SuccessiveHalvingPruner`. When a trial reports every objective's
    metric at a rung, it goes on only if it ranks within the best ``max(1, n // reduction_factor)``
    of the ``n`` trials that reached the rung (itself included), ranked by front (non-dominated
    sorting) and, inside a front, by crowding distance (isolated trade-offs first).

    Args:
        min_resource: the first rung's step.
        reduction_factor: eta; each rung keeps 1/eta of the trials.
        max_resource: the full budget; no rung at or past it. None: no cap.
        min_early_stopping_rate: skip this many of the first rungs.
        end_crowding: how the two ends of a front rank inside it. ``"inf"`` (the default):
            NSGA-II's infinite crowding distance, the ends always rank first in their front, so the
            trial with the smallest value of any objective -- a parameter count that training never
            changes, say -- is promoted whenever its front is, however bad its other values.
            ``"gap"``: by their gap to their neighbour along each objective, counted twice (an
            interior trial counts its two gaps), over the rung's range (:func:`gap_crowding`), so an
            end goes first only when it is the most distinct trade-off. Measured on
            benchmarks/multifidelity_mo.py (benchmarks/README.md, 2026-12-06): with a random sampler
            ``"gap"`` reached random search's hypervolume sooner in 23 of 30 seeds and later in 5
            (median 0.41 against 0.43 of random's epochs), but with the default (GP) sampler later in
            13 of 15 (0.46 against 0.26); hence the default.
        metrics: see :class:`ParetoPruner`.
        directions: see :class:`ParetoPruner`.

    Examples:
        >>> import tunelab
        >>> def objective(trial):
        ...     width = trial.suggest_int("width", 1, 64, log=True)
        ...     lr = trial.suggest_float("lr", 1e-4, 1.0, log=True)
        ...     error = 1.0
        ...     for epoch in range(1, 10):
        ...         error *= 1.0 - min(lr, 0.5) * width / 64   # wider and faster: better
        ...         trial.report(epoch, error=error, params=width * 1000.0)
        ...         if trial.should_prune():
        ...             raise tunelab.TrialPruned()
        ...     return error, width * 1000.0
        >>> study = tunelab.create_study(
        ...     directions=["minimize", "minimize"], objective_names=["error", "params"], seed=0,
        ...     pruner=tunelab.ParetoSuccessiveHalvingPruner(min_resource=1, reduction_factor=3))
        >>> study.optimize(objective, n_trials=30)
        >>> len(study.get_trials([tunelab.TrialState.PRUNED])) > 5
        True
    """

    def __init__(
        self,
        *,
        min_resource: int = 1,
        reduction_factor: int = 3,
        max_resource: int | None = None,
        min_early_stopping_rate: int = 0,
        end_crowding: str = "inf",
        metrics: Sequence[str] | None = None,
        directions: Sequence[str] | None = None,
    ) -> None:
        super().__init__(metrics, directions)
        owner = "ParetoSuccessiveHalvingPruner"
        if end_crowding not in END_CROWDING:
            raise ConfigError(f"{owner}(end_crowding=...) must be 'gap' (the ends of a front rank by their gap "
                              f"to their neighbour) or 'inf' (they rank first), got {end_crowding!r}")
        self.end_crowding = end_crowding
        self.min_resource = check_int(owner, "min_resource", min_resource, 1)
        self.reduction_factor = _check_eta(owner, reduction_factor)
        if max_resource is not None:
            check_int(owner, "max_resource", max_resource, min_resource)
        self.max_resource = max_resource
        self.min_early_stopping_rate = check_int(owner, "min_early_stopping_rate", min_early_stopping_rate, 0)

    def rungs(self, up_to: int) -> list[int]:
        """The rung steps at or below ``up_to``."""
        return rung_steps(self.min_resource, self.reduction_factor, self.max_resource,
                          self.min_early_stopping_rate, up_to)

    def next_decision(self, history: History, number: int, previous: int) -> int:
        """The first rung after ``previous``."""
        return rung_after(self.min_resource, self.reduction_factor, self.max_resource,
                          self.min_early_stopping_rate, previous)

    def decide_many(
        self, history: History, number: int, metrics: Sequence[str], directions: Sequence[str],
        curves: Mapping[str, Mapping[int, float]],
    ) -> PruneDecision | None:
        step = last_step(curves[metrics[0]])
        if rung_judged(self.rungs(up_to=step), curves[metrics[0]], step) is None:
            return None
        if any(step not in curves[m] for m in metrics):
            return None
        own = [curves[m][step] for m in metrics]
        vectors = _vectors_at(history, metrics, step)
        vectors[number] = own
        numbers = sorted(vectors)
        points = losses([vectors[n] for n in numbers], directions)
        front_of, crowd = pareto_order(points, self.end_crowding)
        keys = sorted(_key(int(f), float(c)) for f, c in zip(front_of, crowd, strict=True))
        n_keep = max(1, len(numbers) // self.reduction_factor)
        me = numbers.index(number)
        front, mine = int(front_of[me]), _key(int(front_of[me]), float(crowd[me]))
        if mine <= keys[n_keep - 1]:  # ties with the last kept trial are kept, as ASHA keeps equal values
            return None
        rank = keys.index(mine) + 1
        where = f"front {front + 1}" if front >= 0 else "a NaN value"
        return PruneDecision(
            rule=f"pareto asha rung at step {step}",
            detail=f"{_shown(metrics, own)} ranks {rank} of {len(numbers)} at step {step} ({where}), outside "
                   f"the best {n_keep} (reduction factor {self.reduction_factor})",
            evidence={"step": step, "values": dict(zip(metrics, own, strict=True)), "rank": rank,
                      "front": front + 1 if front >= 0 else None, "kept": n_keep, "competing": len(numbers)},
        )

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(), "min_resource": self.min_resource, "reduction_factor": self.reduction_factor,
            "max_resource": self.max_resource, "min_early_stopping_rate": self.min_early_stopping_rate,
            "end_crowding": self.end_crowding,
        }


class ParetoMedianPruner(ParetoPruner):
    """The median rule for several objectives: stop a trial whose best value so far in every
    objective is worse than the median of the COMPLETE trials at that step.

    The median point (per objective) then dominates the trial's best-so-far point: it is behind
    the typical finished trial on every trade-off at once. A trial that is worse in accuracy but
    better in latency goes on.

    Args:
        n_startup_trials: COMPLETE trials needed before anything is stopped.
        n_warmup_steps: steps below this never stop.
        interval_steps: decide only every this many steps after the warm-up (at the first report at or
            past each such step).
        min_trials: COMPLETE trials with every metric at the step needed to decide there.
        metrics: see :class:`ParetoPruner`.
        directions: see :class:`ParetoPruner`.

    Examples:
        >>> import tunelab
        >>> study = tunelab.create_study(
        ...     directions=["maximize", "minimize"], objective_names=["val_acc", "latency_ms"],
        ...     pruner=tunelab.ParetoMedianPruner(n_startup_trials=2))
        >>> for acc, latency in [(0.9, 10.0), (0.8, 12.0)]:
        ...     trial = study.ask()
        ...     trial.report(0, val_acc=acc, latency_ms=latency)
        ...     _ = study.tell(trial, (acc, latency))
        >>> slower_and_worse, faster_but_worse = study.ask(), study.ask()
        >>> slower_and_worse.report(0, val_acc=0.5, latency_ms=20.0)
        >>> faster_but_worse.report(0, val_acc=0.5, latency_ms=5.0)
        >>> slower_and_worse.should_prune(), faster_but_worse.should_prune()
        (True, False)
    """

    def __init__(
        self,
        *,
        n_startup_trials: int = 5,
        n_warmup_steps: int = 0,
        interval_steps: int = 1,
        min_trials: int = 1,
        metrics: Sequence[str] | None = None,
        directions: Sequence[str] | None = None,
    ) -> None:
        super().__init__(metrics, directions)
        owner = "ParetoMedianPruner"
        self.n_startup_trials = check_int(owner, "n_startup_trials", n_startup_trials, 0)
        self.n_warmup_steps = check_int(owner, "n_warmup_steps", n_warmup_steps, 0)
        self.interval_steps = check_int(owner, "interval_steps", interval_steps, 1)
        self.min_trials = check_int(owner, "min_trials", min_trials, 1)

    def next_decision(self, history: History, number: int, previous: int) -> int:
        """The next pruning step after ``previous``; none before ``n_startup_trials`` complete."""
        if history.count((TrialState.COMPLETE,)) < self.n_startup_trials:
            return NO_DECISION
        return due_after(previous, self.n_warmup_steps, self.interval_steps)

    def decide_many(
        self, history: History, number: int, metrics: Sequence[str], directions: Sequence[str],
        curves: Mapping[str, Mapping[int, float]],
    ) -> PruneDecision | None:
        curve = curves[metrics[0]]
        step = last_step(curve)
        # the first report at or past each pruning step, as MedianPruner (reports at odd steps, interval_steps=2)
        if not interval_due(step, previous_step(curve), self.n_warmup_steps, self.interval_steps):
            return None
        if history.count((TrialState.COMPLETE,)) < self.n_startup_trials:
            return None
        others = [v for n, v in _vectors_at(history, metrics, step, (TrialState.COMPLETE,)).items()
                  if n != number and all(np.isfinite(v))]
        if len(others) < self.min_trials:
            return None
        best = []
        for m, d in zip(metrics, directions, strict=True):
            own = [v for v in curves[m].values() if np.isfinite(v)]
            if not own:
                return PruneDecision(rule=f"pareto median at step {step}", detail=f"{m} is NaN at every step so far")
            best.append(min(own) if d == "minimize" else max(own))
        median = np.median(np.asarray(others, dtype=float), axis=0)
        mine, cut = losses([best], directions)[0], losses([median], directions)[0]
        if not np.all(mine > cut):
            return None
        return PruneDecision(
            rule=f"pareto median at step {step}",
            detail=f"best so far {_shown(metrics, best)} is worse in every objective than the median "
                   f"{_shown(metrics, list(median))} of {len(others)} complete trials at step {step}",
            evidence={"step": step, "best": dict(zip(metrics, best, strict=True)),
                      "median": dict(zip(metrics, map(float, median), strict=True)), "complete": len(others)},
        )

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(), "n_startup_trials": self.n_startup_trials, "n_warmup_steps": self.n_warmup_steps,
            "interval_steps": self.interval_steps, "min_trials": self.min_trials,
        }
