"""A framework's evaluations reported to a trial in batches: an evaluation that comes every few milliseconds
(a boosting round) or every few tenths of a second (a small model's epoch) costs a list append, and the trial
hears of them (their reports, the pruner's question) only where it matters, and at least every half second."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

from tunelab.errors import ConfigError
from tunelab.integrations._common import monitored_reports, prune_now
from tunelab.study import Trial

Item = TypeVar("Item")

#: The longest an evaluation is held back (seconds): the storage's own pacing of gathered reports and of
#: the stop request's reads (``tunelab.study.services.MAX_STORAGE_DELAY``).
MAX_HOLD = 0.5


def as_logged(metrics: Mapping[str, float]) -> Mapping[str, float]:
    """The ``scores`` of :class:`HeldReports` whose evaluations are held as ``{name: value}`` already."""
    return metrics


class HeldReports(Generic[Item]):
    """Keeps each evaluation's logged metrics (a boosting round's, an epoch's) and reports them to ``trial``
    together, in order:

    - from the step the study's pruner could stop a trial at (:meth:`tunelab.pruners.Pruner.next_decision`:
      its next rung, the median rule's next step past its warm-up), asking the pruner (:func:`prune_now`);
    - the first evaluation at once, judged only when the pruner could stop the trial there (a metric the
      pruner needs and the framework does not log is a ConfigError at the first evaluation in any case);
    - at least every ``max_delay`` seconds, also asking the pruner: the stop request of ``tunelab stop``
      and the dashboard's live curves wait no longer than the storage's own pacing, and an evaluation that
      takes longer than that (a real epoch) is reported, and judged, as it comes;
    - when training ends (:meth:`report_held`, which the trial also runs before its end is recorded,
      so that what is held when another callback ends training, LightGBM's early stopping, is kept).

    Every evaluation is reported at its own step: the stored curves are the same as with a report each.

    Args:
        trial: the trial the evaluations belong to.
        monitor: the monitored metric's name (settable: a callback may learn it at the first round); the
            last report of a batch holds it alone, for a pruner without ``metric=`` (see
            :func:`monitored_reports`).
        who, framework: for error messages, e.g. ``"TunelabCallback(observation_key='validation-logloss')"``
            and ``"XGBoost"``.
        scores: a held evaluation's metrics as ``{name: value}``, read when it is reported.
        max_delay: the longest an evaluation is held, in seconds.
    """

    def __init__(
        self, trial: Trial, monitor: str, who: str, framework: str,
        scores: Callable[[Item], Mapping[str, float]], max_delay: float = MAX_HOLD,
    ) -> None:
        self._trial = trial
        self.monitor = monitor
        self._who = who
        self._framework = framework
        self._scores = scores
        self._max_delay = max_delay
        self._held: list[tuple[int, Item]] = []
        self._next = 0
        self._due = 0.0  # 0: no evaluation yet
        trial.before_end(self.report_held)

    def add(self, step: int, item: Item) -> bool:
        """Take the evaluation at ``step``; True when the pruner stopped the trial at it (then it is marked)."""
        self._held.append((step, item))
        now = time.monotonic()
        if self._due == 0.0 and not self._first(step, item, now):
            return False
        if step < self._next and now < self._due:
            return False
        self.report_held()
        stops = prune_now(self._trial)
        self._next = self._trial.next_pruning_step(step)
        self._due = time.monotonic() + self._max_delay
        return stops

    def _first(self, step: int, item: Item, now: float) -> bool:
        """The first evaluation (held already): a pruner setting the framework cannot meet fails now; reported at
        once (how often evaluations come is not known yet: a slow loop's first epoch must not wait for its
        second). True when the pruner can decide at ``step`` (then it is to be judged)."""
        try:
            monitored_reports(self._trial, step, self._scores(item), self.monitor, self._who, self._framework)
        except ConfigError:
            self._held.clear()  # nothing for the trial's end to report again (and fail on again)
            raise
        self._next = self._trial.next_pruning_step(step - 1)
        self._due = now + self._max_delay
        if step < self._next:
            self.report_held()
            return False
        return True

    def judged_at(self, step: int) -> bool:
        """Whether the evaluation at ``step`` is to be judged at once (given to :meth:`add`), for a callback whose
        metrics cost something to read now and little a bit later (Lightning's epoch aggregates): one at or past
        the pruner's next decision step, one with a stop requested. Otherwise it is :meth:`hold`-ed, read later;
        when ``max_delay`` has passed, what is held is reported here and the pruner's next decision step asked
        again (an answer that depends on the other trials, the median rule's warm-up, may have changed)."""
        if self._due == 0.0:  # the first evaluation: judged where the pruner can decide (else reported by hold)
            return self._trial.next_pruning_step(step - 1) <= step
        if step >= self._next:
            return True
        now = time.monotonic()
        if now < self._due:
            return False
        self.report_held()
        self._next = self._trial.next_pruning_step(step - 1)
        if step >= self._next or self._trial.stop_requested:
            self._due = now  # past: add() judges it
            return True
        self._due = now + self._max_delay
        return False

    def hold(self, step: int, item: Item) -> None:
        """Take the evaluation at ``step`` without judging it: one :meth:`judged_at` said was not to be judged (it
        is reported with the next that is, after ``max_delay``, or when training ends; the first one at once)."""
        self._held.append((step, item))
        if self._due == 0.0:
            self._first(step, item, time.monotonic())  # not judged whatever it answers: judged_at said so just now

    def restart(self) -> None:
        """A new training with the same callback (its steps counted from the start again): what is held is
        reported, and the next evaluation is the first one again (the pruner's next step is asked afresh)."""
        self.report_held()
        self._due = 0.0

    def report_held(self) -> None:
        """Report every held evaluation, in order; the last one as :func:`monitored_reports` does."""
        held, self._held = self._held, []
        if not held:
            return
        step, item = held[-1]
        last = monitored_reports(self._trial, step, self._scores(item), self.monitor, self._who, self._framework)
        self._trial.report_steps([*((s, self._scores(i)) for s, i in held[:-1]), *last])
