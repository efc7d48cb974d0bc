"""Optuna: bring an Optuna study's history into tunelab.

:func:`import_study` copies every finished trial of an ``optuna.Study`` (any of its storages) into a new tunelab
study: parameters with their distributions, states, values (one or several objectives), intermediate values as a
learning curve, user attributes and constraints (each bound ``<= 0``, as Optuna's). The copy is an ordinary
study: ``tunelab show``, the report, the dashboard and the importance read it, and a new study learns from it
with ``warm_start=[name]``::

    import optuna
    from tunelab.integrations.optuna import import_study

    old = optuna.load_study(study_name="cnn", storage="sqlite:///optuna.db")
    import_study(old, storage="sqlite:///tunelab.db", name="cnn-optuna")
    study = tunelab.create_study(name="cnn-v2", storage="sqlite:///tunelab.db", warm_start=["cnn-optuna"])

or from the shell: ``tunelab import-optuna cnn --from sqlite:///optuna.db --storage sqlite:///tunelab.db``.
RUNNING and WAITING trials are left out (they have no result yet); each copied trial keeps its Optuna number and
times in ``user_attrs["optuna"]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from tunelab.distributions import Categorical, Distribution, Float, Int
from tunelab.errors import ConfigError, DuplicatedStudyError
from tunelab.integrations._common import require
from tunelab.records import CONSTRAINTS_KEY, TrialState
from tunelab.storage.base import BaseStorage
from tunelab.study.attrs import json_data
from tunelab.study.factory import create_study
from tunelab.study.study import Study

optuna: Any = require("optuna", "optuna", "tunelab.integrations.optuna")

_STATES = {"COMPLETE": TrialState.COMPLETE, "PRUNED": TrialState.PRUNED, "FAIL": TrialState.FAIL}


def distribution(name: str, dist: Any) -> Distribution:
    """The tunelab distribution of an Optuna one (``FloatDistribution``, ``IntDistribution``,
    ``CategoricalDistribution``, and the deprecated ``UniformDistribution`` family, which Optuna reads as these)."""
    kind = type(dist).__name__
    try:
        if isinstance(dist, optuna.distributions.FloatDistribution):
            return Float(dist.low, dist.high, log=dist.log, step=dist.step)
        if isinstance(dist, optuna.distributions.IntDistribution):
            return Int(dist.low, dist.high, log=dist.log, step=dist.step)
        if isinstance(dist, optuna.distributions.CategoricalDistribution):
            return Categorical(list(dist.choices))
    except ConfigError as e:
        raise ConfigError(f"parameter {name!r}: Optuna's {kind} has no tunelab equivalent: {e}") from e
    raise ConfigError(f"parameter {name!r}: Optuna's {kind} has no tunelab equivalent (Float, Int and Categorical "
                      "are: write the study's parameters with suggest_float, suggest_int or suggest_categorical)")


def import_study(
    study: Any,
    storage: str | BaseStorage | None = "sqlite:///tunelab.db",
    name: str | None = None,
    metric: str | None = None,
) -> Study:
    """Copy the finished trials of the Optuna study ``study`` into a new tunelab study, and return it.

    Args:
        study: an ``optuna.Study`` (``optuna.load_study(study_name=..., storage=...)``).
        storage: the tunelab storage to write to (a URL, a storage, or None for in memory).
        name: the new study's name (default: the Optuna study's); a study of that name must not exist yet.
        metric: the name of the curve that holds each trial's intermediate values (Optuna's ``trial.report``);
            default: the study's objective name when Optuna knows it (``set_metric_names``), else ``"value"``.

    A distribution with no tunelab equivalent, a name that is taken or an ``optuna.Study`` that is none is a
    ConfigError, raised before anything is written.
    """
    if not isinstance(study, optuna.Study):
        raise ConfigError(f"import_study() takes an optuna.Study, got {type(study).__name__}: load it with "
                          "optuna.load_study(study_name=..., storage=...)")
    directions = [d.name.lower() for d in study.directions]
    names = list(study.metric_names) if study.metric_names else None
    curve = metric if metric is not None else (names[0] if names and len(names) == 1 else "value")
    if not isinstance(curve, str) or not curve:
        raise ConfigError(f"metric={metric!r}: give the curve's name as a non-empty string, e.g. metric='val_loss'")
    trials = [t for t in study.get_trials(deepcopy=False) if t.state.name in _STATES]
    converted = [{k: distribution(k, d) for k, d in t.distributions.items()} for t in trials]  # errors first
    several = len(directions) > 1
    try:
        target = create_study(
            name=name or study.study_name, storage=storage, user_attrs=_json_attrs(study.user_attrs),
            direction=None if several else directions[0], directions=directions if several else None,
            objective_names=names if several else None,
        )
    except DuplicatedStudyError:
        raise ConfigError(f"a study named {name or study.study_name!r} is already in the target storage: give the "
                          "copy another name (import_study(..., name=...), or tunelab import-optuna --name)") from None
    store, study_id = target.storage, target.study_id
    for trial, dists in zip(trials, converted, strict=True):
        for key, dist in dists.items():
            store.register_distribution(study_id, key, dist)
        origin = {"study": study.study_name, "number": trial.number,
                  "datetime_start": _iso(trial.datetime_start), "datetime_complete": _iso(trial.datetime_complete)}
        made = store.create_trial(study_id, TrialState.RUNNING, params=dict(trial.params), distributions=dists,
                                  user_attrs={"optuna": origin, **_json_attrs(trial.user_attrs)})
        points = [(int(step), {curve: float(v)}) for step, v in sorted(trial.intermediate_values.items())]
        if points:
            store.report_steps(made.trial_id, points)
        state = _STATES[trial.state.name]
        values = list(trial.values) if state is TrialState.COMPLETE and trial.values is not None else None
        error = None
        if state is TrialState.FAIL:
            error = str(trial.system_attrs.get("fail_reason") or "failed in Optuna (no reason recorded)")
        elif values is not None and not all(math.isfinite(v) for v in values):
            state, values, error = TrialState.FAIL, None, "Optuna recorded a value that is not finite"
        constraints = _constraints(trial)
        system = {CONSTRAINTS_KEY: {k: {"value": v, "lower": None, "upper": 0.0} for k, v in constraints.items()}}
        store.finish_trial(made.trial_id, state, value=values[0] if values else None, error=error,
                           values=values if values is not None and len(values) > 1 else None,
                           system_attrs=system if constraints else None)
    target.set_system_attr("imported_from", {"library": "optuna", "version": optuna.__version__,
                                             "study": study.study_name, "trials": len(trials)})
    return target


def _constraints(trial: Any) -> dict[str, float]:
    """A trial's constraints, feasible at 0 or below: Optuna 5's ``trial.set_constraint(key, value)``, or the list
    of an older ``constraints_func`` (named ``constraint_0``, ...). An infinite one is kept as +-1e300."""
    found = getattr(trial, "constraints", None)
    if not isinstance(found, Mapping):
        old = trial.system_attrs.get("constraints")
        found = {f"constraint_{i}": c for i, c in enumerate(old)} if isinstance(old, (list, tuple)) else {}
    elif all(str(k).isdigit() for k in found):  # Optuna 5 reads the old list as {"0": ..., "1": ...}
        found = {f"constraint_{k}": c for k, c in found.items()}
    return {str(k): max(-1e300, min(1e300, float(c))) for k, c in found.items() if not math.isnan(float(c))}


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _json_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Optuna's attributes as JSON data (a value that is none, such as a numpy array of objects, as its text)."""
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        plain, problem = json_data(value)
        out[str(key)] = plain if problem is None else repr(value)
    return out


__all__ = ["distribution", "import_study"]
