"""What a live trial may ask of its study, as narrow services instead of the Study itself.

A :class:`~tunelab.study.Trial` decides its parameters through :class:`Suggestions` (the
sampler and the one-kind-per-name rule), asks :class:`Pruning` whether to stop, and writes
its row and curves through a :class:`TrialWriter`. The Study builds these once and hands the
same ones to every trial it starts; none of them knows the Study, so a trial never reaches
into the Study's private members, and the services can be tested on their own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tunelab.checkpoints import CheckpointStore
from tunelab.distributions import Distribution, ParamValue
from tunelab.errors import ConfigError, DistributionConflictError
from tunelab.history import History
from tunelab.pruners import ParetoPruner, PruneDecision, Pruner
from tunelab.pruners.base import NO_DECISION, is_validation_metric, report_example
from tunelab.records import StudyRecord, TrialState
from tunelab.samplers import Sampler
from tunelab.samplers.base import SamplingContext
from tunelab.space import SpaceEntry, unwrap
from tunelab.storage import BaseStorage
from tunelab.study.background import call_later


class Suggestions:
    """Decides parameter values for a study's trials and keeps one kind of distribution per name.

    Holds the sampler, the read-only :class:`~tunelab.history.History` it decides from, the
    declared space and the distributions registered so far (a cache of what the storage keeps).
    """

    def __init__(
        self,
        storage: BaseStorage,
        record: StudyRecord,
        sampler: Sampler,
        history: History,
        space: Mapping[str, SpaceEntry] | None,
    ) -> None:
        self._storage = storage
        self._study_id = record.study_id
        self._study_name = record.name
        self.sampler = sampler
        self.history = history
        self.space = space
        self._registry: dict[str, Distribution] = {}

    def known(self, name: str) -> Distribution | None:
        """The distribution ``name`` has in this study so far (this process's view), or None."""
        if name in self._registry:
            return self._registry[name]
        if self.space is not None and name in self.space:
            return unwrap(self.space[name])
        return None

    def register(self, name: str, distribution: Distribution) -> None:
        """Record ``distribution`` as the kind of ``name`` in the study, or refuse a conflicting one."""
        first = self._registry.get(name)
        if first is None:
            first = self._registry[name] = self._storage.register_distribution(self._study_id, name, distribution)
        if not first.compatible_with(distribution):
            raise DistributionConflictError(
                f"parameter '{name}' is {distribution!r} here but was {first!r} earlier in study "
                f"{self._study_name!r}; one name keeps one kind of distribution (ranges may change, the "
                "kind, log scale and choices may not): use a new name or a new study"
            )

    def plan(self, ctx: SamplingContext) -> dict[str, ParamValue]:
        """The sampler's joint decision for the trial of ``ctx``, made when it starts."""
        return self.sampler.plan(self.history, ctx)

    def sample(self, ctx: SamplingContext, name: str, distribution: Distribution) -> ParamValue:
        """The sampler's value for one parameter the plan did not cover (define-by-run)."""
        return self.sampler.sample(self.history, ctx, name, distribution)


class Pruning:
    """Asks the study's pruner whether a trial stops after its last report."""

    def __init__(
        self, pruner: Pruner | None, history: History, direction: str, objective_names: Sequence[str] = ("value",)
    ) -> None:
        self._history = history
        self._direction = direction
        self._objective_names = tuple(objective_names)
        self.pruner = pruner

    @property
    def pruner(self) -> Pruner | None:
        """The pruner, or None (no trial is ever pruned but on request)."""
        return self._pruner

    @pruner.setter
    def pruner(self, pruner: Pruner | None) -> None:
        self._pruner = pruner
        self._pareto = isinstance(pruner, ParetoPruner)
        # Model-based samplers may fit on the pruner's rungs: they read its metric from the history.
        single = pruner is not None and not isinstance(pruner, ParetoPruner)
        self._history.pruning = (pruner.metric, pruner.direction or self._direction) if single else None  # type: ignore[union-attr]

    def decide(
        self, number: int, last_report: Mapping[str, float], curves: Mapping[str, Mapping[int, float]]
    ) -> tuple[str, PruneDecision] | None:
        """The decision on trial ``number`` after its last report: (metric, decision) or None."""
        if self._pruner is None:
            return None
        if self._pareto:
            return self._decide_many(self._pruner, number, last_report, curves)  # type: ignore[arg-type]
        pruner = self._pruner
        named = pruner.metric
        if named is not None and named not in last_report and (
                named in curves or (is_validation_metric(named) and not any(map(is_validation_metric, last_report)))):
            # The trial reports its metrics in separate calls (train_loss every epoch, val_loss every 2): a report
            # without the pruning metric has nothing new to judge. It was a ConfigError at the first train_loss
            # report; a report with another validation metric still is one (a typo: metric='val_acc').
            return None
        metric = pruner.metric_of(last_report, pruner.direction or self._direction)
        pruner.direction_for(self._history)  # a named metric whose name says the other direction: raises now
        if self._history.pruning is not None and self._history.pruning[0] is None:
            # The pruner took the trial's only metric: model-based samplers may fit on its rungs too.
            self._history.pruning = (metric, self._history.pruning[1])
        decision = pruner.decide(self._history, number, metric, curves[metric])
        return None if decision is None else (metric, decision)

    def next_decision(self, number: int, previous: int) -> int:
        """The first step after ``previous`` at which the pruner could stop trial ``number``
        (:meth:`Pruner.next_decision`); :data:`NO_DECISION` without a pruner."""
        if self._pruner is None:
            return NO_DECISION
        return self._pruner.next_decision(self._history, number, previous)

    def _decide_many(
        self, pruner: ParetoPruner, number: int, last_report: Mapping[str, float],
        curves: Mapping[str, Mapping[int, float]],
    ) -> tuple[str, PruneDecision] | None:
        metrics, directions = pruner.resolve(self._objective_names, self._history.directions)
        missing = [m for m in metrics if m not in last_report]
        if missing:
            raise ConfigError(
                f"{type(pruner).__name__} compares the metrics {list(metrics)} at each step, but the trial's last "
                f"report has only {sorted(last_report)}: report them together, e.g. {report_example(metrics)}"
            )
        decision = pruner.decide_many(self._history, number, metrics, directions, curves)
        return None if decision is None else (metrics[0], decision)


#: The share of a training loop's time a trial's storage calls may take: reports that come faster
#: than the storage writes them within that share are gathered and written together, and the stop
#: request is read no more often than that (see :class:`Pacer`).
STORAGE_TIME_SHARE = 0.002
#: The longest a gathered report waits before it is written, and the longest a stop request
#: waits to be seen by :meth:`tunelab.Trial.should_prune` (seconds).
MAX_STORAGE_DELAY = 0.5
#: A gathered report due sooner than this is written at once rather than by the writer thread (seconds).
MIN_TIMER_DELAY = 0.002

logger = logging.getLogger(__name__)


class Pacer:
    """Spaces out a repeated storage call so that it takes at most ``share`` of the time: after a
    call that took ``c`` seconds, the next one is due ``c / share`` seconds later (at most
    ``max_delay``). A cheap call (in-memory storage) is due again almost at once; a write to a
    database on disk or across the network waits for enough loop time to pay for itself."""

    def __init__(self, share: float = STORAGE_TIME_SHARE, max_delay: float = MAX_STORAGE_DELAY) -> None:
        if not 0.0 < share <= 1.0:
            raise ConfigError(f"Pacer(share=...) must be in (0, 1], got {share!r}")
        self.share = share
        self.max_delay = max_delay
        self._due = 0.0

    def wait(self) -> float:
        """Seconds until the call is due again (<= 0: due now)."""
        return self._due - time.monotonic()

    def ran(self, started: float) -> None:
        """The call, started at ``started`` (``time.monotonic()``), has just ended."""
        now = time.monotonic()
        self._due = now + min((now - started) / self.share, self.max_delay)


class TrialWriter:
    """Writes one trial's row and curves (the only way a live trial changes the storage).

    Reports are written as they come. With :attr:`gathering` on, they are written as they come
    while the storage keeps up within :data:`STORAGE_TIME_SHARE` of the time; faster ones (a
    boosting round every few milliseconds on SQLite) are gathered and written together, in one
    transaction, at most :data:`MAX_STORAGE_DELAY` later (by the background thread when no report
    follows). The trial's end, :meth:`write_reports` and a checkpoint write whatever is gathered
    first; a process killed in between loses at most that delay of points.
    """

    def __init__(self, storage: BaseStorage, trial_id: int) -> None:
        self._storage = storage
        self._trial_id = trial_id
        self._gathered: list[tuple[int, Mapping[str, float]]] = []
        self._lock = threading.Lock()  # guards _gathered, _scheduled and _failure
        self._writing = threading.Lock()  # one write of this trial's reports at a time, in report order
        self._pacer = Pacer()
        self._storage_gathers = storage.gathers_reports  # in memory every report goes straight through
        self._scheduled = False  # a background write is due
        self.gathering = False
        self._failure: BaseException | None = None

    @property
    def paced(self) -> bool:
        """Whether this trial's storage calls are paced: gathering on a storage where a call costs."""
        return self.gathering and self._storage_gathers

    def report(self, step: int, values: Mapping[str, float]) -> None:
        """Store metric values at ``step`` (now, or gathered with the next ones; see the class)."""
        if not (self.gathering and self._storage_gathers) and not self._gathered and self._failure is None:
            self._storage.report(self._trial_id, step, values)  # the common case: straight through
            return
        self._raise_failure()
        with self._lock:
            self._gathered.append((step, values))
            if self._scheduled:
                return  # a write is already due
            wait = self._pacer.wait() if self.gathering and self._storage_gathers else 0.0
            if wait > MIN_TIMER_DELAY:
                self._scheduled = True
                call_later(wait, self._write_in_background)
                return
        self.write_reports()

    def report_steps(self, points: Sequence[tuple[int, Mapping[str, float]]]) -> None:
        """Store several steps' values, in order: gathered as one report (one write, one pacing decision)."""
        if not (self.gathering and self._storage_gathers) and not self._gathered and self._failure is None:
            self._storage.report_steps(self._trial_id, points)  # straight through, together
            return
        *before, (step, values) = points
        with self._lock:
            self._gathered.extend(before)
        self.report(step, values)

    def write_reports(self) -> None:
        """Write the gathered reports now (in one transaction); raise what a background write raised."""
        if not self._storage_gathers and not self._gathered and self._failure is None:
            return  # every report went straight through (in memory): nothing gathered, no write in flight
        self._raise_failure()
        self._write()

    def _write(self) -> None:
        with self._writing:
            with self._lock:
                points, self._gathered = self._gathered, []
                self._scheduled = False  # a due background write that finds nothing writes nothing
            if not points:
                return
            started = time.monotonic()
            try:
                self._storage.report_steps(self._trial_id, points)
            except BaseException:
                with self._lock:  # kept for the next write, in order
                    self._gathered[:0] = points
                raise
            finally:
                self._pacer.ran(started)

    def _write_in_background(self) -> None:
        try:
            self._write()
        except Exception as e:  # noqa: BLE001 - raised in the trial's own thread at its next call
            with self._lock:
                self._failure = e

    def _raise_failure(self) -> None:
        with self._lock:
            failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def update(self, **fields: Any) -> None:
        """Merge params, distributions, user or system attributes into the RUNNING trial's row."""
        self._storage.update_trial(self._trial_id, **fields)

    def finish(
        self, state: TrialState, value: float | tuple[float, ...] | None, error: str | None, **fields: Any
    ) -> None:
        """Write the trial's final state with whatever it had not written yet (a tuple: every objective's).

        Gathered reports go first; when they cannot be written the end still is (a warning says
        what was lost): a finished trial's result matters more than its last curve points."""
        try:
            self.write_reports()
        except Exception as e:  # noqa: BLE001 - the end below is the write that must happen
            with self._lock:
                lost, self._gathered = len(self._gathered), []
            logger.warning("trial %s: %d reported point(s) could not be written (%s: %s)",
                           self._trial_id, lost, type(e).__name__, e)
        if isinstance(value, tuple):
            self._storage.finish_trial(self._trial_id, state, error=error, values=list(value), **fields)
        else:
            self._storage.finish_trial(self._trial_id, state, value=value, error=error, **fields)

    def stored_system_attr(self, key: str) -> Any:
        """One of the trial's system attributes as stored now (None when absent): a light read."""
        return self._storage.get_trial_system_attr(self._trial_id, key)

    def stored_system_attrs(self, keys: Sequence[str]) -> dict[str, Any]:
        """Several of the trial's system attributes as stored now, in one read (None when absent)."""
        return self._storage.get_trial_system_attrs(self._trial_id, keys)

    def watch(self, keys: Sequence[str], callback: Callable[[], None]) -> Callable[[], None] | None:
        """``callback()`` after each write of one of the trial's system attributes ``keys``, where the
        storage sees every write (:meth:`BaseStorage.watch_trial_attrs`); the function that stops it,
        or None (then poll :meth:`stored_system_attrs`)."""
        return self._storage.watch_trial_attrs(self._trial_id, keys, callback)


@dataclass(frozen=True)
class TrialServices:
    """Everything a live trial of one study uses: built by the Study, shared by its trials."""

    seed: int
    suggestions: Suggestions
    pruning: Pruning
    checkpoints: CheckpointStore
    storage: BaseStorage

    def writer(self, trial_id: int) -> TrialWriter:
        """The writer of trial ``trial_id``."""
        return TrialWriter(self.storage, trial_id)
