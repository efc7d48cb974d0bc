"""What every framework callback shares: reading a framework's logged metrics as numbers, and
asking the pruner in a way that survives the framework's own loop."""

from __future__ import annotations

import importlib
import numbers
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from tunelab.errors import ConfigError
from tunelab.pruners.pareto import ParetoPruner
from tunelab.study import Trial


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module`` or raise a ConfigError saying which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(
            f"{what} needs the package {module.split('.')[0]!r} ({e}); install it with "
            f"pip install 'tunelab[{extra}]'"
        ) from None


def as_number(value: Any) -> float | None:
    """``value`` as a float when it is one number (a Python or numpy scalar, a 0-d or one-element
    array or tensor), else None. NaN and infinities are kept: a diverged run's curve says so."""
    kind = type(value)
    if kind is float or kind is int:  # the common cases first, without the abstract-class checks below
        return float(value)
    if kind is bool:
        return None
    numel = getattr(value, "numel", None)  # a tensor (Lightning's logged metrics)
    if numel is None or not callable(numel):
        if isinstance(value, numbers.Real):
            return float(value)
        count = getattr(value, "size", None)  # a numpy array
    else:
        count = numel()
    if count == 1 and hasattr(value, "item"):
        try:
            item = value.item()
        except (TypeError, ValueError, RuntimeError):
            return None
        kind = type(item)
        if kind is float or kind is int or (isinstance(item, numbers.Real) and kind is not bool):
            return float(item)
    return None


def numeric_metrics(logs: Mapping[str, Any] | None) -> dict[str, float]:
    """The entries of a framework's logs that are single numbers, as floats (others are left out)."""
    out: dict[str, float] = {}
    for key, value in (logs or {}).items():
        number = as_number(value)
        if number is not None and isinstance(key, str) and key:
            out[key] = number
    return out


def check_monitor(monitor: object, parameter: str = "monitor") -> str:
    """A metric name given to a callback, checked at the boundary."""
    if not isinstance(monitor, str) or not monitor:
        raise ConfigError(f"{parameter} must be the name of a logged metric, e.g. 'val_loss', got {monitor!r}")
    return monitor


def check_trial(trial: object, who: str) -> Trial:
    """The trial a callback reports to, checked at the boundary."""
    if not isinstance(trial, Trial):
        raise ConfigError(f"{who}(trial, ...) needs the tunelab.Trial given to the objective, got {trial!r}")
    return trial


def prune_now(trial: Trial) -> bool:
    """Ask the study's pruner about the last report; when it says stop, mark the trial so that it
    ends PRUNED whatever the objective returns, and answer True (the caller stops its loop)."""
    if trial.should_prune():
        trial.mark_pruned()
        return True
    return False


def monitored_reports(
    trial: Trial, step: int, logged: Mapping[str, float], monitor: str, who: str, framework: str
) -> list[tuple[int, Mapping[str, float]]]:
    """The reports that give every ``logged`` metric at ``step`` so that the study's pruner decides on ``monitor``
    (as the Lightning callback does): a pruner without ``metric=`` reads the last report, so the other metrics go
    first and ``monitor`` alone last (its naming rule would otherwise pick among all of them, or fail on two
    validation losses). A pruner set to its own metric (or a Pareto pruner, to its metrics) reads that from
    one report; one set to a metric the framework does not log is a ConfigError naming both, raised before
    anything is reported (the study's rule would otherwise say only ``trial.report`` it, or never decide).

    ``who`` is the callback and its monitor argument, e.g. ``"TunelabCallback(monitor='val_loss')"``.
    """
    pruner = trial.study.pruner
    if pruner is None or isinstance(pruner, ParetoPruner):
        return [(step, logged)]
    if pruner.metric is not None:
        if pruner.metric not in logged:
            raise ConfigError(
                f"{who}: the study's {type(pruner).__name__} stops trials on metric {pruner.metric!r}, which "
                f"{framework} does not log (it logs {sorted(logged)}); set the pruner's metric to one of those, "
                f"e.g. {type(pruner).__name__}(metric={monitor!r}), or leave its metric unset so that the "
                f"callback's monitored {monitor!r} decides"
            )
        return [(step, logged)]
    others = {k: v for k, v in logged.items() if k != monitor}
    last = (step, {monitor: logged[monitor]})  # the last report: what the pruner reads
    return [(step, others), last] if others else [last]
