"""Hyperparameters that change while a trial trains, and branches of a run (babysitting).

A running trial's hyperparameters can be changed from outside (``tunelab set``, the dashboard,
:func:`tunelab.babysit.set_live`): each change is a *request* appended atomically to the trial's
``system_attrs["live_requests"]`` (:meth:`BaseStorage.append_trial_event`), so two shells setting
values at once are both kept, in the order the storage serialised them. The training loop asks
for changes at each step (:meth:`Trial.sync_live` / :meth:`Trial.live`); the trial applies every
request it has not applied yet, in order, and records the step at which they took effect in its
``system_attrs["live_schedule"]``, which only the trial writes. A trial's hyperparameters at any
step are therefore its parameters with the schedule's entries up to that step laid over them
(:func:`params_at`), and its curves can show where each change happened.

A *branch* is a trial that starts from another trial's checkpoint (a roll-back, or the resumption
of a run that died): ``system_attrs["branch"]`` names its parent, the step and the checkpoint it
starts from, and the values that were changed. Every checkpoint written through
:meth:`Trial.checkpoint` carries the hyperparameters in effect when it was written
(``tunelab-params.json``), so a branch knows what it resumes with whatever the loop's units.
"""

from __future__ import annotations

import json
import math
import numbers
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

from tunelab.distributions import Bool, Categorical, Distribution, Float, Int, ParamValue
from tunelab.errors import ConfigError
from tunelab.records import FrozenTrial

STOP_REQUESTED = "stop_requested"
"""System attribute :func:`tunelab.babysit.request_stop` writes into a RUNNING trial (a roll-back, the dashboard)."""
LIVE_REQUESTS = "live_requests"
"""System attribute of a trial: the changes asked for, in order (appended by :func:`tunelab.babysit.set_live`)."""
LIVE_SCHEDULE = "live_schedule"
"""System attribute of a trial: the changes applied, each with the step it applied at (written by the trial)."""
LIVE_NAMES = "live_names"
"""System attribute of a trial: the hyperparameters its training loop can change while it runs, if it said."""
BRANCH = "branch"
"""System attribute of a branch: ``{"parent", "step", "checkpoint", "set", "kind"}``."""
BRANCH_KINDS = ("rollback", "resume")
"""Why a branch exists: a person went back to a checkpoint, or the run died and goes on from its last one."""
PARAMS_FILE = "tunelab-params.json"
"""Written into every checkpoint folder by :meth:`Trial.checkpoint`: the hyperparameters in effect."""
DEFAULT_POLL_SECONDS = 0.5
"""How often, at most, a training loop reads its trial's row for new requests (about 0.4 ms a read)."""


class Branch(NamedTuple):
    """Where a branch starts: trial ``parent``'s checkpoint at ``step``, with ``changed`` values."""

    parent: int
    step: int
    checkpoint: Path
    changed: dict[str, ParamValue]
    kind: str
    """'rollback' (a person went back to a checkpoint) or 'resume' (the parent died; it goes on)."""


def branch_of(system_attrs: Mapping[str, Any]) -> Branch | None:
    """The branch record of a trial's system attributes, or None for a trial that starts afresh."""
    record = system_attrs.get(BRANCH)
    if not isinstance(record, Mapping):
        return None
    return Branch(int(record["parent"]), int(record["step"]), Path(record["checkpoint"]),
                  dict(record.get("set") or {}), str(record.get("kind", "rollback")))


def new_request(values: Mapping[str, ParamValue], source: str, note: str | None = None) -> dict[str, Any]:
    """One change request, as stored: a unique id (a retried append is not doubled), the values,
    the time, who asked ('cli', 'dashboard', 'api', 'auto: <rule>', 'suggestion') and a note."""
    return {"id": uuid.uuid4().hex, "params": dict(values), "at": _now(), "source": source, "note": note}


def check_live_values(
    values: Mapping[str, object],
    *,
    params: Mapping[str, ParamValue],
    distributions: Mapping[str, Distribution],
    live_names: Sequence[str] | None,
    number: int,
) -> dict[str, ParamValue]:
    """``values`` checked against trial ``number``'s hyperparameters, cast to their kinds.

    A name must be one the training loop declared it can change (``live_names``, when it
    declared them), else a parameter of the trial. A value keeps its parameter's kind (a float
    for a float parameter, positive on a log scale, one of a categorical's choices); it may leave
    the searched range, since a person babysitting a run goes where the curves say. ConfigError
    naming the parameter and the fix otherwise.
    """
    if not isinstance(values, Mapping) or not values:
        raise ConfigError("give at least one hyperparameter to change, e.g. lr=3e-4")
    known = list(live_names) if live_names is not None else list(params)
    out: dict[str, ParamValue] = {}
    for name, value in values.items():
        if name not in known:
            what = "can change while it trains" if live_names is not None else "has"
            fix = (f"; {name} is one of its parameters: a branch can start with another value (roll back to a "
                   f"checkpoint with --set {name}=...)" if name in params else "")
            raise ConfigError(
                f"trial {number} has no live hyperparameter {name!r}: its training loop {what} "
                f"{', '.join(sorted(known)) or 'none'}{fix}"
            )
        out[name] = _cast(name, value, distributions.get(name), params.get(name))
    return out


def _cast(name: str, value: object, dist: Distribution | None, current: ParamValue | None) -> ParamValue:
    if isinstance(dist, Categorical):
        if value not in dist.choices:
            raise ConfigError(f"{name}={value!r} is not one of its choices {list(dist.choices)}")
        return value  # type: ignore[return-value]
    if isinstance(dist, Bool) or isinstance(current, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} is on/off: give true or false, got {value!r}")
        return value
    if dist is None and isinstance(current, str):  # a text value no distribution describes (an enqueued one)
        if not isinstance(value, str):
            raise ConfigError(f"{name} is a text parameter (now {current!r}): give text, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(number := float(value)):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if isinstance(dist, Int) or (dist is None and isinstance(current, int)):
        if not number.is_integer():
            raise ConfigError(f"{name} is an integer parameter, got {value!r}")
        return int(number)
    if isinstance(dist, Float) and dist.log and number <= 0:
        raise ConfigError(f"{name} is on a log scale and must be > 0, got {value!r}")
    return number


def schedule(trial: FrozenTrial) -> list[dict[str, Any]]:
    """The changes applied to a trial while it ran, in order: ``{"step", "params", "requests",
    "sources", "at", ...}`` each."""
    return [dict(e) for e in trial.system_attrs.get(LIVE_SCHEDULE) or []]


def pending_requests(trial: FrozenTrial) -> list[dict[str, Any]]:
    """Requests the trial has not applied yet (it applies them at its next sync; a finished trial
    never will), each with its ``"index"`` in ``system_attrs["live_requests"]``."""
    requests = trial.system_attrs.get(LIVE_REQUESTS) or []
    applied = sum(len(e.get("requests", [])) for e in trial.system_attrs.get(LIVE_SCHEDULE) or [])
    return [{**r, "index": i} for i, r in enumerate(requests) if i >= applied and isinstance(r, dict)]


def params_at(trial: FrozenTrial, step: float) -> dict[str, ParamValue]:
    """The trial's hyperparameters in effect at ``step``: its parameters, then every change applied
    at or before ``step`` (the loop's unit: the step it passed to ``sync_live``)."""
    current = dict(trial.params)
    for entry in schedule(trial):
        if entry["step"] <= step:
            current.update(entry["params"])
    return current


def current_params(trial: FrozenTrial) -> dict[str, ParamValue]:
    """The trial's hyperparameters now (after every applied change)."""
    return params_at(trial, math.inf)


def read_checkpoint_params(folder: Path) -> dict[str, ParamValue] | None:
    """The hyperparameters a checkpoint was written with (``tunelab-params.json``), or None."""
    try:
        record = json.loads((folder / PARAMS_FILE).read_text())
    except (OSError, ValueError):
        return None
    params = record.get("params") if isinstance(record, dict) else None
    return dict(params) if isinstance(params, dict) else None


def write_checkpoint_params(folder: Path, step: int, params: Mapping[str, ParamValue]) -> None:
    """Write ``tunelab-params.json`` into a checkpoint folder being written."""
    (folder / PARAMS_FILE).write_text(json.dumps({"step": step, "params": dict(params)}, indent=1))


LiveCallback = Callable[[Any, dict[str, ParamValue]], None]
"""``callback(step, changes)``: called when changes take effect (e.g. set an optimizer's lr)."""


class LiveParams:
    """A running trial's side of live hyperparameters: its current values, what it applied.

    ``read()`` returns the trial's stored system attributes; ``write(key, value)`` stores one.
    Owned by :class:`~tunelab.study.Trial`; use ``trial.live(...)`` and ``trial.sync_live(...)``.
    """

    def __init__(
        self,
        initial: Mapping[str, ParamValue],
        read: Callable[[], Mapping[str, Any]],
        write: Callable[[str, Any], None],
        recorded: Mapping[str, Any],
    ) -> None:
        self.values: dict[str, ParamValue] = dict(initial)
        self.poll_seconds = DEFAULT_POLL_SECONDS
        self._read = read
        self._write = write
        self._schedule: list[dict[str, Any]] = [dict(e) for e in recorded.get(LIVE_SCHEDULE) or []]
        self._seen = sum(len(e.get("requests", [])) for e in self._schedule)
        for entry in self._schedule:  # a trial object rebuilt for a running trial (Ray, retries)
            self.values.update(entry["params"])
        self._last_read = -math.inf
        self._callbacks: list[LiveCallback] = []
        self.stop_requested = False
        """Whether the last read saw a stop request (the loop may then stop before its next evaluation)."""

    def on_change(self, callback: LiveCallback) -> None:
        self._callbacks.append(callback)

    def sync(self, step: float, force: bool = False, **extra: Any) -> dict[str, ParamValue]:
        """Apply the requests not applied yet (reading the storage at most every ``poll_seconds``
        unless ``force``); return the values that changed, recorded as taking effect at ``step``."""
        now = time.monotonic()
        if not force and now - self._last_read < self.poll_seconds:
            return {}
        self._last_read = now
        attrs = self._read()
        self.stop_requested = STOP_REQUESTED in attrs
        requests = list(attrs.get(LIVE_REQUESTS) or [])
        new = requests[self._seen:]
        if not new:
            return {}
        changes: dict[str, ParamValue] = {}
        for r in new:
            changes.update(r.get("params") or {})
        first = self._seen
        self._seen = len(requests)
        self.values.update(changes)
        entry = {"step": step, "params": changes, "requests": list(range(first, self._seen)),
                 "sources": [r.get("source") for r in new], "at": _now(), **extra}
        self._schedule.append(entry)
        self._write(LIVE_SCHEDULE, [dict(e) for e in self._schedule])
        for callback in self._callbacks:
            callback(step, dict(changes))
        return changes


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


__all__ = [
    "BRANCH",
    "BRANCH_KINDS",
    "LIVE_NAMES",
    "LIVE_REQUESTS",
    "LIVE_SCHEDULE",
    "PARAMS_FILE",
    "STOP_REQUESTED",
    "Branch",
    "LiveParams",
    "branch_of",
    "check_live_values",
    "current_params",
    "params_at",
    "pending_requests",
    "read_checkpoint_params",
    "schedule",
]
