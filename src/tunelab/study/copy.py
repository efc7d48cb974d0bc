"""Copying a study to another storage (or under another name): :func:`copy_study`.

A study begun on a laptop's SQLite file moves to the PostgreSQL server its cluster shares, with everything a
study is: its settings (directions, objective names, seed, sampler, pruner, declared space, warm-start
sources), its attributes, and each trial with its number, state, values, parameters and their distributions,
attributes, constraints, learning curves and times. Checkpoint files stay where they are (copy the folder to
bring them: the copy gets its own, ``study.artifact_dir``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunelab.checkpoints import new_study_folder
from tunelab.errors import ConfigError, DuplicatedStudyError
from tunelab.records import FrozenTrial, TrialState
from tunelab.storage import BaseStorage, get_storage
from tunelab.storage.base import Curves
from tunelab.study.factory import load_study
from tunelab.study.study import Study

RUNNING_WHEN_COPIED = "interrupted: it was running in the source study when the study was copied"
"""The error of a copied trial that was RUNNING: it keeps its number; the copy does not run it."""


def copy_study(
    from_study_name: str,
    from_storage: str | BaseStorage,
    to_storage: str | BaseStorage,
    to_study_name: str | None = None,
) -> Study:
    """Copy the study ``from_study_name`` of ``from_storage`` into ``to_storage`` (as ``to_study_name``, default
    the same name) and return the copy, loaded (Optuna's ``copy_study``, with the same arguments).

    Every trial keeps its number, state, value(s), parameters with their distributions, attributes,
    constraints, curves and start and end times (where the target storage keeps them: the SQL and in-memory
    storages do). A trial WAITING in the queue waits in the copy too; one RUNNING in the source is FAIL in the
    copy, "interrupted" (it may still finish there). Checkpoint files are not copied. A name already taken in
    the target, or copying a study onto itself, is refused before anything is written.
    """
    source = get_storage(from_storage, create=False)
    target = get_storage(to_storage)
    name = from_study_name if to_study_name is None else to_study_name
    record = source.get_study(from_study_name)
    same = source is target or (source.url is not None and source.url == target.url)
    if same and name == from_study_name:
        raise ConfigError(f"copy_study() would copy study {name!r} onto itself: give to_study_name, or another "
                          "to_storage")
    system = dict(record.system_attrs)
    system["artifact_dir"] = str(new_study_folder(None, target.url, name))  # its own: trial numbers would clash
    try:
        copied = target.create_study(name, record.direction, record.seed, dict(record.user_attrs), system)
    except DuplicatedStudyError:
        raise ConfigError(f"a study named {name!r} is already in the target storage: give the copy another name "
                          "(to_study_name=..., or tunelab copy --name)") from None
    for param, distribution in source.get_distributions(record.study_id).items():
        target.register_distribution(copied.study_id, param, distribution)
    for trial in source.get_trials(record.study_id):
        _copy_trial(trial, source.get_curves(trial.trial_id), target, copied.study_id)
    return load_study(name, target)


def _copy_trial(trial: FrozenTrial, curves: Curves, target: BaseStorage, study_id: int) -> None:
    keep: dict[str, Any] = {"params": dict(trial.params), "distributions": dict(trial.distributions),
                            "user_attrs": dict(trial.user_attrs), "system_attrs": dict(trial.system_attrs)}
    if trial.state is TrialState.WAITING:
        target.create_trial(study_id, TrialState.WAITING, **keep)
        return
    made = target.create_trial(study_id, TrialState.RUNNING, **keep)
    points = _points(curves)
    if points:
        target.report_steps(made.trial_id, points)
    state, error = trial.state, trial.error
    if state is TrialState.RUNNING:
        state, error = TrialState.FAIL, RUNNING_WHEN_COPIED
    several = trial.values is not None and len(trial.values) > 1
    target.finish_trial(made.trial_id, state, value=trial.value if state is TrialState.COMPLETE else None,
                        error=error, values=list(trial.values) if several and trial.values else None)
    if trial.state is not TrialState.RUNNING:
        target.restore_times(made.trial_id, trial.datetime_start, trial.datetime_complete)


def _points(curves: Mapping[str, tuple[list[int], list[float]]]) -> list[tuple[int, dict[str, float]]]:
    """Curves (metric -> steps, values) as reports (step -> metrics), in step order."""
    by_step: dict[int, dict[str, float]] = {}
    for metric, (steps, values) in curves.items():
        for step, value in zip(steps, values, strict=True):
            by_step.setdefault(step, {})[metric] = value
    return sorted(by_step.items())


__all__ = ["RUNNING_WHEN_COPIED", "copy_study"]
