"""The storage protocol: everything a study remembers goes through these methods.

Rules every backend keeps (the conformance suite in ``tunelab.testing`` checks them):

- Trial numbers are allocated atomically: 0, 1, 2, ... per study, never twice.
- A finished trial (COMPLETE, PRUNED, FAIL) never changes again; finishing it
  twice raises :class:`~tunelab.errors.TrialStateError`. The one exception is
  :meth:`BaseStorage.annotate_trial` (user attributes, e.g. a note added later).
- A WAITING trial is handed to exactly one caller of :meth:`claim_waiting_trial`.
- User text (names, attributes) is data, never SQL. Attributes must be JSON data
  (StorageError otherwise); trial values must be finite (the study turns NaN and inf
  into FAIL before they reach the storage); metric values may be NaN or inf (a
  diverging loss is data).
- Unknown ids raise StudyNotFoundError / TrialNotFoundError. A heartbeat for a
  trial that is no longer RUNNING is ignored (the beat thread may outlive the trial).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from tunelab.distributions import Distribution, ParamValue
from tunelab.errors import StorageError
from tunelab.records import FrozenTrial, StudyRecord, StudySummary, TrialState

Curves = dict[str, tuple[list[int], list[float]]]
"""metric name -> (steps, values), steps ascending."""


class MetricPoint(NamedTuple):
    """One trial's value of one metric at one step, as :meth:`BaseStorage.get_metric_at` returns it."""

    number: int
    """The trial's number in its study."""
    state: TrialState
    """The trial's state when read (a pruner compares against RUNNING trials too)."""
    step: int
    value: float
    """The reported value; NaN and +-inf as reported."""


class TrialValue(NamedTuple):
    """A trial's number, state and value, as :meth:`BaseStorage.get_trial_values` returns them."""

    number: int
    state: TrialState
    value: float | None
    """The final value (COMPLETE trials), else None."""


FLOAT_MAX = 1.7976931348623157e308  # sys.float_info.max: an SQL storage's +-infinity (MySQL stores none)
BELOW_FLOAT_MAX = math.nextafter(FLOAT_MAX, 0.0)


def stored_metric(x: float) -> float:
    """A reported metric value as every storage keeps it: as given, but -0.0 as 0.0 (SQLite's REAL keeps no
    sign of zero) and a finite +-DBL_MAX one step towards zero, finite still (the SQL storages store an infinity
    as +-DBL_MAX, since MySQL has none, and read +-DBL_MAX back as one). NaN and +-inf as given."""
    if x == 0.0:
        return 0.0
    if x == FLOAT_MAX or x == -FLOAT_MAX:
        return math.copysign(BELOW_FLOAT_MAX, x)
    return x


def check_values(value: float | None, values: Sequence[float] | None) -> tuple[float | None, list[float] | None]:
    """A finished trial's value and values as stored: finite floats, ``value`` the first of ``values``, -0.0 as
    0.0 (SQLite's REAL keeps no sign of zero, the JSON of ``values`` does: every storage keeps 0.0)."""
    if values is not None:
        values = [float(v) for v in values]
        if not values or not all(math.isfinite(v) for v in values):
            raise StorageError(f"trial values must be finite numbers, got {values!r}")
        values = [0.0 if v == 0.0 else v for v in values]
        if value is None:
            value = values[0]
    if value is not None and not math.isfinite(value):
        raise StorageError(f"trial value must be finite, got {value!r}")
    return (0.0 if value == 0.0 else value), values


def append_event(attrs: dict[str, Any], key: str, event: Mapping[str, Any], number: int) -> tuple[int, bool]:
    """Append ``event`` to the list ``attrs[key]`` (created when missing), in place, for
    :meth:`BaseStorage.append_trial_event`: ``(index, True)``, or ``(index, False)`` when an event
    with the same ``"id"`` is there already. StorageError when ``attrs[key]`` is not a list."""
    events = attrs.setdefault(key, [])
    if not isinstance(events, list):
        raise StorageError(f"system attribute {key!r} of trial {number} is not a list of events: cannot append")
    if "id" in event:
        for i, e in enumerate(events):
            if isinstance(e, dict) and e.get("id") == event["id"]:
                return i, False
    events.append(dict(event))
    return len(events) - 1, True


class BaseStorage(ABC):
    """Abstract storage. Backends: :class:`InMemoryStorage`, :class:`SQLStorage`."""

    #: Whether separate processes can share this storage (False for in-memory).
    shareable_across_processes: bool = True
    #: Whether a trial gathers reports that come faster than this storage writes them cheaply and
    #: writes them together (:class:`tunelab.study.services.TrialWriter`); False where a write
    #: costs next to nothing (in-memory), so that every report is visible at once.
    gathers_reports: bool = True

    @property
    def url(self) -> str | None:
        """A URL another process can open with :func:`tunelab.storage.get_storage`, if any."""
        return None

    # -- studies ---------------------------------------------------------------------------
    @abstractmethod
    def create_study(
        self,
        name: str,
        direction: str,
        seed: int,
        user_attrs: Mapping[str, Any] | None = None,
        system_attrs: Mapping[str, Any] | None = None,
    ) -> StudyRecord:
        """Create a study; raise DuplicatedStudyError if the name is taken."""

    @abstractmethod
    def get_study(self, name: str) -> StudyRecord:
        """The study of that name; raise StudyNotFoundError if none."""

    @abstractmethod
    def list_studies(self) -> list[StudySummary]:
        """Every study with its trial counts and best value."""

    @abstractmethod
    def delete_study(self, study_id: int) -> None:
        """Delete a study and all its trials."""

    @abstractmethod
    def set_study_attrs(
        self,
        study_id: int,
        user_attrs: Mapping[str, Any] | None = None,
        system_attrs: Mapping[str, Any] | None = None,
    ) -> None:
        """Merge attributes into the study's user and system attributes."""

    @abstractmethod
    def register_distribution(self, study_id: int, name: str, distribution: Distribution) -> Distribution:
        """Record ``distribution`` for ``name`` if it is the first; return the first recorded one."""

    @abstractmethod
    def get_distributions(self, study_id: int) -> dict[str, Distribution]:
        """Every parameter's first recorded distribution (:meth:`register_distribution`), by name, in one
        read. StudyNotFoundError for an unknown study."""

    # -- trials ----------------------------------------------------------------------------
    @abstractmethod
    def create_trial(
        self,
        study_id: int,
        state: TrialState = TrialState.RUNNING,
        params: Mapping[str, ParamValue] | None = None,
        distributions: Mapping[str, Distribution] | None = None,
        user_attrs: Mapping[str, Any] | None = None,
        system_attrs: Mapping[str, Any] | None = None,
        heartbeat: bool = False,
    ) -> FrozenTrial:
        """Create a RUNNING or WAITING trial with the next number (``heartbeat``: beat once now)."""

    @abstractmethod
    def claim_waiting_trial(self, study_id: int, heartbeat: bool = False) -> FrozenTrial | None:
        """Atomically move the lowest-numbered WAITING trial to RUNNING and return it.

        With ``heartbeat``, its first heartbeat is recorded in the same step.
        """

    def start_trial(self, study_id: int, heartbeat: bool = False) -> FrozenTrial:
        """The next trial to run: the lowest WAITING one, claimed, or else a new RUNNING one.

        A claimed trial carries its enqueued params; a new one has none. Backends may
        override this to do both in one transaction.
        """
        claimed = self.claim_waiting_trial(study_id, heartbeat=heartbeat)
        return claimed if claimed is not None else self.create_trial(study_id, heartbeat=heartbeat)

    def discard_trial(self, trial_id: int) -> bool:
        """Delete a RUNNING trial that has recorded nothing yet (no params, no reports): a reservation
        that found no work (a grid with every cell taken). Returns whether it was deleted.

        Its number is not reused. Storages that cannot delete keep the row (False): the caller then
        records it as failed instead.
        """
        return False

    @abstractmethod
    def update_trial(
        self,
        trial_id: int,
        params: Mapping[str, ParamValue] | None = None,
        distributions: Mapping[str, Distribution] | None = None,
        user_attrs: Mapping[str, Any] | None = None,
        system_attrs: Mapping[str, Any] | None = None,
    ) -> None:
        """Merge params and attributes into a RUNNING trial; TrialStateError if finished."""

    @abstractmethod
    def annotate_trial(self, trial_id: int, user_attrs: Mapping[str, Any]) -> None:
        """Merge user attributes into a trial in any state, finished ones included (a note a person
        adds later). The one change a finished trial allows: its state, value, params and system
        attributes stay as they are. TrialNotFoundError for an unknown id.
        """

    @abstractmethod
    def append_trial_event(self, trial_id: int, key: str, event: Mapping[str, Any]) -> int:
        """Append the JSON object ``event`` to the list ``system_attrs[key]`` of a RUNNING trial (the
        list is created when missing) and return its index there.

        Atomic: appends from many threads and processes at once are all kept, each at its own index,
        in the order the storage serialised them (a read-merge-write with :meth:`update_trial`
        could lose one). An ``event`` with an ``"id"`` already in the list is not appended twice (a
        retry after a lost acknowledgement): its index is returned. TrialStateError if the trial is
        finished or WAITING, TrialNotFoundError for an unknown id, StorageError if ``key`` holds
        something other than a list.
        """

    @abstractmethod
    def finish_trial(
        self,
        trial_id: int,
        state: TrialState,
        value: float | None = None,
        error: str | None = None,
        params: Mapping[str, ParamValue] | None = None,
        distributions: Mapping[str, Distribution] | None = None,
        user_attrs: Mapping[str, Any] | None = None,
        system_attrs: Mapping[str, Any] | None = None,
        values: Sequence[float] | None = None,
    ) -> None:
        """Atomically finish a RUNNING trial, writing any last params and attributes with it.

        ``values``: every objective's value of a trial of a multi-objective study (finite; stored as
        a JSON list in ``trials.objective_values``); ``value`` is then its first (taken from
        ``values`` when None). Raises TrialStateError if the trial is already finished (or WAITING).
        """

    def restore_times(self, trial_id: int, start: datetime | None, complete: datetime | None) -> bool:
        """Set a finished trial's start and end times to those it had elsewhere (:func:`tunelab.copy_study`
        copies a study so). Returns whether the storage kept them; one that cannot answers False and the copy
        keeps the times of its own writing. TrialStateError for a trial that is not finished."""
        return False

    @abstractmethod
    def report(self, trial_id: int, step: int, metrics: Mapping[str, float]) -> None:
        """Store intermediate metric values of a RUNNING trial at ``step`` (last write wins), each as
        :func:`stored_metric` says (-0.0 as 0.0, a finite +-DBL_MAX one step below)."""

    def report_steps(self, trial_id: int, points: Sequence[tuple[int, Mapping[str, float]]]) -> None:
        """Store several ``(step, metrics)`` reports of a RUNNING trial, in order, as :meth:`report`
        does one by one (a later point wins on the same step and metric); storages that can write
        them in one transaction do (what a trial's coalesced reports cost)."""
        for step, metrics in points:
            self.report(trial_id, step, metrics)

    @abstractmethod
    def get_curves(self, trial_id: int) -> Curves:
        """The trial's intermediate values: metric -> (steps, values)."""

    @abstractmethod
    def get_metric_at(self, study_id: int, metric: str, steps: Sequence[int] | None = None) -> list[MetricPoint]:
        """Values of one reported metric across a study: every trial's value of ``metric`` at ``steps``
        (all steps when None), ordered by trial number then step. Pruners decide from these, so
        every worker sees the same data.

        Trials in every state are included (the caller filters); a trial without a value at
        a step has no point there. An empty ``steps`` gives ``[]``. Raises StudyNotFoundError
        for an unknown study.
        """

    @abstractmethod
    def heartbeat(self, trial_id: int) -> None:
        """Record that the process running this trial is alive."""

    @abstractmethod
    def fail_stale_trials(self, study_id: int, grace_seconds: float) -> list[FrozenTrial]:
        """Mark FAIL every RUNNING trial whose heartbeat is older than the grace time.

        Only trials that have sent at least one heartbeat are considered. Returns
        the trials this call failed (each is failed by exactly one caller).
        """

    @abstractmethod
    def get_trial(self, trial_id: int) -> FrozenTrial:
        """One trial by id; TrialNotFoundError if none."""

    def get_trial_system_attr(self, trial_id: int, key: str) -> Any:
        """One system attribute of a trial (None when it has none by that name), as stored now; a
        lighter read than :meth:`get_trial` for what a running trial checks at every report (a stop
        request). TrialNotFoundError if there is no such trial."""
        return self.get_trial(trial_id).system_attrs.get(key)

    def get_trial_system_attrs(self, trial_id: int, keys: Sequence[str]) -> dict[str, Any]:
        """Several system attributes of a trial in one read: ``{key: value or None}`` for each of
        ``keys`` (what a watcher thread polls while the trial trains). TrialNotFoundError if there is
        no such trial."""
        attrs = self.get_trial(trial_id).system_attrs
        return {key: attrs.get(key) for key in keys}

    def watch_trial_attrs(
        self, trial_id: int, keys: Sequence[str], callback: Callable[[], None]
    ) -> Callable[[], None] | None:
        """Call ``callback()`` after every write of one of trial ``trial_id``'s system attributes
        ``keys`` (:meth:`update_trial`, :meth:`append_trial_event`), in the thread that wrote it;
        return a function that stops the calls.

        None (the default) where this storage cannot see every write (another process writes the
        same database directly): the caller then polls :meth:`get_trial_system_attrs`. The
        in-memory storage sees them all, its served workers' included, so a running trial learns
        of a live change or a stop request without reading its row again and again.
        """
        return None

    @abstractmethod
    def get_trials(
        self,
        study_id: int,
        states: Iterable[TrialState] | None = None,
        min_number: int = 0,
        max_number: int | None = None,
    ) -> list[FrozenTrial]:
        """Trials ordered by number, optionally filtered by state and ``min_number <= number <= max_number``."""

    @abstractmethod
    def get_trial_values(self, study_id: int, min_number: int = 0) -> list[TrialValue]:
        """Every trial's number, state and value (numbered ``min_number`` and up), by number: a light
        read for plots of a whole study (no params, no attributes). StudyNotFoundError if unknown."""

    @abstractmethod
    def count_trials(self, study_id: int, states: Iterable[TrialState] | None = None) -> int:
        """Number of trials, optionally of the given states."""

    @abstractmethod
    def get_best_trial(self, study_id: int, direction: str) -> FrozenTrial | None:
        """The COMPLETE trial with the best finite value (lowest number on ties), or None."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the storage must not be used afterwards."""
