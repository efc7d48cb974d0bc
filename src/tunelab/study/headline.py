"""What a list of studies shows of each one: its best feasible trial, or its Pareto front's size.

One reading for ``tunelab studies`` and the dashboard's study list, so both say the same.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunelab.multiobjective import pareto_front_trials
from tunelab.records import FrozenTrial, StudySummary, TrialState, study_directions
from tunelab.storage import BaseStorage
from tunelab.study.study import find_best_trial


@dataclass(frozen=True)
class StudyHeadline:
    """What a list of studies shows of one.

    Attributes:
        directions: one per objective.
        best: one objective: the best feasible COMPLETE trial (None: none yet, or none feasible:
            an infeasible trial is never the best).
        front_size: several objectives: how many feasible COMPLETE trials are on the Pareto front
            (no trial is best alone); None with one objective or before any COMPLETE trial.
    """

    directions: tuple[str, ...]
    best: FrozenTrial | None
    front_size: int | None


def study_headline(storage: BaseStorage, summary: StudySummary) -> StudyHeadline:
    """A listed study's best feasible trial, or its Pareto front's size with several objectives."""
    record = storage.get_study(summary.name)
    directions = study_directions(record)
    if summary.best_value is None:  # no COMPLETE trial yet
        return StudyHeadline(directions, None, None)
    if len(directions) > 1:
        front = pareto_front_trials(storage.get_trials(record.study_id, (TrialState.COMPLETE,)), directions)
        return StudyHeadline(directions, None, len(front))
    best = find_best_trial(storage, record.study_id, record.direction)
    return StudyHeadline(directions, best if best is not None and best.feasible else None, None)
