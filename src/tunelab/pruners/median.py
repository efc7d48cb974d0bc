"""The median stopping rule: stop a trial whose best value so far is worse than the median
of the other trials at the same step."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from tunelab.errors import ConfigError
from tunelab.history import History
from tunelab.pruners.base import (
    NO_DECISION,
    PruneDecision,
    Pruner,
    best_so_far,
    better_or_equal,
    check_int,
    last_step,
    previous_step,
)
from tunelab.records import TrialState

_COMPLETE = frozenset((TrialState.COMPLETE,))  # asked at every report: built once


class MedianPruner(Pruner):
    """Stop a trial when its best value up to step ``s`` is worse than the ``percentile`` of the
    COMPLETE trials' values at ``s`` (the median by default).

    Args:
        n_startup_trials: COMPLETE trials needed before anything is stopped.
        n_warmup_steps: steps below this never stop (early epochs are noisy).
        interval_steps: decide only every this many steps after the warm-up (at the first report at or
            past each such step, when the trial reports at other steps).
        percentile: 50 is the median; a lower percentile (for minimisation: a stricter cut
            towards the best) stops more trials. Always read as "the fraction of trials a
            surviving trial must beat", whatever the direction.
        min_trials: COMPLETE trials with a value at the step needed to decide there.
        metric: see :class:`Pruner`.
        direction: see :class:`Pruner`.

    Examples:
        >>> import tunelab
        >>> def objective(trial):
        ...     lr = trial.suggest_float("lr", 1e-4, 1.0, log=True)
        ...     loss = 1.0
        ...     for epoch in range(1, 10):
        ...         loss *= 1.0 - min(lr, 0.5)         # "training": a larger lr learns faster
        ...         trial.report(epoch, val_loss=loss)
        ...         if trial.should_prune():
        ...             raise tunelab.TrialPruned()
        ...     return loss
        >>> pruner = tunelab.MedianPruner(n_startup_trials=3, metric="val_loss")
        >>> study = tunelab.create_study(sampler=tunelab.RandomSampler(), pruner=pruner, seed=0)
        >>> study.optimize(objective, n_trials=20)
        >>> pruned = study.get_trials([tunelab.TrialState.PRUNED])
        >>> len(pruned) >= 5, pruned[0].system_attrs["pruned"]["rule"].startswith("median")
        (True, True)
    """

    def __init__(
        self,
        *,
        n_startup_trials: int = 5,
        n_warmup_steps: int = 0,
        interval_steps: int = 1,
        percentile: float = 50.0,
        min_trials: int = 1,
        metric: str | None = None,
        direction: str | None = None,
    ) -> None:
        super().__init__(metric, direction)
        self.n_startup_trials = check_int("MedianPruner", "n_startup_trials", n_startup_trials, 0)
        self.n_warmup_steps = check_int("MedianPruner", "n_warmup_steps", n_warmup_steps, 0)
        self.interval_steps = check_int("MedianPruner", "interval_steps", interval_steps, 1)
        self.min_trials = check_int("MedianPruner", "min_trials", min_trials, 1)
        if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) or not 0 <= percentile <= 100:
            raise ConfigError(f"MedianPruner(percentile=...) must be a number in [0, 100], got {percentile!r}")
        self.percentile = float(percentile)

    def decide(self, history: History, number: int, metric: str, curve: Mapping[int, float]) -> PruneDecision | None:
        step = last_step(curve)
        if step < self.n_warmup_steps:
            return None
        # judged at the first report at or past each pruning step (n_warmup_steps + k * interval_steps): a trial
        # that reports at odd steps with interval_steps=2 was never judged (as Optuna does)
        if not interval_due(step, previous_step(curve), self.n_warmup_steps, self.interval_steps):
            return None
        if history.count(_COMPLETE) < self.n_startup_trials:
            return None
        others = [p.value for p in history.metric_at(metric, [step])
                  if p.number != number and p.state == TrialState.COMPLETE and p.value == p.value]  # not NaN
        direction = self.direction_for(history)
        best = best_so_far(curve, direction)
        if best is None:
            return PruneDecision(rule=f"median at step {step}", detail=f"{metric} is NaN at every step so far")
        if len(others) < self.min_trials:
            return None
        q = self.percentile if direction == "minimize" else 100.0 - self.percentile
        cut = percentile(others, q)
        if better_or_equal(best, cut, direction):
            return None
        return PruneDecision(
            rule=f"median at step {step}",
            detail=f"best {metric} so far {best:.6g} is worse than the {self.percentile:g}th percentile "
                   f"{cut:.6g} of {len(others)} complete trials at step {step}",
        )

    def next_decision(self, history: History, number: int, previous: int) -> int:
        """The next pruning step after ``previous``; none before ``n_startup_trials`` complete."""
        if history.count(_COMPLETE) < self.n_startup_trials:
            return NO_DECISION
        return due_after(previous, self.n_warmup_steps, self.interval_steps)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(), "n_startup_trials": self.n_startup_trials, "n_warmup_steps": self.n_warmup_steps,
            "interval_steps": self.interval_steps, "percentile": self.percentile, "min_trials": self.min_trials,
        }


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile of ``values`` (NaN-free, not empty), interpolated linearly between the closest
    ranks: the same float as ``numpy.percentile(values, q)`` (its default method, including its rounding), at
    a few microseconds instead of a hundred for the few values a pruner compares at every report."""
    ordered = sorted(values)
    virtual = (len(ordered) - 1) * (q / 100.0)
    low = math.floor(virtual)
    high = min(low + 1, len(ordered) - 1)
    t = virtual - low
    a, b = ordered[low], ordered[high]
    gap = b - a
    return b - gap * (1 - t) if t >= 0.5 else a + gap * t


def due_after(previous: int, warmup: int, interval: int) -> int:
    """The first pruning step (``warmup + k * interval``) after ``previous``."""
    if previous < warmup:
        return warmup
    return warmup + ((previous - warmup) // interval + 1) * interval


def interval_due(step: int, previous: int, warmup: int, interval: int) -> bool:
    """Whether a report at ``step`` after one at ``previous`` is judged by a rule that decides past ``warmup``
    steps, every ``interval`` steps (at the first report at or past each pruning step)."""
    if step < warmup:
        return False
    return previous < warmup + (step - warmup) // interval * interval
