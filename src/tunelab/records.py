"""Plain, immutable records that storages return and every layer reads.

They carry data only: no storage handle, no sampler, no behaviour beyond
convenience accessors. That is what lets a sampler or a dashboard receive a
trial without receiving the power to change the study.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tunelab.distributions import Distribution
from tunelab.errors import ConfigError


class TrialState(str, enum.Enum):
    """Life cycle of a trial: WAITING (enqueued) -> RUNNING -> COMPLETE | PRUNED | FAIL."""

    WAITING = "WAITING"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"
    FAIL = "FAIL"

    @property
    def is_finished(self) -> bool:
        """COMPLETE, PRUNED and FAIL are final: a finished trial never changes again."""
        return self in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)

    def __str__(self) -> str:
        return self.value


FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
DIRECTIONS = ("minimize", "maximize")


def check_direction(direction: object) -> str:
    """Return ``direction`` if it is 'minimize' or 'maximize', else raise ConfigError."""
    if direction not in DIRECTIONS:
        raise ConfigError(
            f"direction must be 'minimize' or 'maximize', got {direction!r}"
        )
    return str(direction)


def missing_attribute(owner: object, name: str, hints: Mapping[str, str]) -> AttributeError:
    """The AttributeError for ``owner.name``; for a name another tuner (Optuna) uses, it says what tunelab
    calls it (``hints``: name -> what to use instead)."""
    message = f"{type(owner).__name__!r} object has no attribute {name!r}"
    hint = hints.get(name)
    return AttributeError(f"{message}: {hint}" if hint else message, name=name, obj=owner)


FROZEN_TRIAL_HINTS = {
    "intermediate_values": "tunelab keeps learning curves by metric name, "
    "study.get_curves(trial.number) -> {metric: (steps, values)}",
    "last_step": "the steps a trial reported are in study.get_curves(trial.number)[metric][0]",
}
"""Optuna's names that a :class:`FrozenTrial` does not have, and what to use instead."""


OBJECTIVES_KEY = "objectives"
"""The study system attribute of a study with several objectives: ``{"directions", "names"}``."""


def study_directions(record: StudyRecord) -> tuple[str, ...]:
    """The directions of a study's objectives (one for a single-objective study)."""
    stored = record.system_attrs.get(OBJECTIVES_KEY)
    if isinstance(stored, Mapping) and stored.get("directions"):
        return tuple(str(d) for d in stored["directions"])
    return (record.direction,)


def study_objective_names(record: StudyRecord) -> tuple[str, ...] | None:
    """The names of a multi-objective study's objectives; None for a single-objective study."""
    stored = record.system_attrs.get(OBJECTIVES_KEY)
    if isinstance(stored, Mapping) and stored.get("names"):
        return tuple(str(n) for n in stored["names"])
    return None


CONSTRAINTS_KEY = "constraints"
"""The trial system attribute holding its constraints: ``{name: {"value", "lower", "upper"}}``."""

PRUNED_KEY = "pruned"
"""The trial system attribute holding the decision that stopped it: ``{"step", "metric", "value", "rule",
"detail"}`` and, when the pruner gave it, ``"evidence"``."""
PREDICTION_KEY = "prediction"
"""The trial system attribute holding its pruner's latest decision to go on that carried evidence (a
learning-curve pruner's prediction of its curve), in the shape of :data:`PRUNED_KEY`'s."""
PREDICTED_FINAL = "predicted_final"
"""The key of a decision's evidence holding the value of its metric predicted at the end of training
(``max_resource``), as a learning-curve pruner stores it with each decision made from a curve model."""


def predicted_final(trial: FrozenTrial, metric: str) -> float | None:
    """The final value of ``metric`` that a pruner predicted for ``trial`` from its curve: the evidence of
    the decision that stopped it (a pruned trial), else of its latest decision to go on (a running or
    finished trial). None when no such decision on ``metric`` carries a finite :data:`PREDICTED_FINAL`.

    This is what model-based samplers fit on for a trial stopped (or still running) under a learning-curve
    pruner, instead of imputing it as the worst; it is read from the storage, so every worker sees it.
    """
    keys = (PRUNED_KEY, PREDICTION_KEY) if trial.state == TrialState.PRUNED else (PREDICTION_KEY,)
    for key in keys:
        decision = trial.system_attrs.get(key)
        if not isinstance(decision, Mapping) or decision.get("metric") != metric:
            continue
        evidence = decision.get("evidence")
        value = evidence.get(PREDICTED_FINAL) if isinstance(evidence, Mapping) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None


@dataclass(frozen=True)
class Constraint:
    """A measured quantity of a trial and its bounds (``trial.set_constraint``).

    Attributes:
        name: what was measured, e.g. ``"peak_memory_gb"``.
        value: the measured value.
        lower / upper: the bounds (None: unbounded on that side); the constraint holds when
            ``lower <= value <= upper``.
    """

    name: str
    value: float
    lower: float | None = None
    upper: float | None = None

    @property
    def violation(self) -> float:
        """How far the value lies outside its bounds (0.0 when they hold)."""
        over = 0.0
        if self.upper is not None and self.value > self.upper:
            over += self.value - self.upper
        if self.lower is not None and self.value < self.lower:
            over += self.lower - self.value
        return over

    @property
    def satisfied(self) -> bool:
        """Whether the bounds hold."""
        return self.violation <= 0.0

    def to_json(self) -> dict[str, float | None]:
        return {"value": self.value, "lower": self.lower, "upper": self.upper}

    @classmethod
    def from_json(cls, name: str, data: Mapping[str, Any]) -> Constraint:
        def num(x: Any) -> float | None:
            return None if x is None else float(x)

        value = num(data.get("value"))
        return cls(name, math.inf if value is None else value, num(data.get("lower")), num(data.get("upper")))


@dataclass(frozen=True)
class FrozenTrial:
    """A snapshot of one trial as stored.

    Attributes:
        number: position in the study, 0-based, unique and allocated atomically.
        state: see :class:`TrialState`.
        value: objective value of a COMPLETE trial (None otherwise).
        params: parameter name -> value, only those the trial actually suggested.
        distributions: parameter name -> the distribution it was drawn from.
        user_attrs: free-form JSON data set by the user.
        system_attrs: JSON data set by tunelab (sampler stage, grid cell, ...).
        datetime_start / datetime_complete: UTC timestamps.
        error: the error text of a FAIL trial.
        trial_id: the storage's key (unique across studies).
        values: every objective's value of a COMPLETE trial, in the study's order (None otherwise).
            One objective: ``(value,)``. Several: ``value`` is the first objective's value (so
            tools that show one number show the first objective), ``values`` holds them all.
    """

    number: int
    state: TrialState
    value: float | None
    params: Mapping[str, Any]  # Any, as Optuna's: ``train(**trial.params)`` type-checks in users' code
    distributions: Mapping[str, Distribution]
    user_attrs: Mapping[str, Any] = field(default_factory=dict)
    system_attrs: Mapping[str, Any] = field(default_factory=dict)
    datetime_start: datetime | None = None
    datetime_complete: datetime | None = None
    error: str | None = None
    trial_id: int = -1
    values: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.values is None:
            if self.value is not None:
                object.__setattr__(self, "values", (self.value,))
        else:
            if not isinstance(self.values, tuple):
                object.__setattr__(self, "values", tuple(self.values))
            if self.value is None and self.values:
                object.__setattr__(self, "value", self.values[0])

    @property
    def constraints(self) -> dict[str, Constraint]:
        """The constraints the trial recorded (``trial.set_constraint``), by name."""
        raw = self.system_attrs.get(CONSTRAINTS_KEY)
        if not isinstance(raw, Mapping):
            return {}
        return {name: Constraint.from_json(name, c) for name, c in raw.items() if isinstance(c, Mapping)}

    @property
    def violation(self) -> float:
        """The total amount by which the trial's constraints are violated (0.0: feasible)."""
        raw = self.system_attrs.get(CONSTRAINTS_KEY)
        if not raw:
            return 0.0
        return sum(c.violation for c in self.constraints.values())

    @property
    def feasible(self) -> bool:
        """Whether every constraint bound the trial recorded holds (True when it recorded none)."""
        return self.violation <= 0.0

    @property
    def duration(self) -> float | None:
        """Seconds between start and completion, if both are known."""
        if self.datetime_start is None or self.datetime_complete is None:
            return None
        return (self.datetime_complete - self.datetime_start).total_seconds()

    if not TYPE_CHECKING:  # hidden from type checkers, which would then accept any attribute

        def __getattr__(self, name: str) -> Any:
            raise missing_attribute(self, name, FROZEN_TRIAL_HINTS)


@dataclass(frozen=True)
class StudyRecord:
    """A study's identity and settings as stored."""

    study_id: int
    name: str
    direction: str
    seed: int
    user_attrs: Mapping[str, Any]
    system_attrs: Mapping[str, Any]
    datetime_created: datetime | None = None


@dataclass(frozen=True)
class StudySummary:
    """One line of a study listing (``get_storage(url).list_studies()``, Optuna's ``get_all_study_summaries``).

    Attributes:
        name: the study's name.
        direction: its direction (the first objective's, in a study with several).
        n_trials: how many trials it has.
        counts: how many in each state (``{"COMPLETE": 12, "FAIL": 1}``).
        best_value: the storage's best value of the first objective over the COMPLETE trials, constraints
            not considered; :func:`tunelab.study.study_headline` gives the best feasible trial (or, with
            several objectives, the size of the Pareto front), as ``tunelab studies`` shows it.
        datetime_created: when the study was created (UTC).
    """

    name: str
    direction: str
    n_trials: int
    counts: Mapping[str, int]
    best_value: float | None
    datetime_created: datetime | None


def better(direction: str, a: float, b: float) -> bool:
    """Whether value ``a`` is strictly better than ``b`` under ``direction``."""
    return a < b if direction == "minimize" else a > b


def sort_key(direction: str):  # type: ignore[no-untyped-def]
    """A key that sorts COMPLETE trials best first."""
    sign = 1.0 if direction == "minimize" else -1.0

    def key(t: FrozenTrial) -> tuple[float, int]:
        v = t.value if t.value is not None and math.isfinite(t.value) else math.inf
        return (sign * v if v != math.inf else math.inf, t.number)

    return key
