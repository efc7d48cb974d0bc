"""In-memory storage: for tests and notebooks. Thread-safe; not shared across processes."""

from __future__ import annotations

import copy
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from tunelab.distributions import Distribution, ParamValue
from tunelab.errors import (
    DuplicatedStudyError,
    StudyNotFoundError,
    TrialNotFoundError,
    TrialStateError,
)
from tunelab.records import FrozenTrial, StudyRecord, StudySummary, TrialState, sort_key
from tunelab.storage._json import dumps
from tunelab.storage.base import (
    FLOAT_MAX,
    BaseStorage,
    Curves,
    MetricPoint,
    TrialValue,
    append_event,
    check_values,
    stored_metric,
)

logger = logging.getLogger("tunelab")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _snapshot(t: FrozenTrial) -> FrozenTrial:
    """A copy callers may change without changing the storage."""
    return _with_fields(t, {
        "params": dict(t.params), "distributions": dict(t.distributions),
        "user_attrs": _tree_copy(t.user_attrs), "system_attrs": _tree_copy(t.system_attrs),
    })


def _tree_copy(value: Any) -> Any:
    """A deep copy of stored JSON data (dicts, lists and plain values, what :func:`_json_copy` keeps):
    ``copy.deepcopy`` without its memo and dispatch, which a pruner's first read of a study's running
    trials paid at every trial (anything else, which the storage never keeps, goes to ``deepcopy``)."""
    kind = type(value)
    if kind is dict:
        return {k: _tree_copy(v) for k, v in value.items()}
    if kind is list:
        return [_tree_copy(v) for v in value]
    if value is None or kind is str or kind is int or kind is float or kind is bool:
        return value
    return copy.deepcopy(value)


def _with_fields(t: FrozenTrial, changed: Mapping[str, Any]) -> FrozenTrial:
    """``t`` with some of its mappings (params, distributions, attributes) replaced: what
    ``dataclasses.replace`` gives for them, without re-running ``__init__`` (a running trial's
    attribute writes are on a training loop's path)."""
    new: FrozenTrial = object.__new__(FrozenTrial)
    new.__dict__.update(t.__dict__)
    new.__dict__.update(changed)
    return new


def _json_copy(attrs: Mapping[str, Any] | None) -> dict[str, Any]:
    """A deep copy of attributes as the SQL storages give them back (through JSON: tuples become
    lists), refusing what they could not store either."""
    if not attrs:
        return {}
    plain: dict[str, Any] = {}  # the common small cases (a flag, a name, a list of names) need no JSON text
    for key, value in attrs.items():
        kind = type(value)
        if type(key) is not str:
            break
        if value is None or kind is str or kind is int or kind is bool or (kind is float and math.isfinite(value)):
            plain[key] = value
        elif kind is list and all(type(v) is str for v in value):
            plain[key] = list(value)
        else:
            break
    else:
        return plain
    copied: dict[str, Any] = json.loads(dumps(dict(attrs)))
    return copied


@dataclass
class _Study:
    record: StudyRecord
    trial_ids: list[int] = field(default_factory=list)
    distributions: dict[str, Distribution] = field(default_factory=dict)
    waiting: deque[int] = field(default_factory=deque)  # WAITING trial ids, lowest number first
    next_number: int = 0  # never reused, even when a trial is discarded


class InMemoryStorage(BaseStorage):
    """Keeps everything in this process's memory; lost when the process ends."""

    shareable_across_processes = False
    gathers_reports = False

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._studies: dict[int, _Study] = {}
        self._names: dict[str, int] = {}
        self._trials: dict[int, FrozenTrial] = {}
        self._trial_study: dict[int, int] = {}
        self._curves: dict[int, dict[str, dict[int, float]]] = {}
        self._heartbeats: dict[int, float] = {}
        self._next_study_id = 1
        self._next_trial_id = 1
        self._watchers: dict[int, list[tuple[frozenset[str], Callable[[], None]]]] = {}  # see watch_trial_attrs

    def __repr__(self) -> str:
        return "InMemoryStorage()"

    # -- studies ---------------------------------------------------------------------------
    def create_study(
        self,
        name: str,
        direction: str,
        seed: int,
        user_attrs: Mapping[str, Any] | None = None,
        system_attrs: Mapping[str, Any] | None = None,
    ) -> StudyRecord:
        with self._lock:
            if name in self._names:
                raise DuplicatedStudyError(
                    f"a study named {name!r} already exists; pass load_if_exists=True to load it, "
                    "or choose another name"
                )
            record = StudyRecord(
                self._next_study_id, name, direction, seed,
                _json_copy(user_attrs), _json_copy(system_attrs), _now(),
            )
            self._next_study_id += 1
            self._studies[record.study_id] = _Study(record)
            self._names[name] = record.study_id
            return copy.deepcopy(record)

    def get_study(self, name: str) -> StudyRecord:
        with self._lock:
            if name not in self._names:
                raise StudyNotFoundError(
                    f"no study named {name!r} in this storage; create it with create_study"
                )
            return copy.deepcopy(self._studies[self._names[name]].record)

    def _study(self, study_id: int) -> _Study:
        try:
            return self._studies[study_id]
        except KeyError:
            raise StudyNotFoundError(f"no study with id {study_id}") from None

    def list_studies(self) -> list[StudySummary]:
        with self._lock:
            out = []
            for s in self._studies.values():
                trials = [self._trials[i] for i in s.trial_ids]
                counts: dict[str, int] = {}
                for t in trials:
                    counts[t.state.value] = counts.get(t.state.value, 0) + 1
                best = self.get_best_trial(s.record.study_id, s.record.direction)
                out.append(StudySummary(
                    s.record.name, s.record.direction, len(trials), counts,
                    best.value if best else None, s.record.datetime_created,
                ))
            return out

    def delete_study(self, study_id: int) -> None:
        with self._lock:
            s = self._study(study_id)
            del self._studies[study_id]
            del self._names[s.record.name]
            for tid in s.trial_ids:
                self._trials.pop(tid, None)
                self._curves.pop(tid, None)
                self._heartbeats.pop(tid, None)
                self._trial_study.pop(tid, None)

    def set_study_attrs(
        self,
        study_id: int,
        user_attrs: Mapping[str, Any] | None = None,
        system_attrs: Mapping[str, Any] | None = None,
    ) -> None:
        with self._lock:
            s = self._study(study_id)
            s.record = replace(
                s.record,
                user_attrs={**s.record.user_attrs, **_json_copy(user_attrs)},
                system_attrs={**s.record.system_attrs, **_json_copy(system_attrs)},
            )

    def register_distribution(self, study_id: int, name: str, distribution: Distribution) -> Distribution:
        with self._lock:
            return self._study(study_id).distributions.setdefault(name, distribution)

    def get_distributions(self, study_id: int) -> dict[str, Distribution]:
        with self._lock:
            return dict(self._study(study_id).distributions)

    # -- trials ----------------------------------------------------------------------------
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
        with self._lock:
            s = self._study(study_id)
            trial = FrozenTrial(
                number=s.next_number,
                state=state,
                value=None,
                params=dict(params or {}),
                distributions=dict(distributions or {}),
                user_attrs=_json_copy(user_attrs),
                system_attrs=_json_copy(system_attrs),
                datetime_start=_now() if state == TrialState.RUNNING else None,
                trial_id=self._next_trial_id,
            )
            self._next_trial_id += 1
            s.next_number += 1
            s.trial_ids.append(trial.trial_id)
            self._trials[trial.trial_id] = trial
            self._trial_study[trial.trial_id] = study_id
            if state == TrialState.WAITING:
                s.waiting.append(trial.trial_id)
            if heartbeat and state == TrialState.RUNNING:
                self._heartbeats[trial.trial_id] = time.time()
            return _snapshot(trial)

    def claim_waiting_trial(self, study_id: int, heartbeat: bool = False) -> FrozenTrial | None:
        with self._lock:
            waiting = self._study(study_id).waiting
            while waiting:
                tid = waiting.popleft()
                t = self._trials.get(tid)
                if t is not None and t.state == TrialState.WAITING:
                    t = replace(t, state=TrialState.RUNNING, datetime_start=_now())
                    self._trials[tid] = t
                    if heartbeat:
                        self._heartbeats[tid] = time.time()
                    return _snapshot(t)
            return None

    def start_trial(self, study_id: int, heartbeat: bool = False) -> FrozenTrial:
        with self._lock:  # claim-or-create as one step
            return super().start_trial(study_id, heartbeat)

    def discard_trial(self, trial_id: int) -> bool:
        with self._lock:
            t = self._trials.get(trial_id)
            if t is None or t.state != TrialState.RUNNING or t.params or self._curves.get(trial_id):
                return False
            del self._trials[trial_id]
            self._heartbeats.pop(trial_id, None)
            self._watchers.pop(trial_id, None)
            self._curves.pop(trial_id, None)
            self._study(self._trial_study.pop(trial_id)).trial_ids.remove(trial_id)
            return True

    def _running(self, trial_id: int) -> FrozenTrial:
        t = self._get(trial_id)
        if t.state != TrialState.RUNNING:
            raise TrialStateError(
                f"trial {t.number} is {t.state.value}, not RUNNING; a finished trial cannot change"
            )
        return t

    def _get(self, trial_id: int) -> FrozenTrial:
        try:
            return self._trials[trial_id]
        except KeyError:
            raise TrialNotFoundError(f"no trial with id {trial_id}") from None

    @staticmethod
    def _merged(
        t: FrozenTrial,
        params: Mapping[str, ParamValue] | None,
        distributions: Mapping[str, Distribution] | None,
        user_attrs: Mapping[str, Any] | None,
        system_attrs: Mapping[str, Any] | None,
    ) -> FrozenTrial:
        changed: dict[str, Any] = {}  # only the fields that change are rebuilt
        if params:
            changed["params"] = {**t.params, **params}
        if distributions:
            changed["distributions"] = {**t.distributions, **distributions}
        if user_attrs:
            changed["user_attrs"] = {**t.user_attrs, **_json_copy(user_attrs)}
        if system_attrs:
            changed["system_attrs"] = {**t.system_attrs, **_json_copy(system_attrs)}
        return _with_fields(t, changed) if changed else t

    def update_trial(
        self,
        trial_id: int,
        params: Mapping[str, ParamValue] | None = None,
        distributions: Mapping[str, Distribution] | None = None,
        user_attrs: Mapping[str, Any] | None = None,
        system_attrs: Mapping[str, Any] | None = None,
    ) -> None:
        with self._lock:
            t = self._running(trial_id)
            self._trials[trial_id] = self._merged(t, params, distributions, user_attrs, system_attrs)
        if system_attrs and self._watchers:
            self._notify(trial_id, system_attrs)

    def annotate_trial(self, trial_id: int, user_attrs: Mapping[str, Any]) -> None:
        with self._lock:
            t = self._get(trial_id)
            self._trials[trial_id] = replace(t, user_attrs={**t.user_attrs, **_json_copy(user_attrs)})

    def append_trial_event(self, trial_id: int, key: str, event: Mapping[str, Any]) -> int:
        event = _json_copy(event)
        with self._lock:
            t = self._running(trial_id)
            attrs = copy.deepcopy(dict(t.system_attrs))
            index, appended = append_event(attrs, key, event, t.number)
            if appended:
                self._trials[trial_id] = replace(t, system_attrs=attrs)
        if appended and self._watchers:
            self._notify(trial_id, (key,))
        return index

    def watch_trial_attrs(
        self, trial_id: int, keys: Sequence[str], callback: Callable[[], None]
    ) -> Callable[[], None] | None:
        entry = (frozenset(keys), callback)
        with self._lock:
            self._get(trial_id)  # TrialNotFoundError for an unknown trial
            self._watchers.setdefault(trial_id, []).append(entry)

        def stop() -> None:
            with self._lock:
                entries = self._watchers.get(trial_id, [])
                if any(e is entry for e in entries):
                    entries[:] = [e for e in entries if e is not entry]
                if not entries:
                    self._watchers.pop(trial_id, None)

        return stop

    def _notify(self, trial_id: int, written: Iterable[str]) -> None:
        """Call the watchers of trial ``trial_id`` whose keys were just written (outside the lock)."""
        with self._lock:
            entries = list(self._watchers.get(trial_id, ()))
        names = set(written)
        for keys, callback in entries:
            if keys & names:
                try:
                    callback()
                except Exception:  # a watcher's failure is not the writer's: log it, go on
                    logger.exception("tunelab: a watcher of trial %d's attributes failed", trial_id)

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
        value, values = check_values(value, values)
        with self._lock:
            t = self._merged(self._running(trial_id), params, distributions, user_attrs, system_attrs)
            self._trials[trial_id] = replace(
                t, state=state, value=value, error=error, datetime_complete=_now(),
                values=None if values is None else tuple(values),
            )
            self._heartbeats.pop(trial_id, None)
            self._watchers.pop(trial_id, None)  # a finished trial's attributes never change again

    def restore_times(self, trial_id: int, start: datetime | None, complete: datetime | None) -> bool:
        with self._lock:
            t = self._trials.get(trial_id)
            if t is None:
                raise TrialNotFoundError(f"no trial with id {trial_id}")
            if not t.state.is_finished:
                raise TrialStateError(
                    f"trial {t.number} is {t.state.value}: only a finished trial's times are restored"
                )
            self._trials[trial_id] = replace(t, datetime_start=start, datetime_complete=complete)
        return True

    def report(self, trial_id: int, step: int, metrics: Mapping[str, float]) -> None:
        step = int(step)
        with self._lock:
            curves = self._curves.get(trial_id)
            t = self._trials.get(trial_id)
            if curves is None or t is None or t.state is not TrialState.RUNNING:
                curves = self._curves_of(trial_id)  # the first report, or the error that names the state
            self._store(curves, step, metrics)

    def report_steps(self, trial_id: int, points: Sequence[tuple[int, Mapping[str, float]]]) -> None:
        with self._lock:
            curves = self._curves_of(trial_id)
            for step, metrics in points:
                self._store(curves, int(step), metrics)

    def _curves_of(self, trial_id: int) -> dict[str, dict[int, float]]:
        """The curves of a RUNNING trial, to report to (the caller holds the lock)."""
        self._running(trial_id)
        curves = self._curves.get(trial_id)
        if curves is None:
            curves = self._curves[trial_id] = {}
        return curves

    @staticmethod
    def _store(curves: dict[str, dict[int, float]], step: int, metrics: Mapping[str, float]) -> None:
        for name, value in metrics.items():
            points = curves.get(name)
            if points is None:
                points = curves[name] = {}
            v = float(value)
            if v == 0.0 or v == FLOAT_MAX or v == -FLOAT_MAX:  # what stored_metric changes: no call per point
                v = stored_metric(v)
            points[step] = v

    def get_curves(self, trial_id: int) -> Curves:
        with self._lock:
            self._get(trial_id)
            out: Curves = {}
            for name, points in self._curves.get(trial_id, {}).items():
                steps = sorted(points)
                out[name] = (steps, [points[s] for s in steps])
            return out

    def get_metric_at(self, study_id: int, metric: str, steps: Sequence[int] | None = None) -> list[MetricPoint]:
        wanted = None if steps is None else sorted({int(s) for s in steps})  # once, not per trial
        with self._lock:
            out: list[MetricPoint] = []
            for tid in self._study(study_id).trial_ids:  # in number order
                points = self._curves.get(tid, {}).get(metric)
                if not points:
                    continue
                at = sorted(points) if wanted is None else [s for s in wanted if s in points]
                if at:
                    t = self._trials[tid]
                    out.extend(MetricPoint(t.number, t.state, step, points[step]) for step in at)
            return out

    def heartbeat(self, trial_id: int) -> None:
        with self._lock:
            if self._get(trial_id).state == TrialState.RUNNING:  # a late beat after the end is harmless
                self._heartbeats[trial_id] = time.time()

    def fail_stale_trials(self, study_id: int, grace_seconds: float) -> list[FrozenTrial]:
        with self._lock:
            deadline = time.time() - grace_seconds
            failed = []
            for tid in self._study(study_id).trial_ids:
                beat = self._heartbeats.get(tid)
                if beat is not None and beat < deadline and self._trials[tid].state == TrialState.RUNNING:
                    self.finish_trial(
                        tid, TrialState.FAIL,
                        error=f"heartbeat lost: no sign of life for over {grace_seconds:g}s "
                        "(the worker process died or hung)",
                    )
                    failed.append(_snapshot(self._trials[tid]))
            return failed

    def get_trial(self, trial_id: int) -> FrozenTrial:
        with self._lock:
            return _snapshot(self._get(trial_id))

    def get_trial_system_attr(self, trial_id: int, key: str) -> Any:
        with self._lock:
            value = self._get(trial_id).system_attrs.get(key)
            return _tree_copy(value)  # absent: the common case, read per report

    def get_trial_system_attrs(self, trial_id: int, keys: Sequence[str]) -> dict[str, Any]:
        with self._lock:
            attrs = self._get(trial_id).system_attrs
            return {key: _tree_copy(attrs.get(key)) for key in keys}

    def get_trials(
        self,
        study_id: int,
        states: Iterable[TrialState] | None = None,
        min_number: int = 0,
        max_number: int | None = None,
    ) -> list[FrozenTrial]:
        with self._lock:
            wanted = set(states) if states is not None else None
            end = None if max_number is None else max(0, max_number + 1)
            ids = self._study(study_id).trial_ids[max(0, min_number):end]
            return [
                _snapshot(t) for t in (self._trials[i] for i in ids)
                if wanted is None or t.state in wanted
            ]

    def get_trial_values(self, study_id: int, min_number: int = 0) -> list[TrialValue]:
        with self._lock:
            ids = self._study(study_id).trial_ids[max(0, min_number):]
            return [TrialValue(t.number, t.state, t.value) for t in (self._trials[i] for i in ids)]

    def count_trials(self, study_id: int, states: Iterable[TrialState] | None = None) -> int:
        return len(self.get_trials(study_id, states))

    def get_best_trial(self, study_id: int, direction: str) -> FrozenTrial | None:
        with self._lock:
            done = [
                t for t in self.get_trials(study_id, (TrialState.COMPLETE,))
                if t.value is not None and math.isfinite(t.value)
            ]
            return min(done, key=sort_key(direction)) if done else None
