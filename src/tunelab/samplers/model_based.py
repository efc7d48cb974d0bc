"""What every model-based sampler shares: the space in unit coordinates, the observations, the loop.

A model-based sampler (TPE, a Gaussian process, ...) sees the trials so far as points in
a box and proposes the next point. This module does everything around the model:

- :class:`EncodedSpace` maps parameters to a row of numbers and back. A numeric parameter
  becomes one coordinate in [0, 1] (its :meth:`~tunelab.distributions.Distribution.to_unit`
  value: log scale for log parameters, cell centres for integers and steps); a categorical
  or boolean parameter becomes its choice index (0, 1, ..., k-1). A parameter a trial does
  not have (inactive under its condition, or not suggested) is NaN.
- :func:`collect_observations` reads the history: finished trials become rows ``X`` and
  losses ``y`` (smaller is better, whatever the study's direction); failed and pruned trials
  are dropped or imputed as bad; running trials of other workers become ``pending`` rows.
  Under a pruner, :func:`collect_predicted_observations` (a learning-curve pruner's predicted
  final values) or :func:`collect_rung_observations` (BOHB's rung rule) read them instead.
- :class:`ModelBasedSampler` runs the loop: a quasi-random start-up design (a scrambled
  Sobol sequence indexed by trial number, so parallel workers never collide), then the
  subclass's :meth:`~ModelBasedSampler.propose` on the observations. The planned values
  are recorded in the trial at once, so that other workers see them as pending; the
  points of lower-numbered trials still being planned at this moment are proposed first
  and counted as pending too (:meth:`ModelBasedSampler._plan_ahead`).

A new model-based sampler implements ``propose(space, observations, rng) -> row`` and
nothing else.
"""

from __future__ import annotations

import math
import warnings
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from tunelab.distributions import Bool, Categorical, Distribution, Float, Int, ParamValue
from tunelab.errors import ConfigError
from tunelab.history import History
from tunelab.records import FrozenTrial, TrialState, predicted_final
from tunelab.samplers._prior import STARTUP_PRIOR_SHARE, SpacePrior, startup_trials
from tunelab.samplers._ranking import scalar_losses
from tunelab.samplers.base import Sampler, SamplingContext
from tunelab.samplers.transfer import MIN_SOURCE_ROWS, SourceData, source_observations, subsample
from tunelab.space import Conditional, SpaceEntry, unwrap

PLANNED_KEY = "planned"
"""System attribute holding the values a model-based sampler planned for a trial."""

FAILED_POLICIES = ("worst", "ignore")


class EncodedSpace:
    """An ordered set of parameters and the map between their values and a row of numbers.

    Attributes:
        names: parameter names, in row order.
        distributions: their distributions.
        conditions: each parameter's condition (None: always active).
        cat_sizes: per coordinate, 0 for a numeric parameter, else its number of choices.
    """

    def __init__(self, entries: Mapping[str, SpaceEntry]) -> None:
        self.names: tuple[str, ...] = tuple(entries)
        self.distributions: tuple[Distribution, ...] = tuple(unwrap(e) for e in entries.values())
        self.conditions: tuple[Conditional | None, ...] = tuple(
            e if isinstance(e, Conditional) else None for e in entries.values()
        )
        self.cat_sizes = np.array([_n_choices(d) for d in self.distributions], dtype=np.int64)
        self.index = {name: i for i, name in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    @property
    def is_categorical(self) -> np.ndarray:
        """Boolean mask of the categorical coordinates."""
        return self.cat_sizes > 0

    def encode(self, params: Mapping[str, ParamValue]) -> np.ndarray:
        """The row of ``params``; NaN where a parameter is absent or cannot be encoded."""
        row = np.full(len(self.names), np.nan)
        for i, (name, dist) in enumerate(zip(self.names, self.distributions, strict=True)):
            if name in params:
                row[i] = _encode_value(dist, params[name])
        return row

    def encode_unclipped(self, params: Mapping[str, ParamValue]) -> np.ndarray:
        """:meth:`encode`, but a numeric value outside the range keeps its coordinate outside [0, 1]
        (another study's value, e.g. a warm start's): NaN where absent or not encodable."""
        row = np.full(len(self.names), np.nan)
        for i, (name, dist) in enumerate(zip(self.names, self.distributions, strict=True)):
            if name in params:
                try:
                    if isinstance(dist, (Categorical, Bool)):
                        row[i] = _encode_value(dist, params[name])
                    else:
                        row[i] = dist.to_unit(params[name])
                except (ConfigError, TypeError, ValueError):
                    row[i] = math.nan
        return row

    def decode(self, row: np.ndarray) -> dict[str, ParamValue]:
        """Parameter values of a row; parameters whose condition does not hold are left out."""
        values: dict[str, ParamValue] = {}
        for name, dist, cond, u in zip(self.names, self.distributions, self.conditions, row, strict=True):
            if cond is not None and not cond.is_active(values):
                continue
            if math.isnan(u):
                continue
            values[name] = _decode_value(dist, float(u))
        return values

    def snap(self, X: np.ndarray) -> np.ndarray:
        """Rows moved to values parameters can take: integer and step cells, choice indices."""
        X = np.array(X, dtype=float, copy=True)
        for i, dist in enumerate(self.distributions):
            X[..., i] = _snap_column(dist, X[..., i])
        return X

    def canonical(self, X: np.ndarray) -> np.ndarray:
        """Rows as the configurations they stand for: snapped (:meth:`snap`), NaN where a parameter is
        absent or its condition does not hold. Two rows are the same configuration exactly when their
        canonical rows are equal (NaN equal to NaN)."""
        C = self.snap(np.atleast_2d(np.asarray(X, dtype=np.float64)))
        if any(c is not None for c in self.conditions):
            for row in C:
                present = self.decode(row)
                row[[name not in present for name in self.names]] = np.nan
        return C

    def startup_point(self, number: int, seed: int) -> np.ndarray:
        """Point ``number`` of a scrambled Sobol sequence over the space (seeded by ``seed``).

        Trials draw distinct points of one low-discrepancy sequence, whichever worker runs them.
        When parameters have priors (:mod:`tunelab.priors`), one more Sobol coordinate picks the
        points (a share :data:`~tunelab.samplers._prior.STARTUP_PRIOR_SHARE`, 70%) that go through
        the priors' inverse CDFs, so that part of the design follows the belief and stays
        low-discrepancy; the other points stay uniform, so a wrong belief cannot own the start-up.
        """
        from scipy.stats import qmc  # scipy.stats takes 0.4 s to import: only when needed

        d = len(self.names)
        prior = SpacePrior(self.distributions)
        sobol = qmc.Sobol(d + int(prior.active), scramble=True, seed=np.random.default_rng([seed, d, 0x50B01]))
        if number > 0:
            sobol.fast_forward(number)
        u = sobol.random(1)[0]
        if prior.active and u[d] < STARTUP_PRIOR_SHARE:  # through the users' priors: each coordinate's inverse CDF
            return self.snap(prior.from_uniform(u[:d], self.cat_sizes))
        u = u[:d]
        row = u.copy()
        cat = self.cat_sizes > 0
        row[cat] = np.minimum(np.floor(u[cat] * self.cat_sizes[cat]), self.cat_sizes[cat] - 1)
        return self.snap(row)


class TriedPoints:
    """The configurations already tried or running, to tell which candidate rows would repeat one.

    A model-based sampler proposes the best point of its acquisition after snapping it to values the
    parameters can take; on integer and categorical coordinates that is often a trial already run
    (its acquisition is low there, but every nearby candidate snaps to it as well). :meth:`novel`
    marks the rows that are not, so the acquisition's best new configuration can be taken instead.

    Only spaces whose every parameter is discrete (integers, stepped floats, categoricals, booleans) are
    checked: with a continuous parameter a repeat is a point the search chose exactly, on a bound of the
    range, where the next candidate would be the same configuration moved by a rounding error.
    """

    def __init__(self, space: EncodedSpace, rows: np.ndarray) -> None:
        self.space = space
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, len(space))
        discrete = all(isinstance(d, (Categorical, Bool, Int)) or (isinstance(d, Float) and d.step is not None)
                       for d in space.distributions)
        self._keys = set(_row_keys(space.canonical(rows))) if len(rows) and discrete else set()

    def __len__(self) -> int:
        return len(self._keys)

    @classmethod
    def of(cls, space: EncodedSpace, obs: Observations) -> TriedPoints:
        """The study's trials as a model sees them: finished (``obs.X``) and running (``obs.pending``)."""
        return cls(space, np.vstack([obs.X.reshape(-1, len(space)), obs.pending.reshape(-1, len(space))]))

    def novel(self, X: np.ndarray) -> np.ndarray:
        """Boolean mask over the rows of ``X``: True where the row's configuration is not among the tried."""
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        if not self._keys:
            return np.ones(len(X), dtype=bool)
        return np.array([k not in self._keys for k in _row_keys(self.space.canonical(X))], dtype=bool)


def _row_keys(C: np.ndarray) -> list[bytes]:
    """A hashable key per canonical row (values to 9 decimals; NaN, -0.0 made comparable)."""
    R = np.where(np.isnan(C), -7.0, np.round(C, 9) + 0.0)
    return [r.tobytes() for r in np.ascontiguousarray(R)]


def _n_choices(dist: Distribution) -> int:
    if isinstance(dist, Categorical):
        return len(dist.choices)
    if isinstance(dist, Bool):
        return 2
    return 0


def _encode_value(dist: Distribution, value: ParamValue) -> float:
    try:
        if isinstance(dist, Categorical):
            return float(dist.index(value))
        if isinstance(dist, Bool):
            return 1.0 if value else 0.0
        u = dist.to_unit(value)
    except (ConfigError, TypeError, ValueError):
        return math.nan
    return min(max(u, 0.0), 1.0)  # values from an older, wider range clip to the edge


def _decode_value(dist: Distribution, u: float) -> ParamValue:
    if isinstance(dist, Categorical):
        return dist.choices[min(max(round(u), 0), len(dist.choices) - 1)]
    if isinstance(dist, Bool):
        return bool(u >= 0.5)
    return dist.from_unit(u)


def _snap_column(dist: Distribution, u: np.ndarray) -> np.ndarray:
    """Vectorised ``to_unit(from_unit(u))`` for one coordinate."""
    if isinstance(dist, (Categorical, Bool)):
        k = _n_choices(dist)
        return np.clip(np.round(u), 0, k - 1)
    u = np.clip(u, 0.0, 1.0)
    if isinstance(dist, Int):
        if dist.log:
            a, b = math.log(dist.low - 0.5 + 1e-12), math.log(dist.high + 0.5)
            v = np.clip(np.round(np.exp(a + u * (b - a))), dist.low, dist.high)
            return np.clip((np.log(v) - a) / (b - a), 0.0, 1.0)
        n = (dist.high - dist.low) // dist.step + 1
        return np.asarray((np.minimum(np.floor(u * n), n - 1) + 0.5) / n)
    if isinstance(dist, Float) and dist.step is not None and dist.high > dist.low:
        n = round((dist.high - dist.low) / dist.step) + 1
        return np.asarray((np.minimum(np.floor(u * n), n - 1) + 0.5) / n)
    return u


def infer_space(history: History, below: int | None = None) -> dict[str, SpaceEntry] | None:
    """The space a model-based sampler plans over: the study's declared space, or else every
    parameter any trial so far (numbered below ``below``, when given) has used (its latest
    distribution). None when nothing is known.
    """
    if history.space is not None:
        return dict(history.space)
    space: dict[str, SpaceEntry] = {}
    for t in history.trials():
        if below is None or t.number < below:
            space.update(t.distributions)
    return space or None


@dataclass(frozen=True)
class Ranking:
    """The raw results behind :attr:`Observations.y` where one trial's loss depends on the others'
    (:func:`~tunelab.samplers._ranking.scalar_losses`): recomputed on a subset of the rows."""

    values: np.ndarray
    violation: np.ndarray
    directions: tuple[str, ...]
    margins: np.ndarray | None = None
    """(n, c) each constraint's signed distance to its bound (<= 0: it holds; NaN where the trial did not
    record it), by :attr:`constraint_names`; None when no trial recorded a constraint."""
    constraint_names: tuple[str, ...] = ()

    def losses(self, rows: np.ndarray) -> np.ndarray:
        """The losses of ``rows`` (a mask or indices) ranked among themselves only."""
        return scalar_losses(self.values[rows], self.violation[rows], self.directions)

    def subset(self, rows: np.ndarray) -> Ranking:
        """The raw results of ``rows`` only (a mask or indices)."""
        margins = None if self.margins is None else self.margins[rows]
        return Ranking(self.values[rows], self.violation[rows], self.directions, margins, self.constraint_names)


@dataclass(frozen=True)
class Observations:
    """The trials as a model sees them.

    Attributes:
        X: (n, d) rows of finished trials (NaN where a parameter is absent).
        y: (n,) their losses: smaller is better whatever the study's direction; failed and
            pruned trials imputed as the worst loss (when the policy says so).
        imputed: (n,) True where ``y`` was imputed rather than measured.
        numbers: (n,) trial numbers.
        pending: (m, d) rows of trials running now in other workers.
        pending_numbers: (m,) their trial numbers (-1 where unknown).
        replayable: the proposal must be a function of these observations alone, with nothing
            carried over from earlier proposals in this process (a deterministic study, or a view
            with pending trials, which another worker may rebuild: :func:`as_seen_by`).
        sources: earlier studies' trials in this space (a warm start, :mod:`tunelab.samplers.transfer`).
        ranking: what ``y`` was computed from when it depends on the other trials (constraints,
            several objectives), row for row; None when each trial's loss is its own value.
    """

    X: np.ndarray
    y: np.ndarray
    imputed: np.ndarray
    numbers: np.ndarray
    pending: np.ndarray
    pending_numbers: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    replayable: bool = False
    sources: tuple[SourceData, ...] = ()
    ranking: Ranking | None = None

    def __post_init__(self) -> None:
        if len(self.pending_numbers) != len(self.pending):
            object.__setattr__(self, "pending_numbers", np.full(len(self.pending), -1, dtype=np.int64))

    @property
    def n_measured(self) -> int:
        """How many trials have a measured value."""
        return int((~self.imputed).sum())


class ObservationCache:
    """Rows of finished trials, encoded once (finished trials never change) and kept stacked.

    One cache serves one space; it starts over when the space changes.
    """

    def __init__(self) -> None:
        self._reset(None)

    def _reset(self, key: tuple[Any, ...] | None) -> None:
        self._key = key
        self._seen: set[int] = set()
        self._rows: list[np.ndarray] = []
        self._numbers: list[int] = []
        self._values: list[tuple[float, ...]] = []  # every objective's value, NaN when not measured
        self._violation: list[float] = []
        self._margins: list[dict[str, float]] = []
        self._stacked: FinishedArrays | None = None

    def arrays(self, space: EncodedSpace, finished: Sequence[FrozenTrial], n_objectives: int = 1) -> FinishedArrays:
        """The ``finished`` trials' rows, values (NaN where not measured), numbers and violations."""
        key = (space.names, space.distributions, n_objectives)
        if key != self._key:
            self._reset(key)
        for t in finished:
            if t.number not in self._seen:
                self._seen.add(t.number)
                self._rows.append(space.encode(t.params))
                self._numbers.append(t.number)
                self._values.append(_measured(t, n_objectives))
                self._violation.append(t.violation)
                self._margins.append(_margins(t))
                self._stacked = None
        if self._stacked is None:
            n = len(self._rows)
            names = tuple(sorted({name for m in self._margins for name in m}))
            margins = np.array([[m.get(name, math.nan) for name in names] for m in self._margins],
                               dtype=float).reshape(n, len(names))
            self._stacked = FinishedArrays(
                np.array(self._rows, dtype=float).reshape(n, len(space)),
                np.array(self._values, dtype=float).reshape(n, n_objectives),
                np.array(self._numbers, dtype=np.int64),
                np.array(self._violation, dtype=float).reshape(n),
                margins,
                names,
            )
        return self._stacked


@dataclass(frozen=True)
class FinishedArrays:
    """Finished trials as arrays: rows (n, d), values (n, objectives), numbers (n,), violations (n,), and
    each constraint's margin (n, constraints: see :attr:`Ranking.margins`) with the constraints' names."""

    X: np.ndarray
    values: np.ndarray
    numbers: np.ndarray
    violation: np.ndarray
    margins: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    constraint_names: tuple[str, ...] = ()


def _margins(t: FrozenTrial) -> dict[str, float]:
    """Each constraint's signed distance to its bounds: ``value - upper`` or ``lower - value``, the
    larger where both are set (<= 0: it holds)."""
    out = {}
    for name, c in t.constraints.items():
        sides = [c.value - c.upper if c.upper is not None else -math.inf,
                 c.lower - c.value if c.lower is not None else -math.inf]
        margin = max(sides)
        if math.isfinite(margin):
            out[name] = margin
    return out


def _measured(t: FrozenTrial, n_objectives: int) -> tuple[float, ...]:
    """A trial's objective values when it COMPLETEd with finite ones, else NaNs."""
    raw = t.values if t.values is not None else (t.value,)
    if t.state != TrialState.COMPLETE or len(raw) != n_objectives:
        return (math.nan,) * n_objectives
    out = tuple(float(v) if v is not None and math.isfinite(v) else math.nan for v in raw)
    return out if all(map(math.isfinite, out)) else (math.nan,) * n_objectives


def collect_observations(
    history: History,
    space: EncodedSpace,
    *,
    exclude: int | None = None,
    failed: str = "worst",
    cache: ObservationCache | None = None,
) -> Observations:
    """Read the history as observations for a model over ``space``.

    Args:
        exclude: a trial number to leave out of the pending rows (the one being planned).
        failed: 'worst' imputes failed and pruned trials as the worst measured loss (they
            tell the model where not to go, e.g. a learning rate that diverges); 'ignore'
            leaves them out.
        cache: keeps encoded rows of finished trials between calls.
    """
    finished = history.trials((TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED))
    pending, pending_numbers = _pending(history, space, exclude)
    arrays = (cache or ObservationCache()).arrays(space, finished, len(history.directions))
    return _observations(arrays, space, history.directions, failed, pending, pending_numbers)


def _observations(
    arrays: FinishedArrays, space: EncodedSpace, directions: Sequence[str], failed: str,
    pending: np.ndarray, pending_numbers: np.ndarray, replayable: bool = False,
) -> Observations:
    """Observations from the finished trials' arrays (see :func:`collect_observations`): each
    trial's loss by :func:`~tunelab.samplers._ranking.scalar_losses` (its value as a loss when
    there is one objective and no constraint)."""
    X, numbers = arrays.X, arrays.numbers
    keep = ~np.isnan(X).all(axis=1) if len(space) else np.ones(len(X), dtype=bool)  # shares no parameter
    ranked = len(directions) > 1 or bool(np.any(arrays.violation[keep] > 0))
    ranking = None
    if ranked:
        margins = arrays.margins if arrays.constraint_names else None
        ranking = Ranking(arrays.values, arrays.violation, tuple(directions), margins, arrays.constraint_names)
    if ranking is None:
        y = arrays.values[:, 0] * (1.0 if directions[0] == "minimize" else -1.0)
    else:
        y = ranking.losses(keep)
        y_all = np.full(len(X), np.nan)
        y_all[keep] = y
        y = y_all
    imputed = np.isnan(y)
    if failed == "ignore" or imputed[keep].all():  # (nothing measured: no worst value to impute)
        keep &= ~imputed
    X, y, imputed, numbers = X[keep], y[keep], imputed[keep], numbers[keep]
    if imputed.any():
        y[imputed] = np.max(y[~imputed])
    if ranking is not None:
        ranking = ranking.subset(keep)
    return Observations(X=X, y=y, imputed=imputed, numbers=numbers, pending=pending, pending_numbers=pending_numbers,
                        replayable=replayable, ranking=ranking)


def pending_rows(history: History, space: EncodedSpace, exclude: int | None) -> np.ndarray:
    """Rows of the trials other workers are running: their params so far, else what was planned."""
    return _pending(history, space, exclude)[0]


def _pending(history: History, space: EncodedSpace, exclude: int | None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`pending_rows` and the trials' numbers."""
    rows, numbers = [], []
    for t in history.pending(exclude=exclude):
        params = dict(t.system_attrs.get(PLANNED_KEY) or {})
        params.update(t.params)
        if params:
            rows.append(space.encode(params))
            numbers.append(t.number)
    return np.array(rows, dtype=float).reshape(len(rows), len(space)), np.array(numbers, dtype=np.int64)


MAX_PLANNED_AHEAD = 8
"""At most this many trials still being planned are planned ahead by another (the highest-numbered)."""


def planning_now(history: History, number: int) -> list[FrozenTrial]:
    """RUNNING trials numbered below ``number`` with neither a recorded plan nor parameters: other
    workers are planning them now (at most :data:`MAX_PLANNED_AHEAD`, the highest-numbered), by number."""
    found = [t for t in history.pending(exclude=number)
             if t.number < number and not t.params and PLANNED_KEY not in t.system_attrs]
    return found[-MAX_PLANNED_AHEAD:]


def as_seen_by(
    obs: Observations, trial: FrozenTrial, history: History, planned: Sequence[tuple[int, np.ndarray]] = ()
) -> Observations:
    """The observations as trial ``trial`` saw them when it started planning: the trials that had
    finished by its start are measured; those numbered below it that finished since were running
    then (pending, at their parameters), as are ``planned`` (number, row) points numbered below it;
    trials numbered above it did not exist yet."""
    started = trial.datetime_start
    complete = {t.number: t.datetime_complete for t in history.trials()}

    def finished_before(number: int) -> bool:
        done = complete.get(number)
        return started is None or (done is not None and done <= started)

    earlier = obs.numbers < trial.number
    seen = earlier & np.array([finished_before(int(n)) for n in obs.numbers], dtype=bool)
    late = earlier & ~seen
    y, imputed = obs.y[seen].copy(), obs.imputed[seen]
    if obs.ranking is not None:  # ranked among the trials seen then only (constraints, several objectives)
        y = obs.ranking.losses(seen)
        y[imputed] = np.nan
    if imputed.any():
        if imputed.all():  # nothing measured then: no worst value to impute
            seen &= ~obs.imputed
            y, imputed = obs.y[seen].copy(), obs.imputed[seen]
            if obs.ranking is not None:
                y = obs.ranking.losses(seen)
        else:
            y[imputed] = np.nanmax(y[~imputed])
    running = obs.pending_numbers < trial.number
    ahead = [(n, row) for n, row in planned if n < trial.number]
    pending = np.vstack([obs.pending[running], obs.X[late], *(row[None, :] for _, row in ahead)])
    pending_numbers = np.concatenate([obs.pending_numbers[running], obs.numbers[late],
                                      np.array([n for n, _ in ahead], dtype=np.int64)])
    ranking = None if obs.ranking is None else obs.ranking.subset(seen)
    # Rows in number order, not in the order this process happened to see trials finish, and nothing
    # carried over from this process's earlier fits while others run: so any worker that rebuilds
    # this view (:meth:`ModelBasedSampler._plan_ahead`) proposes exactly what ``trial`` proposes.
    order = np.argsort(obs.numbers[seen], kind="stable")
    waiting = np.argsort(pending_numbers, kind="stable")
    return Observations(X=obs.X[seen][order], y=y[order], imputed=imputed[order], numbers=obs.numbers[seen][order],
                        pending=pending[waiting], pending_numbers=pending_numbers[waiting],
                        replayable=obs.replayable or len(pending) > 0,
                        ranking=None if ranking is None else ranking.subset(order))


FIDELITY_KEY = "model_fidelity"
"""System attribute: what a proposal's model was fitted on under a pruner: ``{"metric", "step", "points"}``,
the rung (BOHB's rule), or with ``"step": None`` and ``"predicted"`` (how many rows are predictions) the
final values a learning-curve pruner predicted."""


def collect_rung_observations(
    history: History,
    space: EncodedSpace,
    metric: str,
    direction: str,
    min_points: int,
    *,
    exclude: int | None = None,
    failed: str = "worst",
) -> tuple[Observations, int] | None:
    """Observations at the highest step that ``min_points`` trials reached (BOHB's rule), for
    studies whose pruner stops most trials before they complete.

    ``y`` is each trial's ``metric`` at that step (as a loss, by ``direction``); trials pruned
    or failed before it count as the worst value there (or are left out: ``failed='ignore'``).
    Returns the observations and the step, or None when no step has ``min_points`` values.
    """
    points = [p for p in history.metric_at(metric, None) if not math.isnan(p.value)]
    reached: dict[int, dict[int, float]] = {}
    for p in points:
        reached.setdefault(p.step, {})[p.number] = p.value
    steps = sorted((s for s, v in reached.items() if len(v) >= min_points), reverse=True)
    if not steps:
        return None
    step = steps[0]
    at_step = reached[step]
    sign = 1.0 if direction == "minimize" else -1.0
    by_number = {t.number: t for t in history.trials()}
    rows, ys, bad, numbers = [], [], [], []
    for number, t in by_number.items():
        if number in at_step:
            rows.append(space.encode(t.params))
            ys.append(sign * at_step[number])
            bad.append(False)
        elif t.state.is_finished and failed == "worst":  # stopped (or failed) before reaching the step
            rows.append(space.encode(t.params))
            ys.append(math.nan)
            bad.append(True)
        else:
            continue
        numbers.append(number)
    pending, pending_numbers = _pending(history, space, exclude)
    return _trial_rows(space, rows, ys, bad, numbers, pending, pending_numbers), step


def collect_predicted_observations(
    history: History,
    space: EncodedSpace,
    metric: str,
    direction: str,
    *,
    exclude: int | None = None,
    failed: str = "worst",
) -> tuple[Observations, int] | None:
    """Observations at the end of training, for studies whose pruner predicts where curves end (a
    :class:`~tunelab.LearningCurvePruner`, alone or with ASHA's rungs).

    ``y`` (a loss, by ``direction``) is, for a COMPLETE trial, the last value of ``metric`` it reported
    (its final value); for a PRUNED trial, or one running in another worker, the final value its pruner
    predicted from its curve (:func:`~tunelab.records.predicted_final`), counted as measured. Trials
    stopped without a prediction (before their curve had enough points) and failed trials count as the
    worst value (or are left out: ``failed='ignore'``); running trials without one are pending rows.
    Returns the observations and how many of them are predictions, or None when no trial has a
    prediction (the pruner does not predict: the other rules apply).
    """
    trials = history.trials()
    predictions: dict[int, float] = {}
    for t in trials:
        if t.state in (TrialState.PRUNED, TrialState.RUNNING) and t.number != exclude:
            value = predicted_final(t, metric)
            if value is not None:
                predictions[t.number] = value
    if not predictions:
        return None
    last: dict[int, tuple[int, float]] = {}  # each trial's last finite point of the metric
    for p in history.metric_at(metric, None):
        if not math.isnan(p.value) and p.step >= last.get(p.number, (-1, 0.0))[0]:
            last[p.number] = (p.step, p.value)
    sign = 1.0 if direction == "minimize" else -1.0
    rows, ys, bad, numbers = [], [], [], []
    for t in trials:
        if t.number in predictions:
            value, imputed = predictions[t.number], False
        elif t.state == TrialState.COMPLETE and t.number in last:
            value, imputed = last[t.number][1], False
        elif t.state.is_finished and failed == "worst":  # stopped without a prediction, failed
            value, imputed = math.nan, True
        else:
            continue
        rows.append(space.encode(t.params))
        ys.append(sign * value)
        bad.append(imputed)
        numbers.append(t.number)
    pending, pending_numbers = _pending(history, space, exclude)
    waiting = ~np.isin(pending_numbers, list(predictions))  # a running trial with a prediction is a row
    obs = _trial_rows(space, rows, ys, bad, numbers, pending[waiting], pending_numbers[waiting])
    return obs, int(np.isin(obs.numbers, list(predictions)).sum())


def _trial_rows(
    space: EncodedSpace,
    rows: Sequence[np.ndarray],
    losses: Sequence[float],
    imputed: Sequence[bool],
    numbers: Sequence[int],
    pending: np.ndarray,
    pending_numbers: np.ndarray,
) -> Observations:
    """Observations from one encoded row, loss and trial number per trial: imputed rows take the worst
    measured loss; rows with no parameter active are left out."""
    y = np.array(losses, dtype=float)
    bad = np.array(imputed, dtype=bool)
    if bad.any():
        y[bad] = np.max(y[~bad])
    X = np.array(rows, dtype=float).reshape(len(rows), len(space))
    keep = ~np.isnan(X).all(axis=1) if len(space) else np.ones(len(y), dtype=bool)
    return Observations(X=X[keep], y=y[keep], imputed=bad[keep], numbers=np.array(numbers, dtype=np.int64)[keep],
                        pending=pending, pending_numbers=pending_numbers)


class ModelBasedSampler(Sampler):
    """Base class of samplers that fit a model to the trials so far and propose from it.

    Args:
        n_startup_trials: trials with a measured value needed before the model is used;
            until then points come from a scrambled Sobol sequence (spread better than
            random points). Trials from an earlier stage or another sampler count, so a
            study warm-started from a coarse search uses the model at once.
        failed: 'worst' (failed and pruned trials count as the worst value seen) or
            'ignore'.
    """

    multi_objective = False
    """Whether the model handles several objectives (TPE does, through the Pareto ranking of
    :mod:`tunelab.samplers._ranking`; the GP with one GP per objective and log EHVI)."""

    def __init__(self, n_startup_trials: int = 10, failed: str = "worst") -> None:
        if isinstance(n_startup_trials, bool) or not isinstance(n_startup_trials, int) or n_startup_trials < 1:
            raise ConfigError(
                f"{type(self).__name__}(n_startup_trials=...) must be an integer >= 1, got {n_startup_trials!r}"
            )
        if failed not in FAILED_POLICIES:
            raise ConfigError(
                f"{type(self).__name__}(failed=...) must be 'worst' (failed trials count as the worst value) "
                f"or 'ignore', got {failed!r}"
            )
        self.n_startup_trials = n_startup_trials
        self.failed = failed
        self._cache = ObservationCache()
        self._study: tuple[object, ...] | None = None  # History.study_key of the study the caches hold
        self._encoded: tuple[dict[str, Any], EncodedSpace] | None = None
        self._source_key: tuple[Any, ...] | None = None
        self._source_rows: dict[tuple[str, int], SourceData] = {}

    def encoded_space(self, history: History) -> EncodedSpace | None:
        """The space to plan over (see :func:`infer_space`), encoded; reused while unchanged."""
        entries = infer_space(history)
        if entries is None:
            return None
        if self._encoded is None or self._encoded[0] != entries:
            self._encoded = (entries, EncodedSpace(entries))
        return self._encoded[1]

    startup_with_priors = 1.0
    """The share of ``n_startup_trials`` after which the model is used when every parameter has a prior
    (:func:`~tunelab.samplers._prior.startup_trials`)."""

    replayable = True
    """Can honour a deterministic study (``create_study(deterministic=True)``): see :meth:`_replay`."""

    def _bind(self, history: History) -> None:
        """Forget what was learnt from another study's trials (its rows are cached by trial number, a GP's
        warm start is its last fit): one sampler object may serve several studies, one after another (and a
        copy made before any study shares its caches with the original until then)."""
        if self._study != history.study_key:
            self._forget()
        self._study = history.study_key

    def _forget(self) -> None:
        """Drop the caches of the study served so far (subclasses drop theirs too)."""
        self._cache = ObservationCache()

    _warned_repeat = False

    def _warn_if_repeated(self, row: np.ndarray, tried: TriedPoints) -> None:
        """A warning, once per sampler and process, when the proposal ``row`` repeats a trial: every
        candidate the search scored was one, so the space is run through (or nearly)."""
        if self._warned_repeat or not len(tried) or tried.novel(row)[0]:
            return
        self._warned_repeat = True
        warnings.warn(
            f"{type(self).__name__}: every configuration it scored has been tried already ({len(tried)} distinct "
            "ones so far in a space of integers, steps and categories), so it proposes one again; lower n_trials, "
            "widen the space, or use GridSampler to run each configuration once",
            stacklevel=3,
        )

    def plan(self, history: History, trial: SamplingContext) -> dict[str, ParamValue]:
        self._bind(history)
        if history.replay_width is not None:
            values = self._plan_replayable(history, trial.number, trial.seed, history.replay_width)
            if values:
                trial.record(PLANNED_KEY, values)
            return values
        space = self.encoded_space(history)
        if space is None:
            return {}
        obs = collect_observations(history, space, exclude=trial.number, failed=self.failed, cache=self._cache)
        enough = max(self.n_startup_trials, len(space) + 2)
        metric, direction = history.pruning or (None, history.direction)
        on_rung = False
        predicted = None
        if metric is not None and len(history.directions) == 1:
            # A pruner that predicts where curves end (LearningCurvePruner): fit on the predicted final values.
            predicted = collect_predicted_observations(history, space, metric, direction,
                                                       exclude=trial.number, failed=self.failed)
            if predicted is not None:
                obs, on_rung = predicted[0], True
                trial.record(FIDELITY_KEY, {"metric": metric, "step": None, "predicted": predicted[1],
                                            "points": obs.n_measured})
        if predicted is None and obs.n_measured < enough and metric is not None:
            # Few trials complete under a pruner: fit on the highest rung with enough points (BOHB).
            rung = collect_rung_observations(history, space, metric, direction, enough,
                                             exclude=trial.number, failed=self.failed)
            if rung is not None and rung[0].n_measured > obs.n_measured:
                obs, on_rung = rung[0], True
                trial.record(FIDELITY_KEY, {"metric": metric, "step": rung[1], "points": obs.n_measured})
        obs = self._with_sources(history, space, obs)
        if self._uses_model(obs, space):
            obs = self._as_planned(history, space, obs, trial, on_rung)
        if not self._uses_model(obs, space):
            row = space.startup_point(trial.number, trial.seed)
        else:
            row = self.propose(space, obs, trial.rng(type(self).__name__))
        values = space.decode(row)
        trial.record(PLANNED_KEY, values)
        return values

    def _as_planned(
        self, history: History, space: EncodedSpace, obs: Observations, trial: SamplingContext, on_rung: bool
    ) -> Observations:
        """The observations this trial plans from: as they were when it started, with the points of
        lower-numbered trials other workers are planning now as pending rows.

        A trial numbered below this one that is RUNNING but has recorded neither a plan nor
        parameters is being planned right now: its planner has not recorded what it will
        propose, so it is not a pending row yet. Left out, both trials decide from nearly the
        same observations, and a model whose optimum does not depend on the generator (a GP's
        expected improvement) proposes the same point twice. So this trial first proposes
        their points, in number order, as each of them does (:meth:`_plan_ahead`).

        For that replay to be exact, every trial plans from the observations as they were when it
        started (:func:`as_seen_by`: trials that finished since are pending at their parameters),
        not as they are when its worker gets to read them, which on a busy machine can be seconds
        later; any worker can rebuild that view from the storage. Rung observations (a pruned
        study's early trials) change while trials run, so there the plan-ahead is approximate.
        """
        planned = self._plan_ahead(history, space, obs, trial)
        me = next((t for t in history.pending() if t.number == trial.number), None)
        if me is not None and not on_rung:
            return replace(as_seen_by(obs, me, history, planned), sources=obs.sources)
        if not planned:
            return obs
        return replace(obs, pending=np.vstack([obs.pending, *(row[None, :] for _, row in planned)]),
                       pending_numbers=np.concatenate([obs.pending_numbers, [n for n, _ in planned]]).astype(np.int64))

    def _plan_ahead(
        self, history: History, space: EncodedSpace, obs: Observations, trial: SamplingContext
    ) -> list[tuple[int, np.ndarray]]:
        """The (number, row) each lower-numbered trial still being planned will propose: from the
        observations as they were when it started (:func:`as_seen_by`), with its own generator and
        the points before it as pending, as it does itself."""
        planned: list[tuple[int, np.ndarray]] = []
        for t in planning_now(history, trial.number):
            seen = replace(as_seen_by(obs, t, history, planned), sources=obs.sources)
            if not self._uses_model(seen, space):
                row = space.startup_point(t.number, trial.seed)
            else:
                row = self.propose(space, seen, SamplingContext(t.number, trial.seed).rng(type(self).__name__))
            planned.append((t.number, row))
        return planned

    def _plan_replayable(self, history: History, number: int, seed: int, width: int) -> dict[str, ParamValue]:
        """The plan of trial ``number`` in a deterministic study: a function of the seed and of the
        trials numbered below it only (:mod:`tunelab.study.replay`).

        The trials of the window before it (``number - width + 1`` up to ``number - 1``) count as
        running at their planned values: recorded ones as recorded, those still being planned
        replayed here exactly as their own workers plan them (:meth:`_replay`).
        """
        by_number = {t.number: t for t in history.trials()}
        values: dict[int, dict[str, ParamValue]] = {}
        for u in range(max(0, number - 2 * width + 2), number):
            t = by_number.get(u)
            if t is not None and (planned := t.system_attrs.get(PLANNED_KEY) or t.params):
                values[u] = dict(planned)
        for u in range(max(0, number - width + 1), number):
            t = by_number.get(u)
            if u not in values and t is not None and t.state == TrialState.RUNNING:  # being planned now
                values[u] = self._replay(history, u, seed, width, values)
        return self._replay(history, number, seed, width, values)

    def _replay(
        self, history: History, number: int, seed: int, width: int, values: Mapping[int, Mapping[str, ParamValue]]
    ) -> dict[str, ParamValue]:
        """What trial ``number`` of a deterministic study proposes: from the results of the trials
        below ``number - width + 1`` (all finished: the study waited for them), in number order,
        and the planned ``values`` of the trials between as pending, in number order."""
        cutoff = number - width + 1
        entries = infer_space(history, below=cutoff)
        if entries is None:
            return {}
        space = EncodedSpace(entries)
        finished = [t for t in history.trials() if t.number < cutoff and t.state.is_finished]
        window = [u for u in range(max(0, cutoff), number) if u in values]
        pending = np.array([space.encode(values[u]) for u in window], dtype=float).reshape(len(window), len(space))
        obs = _observations(ObservationCache().arrays(space, finished, len(history.directions)), space,
                            history.directions, self.failed, pending, np.array(window, dtype=np.int64),
                            replayable=True)
        obs = self._with_sources(history, space, obs)
        if not self._uses_model(obs, space):
            row = space.startup_point(number, seed)
        else:
            row = self.propose(space, obs, SamplingContext(number, seed).rng(type(self).__name__))
        return space.decode(row)

    def _uses_model(self, obs: Observations, space: EncodedSpace) -> bool:
        """Enough measured trials for the model (:func:`~tunelab.samplers._prior.startup_trials`), or earlier
        studies to start from (a warm start)."""
        return (obs.n_measured >= startup_trials(self.n_startup_trials, space.distributions, self.startup_with_priors)
                or bool(obs.sources))

    def _with_sources(self, history: History, space: EncodedSpace, obs: Observations) -> Observations:
        """``obs`` with the warm start's source studies as rows of ``space`` (those with enough
        usable trials; each encoded once per space)."""
        if not history.sources:
            return obs
        key = (space.names, repr(space.distributions))
        if self._source_key != key:
            self._source_key, self._source_rows = key, {}
        found = []
        for source in history.sources:
            tag = (source.name, len(source.trials))
            data = self._source_rows.get(tag)
            if data is None:
                data = subsample(source_observations(source.name, source.direction, source.trials, space.names,
                                                     space.encode_unclipped))
                self._source_rows[tag] = data
            if len(data.y) >= MIN_SOURCE_ROWS:
                found.append(data)
        return replace(obs, sources=tuple(found)) if found else obs

    @abstractmethod
    def propose(self, space: EncodedSpace, observations: Observations, rng: np.random.Generator) -> np.ndarray:
        """The next row to try, given at least ``n_startup_trials`` measured observations."""

    def sample(
        self,
        history: History,
        trial: SamplingContext,
        name: str,
        distribution: Distribution,
    ) -> ParamValue:
        """A parameter no trial had before (so the plan could not cover it): drawn at random (from the
        trial's own generator: a deterministic study stays deterministic)."""
        return distribution.sample(trial.rng(name))

    def describe(self) -> dict[str, Any]:
        return {"name": type(self).__name__, "n_startup_trials": self.n_startup_trials, "failed": self.failed}
