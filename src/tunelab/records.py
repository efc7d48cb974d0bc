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
from typing import Any

from tunelab.distributions import Distribution, ParamValue
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
    """

    number: int
    state: TrialState
    value: float | None
    params: Mapping[str, ParamValue]
    distributions: Mapping[str, Distribution]
    user_attrs: Mapping[str, Any] = field(default_factory=dict)
    system_attrs: Mapping[str, Any] = field(default_factory=dict)
    datetime_start: datetime | None = None
    datetime_complete: datetime | None = None
    error: str | None = None
    trial_id: int = -1

    @property
    def duration(self) -> float | None:
        """Seconds between start and completion, if both are known."""
        if self.datetime_start is None or self.datetime_complete is None:
            return None
        return (self.datetime_complete - self.datetime_start).total_seconds()


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
    """One line of a study listing."""

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
