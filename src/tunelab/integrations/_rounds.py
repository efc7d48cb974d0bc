"""Boosting rounds reported to a trial in batches: a round every few milliseconds costs a list append,
and the trial hears of the rounds (their reports, the pruner's question) only where it matters."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

from tunelab.errors import ConfigError
from tunelab.integrations._common import monitored_reports, prune_now
from tunelab.study import Trial

Round = TypeVar("Round")

#: The longest a round is held back (seconds): the storage's own pacing of gathered reports and of
#: the stop request's reads (``tunelab.study.services.MAX_STORAGE_DELAY``).
MAX_HOLD = 0.5


class HeldRounds(Generic[Round]):
    """Keeps each round's logged metrics and reports them to ``trial`` together, in order:

    - from the step the study's pruner could stop a trial at (:meth:`tunelab.pruners.Pruner.next_decision`:
      its next rung, the median rule's next step past its warm-up), asking the pruner (:func:`prune_now`);
    - at the first round when the pruner could stop the trial there (a metric the pruner needs and the
      framework does not log is a ConfigError at the first round in any case);
    - at least every ``max_delay`` seconds (the stop request of ``tunelab stop`` and the dashboard's
      live curves wait no longer than the storage's own pacing), also asking the pruner;
    - when training ends (:meth:`report_held`, which the trial also runs before its end is recorded,
      so that a round held when another callback ends training, LightGBM's early stopping, is kept).

    Every round is reported at its own step: the stored curves are the same as with a report per round.

    Args:
        trial: the trial the rounds belong to.
        monitor: the monitored metric's name (settable: a callback may learn it at the first round); the
            last report of a batch holds it alone, for a pruner without ``metric=`` (see
            :func:`report_monitored`).
        who, framework: for error messages, e.g. ``"TunelabCallback(observation_key='validation-logloss')"``
            and ``"XGBoost"``.
        scores: a held round's metrics as ``{name: value}``, read when it is reported.
        max_delay: the longest a round is held, in seconds.
    """

    def __init__(
        self, trial: Trial, monitor: str, who: str, framework: str,
        scores: Callable[[Round], Mapping[str, float]], max_delay: float = MAX_HOLD,
    ) -> None:
        self._trial = trial
        self.monitor = monitor
        self._who = who
        self._framework = framework
        self._scores = scores
        self._max_delay = max_delay
        self._held: list[tuple[int, Round]] = []
        self._next = 0
        self._due = 0.0  # 0: no round yet
        trial.before_end(self.report_held)

    def add(self, step: int, item: Round) -> bool:
        """Take the round at ``step``; True when the pruner stopped the trial at it (then it is marked)."""
        self._held.append((step, item))
        if self._due == 0.0:  # the first round: a pruner setting the framework cannot meet fails now
            try:
                monitored_reports(self._trial, step, self._scores(item), self.monitor, self._who, self._framework)
            except ConfigError:
                self._held.clear()  # nothing for the trial's end to report again (and fail on again)
                raise
            self._next = self._trial.next_pruning_step(step - 1)
            self._due = time.monotonic() + self._max_delay
        if step < self._next and time.monotonic() < self._due:
            return False
        self.report_held()
        stops = prune_now(self._trial)
        self._next = self._trial.next_pruning_step(step)
        self._due = time.monotonic() + self._max_delay
        return stops

    def restart(self) -> None:
        """A new training with the same callback (its rounds counted from 0 again): what is held is reported,
        and the next round is the first one again (the pruner's next step is asked afresh)."""
        self.report_held()
        self._due = 0.0

    def report_held(self) -> None:
        """Report every held round, in order; the last one as :func:`report_monitored` does."""
        held, self._held = self._held, []
        if not held:
            return
        step, item = held[-1]
        last = monitored_reports(self._trial, step, self._scores(item), self.monitor, self._who, self._framework)
        self._trial.report_steps([*((s, self._scores(i)) for s, i in held[:-1]), *last])
