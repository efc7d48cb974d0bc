"""The pruner protocol: from the stored curves, decide whether a running trial should stop now.

A pruner (a scheduler, in Ray Tune's words) gets the same read-only :class:`History` as a
sampler, plus the trial's number, the step it just reported and its value there. Every
decision derives from what the storage holds (:meth:`History.metric_at`), so any number of
workers on one database make the same decisions; a pruner keeps no state of its own.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tunelab.errors import ConfigError
from tunelab.history import History
from tunelab.records import check_direction


@dataclass(frozen=True)
class PruneDecision:
    """Stop the trial, and why (stored with the pruned trial as evidence).

    Attributes:
        rule: the pruner's short name and the rule that fired, e.g. 'asha rung 3'.
        detail: the evidence in words: values compared, how many trials.
    """

    rule: str
    detail: str


class Pruner(ABC):
    """Base class of pruners.

    Args:
        metric: the reported metric that drives early stopping (e.g. 'val_loss'); None: the
            only metric the trial reports (an error if it reports several).
        direction: 'minimize' or 'maximize' for that metric; None: the study's direction.
    """

    def __init__(self, metric: str | None = None, direction: str | None = None) -> None:
        if metric is not None and (not isinstance(metric, str) or not metric):
            raise ConfigError(f"{type(self).__name__}(metric=...) must be a metric name such as 'val_loss', "
                              f"got {metric!r}")
        self.metric = metric
        self.direction = check_direction(direction) if direction is not None else None

    def metric_of(self, reported: Mapping[str, float]) -> str:
        """The metric this pruner reads among those a trial reported at its last step."""
        if self.metric is not None:
            if self.metric not in reported:
                raise ConfigError(
                    f"{type(self).__name__} stops trials on metric '{self.metric}', but the trial reported "
                    f"only {sorted(reported)}; report it, e.g. trial.report(epoch, {self.metric}=...)"
                )
            return self.metric
        if len(reported) != 1:
            raise ConfigError(
                f"the trial reports several metrics {sorted(reported)}; name the one that drives early "
                f"stopping, e.g. {type(self).__name__}(metric='val_loss', direction='minimize')"
            )
        return next(iter(reported))

    def direction_for(self, history: History) -> str:
        """The direction of the pruning metric."""
        return self.direction or history.direction

    @abstractmethod
    def decide(self, history: History, number: int, metric: str, curve: Mapping[int, float]) -> PruneDecision | None:
        """A decision to stop trial ``number`` now; None: go on.

        ``curve`` is the trial's own ``metric`` by step so far; its last step is the one just reported.
        """

    def describe(self) -> dict[str, Any]:
        """A JSON description stored with the study (class name and settings)."""
        return {"name": type(self).__name__, "metric": self.metric, "direction": self.direction}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "name")
        return f"{type(self).__name__}({args})"


def better_or_equal(a: float, b: float, direction: str) -> bool:
    """Whether ``a`` is at least as good as ``b`` (NaN is never good)."""
    if math.isnan(a):
        return False
    if math.isnan(b):
        return True
    return a <= b if direction == "minimize" else a >= b


def check_int(owner: str, name: str, value: object, minimum: int) -> int:
    """``value`` as an int >= ``minimum``, or a ConfigError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{owner}({name}=...) must be an integer >= {minimum}, got {value!r}")
    return value
