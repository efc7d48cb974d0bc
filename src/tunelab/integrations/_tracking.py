"""What the experiment trackers (MLflow, TensorBoard) share: the names of the final values,
the state and pruning decision of a finished trial as text, and the checks of their options."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from tunelab.errors import ConfigError
from tunelab.records import FrozenTrial, TrialState
from tunelab.study import Study

#: The final states a tracker records (RUNNING and WAITING trials are not finished).
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def check_metric_name(metric_name: object) -> str | tuple[str, ...]:
    """``metric_name`` as given to a tracker: one name, or one per objective."""
    if isinstance(metric_name, str):
        if not metric_name:
            raise ConfigError("metric_name must be a non-empty string such as 'value', got ''")
        return metric_name
    if isinstance(metric_name, Sequence) and metric_name:
        names = tuple(metric_name)
        if all(isinstance(n, str) and n for n in names) and len(set(names)) == len(names):
            return names
    raise ConfigError(
        f"metric_name must be a name such as 'val_loss', or one distinct name per objective of a study "
        f"with several (e.g. ['accuracy', 'latency_ms']), got {metric_name!r}"
    )


def value_names(metric_name: str | tuple[str, ...], study: Study, who: str) -> tuple[str, ...]:
    """The names under which the final values of ``study``'s trials are logged, one per objective.

    A single name for a study with several objectives is taken only when it is the default
    ``'value'``: then the study's objective names are used. A list must have one name per objective.
    """
    n = len(study.directions)
    if isinstance(metric_name, str):
        if n == 1:
            return (metric_name,)
        if metric_name == "value":
            return tuple(study.objective_names)
        metric_name = (metric_name,)
    if len(metric_name) != n:
        raise ConfigError(
            f"{who}(metric_name={list(metric_name)!r}) has {len(metric_name)} name(s) but study "
            f"{study.name!r} has {n} objective(s) ({', '.join(study.objective_names)}); give one name per "
            "objective, or leave metric_name='value' to use the study's objective names"
        )
    return metric_name


def check_tags(tags: object) -> dict[str, str]:
    """Extra tags given to a tracker, as strings."""
    if tags is None:
        return {}
    if not isinstance(tags, Mapping) or not all(isinstance(k, str) and k for k in tags):
        raise ConfigError(f"tags must be a mapping of non-empty string keys to values, got {tags!r}")
    return {k: str(v) for k, v in tags.items()}


def final_values(trial: FrozenTrial, names: Sequence[str]) -> dict[str, float]:
    """The trial's final value per name (empty unless it is COMPLETE)."""
    if trial.state != TrialState.COMPLETE or trial.values is None:
        return {}
    return dict(zip(names, trial.values, strict=False))


def constraint_metrics(trial: FrozenTrial) -> dict[str, float]:
    """A trial's constraints as metrics: ``constraint_<name>`` (the measured value) each and
    ``feasible`` (1.0 when every bound holds, else 0.0); empty when it recorded none."""
    constraints = trial.constraints
    if not constraints:
        return {}
    out = {f"constraint_{name}": float(c.value) for name, c in constraints.items()}
    out["feasible"] = 1.0 if trial.feasible else 0.0
    return out


def pruning_text(trial: FrozenTrial) -> str | None:
    """The pruner's decision that stopped the trial, as JSON text, or None."""
    decision = trial.system_attrs.get("pruned")
    if decision is None:
        return None
    return json.dumps(decision, sort_keys=True, default=str)


def tail(text: str, limit: int) -> str:
    """The end of ``text`` in at most ``limit`` characters (an error's last lines say the most)."""
    return text if len(text) <= limit else "..." + text[-(limit - 3):]


def param_text(value: Any) -> str:
    """A parameter's value as text (MLflow keeps parameters as strings)."""
    return str(value)


def study_key(study: Study) -> str:
    """What identifies a study's runs: a digest of its name and its own folder's name, which differs
    between two studies of the same name (another storage, or one deleted and created again)."""
    return hashlib.sha256(f"{study.name}\0{study.artifact_dir.name}".encode()).hexdigest()[:20]
