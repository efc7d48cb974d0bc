"""Grid search: every cell of a Cartesian product of per-parameter values, each run once.

Cells come from each parameter's :meth:`Distribution.grid` (log-spaced for log
parameters) or from an explicit list of values. A conditional parameter appears
only in the cells where its condition holds. Cells run in a seeded pseudo-random
order, so the first trials already spread over the whole space.

Several workers share one grid without locks: a trial records the cell it takes
(``system_attrs["grid"]``) as soon as it is planned, and a trial planned while
``k`` lower-numbered trials are still being planned takes the ``k``-th free cell.

Examples:
    >>> import tunelab
    >>> from tunelab import Float, GridSampler
    >>> sampler = GridSampler({"lr": Float(1e-5, 1e-1, log=True), "batch_size": [32, 64, 128]})
    >>> def objective(trial):
    ...     lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    ...     return abs(lr - 1e-3) + trial.suggest_categorical("batch_size", [32, 64, 128]) / 1000
    >>> study = tunelab.create_study(sampler=sampler, seed=0)
    >>> study.optimize(objective, n_trials=1000)   # stops after the 15 cells (5 learning rates x 3)
    >>> len(study.trials), study.best_params
    (15, {'lr': 0.001, 'batch_size': 32})
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice, pairwise
from typing import Any

import numpy as np

from tunelab.distributions import Categorical, Distribution, Float, Int, ParamValue, plain_value
from tunelab.errors import ConfigError, SearchExhausted
from tunelab.history import History
from tunelab.records import FrozenTrial, TrialState
from tunelab.samplers.base import Sampler, SamplingContext
from tunelab.space import Conditional, SpaceEntry, space_from_json, space_to_json, unwrap, validate_space

GridEntry = Distribution | Conditional | Sequence[ParamValue]
"""A grid parameter: a distribution (its grid points), a Conditional, or explicit values."""

Cell = dict[str, ParamValue]

MAX_CELLS = 100_000
"""A grid larger than this is refused: it could never be run, and listing it is slow."""

RECORD_KEY = "grid"
_JSON_SCALARS = (type(None), bool, int, float, str)


# -- axes and cells (also used by the coarse-to-fine sampler's first stage) -----------------
@dataclass(frozen=True)
class Axis:
    """One grid parameter: its first values, its distribution (None for explicit values)
    and the condition under which it exists."""

    name: str
    values: tuple[ParamValue, ...]
    distribution: Distribution | None = None
    condition: Conditional | None = None

    def is_active(self, assigned: Mapping[str, ParamValue]) -> bool:
        """Whether the parameter exists given the values of the parameters before it."""
        return self.condition is None or self.condition.is_active(assigned)

    @property
    def numeric(self) -> bool:
        """Whether values are numbers with an order (Float, Int, or a list of numbers)."""
        if self.distribution is not None:
            return isinstance(self.distribution, (Float, Int))
        return all(_is_number(v) for v in self.values)

    @property
    def integer(self) -> bool:
        """Whether every value is an integer (extensions are rounded)."""
        if self.distribution is not None:
            return isinstance(self.distribution, Int)
        return all(isinstance(v, int) and not isinstance(v, bool) for v in self.values)


def axes_for(space: Mapping[str, GridEntry], n_points: int) -> list[Axis]:
    """The axes of a (validated) grid space with ``n_points`` per numeric distribution."""
    axes = []
    for name, entry in space.items():
        if isinstance(entry, (Distribution, Conditional)):
            dist = unwrap(entry)
            cond = entry if isinstance(entry, Conditional) else None
            axes.append(Axis(name, tuple(dist.grid(n_points)), dist, cond))
        else:
            axes.append(Axis(name, tuple(entry)))
    return axes


def iter_cells(axes: Sequence[Axis], values: Mapping[str, Sequence[ParamValue]]) -> Iterator[Cell]:
    """Every cell of the product of ``values``, without the parameters a cell switches off.

    Branching only on active parameters yields each distinct cell exactly once.
    """

    def walk(i: int, assigned: Cell) -> Iterator[Cell]:
        if i == len(axes):
            yield dict(assigned)
            return
        axis = axes[i]
        if not axis.is_active(assigned):
            yield from walk(i + 1, assigned)
            return
        for value in values[axis.name]:
            assigned[axis.name] = value
            yield from walk(i + 1, assigned)
        del assigned[axis.name]

    yield from walk(0, {})


def count_cells(axes: Sequence[Axis], values: Mapping[str, Sequence[ParamValue]], limit: int) -> int:
    """The number of cells, counting no further than ``limit + 1``."""
    return sum(1 for _ in islice(iter_cells(axes, values), limit + 1))


CellKey = tuple[tuple[str, str, ParamValue], ...]


def cell_key(cell: Mapping[str, Any]) -> CellKey:
    """A canonical form of a cell: equal cells, equal keys (1, 1.0 and True differ)."""
    return tuple(sorted((name, type(v).__name__, v) for name, v in cell.items()))


def seeded_rank(seed: int, salt: str, key: CellKey) -> bytes:
    """A pseudo-random sort key of a cell, the same in every process for one seed."""
    return hashlib.blake2b(f"{seed}|{salt}|{key!r}".encode(), digest_size=8).digest()


def seeded_order(cells: Sequence[Cell], seed: int, salt: str) -> list[Cell]:
    """The cells in a seeded pseudo-random order (a permutation that depends only on the seed)."""
    return sorted(cells, key=lambda c: seeded_rank(seed, salt, cell_key(c)))


# -- validation and JSON ---------------------------------------------------------------------
def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _value_identity(v: ParamValue) -> tuple[str, ParamValue]:
    return ("number", float(v)) if _is_number(v) else (type(v).__name__, v)  # type: ignore[arg-type]


def _check_values(name: str, values: object) -> tuple[ParamValue, ...]:
    if isinstance(values, np.ndarray):
        values = values.tolist()
    if not isinstance(values, (list, tuple)):
        raise ConfigError(
            f"GridSampler: parameter '{name}': expected a distribution such as Float(...), a "
            f"Conditional(...) or a list of values, got {values!r}"
        )
    if not values:
        raise ConfigError(
            f"GridSampler: parameter '{name}' has an empty list of values; give at least one "
            "value or remove the parameter"
        )
    seen: set[tuple[str, ParamValue]] = set()
    out: list[ParamValue] = []
    for v in values:
        v = plain_value(v)  # numpy scalars -> Python scalars
        if not isinstance(v, _JSON_SCALARS) or (isinstance(v, float) and not math.isfinite(v)):
            raise ConfigError(
                f"GridSampler: parameter '{name}': value {v!r} is not a finite None, bool, int, "
                "float or str; map richer objects from a string key inside the objective"
            )
        if _value_identity(v) in seen:
            raise ConfigError(
                f"GridSampler: parameter '{name}': value {v!r} appears twice in {list(values)!r}; "
                "remove the duplicate"
            )
        seen.add(_value_identity(v))
        out.append(v)
    return tuple(out)


def check_grid_space(space: object) -> dict[str, GridEntry]:
    """Validate a grid space; raise ConfigError naming the parameter and the fix."""
    if not isinstance(space, Mapping) or not space:
        raise ConfigError(
            "GridSampler(space=...) must be a non-empty mapping of name -> distribution or list of "
            "values, e.g. {'lr': Float(1e-5, 1e-1, log=True), 'batch_size': [32, 64]}"
        )
    out: dict[str, GridEntry] = {}
    stand_in: dict[str, SpaceEntry] = {}  # explicit values checked as categoricals for conditions
    for name, entry in space.items():
        if isinstance(entry, (Distribution, Conditional)):
            out[name] = stand_in[name] = entry
        else:
            values = _check_values(str(name), entry)
            out[name], stand_in[name] = values, Categorical(values)
    try:
        validate_space(stand_in)
    except ConfigError as e:
        raise ConfigError(f"GridSampler(space=...): {e}") from None
    return out


def grid_space_to_json(space: Mapping[str, GridEntry]) -> dict[str, Any]:
    """JSON of a grid space: distributions as in a space, explicit values as {"values": [...]}."""
    out: dict[str, Any] = {}
    for name, entry in space.items():
        if isinstance(entry, (Distribution, Conditional)):
            out[name] = space_to_json({name: entry})[name]
        else:
            out[name] = {"values": list(entry)}
    return out


def grid_space_from_json(data: Mapping[str, Any]) -> dict[str, GridEntry]:
    """Inverse of :func:`grid_space_to_json`."""
    out: dict[str, GridEntry] = {}
    for name, d in data.items():
        out[name] = list(d["values"]) if "values" in d else space_from_json({name: d})[name]
    return out


# -- edge shifting ---------------------------------------------------------------------------
def _lattice_digits(step: float) -> int:
    return max(0, -math.floor(math.log10(step))) + 8


def _is_log(axis: Axis) -> bool:
    """Log spacing: log distributions; explicit positive values at least as even in log scale."""
    if isinstance(axis.distribution, (Float, Int)):
        return axis.distribution.log
    xs = sorted(float(v) for v in axis.values)  # type: ignore[arg-type]
    if len(xs) < 2 or xs[0] <= 0:
        return False
    lin = [b - a for a, b in pairwise(xs)]
    log = [math.log(b / a) for a, b in pairwise(xs)]
    return max(log) / min(log) <= max(lin) / min(lin)


def next_point(axis: Axis, current: Sequence[float], low_side: bool) -> ParamValue:
    """The point one step past the lowest (or highest) current value, or None if there is none.

    The step is the gap between the first grid's two outermost values on that side:
    a ratio for log axes, a difference otherwise. Integers stay distinct integers and
    log axes stay positive; a Float lattice's values stay on the lattice; other floats are
    rounded to 12 significant digits (so that every worker and every reader sees 1e-05).
    """
    first = sorted(float(v) for v in axis.values)  # type: ignore[arg-type]
    if len(first) < 2:
        return None
    a, b = (first[0], first[1]) if low_side else (first[-2], first[-1])
    edge = current[0] if low_side else current[-1]
    log = _is_log(axis)
    if log:
        x = edge / (b / a) if low_side else edge * (b / a)
    else:
        x = edge - (b - a) if low_side else edge + (b - a)
    if axis.integer:
        n = round(x)
        n = min(n, round(edge) - 1) if low_side else max(n, round(edge) + 1)
        return None if log and n < 1 else int(n)
    if log and not x > 0:
        return None
    step = getattr(axis.distribution, "step", None)
    if isinstance(step, float):
        return round(x, _lattice_digits(step))
    return float(f"{x:.12g}")  # 1e-05, not 9.999999999999999e-06


# -- the sampler -----------------------------------------------------------------------------
class GridSampler(Sampler):
    """Runs every cell of a grid once, in a seeded order, then the study stops.

    Args:
        space: name -> distribution, ``Conditional`` or explicit list of values; None
            uses the study's declared space (``create_study(space=...)``).
        n_points: grid points per Float/Int parameter (log-spaced for log ones).
        shift_edges: when the best COMPLETE trial sits on the lowest or highest value
            of a numeric parameter, add one more value past that edge (same spacing)
            and run the new cells; values past the declared range are allowed (the
            trial records the widened range).
        max_shifts: at most this many added values per side per parameter.

    Examples:
        With ``shift_edges=True`` a best value on the edge of the grid extends it (here twice,
        ``max_shifts=2``: the best learning rate lies below the grid's range):

        >>> import tunelab
        >>> def objective(trial):
        ...     return abs(trial.suggest_float("lr", 1e-4, 1e-1, log=True) - 1e-6)
        >>> sampler = tunelab.GridSampler({"lr": tunelab.Float(1e-4, 1e-1, log=True)}, n_points=4,
        ...                               shift_edges=True, max_shifts=2)
        >>> study = tunelab.create_study(sampler=sampler, seed=0)
        >>> study.optimize(objective, n_trials=100)
        >>> sorted(t.params["lr"] for t in study.trials)
        [1e-06, 1e-05, 0.0001, 0.001, 0.01, 0.1]
    """

    not_replayable_because = "the cell a trial takes depends on which trials hold cells when it plans"
    plans_enqueued = True  # an enqueued trial claims the cell its values belong to

    def __init__(
        self,
        space: Mapping[str, GridEntry] | None = None,
        n_points: int = 5,
        shift_edges: bool = False,
        max_shifts: int = 10,
    ) -> None:
        if isinstance(n_points, bool) or not isinstance(n_points, int) or n_points < 1:
            raise ConfigError(
                f"GridSampler(n_points=...) must be an integer >= 1 (grid points per numeric "
                f"parameter), got {n_points!r}"
            )
        if not isinstance(shift_edges, bool):
            raise ConfigError(f"GridSampler(shift_edges=...) must be True or False, got {shift_edges!r}")
        if isinstance(max_shifts, bool) or not isinstance(max_shifts, int) or max_shifts < 0:
            raise ConfigError(
                f"GridSampler(max_shifts=...) must be an integer >= 0 (values added per side), "
                f"got {max_shifts!r}"
            )
        self.space = None if space is None else check_grid_space(space)
        self.n_points = n_points
        self.shift_edges = shift_edges
        self.extends_ranges = shift_edges  # values past the declared range are the point of shifting
        self.max_shifts = max_shifts
        self._cache: tuple[tuple[Any, ...], _Grid] | None = None
        self._known: dict[int, tuple[FrozenTrial, CellKey]] = {}  # see _Grid.taken
        if self.space is not None:
            axes = axes_for(self.space, n_points)
            _check_size(axes, {a.name: a.values for a in axes})

    # -- the protocol ----------------------------------------------------------------------
    def exhausted(self, history: History) -> bool:
        # Trials reserved but not planned yet will each take one of the free cells: a driver that
        # reserves for several workers must not reserve one more than there are cells.
        return len(self._free_cells(history, own=None)) <= _being_planned(history.trials(), None)

    def plan(self, history: History, trial: SamplingContext) -> dict[str, ParamValue]:
        mine = _recorded_cell(trial.recorded)
        if mine is not None or RECORD_KEY in trial.recorded:
            return dict(mine or {})
        if trial.fixed:
            return self._plan_enqueued(history, trial)
        free = self._free_cells(history, own=trial.number)
        rank = _being_planned(history.trials(), trial.number)
        if not free:
            raise SearchExhausted(f"trial {trial.number}: every grid cell has been taken")
        if rank >= len(free):
            raise SearchExhausted(
                f"trial {trial.number}: the {len(free)} free grid cell(s) go to {rank} lower-numbered "
                "trial(s) planned at the same time; nothing is left for this one"
            )
        cell = free[rank]
        trial.record(RECORD_KEY, {"cell": dict(cell)})
        return dict(cell)

    def _plan_enqueued(self, history: History, trial: SamplingContext) -> dict[str, ParamValue]:
        """An enqueued trial takes the first free cell its values belong to, so that no other trial
        runs that cell again; with none free (a cell run already, values off the grid) it takes no
        cell (recorded as None) and its other parameters are sampled."""
        axes = {a.name for a in self._axes(history)}
        wanted = {n: _value_identity(v) for n, v in trial.fixed.items() if n in axes}
        for cell in self._free_cells(history, own=trial.number):
            if all(n in cell and _value_identity(cell[n]) == v for n, v in wanted.items()):
                trial.record(RECORD_KEY, {"cell": dict(cell)})
                return dict(cell)
        trial.record(RECORD_KEY, {"cell": None})
        return {}

    def sample(
        self,
        history: History,
        trial: SamplingContext,
        name: str,
        distribution: Distribution,
    ) -> ParamValue:
        axes = {a.name: a for a in self._axes(history)}
        axis = axes.get(name)
        if axis is None:
            raise ConfigError(
                f"parameter '{name}' is not in the grid's space ({', '.join(axes)}); add it with its "
                f"values, e.g. GridSampler(space={{..., '{name}': [v1, v2]}}), or to the study's space"
            )
        candidates = [distribution.cast(v) for v in axis.values if distribution.contains(v)]
        if not candidates:
            raise ConfigError(
                f"parameter '{name}': none of its grid values {list(axis.values)!r} is in "
                f"{distribution!r}; make the grid values and the suggested range agree"
            )
        return candidates[int(trial.rng(name).integers(len(candidates)))]

    def describe(self) -> dict[str, Any]:
        return {
            "name": type(self).__name__,
            "space": None if self.space is None else grid_space_to_json(self.space),
            "n_points": self.n_points,
            "shift_edges": self.shift_edges,
            "max_shifts": self.max_shifts,
        }

    @classmethod
    def from_description(cls, settings: Mapping[str, Any]) -> GridSampler:
        """Rebuild from :meth:`describe` output (without its "name")."""
        settings = dict(settings)
        space = settings.pop("space", None)
        return cls(space=None if space is None else grid_space_from_json(space), **settings)

    def __getstate__(self) -> dict[str, Any]:
        """Caches stay behind when the sampler is sent to worker processes."""
        return {**self.__dict__, "_cache": None, "_known": {}}

    # -- the grid as the history makes it ---------------------------------------------------
    def _axes(self, history: History) -> list[Axis]:
        space: Mapping[str, GridEntry] | None = self.space if self.space is not None else history.space
        if space is None:
            raise ConfigError(
                "GridSampler has no search space: pass it, e.g. GridSampler(space={'lr': "
                "Float(1e-5, 1e-1, log=True)}), or create the study with create_study(space=...)"
            )
        return axes_for(space, self.n_points)

    def _free_cells(self, history: History, own: int | None) -> list[Cell]:
        """The cells no other trial has taken, in the grid's order."""
        axes = self._axes(history)
        others = [t for t in history.trials() if t.number != own]
        grid = self._grid(axes, self._current_values(axes, others, history), history.seed)
        taken = grid.taken(others, self._known)
        return [cell for key, cell in grid.cells if key not in taken]

    def _current_values(
        self, axes: Sequence[Axis], trials: Sequence[FrozenTrial], history: History
    ) -> dict[str, list[ParamValue]]:
        """Each parameter's values: the first grid, plus (edge shifting) every value in a
        recorded cell and one more past an edge where the best trial sits."""
        values = {a.name: list(a.values) for a in axes}
        if not self.shift_edges:
            return values
        shiftable = {a.name: a for a in axes if a.numeric}
        for t in trials:
            for name, v in (_recorded_cell(t.system_attrs) or {}).items():
                if name in shiftable and _is_number(v) and v not in values[name]:
                    values[name].append(v)
        best = history.top(1)
        for name, axis in shiftable.items():
            values[name].sort(key=float)  # type: ignore[arg-type]
            # A parameter the objective suggests as a categorical (explicit values taken by
            # suggest_categorical) can never take a value past its choices: no shift for it.
            if best and not isinstance(best[0].distributions.get(name), Categorical):
                values[name] = self._extend(axis, values[name], best[0].params.get(name))
        return values

    def _extend(self, axis: Axis, current: list[ParamValue], best: ParamValue) -> list[ParamValue]:
        """``current`` (sorted), with one more value past each edge the best value sits on."""
        if not _is_number(best):
            return current
        xs = [float(v) for v in current]  # type: ignore[arg-type]
        first = [float(v) for v in axis.values]  # type: ignore[arg-type]
        out = list(current)
        if math.isclose(float(best), xs[0], rel_tol=1e-9):  # type: ignore[arg-type]
            if sum(x < min(first) for x in xs) < self.max_shifts:
                new = next_point(axis, xs, low_side=True)
                out = out if new is None else [new, *out]
        if math.isclose(float(best), xs[-1], rel_tol=1e-9):  # type: ignore[arg-type]
            if sum(x > max(first) for x in xs) < self.max_shifts:
                new = next_point(axis, xs, low_side=False)
                out = out if new is None else [*out, new]
        return out

    def _grid(self, axes: Sequence[Axis], values: Mapping[str, Sequence[ParamValue]], seed: int) -> _Grid:
        """The grid of these values (the last one is kept: values change only on a shift)."""
        signature = (seed, tuple((a.name, a.values, tuple(values[a.name])) for a in axes))
        if self._cache is None or self._cache[0] != signature:
            _check_size(axes, values)
            self._cache = (signature, _Grid.build(axes, values, seed))
        return self._cache[1]


@dataclass(frozen=True)
class _Grid:
    """Every cell with its key, first-grid cells first, each group in seeded order."""

    cells: list[tuple[CellKey, Cell]]
    keys: frozenset[CellKey]
    shapes: frozenset[tuple[str, ...]]  # the parameter names of cells

    @classmethod
    def build(cls, axes: Sequence[Axis], values: Mapping[str, Sequence[ParamValue]], seed: int) -> _Grid:
        first = {a.name: {(type(v).__name__, v) for v in a.values} for a in axes}

        def order(item: tuple[CellKey, Cell]) -> tuple[int, bytes]:
            added = sum((kind, v) not in first[name] for name, kind, v in item[0])
            return added, seeded_rank(seed, RECORD_KEY, item[0])

        cells = sorted(((cell_key(c), c) for c in iter_cells(axes, values)), key=order)
        return cls(cells, frozenset(k for k, _ in cells), frozenset(tuple(c) for _, c in cells))

    def taken(
        self, trials: Sequence[FrozenTrial], known: dict[int, tuple[FrozenTrial, CellKey]]
    ) -> set[CellKey]:
        """Keys of the cells that a trial recorded, or whose values a trial's params hold.

        ``known`` caches the recorded keys of finished trials (which never change) by number.
        """
        taken: set[CellKey] = set()
        for t in trials:
            hit = known.get(t.number)
            if hit is not None and hit[0] is t:
                taken.add(hit[1])
                continue
            recorded = _recorded_cell(t.system_attrs)
            if recorded is not None:
                key = cell_key(recorded)
                taken.add(key)
                if t.state.is_finished:
                    known[t.number] = (t, key)
                continue
            for names in self.shapes if t.params else ():
                if all(n in t.params for n in names):
                    key = cell_key({n: t.params[n] for n in names})
                    if key in self.keys:
                        taken.add(key)
        return taken


def _check_size(axes: Sequence[Axis], values: Mapping[str, Sequence[ParamValue]]) -> None:
    if count_cells(axes, values, MAX_CELLS) > MAX_CELLS:
        raise ConfigError(
            f"GridSampler: the grid has more than {MAX_CELLS} cells; lower n_points, give fewer "
            "values, or use a RandomSampler or CoarseToFineSampler for a space this large"
        )


def _recorded_cell(attrs: Mapping[str, Any]) -> dict[str, ParamValue] | None:
    record = attrs.get(RECORD_KEY)
    cell = record.get("cell") if isinstance(record, dict) else None
    return cell if isinstance(cell, dict) else None


def _being_planned(trials: Sequence[FrozenTrial], number: int | None) -> int:
    """RUNNING trials (lower-numbered than ``number``, all when None) with neither a cell nor params:
    planned right now."""
    return sum(
        1
        for t in trials
        if (number is None or t.number < number) and t.state == TrialState.RUNNING
        and RECORD_KEY not in t.system_attrs and not t.params
    )
