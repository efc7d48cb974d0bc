"""Coarse-to-fine search: explore the whole space, then sample ever narrower ranges around the best.

Trial ``n`` belongs to stage ``min(n // trials_per_stage, n_stages - 1)``. Stage 0
samples the whole space (at random, or on a small grid). In stage ``s >= 1`` each
numeric range shrinks, in unit space (log space for log parameters), to the span
of the ``top_k`` best COMPLETE trials so far, widened symmetrically to at least
``shrink ** s`` of the full width, plus a margin of :data:`MARGIN` of that width on
each side, clipped to the full range. Values are drawn from the parameter's
distribution restricted to its range: uniform in unit space, and integers and
lattices keep to their values. A categorical parameter takes each choice with
probability ``(count + PSEUDO_COUNT) / (k + PSEUDO_COUNT * n_choices)``: its share
among those ``k`` trials, smoothed by a Jeffreys prior (:data:`PSEUDO_COUNT` = 0.5
per choice), so that a choice no top trial used keeps a little probability.

Every trial records ``system_attrs["coarse_to_fine"] = {"stage": s, "ranges": {...}}``
(numeric: ``[low, high]`` in the parameter's units; categorical: ``{choice: p}``;
stage 0 and trials before any COMPLETE trial sample the whole space and record no
ranges). The first trial of a stage fixes its ranges: later trials of the stage,
in any worker, reuse what an earlier trial recorded.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tunelab.distributions import Bool, Categorical, Distribution, Float, Int, ParamValue
from tunelab.errors import ConfigError, InvalidDistributionError
from tunelab.history import History
from tunelab.records import FrozenTrial
from tunelab.samplers.base import Sampler, SamplingContext
from tunelab.samplers.grid import Axis, Cell, axes_for, count_cells, iter_cells, seeded_order
from tunelab.space import SpaceEntry, space_to_json, unwrap

RECORD_KEY = "coarse_to_fine"
MARGIN = 0.1
"""Added on each side of a numeric range, as a fraction of its (widened) width."""
PSEUDO_COUNT = 0.5
"""Smoothing added to each choice's count among the top trials (a Jeffreys prior)."""

Range = list[Any] | dict[str, float]
"""A recorded range: ``[low, high]`` for numbers, ``{choice label: probability}`` for choices."""


class CoarseToFineSampler(Sampler):
    """Stages of random search, each in ranges shrunk around the best trials so far.

    Args:
        n_stages: number of stages; the last one lasts until the study stops.
        trials_per_stage: trials in each stage but the last.
        top_k: how many of the best COMPLETE trials define a stage's ranges.
        shrink: a stage ``s`` range keeps at least ``shrink ** s`` of the full width
            (in unit space), in (0, 1].
        first_stage: 'random', or 'grid' for a grid of at most ``trials_per_stage``
            cells over the study's declared space (random without one).

    Examples:
        >>> import tunelab
        >>> def objective(trial):
        ...     return abs(trial.suggest_float("lr", 1e-5, 1e-1, log=True) - 3e-3)
        >>> sampler = tunelab.CoarseToFineSampler(n_stages=3, trials_per_stage=8, top_k=3)
        >>> study = tunelab.create_study(sampler=sampler, seed=0)
        >>> study.optimize(objective, n_trials=24)
        >>> [study.trials[n].system_attrs["coarse_to_fine"]["stage"] for n in (0, 8, 16)]
        [0, 1, 2]
        >>> low, high = study.trials[-1].system_attrs["coarse_to_fine"]["ranges"]["lr"]
        >>> 1e-5 < low < 3e-3 < high < 1e-1          # the last stage searches around the best
        True
    """

    not_replayable_because = "its zoomed stages depend on the results in when a stage begins"

    def __init__(
        self,
        n_stages: int = 3,
        trials_per_stage: int = 20,
        top_k: int = 5,
        shrink: float = 0.5,
        first_stage: str = "random",
    ) -> None:
        for arg, value in (("n_stages", n_stages), ("trials_per_stage", trials_per_stage), ("top_k", top_k)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"CoarseToFineSampler({arg}=...) must be an integer >= 1, got {value!r}")
        if isinstance(shrink, bool) or not isinstance(shrink, (int, float)) or not 0 < shrink <= 1:
            raise ConfigError(
                "CoarseToFineSampler(shrink=...) must be a number in (0, 1], the least fraction of "
                f"the full width a stage-1 range keeps (e.g. 0.5), got {shrink!r}"
            )
        if first_stage not in ("random", "grid"):
            raise ConfigError(
                f"CoarseToFineSampler(first_stage=...) must be 'random' or 'grid', got {first_stage!r}"
            )
        self.n_stages = n_stages
        self.trials_per_stage = trials_per_stage
        self.top_k = top_k
        self.shrink = float(shrink)
        self.first_stage = first_stage
        self._grid_cache: tuple[str, list[Cell]] | None = None

    def stage(self, number: int) -> int:
        """The stage of trial ``number``."""
        return min(number // self.trials_per_stage, self.n_stages - 1)

    # -- the protocol ----------------------------------------------------------------------
    def plan(self, history: History, trial: SamplingContext) -> dict[str, ParamValue]:
        stage = self.stage(trial.number)
        if stage == 0 or not history.completed():
            trial.record(RECORD_KEY, {"stage": stage, "ranges": {}})
            return self._first_stage_cell(history, trial.number) if stage == 0 else {}
        ranges = _stage_ranges(history, trial.number, stage)
        top = history.top(self.top_k)
        for name, dist in _known_distributions(history.space, top).items():
            if name not in ranges:
                ranges[name] = self._range(top, stage, name, dist)
        trial.record(RECORD_KEY, {"stage": stage, "ranges": ranges})
        return {}

    def sample(
        self,
        history: History,
        trial: SamplingContext,
        name: str,
        distribution: Distribution,
    ) -> ParamValue:
        record = trial.recorded.get(RECORD_KEY)
        if not isinstance(record, Mapping):  # not planned: an enqueued trial with partial params
            self.plan(history, trial)  # a grid cell is of no use now: only the record counts
            record = trial.recorded[RECORD_KEY]
        stage, ranges = record["stage"], dict(record["ranges"])
        rng = trial.rng(name)
        if name not in ranges:
            if stage == 0 or not history.completed():
                return distribution.sample(rng)
            fixed = _stage_ranges(history, trial.number, stage)
            top = history.top(self.top_k)
            ranges[name] = fixed[name] if name in fixed else self._range(top, stage, name, distribution)
            trial.record(RECORD_KEY, {"stage": stage, "ranges": ranges})
        return _draw(distribution, ranges[name], rng)

    def describe(self) -> dict[str, Any]:
        return {
            "name": type(self).__name__,
            "n_stages": self.n_stages,
            "trials_per_stage": self.trials_per_stage,
            "top_k": self.top_k,
            "shrink": self.shrink,
            "first_stage": self.first_stage,
        }

    @classmethod
    def from_description(cls, settings: Mapping[str, Any]) -> CoarseToFineSampler:
        """Rebuild from :meth:`describe` output (without its "name")."""
        return cls(**settings)

    # -- ranges ----------------------------------------------------------------------------
    def _range(self, top: Sequence[FrozenTrial], stage: int, name: str, dist: Distribution) -> Range:
        """The range of ``name`` in ``stage``, from the values of the top trials that have it."""
        values = [t.params[name] for t in top if name in t.params]
        if isinstance(dist, (Categorical, Bool)):
            return choice_shares(dist, values)
        return numeric_range(dist, values, self.shrink**stage)

    # -- the first stage's grid ---------------------------------------------------------------
    def _first_stage_cell(self, history: History, number: int) -> dict[str, ParamValue]:
        if self.first_stage != "grid" or history.space is None:
            return {}
        cells = self._first_grid(history.space, history.seed)
        return dict(cells[number]) if number < len(cells) else {}

    def _first_grid(self, space: Mapping[str, SpaceEntry], seed: int) -> list[Cell]:
        """The largest grid (same points per numeric dimension) of at most trials_per_stage cells."""
        signature = f"{seed}|{json.dumps(space_to_json(space), sort_keys=True)}"
        if self._grid_cache is not None and self._grid_cache[0] == signature:
            return self._grid_cache[1]
        budget = self.trials_per_stage
        chosen: list[Axis] | None = None
        sizes: list[int] = []
        for n in range(1, budget + 1):
            axes = axes_for(space, n)
            if [len(a.values) for a in axes] == sizes:
                break  # no axis grows any more
            if count_cells(axes, {a.name: a.values for a in axes}, budget) > budget:
                break
            chosen, sizes = axes, [len(a.values) for a in axes]
        cells: list[Cell] = []
        if chosen is not None:
            grid = iter_cells(chosen, {a.name: a.values for a in chosen})
            cells = seeded_order(list(grid), seed, RECORD_KEY)
        self._grid_cache = (signature, cells)
        return cells


def numeric_range(dist: Distribution, values: Sequence[ParamValue], min_width: float) -> list[Any]:
    """``[low, high]`` around ``values`` in unit space (see the module docstring); full if none."""
    units = [u for u in (_unit(dist, v) for v in values) if u is not None]
    lo, hi = 0.0, 1.0
    if units:
        lo, hi = min(units), max(units)
        if hi - lo < min_width:
            centre = (lo + hi) / 2
            lo, hi = centre - min_width / 2, centre + min_width / 2
        pad = MARGIN * (hi - lo)
        lo, hi = max(0.0, lo - pad), min(1.0, hi + pad)
    return [dist.from_unit(lo), dist.from_unit(hi)]


def choice_shares(dist: Categorical | Bool, values: Sequence[ParamValue]) -> dict[str, float]:
    """Each choice's smoothed share among ``values``, keyed by :func:`choice_labels`."""
    choices = list(dist.choices)
    counts = [sum(1 for v in values if _same(v, c)) for c in choices]
    total = sum(counts) + PSEUDO_COUNT * len(choices)
    labels = choice_labels(choices)
    return {label: (n + PSEUDO_COUNT) / total for label, n in zip(labels, counts, strict=True)}


def choice_labels(choices: Sequence[ParamValue]) -> list[str]:
    """JSON keys of choices: ``str(c)``, or ``repr(c)`` if two would collide (1 and '1')."""
    labels = [str(c) for c in choices]
    return labels if len(set(labels)) == len(labels) else [repr(c) for c in choices]


def _same(a: object, b: object) -> bool:
    return type(a) is type(b) and a == b


def _unit(dist: Distribution, value: ParamValue) -> float | None:
    """The value's unit coordinate, clipped to [0, 1]; None if it has none."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        u = dist.to_unit(value)
    except (ValueError, TypeError, OverflowError):  # e.g. a non-positive value on a log scale
        return None
    return min(max(u, 0.0), 1.0) if math.isfinite(u) else None


def _draw(dist: Distribution, spec: object, rng: np.random.Generator) -> ParamValue:
    """A value of ``dist`` inside a recorded range (the whole distribution if it does not fit)."""
    if isinstance(dist, (Categorical, Bool)) and isinstance(spec, Mapping):
        weights = np.array([_weight(spec.get(label)) for label in choice_labels(list(dist.choices))])
        total = float(weights.sum())
        if total > 0:
            index = int(np.searchsorted(np.cumsum(weights), rng.random() * total, side="right"))
            return dist.choices[min(index, len(weights) - 1)]
    if isinstance(dist, (Float, Int)) and isinstance(spec, Sequence) and len(spec) == 2:
        return _narrow(dist, spec[0], spec[1]).sample(rng)
    return dist.sample(rng)


def _weight(p: object) -> float:
    return float(p) if isinstance(p, (int, float)) and math.isfinite(p) and p > 0 else 0.0


def _narrow(dist: Float | Int, low: object, high: object) -> Distribution:
    """``dist`` restricted to ``[low, high]`` (snapped to its lattice), or ``dist`` if that fails."""
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (low, high)):
        return dist
    if float(low) > dist.high or float(high) < dist.low:  # type: ignore[arg-type]
        return dist  # the objective's range moved off the recorded one: no part of it is left to zoom into
    lo = dist.from_unit(dist.to_unit(max(float(low), dist.low)))  # type: ignore[arg-type]
    hi = dist.from_unit(dist.to_unit(min(float(high), dist.high)))  # type: ignore[arg-type]
    try:
        if isinstance(dist, Int):
            return Int(int(lo), int(hi), log=dist.log, step=dist.step)
        return Float(float(lo), float(hi), log=dist.log, step=dist.step)
    except InvalidDistributionError:  # an empty or misaligned range: the range changed since
        return dist


def _stage_ranges(history: History, own: int, stage: int) -> dict[str, Range]:
    """The ranges other trials recorded for ``stage``; the lowest-numbered trial wins."""
    fixed: dict[str, Range] = {}
    for t in history.trials():
        record = t.system_attrs.get(RECORD_KEY)
        if t.number != own and isinstance(record, Mapping) and record.get("stage") == stage:
            for name, spec in dict(record.get("ranges") or {}).items():
                fixed.setdefault(name, spec)
    return fixed


def _known_distributions(
    space: Mapping[str, SpaceEntry] | None, top: Sequence[FrozenTrial]
) -> dict[str, Distribution]:
    """The declared space's distributions, then those the top trials used (define-by-run)."""
    dists = {name: unwrap(entry) for name, entry in (space or {}).items()}
    for t in top:
        for name, dist in t.distributions.items():
            dists.setdefault(name, dist)
    return dists
