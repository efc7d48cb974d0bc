"""Running trials: one trial's life, the in-process loop, the worker-process loop and Ray tasks.

Whatever the objective does (returns, raises, returns NaN, dies), the trial ends
recorded: COMPLETE, PRUNED or FAIL with the reason. Only tunelab's own
:class:`~tunelab.errors.ConfigError` and interrupts stop the study, after the
trial is recorded.
"""

from __future__ import annotations

import builtins
import logging
import numbers
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from types import FrameType
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from tunelab import errors
from tunelab.errors import (
    ConfigError,
    EnqueuedValueError,
    SearchExhausted,
    StorageError,
    TrialPruned,
    TrialStateError,
    TunelabError,
    WorkerTraceback,
)
from tunelab.execution.gpus import assigned_gpus, parse_gpus_per_trial, plan_gpus, slot_environment
from tunelab.execution.local import ProcessPool, driver_gone
from tunelab.execution.ray import RayExecutor
from tunelab.records import FrozenTrial, TrialState
from tunelab.space import SpaceEntry
from tunelab.storage import get_storage
from tunelab.storage.base import BaseStorage
from tunelab.storage.served import ServedStorageAddress, StorageServer, serve
from tunelab.study.factory import load_study
from tunelab.study.failures import FailureWatch, error_headline
from tunelab.study.heartbeat import Heartbeat, HeartbeatSettings, StaleTrials
from tunelab.study.progress import ProgressDisplay
from tunelab.study.replay import stored_width
from tunelab.study.services import TrialWriter
from tunelab.study.study import Callback, Objective, Study
from tunelab.study.trial import Trial, error_line, record_end
from tunelab.study.verdict import Verdict, judge

logger = logging.getLogger("tunelab")

_MAX_ERROR_TEXT = 20_000

#: With a ``trial_timeout``, the seconds a worker may spend between receiving its trial and starting the
#: objective (planning the parameters: the first plan of a model-based sampler imports scipy, a GP fit
#: takes a while) before it is killed and the trial failed. ``trial_timeout`` counts from the objective's start.
PLANNING_TIMEOUT = 600.0


@dataclass(frozen=True)
class OptimizeSettings:
    """The validated options of one :meth:`Study.optimize` call."""

    n_trials: int | None
    timeout: float | None
    n_workers: int
    space: Mapping[str, SpaceEntry] | None
    catch: tuple[type[BaseException], ...]
    trial_timeout: float | None
    callbacks: tuple[Callback, ...]
    show_progress: bool | None
    heartbeat_interval: float | None
    grace_period: float | None
    requeue_lost_trials: bool
    start_method: str
    executor: RayExecutor | None = None
    gpus_per_trial: float = 0.0
    gpu_slots: tuple[tuple[str, ...], ...] = ()  # worker i owns gpu_slots[i] (its replacements too)
    failures: FailureWatch = field(default_factory=FailureWatch, compare=False)

    @classmethod
    def build(cls, **kw: Any) -> OptimizeSettings:
        """Validate user options; raise ConfigError naming the bad one."""
        from tunelab.space import validate_space

        n_trials, n_workers = kw["n_trials"], kw["n_workers"]
        if n_trials is not None and (not _is_int(n_trials) or n_trials < 1):
            raise ConfigError(f"n_trials must be an integer >= 1 (or None), got {n_trials!r}")
        if not _is_int(n_workers) or n_workers < 1:
            raise ConfigError(f"n_workers must be an integer >= 1, got {n_workers!r}")
        # numpy's integers and floats are numbers too (a count computed with numpy): stored as Python's
        kw["n_trials"], n_workers = None if n_trials is None else int(n_trials), int(n_workers)  # type: ignore[arg-type]
        for key in ("timeout", "trial_timeout", "heartbeat_interval", "grace_period"):
            v = kw[key]
            if v is not None and (not isinstance(v, numbers.Real) or isinstance(v, bool) or not float(v) > 0):
                raise ConfigError(f"{key} must be a positive number of seconds (or None), got {v!r}")
            if v is not None and not isinstance(v, (int, float)):
                kw[key] = float(v)
        progress = kw["show_progress"]
        if progress is not None and not isinstance(progress, bool):  # "no" showed a bar
            raise ConfigError(
                f"show_progress must be True, False or None (a bar when stdout is a terminal), got {progress!r}"
            )
        if not isinstance(kw["requeue_lost_trials"], bool):
            raise ConfigError(f"requeue_lost_trials must be True or False, got {kw['requeue_lost_trials']!r}")
        catch = kw["catch"]
        if isinstance(catch, type):
            catch = (catch,)
        elif isinstance(catch, (list, set, frozenset)):  # as Optuna takes them: catch=[ValueError]
            catch = tuple(catch)
        if not isinstance(catch, tuple) or not all(
            isinstance(c, type) and issubclass(c, BaseException) for c in catch
        ):
            raise ConfigError(
                f"catch must be an exception class or a tuple of them, such as catch=(ValueError, "
                f"RuntimeError), got {catch!r}"
            )
        callbacks = kw["callbacks"]
        if callable(callbacks) or isinstance(callbacks, (str, bytes)) or not isinstance(callbacks, Iterable):
            raise ConfigError(
                f"callbacks must be a list of functions f(study, trial), got {callbacks!r}; "
                "for one function pass callbacks=[f]"
            )
        kw["callbacks"] = callbacks = tuple(callbacks)
        for cb in callbacks:
            if not callable(cb):
                raise ConfigError(f"callbacks must be callables f(study, trial), got {cb!r}")
        interval, grace = kw["heartbeat_interval"], kw["grace_period"]
        if interval is None and (grace is not None or kw["requeue_lost_trials"]):
            given = "grace_period" if grace is not None else "requeue_lost_trials"
            raise ConfigError(
                f"{given} acts on trials whose heartbeat stopped, but heartbeat_interval=None turns heartbeats "
                f"off; give heartbeat_interval (seconds between beats), or leave {given} out"
            )
        if interval is not None:
            grace = grace if grace is not None else 3.0 * interval
            if grace <= interval:
                raise ConfigError(
                    f"grace_period ({grace}) must exceed heartbeat_interval ({interval}), "
                    "or live trials would be marked lost"
                )
        if kw["start_method"] not in ("spawn", "fork", "forkserver"):
            raise ConfigError(f"start_method must be 'spawn', 'fork' or 'forkserver', got {kw['start_method']!r}")
        gpus_per_trial, gpus = kw.pop("gpus_per_trial", 0), kw.pop("gpus", None)
        _check_executor(kw.get("executor"), n_workers, kw["trial_timeout"], gpus_per_trial, gpus)
        space = kw["space"]
        if space is not None:
            space = validate_space(space)
        plan = plan_gpus(gpus_per_trial, gpus, n_workers)  # looks for devices only when asked for some
        slots = () if plan is None else plan.slots
        n_workers = n_workers if plan is None else plan.n_workers
        failures = FailureWatch(n_workers)  # a new one per optimize() call: it watches that call's first trials
        return cls(**{
            **kw, "n_workers": n_workers, "catch": catch, "grace_period": grace, "space": space, "failures": failures,
            "gpus_per_trial": 0.0 if plan is None else float(gpus_per_trial or 0), "gpu_slots": slots,
        })

    @property
    def uses_processes(self) -> bool:
        """Whether trials run in local worker processes rather than in the caller's (or an executor's).

        Trials with GPUs always do: a process's devices are set before it starts, never moved.
        """
        return self.executor is None and (
            self.n_workers > 1 or self.trial_timeout is not None or bool(self.gpu_slots)
        )

    @property
    def heartbeat(self) -> HeartbeatSettings | None:
        """The heartbeat settings, if heartbeats are on."""
        if self.heartbeat_interval is None:
            return None
        assert self.grace_period is not None
        return HeartbeatSettings(self.heartbeat_interval, self.grace_period, self.requeue_lost_trials)

    def stale_trials(self, study: Study) -> StaleTrials | None:
        """The check that fails the study's lost trials, if heartbeats are on."""
        hb = self.heartbeat
        return None if hb is None else StaleTrials(study.storage, study.study_id, hb)


@dataclass(frozen=True)
class _Job:
    """What a worker process or Ray task needs to run trials of a study: plain, picklable data.

    ``storage`` is a URL, or the address where the driver serves a storage that has none (the
    in-memory one).
    """

    storage: str | ServedStorageAddress
    name: str
    sampler: Any
    pruner: Any
    objective: Objective
    settings: OptimizeSettings

    def open(self, storage: str | BaseStorage | None = None) -> Study:
        """The study (in ``storage``, default the job's own), with the driver's sampler and pruner
        (not the stored ones: a study loaded with ``load_if_exists`` may have been given new ones)."""
        if storage is None:
            storage = self.storage.connect() if isinstance(self.storage, ServedStorageAddress) else self.storage
        return load_study(self.name, storage, sampler=self.sampler, pruner=self.pruner)


@dataclass(frozen=True)
class TrialOutcome:
    """How a trial ended: plain data, sent from worker processes to the driver."""

    trial_id: int
    number: int
    state: str
    value: float | None
    """The value (a study with several objectives: the first objective's)."""
    error: str | None
    feasible: bool = True
    """Whether its constraints hold (an infeasible trial is never the best)."""


def _is_int(x: object) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _check_executor(
    executor: object, n_workers: int, trial_timeout: float | None, gpus_per_trial: object = 0, gpus: object = None
) -> None:
    """An executor decides where trials run and how many at once: nothing may contradict it."""
    if executor is None:
        return
    if not isinstance(executor, RayExecutor):
        raise ConfigError(f"executor must be a tunelab executor such as tunelab.RayExecutor(), got {executor!r}")
    if gpus is not None or parse_gpus_per_trial(gpus_per_trial) is not None:
        raise ConfigError(
            f"gpus_per_trial and gpus cannot be combined with executor={executor!r}: Ray assigns GPUs to its "
            "tasks itself; leave them unset and pass RayExecutor(num_gpus_per_trial=...)"
        )
    if n_workers != 1:
        raise ConfigError(
            f"n_workers={n_workers} cannot be combined with executor={executor!r}: the executor decides "
            "how many trials run at once; leave n_workers at 1 and set RayExecutor(max_concurrent=...)"
        )
    if trial_timeout is not None:
        raise ConfigError(
            f"trial_timeout is not supported with executor={executor!r}; leave it None and bound the "
            "trial's time inside the objective (e.g. stop training when its time budget is spent)"
        )


def _error_text(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if len(text) <= _MAX_ERROR_TEXT:
        return text
    half = _MAX_ERROR_TEXT // 2
    return text[:half] + "\n...\n" + text[-half:]


def run_trial(
    study: Study,
    objective: Objective,
    settings: OptimizeSettings,
    on_start: Callable[[int, int], None] | None = None,
    trial_id: int | None = None,
    stale: StaleTrials | None = None,
    gpus: list[str] | None = None,
) -> TrialOutcome:
    """Ask, plan, run the objective, judge its value, record: one trial, always recorded.

    With ``trial_id`` (from :meth:`Study.reserve_trial`), run that trial instead of asking for one;
    ``stale`` fails lost trials of other processes before a new one is asked for, and at every beat
    of this trial's heartbeat. ``on_start(trial_id, number)`` is called just before the objective.
    ``gpus`` (the devices of this worker process) are recorded in ``system_attrs["gpus"]`` before
    the parameters are planned, so a trial whose process dies still says where it ran.

    This is the one path from a started trial to its terminal state (see :func:`_live`): whatever
    is raised while the trial is planned, runs, is judged or is recorded ends as the trial's FAIL
    with the reason; only then is an error that must stop the study raised.
    """
    hb = settings.heartbeat
    reserved: FrozenTrial | int
    if trial_id is None:
        with _storage_failing("starting a trial"):
            if stale is not None:
                stale.check()
            reserved = study.reserve_trial(heartbeat=hb is not None)
    else:
        reserved = trial_id
    return _live(study, reserved, objective, settings, on_start, stale, gpus)


def _live(
    study: Study,
    reserved: FrozenTrial | int,
    objective: Objective,
    settings: OptimizeSettings,
    on_start: Callable[[int, int], None] | None,
    stale: StaleTrials | None,
    gpus: list[str] | None = None,
) -> TrialOutcome:
    """A reserved trial's life: the one place that turns anything raised into the trial's FAIL.

    Planning (:meth:`Study.ask_reserved`), ``on_start``, the objective, judging its value
    (:func:`~tunelab.study.verdict.judge`, as :meth:`Study.tell` does) and the final write
    (:func:`~tunelab.study.trial.record_end`: retried, falling back to FAIL with the reason) all
    happen inside; the heartbeat beats until the end is recorded. Afterwards the trial is
    COMPLETE, PRUNED or FAIL, unless the storage itself refused every write: then StorageError is
    raised and the heartbeat has stopped, so the trial is failed as lost by the next process.
    """
    tid = reserved.trial_id if isinstance(reserved, FrozenTrial) else reserved
    number = reserved.number if isinstance(reserved, FrozenTrial) else -1
    hb = settings.heartbeat
    beat: Heartbeat | None = None
    trial: Trial | None = None
    phase = "planning"
    reraise: BaseException | None = None
    try:
        try:
            if hb is not None:
                beat = Heartbeat(study.storage, tid, hb.interval, stale).start()
            if gpus is not None:
                study.storage.update_trial(tid, system_attrs={"gpus": gpus})
                if isinstance(reserved, FrozenTrial):  # the Trial is built from this record: let it say so too
                    reserved = study.storage.get_trial(tid)
            trial = study.ask_reserved(reserved, settings.space)
            number = trial.number
            phase = "starting"
            if on_start is not None:
                on_start(tid, number)
            phase = "objective"
            value = objective(trial)
            phase = "judging"
            verdict: Verdict
            if trial.marked_pruned:  # a framework callback stopped it cleanly: whatever was returned
                verdict = (TrialState.PRUNED, None, None)
            else:
                verdict = judge(value, names=study.objective_names if study.is_multi_objective else None,
                                name=study.objective_names[0])
        except BaseException as e:  # every exception is judged, then raised if it must be
            if isinstance(e, SearchExhausted) and phase == "planning":
                raise  # nothing left to propose: ask_reserved already deleted (or failed) the reservation
            verdict, reraise = _judge_exception(e, phase, settings.catch)
        outcome = _record(study, trial, tid, number, verdict)
    except (KeyboardInterrupt, SystemExit) as e:  # an interrupt while recording: one quick last try
        try:
            record_end(TrialWriter(study.storage, tid), number, TrialState.FAIL, None,
                       f"interrupted: {type(e).__name__}: {e}", pauses=(0.0,))
        except BaseException:  # noqa: BLE001 - interrupted twice: its heartbeat stops, it goes stale
            pass
        raise
    finally:
        if beat is not None:
            beat.stop()
    if outcome.state == TrialState.FAIL.value and reraise is None:
        logger.warning("trial %d failed: %s", outcome.number, error_headline(outcome.error))
    if reraise is not None:
        raise _storage_error(reraise, "planning a trial") if phase == "planning" else reraise
    return outcome


def _judge_exception(
    e: BaseException, phase: str, catch: tuple[type[BaseException], ...]
) -> tuple[tuple[TrialState, float | None, str | None], BaseException | None]:
    """The trial's end for an exception raised in ``phase``, and the exception if it must stop the study.

    The outcomes table of docs/architecture.md ("Running trials") for the objective; a trial lost
    while it was planned is FAIL and the study goes on; other failures to plan or start it stop the
    study (they would repeat), as do interrupts.
    """
    fail = TrialState.FAIL
    if isinstance(e, (KeyboardInterrupt, SystemExit)):
        return (fail, None, f"interrupted: {type(e).__name__}: {e}"), e
    if phase == "planning":
        if isinstance(e, TrialStateError):  # marked lost by another process while the sampler planned
            return (fail, None, "lost: the trial was finished by another process while it was planned"), None
        if isinstance(e, EnqueuedValueError):  # this trial's own enqueued values: the next trial is fine
            return (fail, None, f"could not start: {e}"), None
        return (fail, None, f"could not start: {type(e).__name__}: {e}"), e
    if phase == "starting":
        return (fail, None, f"interrupted: {type(e).__name__}: {e}"), e
    if phase == "judging":
        return (fail, None, f"the objective's return value could not be read: {_error_text(e)}"), None
    if isinstance(e, TrialPruned):
        return (TrialState.PRUNED, None, None), None
    if isinstance(e, ConfigError):  # a usage error repeats on every trial: stop the study
        return (fail, None, _error_text(e)), e
    if isinstance(e, catch):
        return (fail, None, _error_text(e)), None
    return (fail, None, _error_text(e)), e  # not in `catch`: recorded, then raised


def _record(
    study: Study, trial: Trial | None, tid: int, number: int, verdict: Verdict
) -> TrialOutcome:
    """The final write of a trial's end (through :meth:`Study.tell` when the trial got that far)."""
    state, value, error = verdict
    try:
        if trial is not None:
            frozen = study.tell(trial, value, state=state, error=error)
            return TrialOutcome(tid, number, frozen.state.value, frozen.value, frozen.error, frozen.feasible)
        recorded = record_end(TrialWriter(study.storage, tid), number, state, value, error)
        first = recorded[1][0] if isinstance(recorded[1], tuple) else recorded[1]
        return TrialOutcome(tid, number, recorded[0].value, first, recorded[2])
    except TrialStateError:
        # Finished by someone else (marked lost while it ran, or told by the objective itself).
        try:
            stored = study.storage.get_trial(tid)
        except Exception:  # noqa: BLE001 - what matters is that it is no longer RUNNING
            return TrialOutcome(tid, number, TrialState.FAIL.value, None, "lost")
        return TrialOutcome(tid, stored.number, stored.state.value, stored.value, stored.error, stored.feasible)


@contextmanager
def _storage_failing(doing: str) -> Iterator[None]:
    """Turn a database driver's error into tunelab's StorageError saying what was being done."""
    try:
        yield
    except SQLAlchemyError as e:
        raise _storage_error(e, doing) from None


def _storage_error(e: BaseException, doing: str) -> BaseException:
    if isinstance(e, SQLAlchemyError):
        return StorageError(f"the storage failed while {doing}: {error_line(e)}; check the database (disk space, "
                            "server, permissions) and run the study again to resume it")
    return e


def optimize(study: Study, objective: Objective, settings: OptimizeSettings) -> None:
    """The body of :meth:`Study.optimize`."""
    deadline = None if settings.timeout is None else time.monotonic() + settings.timeout
    display = ProgressDisplay(settings.show_progress, settings.n_trials, study.direction,
                              objective=study.objective_names[0] if study.is_multi_objective else None)
    try:
        with display:
            if settings.executor is not None:
                _optimize_on_ray(study, objective, settings, deadline, display)
            elif settings.uses_processes:
                _optimize_in_processes(study, objective, settings, deadline, display)
            else:
                _optimize_here(study, objective, settings, deadline, display)
    except KeyboardInterrupt:
        logger.warning(settings.failures.interrupted_message(still_running=display.running))
        raise


def _optimize_here(
    study: Study,
    objective: Objective,
    settings: OptimizeSettings,
    deadline: float | None,
    display: ProgressDisplay,
) -> None:
    done = 0
    stale = settings.stale_trials(study)
    while settings.n_trials is None or done < settings.n_trials:
        if study._stopping or (deadline is not None and time.monotonic() >= deadline):
            return
        try:
            outcome = run_trial(study, objective, settings, on_start=lambda *_: display.started(), stale=stale)
        except SearchExhausted:
            logger.info("%r has nothing left to propose; stopping", study.sampler)
            return
        done += 1
        display.finished(outcome.state, outcome.value, outcome.feasible)
        _call_back(study, settings, outcome)


def _call_back(study: Study, settings: OptimizeSettings, outcome: TrialOutcome) -> None:
    if said := settings.failures.observe(outcome.number, outcome.state, outcome.error, study.name):
        logger.warning(said)
    if settings.callbacks:
        with _storage_failing("reading a finished trial for the callbacks"):
            frozen = study.storage.get_trial(outcome.trial_id)
        for cb in settings.callbacks:
            cb(study, frozen)


class _Driver:
    """Reserves trials for the pool or the Ray executor, hears their events, keeps the storage and the
    display true.

    Trials are reserved here, before their worker or task gets them: the driver knows from that
    moment which trial each one holds, so a worker that dies while it plans still has its trial failed.
    """

    def __init__(self, study: Study, settings: OptimizeSettings, display: ProgressDisplay) -> None:
        self.study = study
        self.settings = settings
        self.display = display
        self._stale = settings.stale_trials(study)
        self._last_beat = time.monotonic()
        self._raised: set[str] = set()

    def reserve(self) -> tuple[int, int] | None:
        if self.study._stopping:  # Study.stop(): no new trial (the running ones finish)
            return None
        try:
            with _storage_failing("starting a trial"):
                if self._stale is not None:
                    self._stale.check()
                frozen = self.study.reserve_trial(heartbeat=self.settings.heartbeat is not None)
        except SearchExhausted:
            logger.info("%r has nothing left to propose; stopping", self.study.sampler)
            return None
        self.display.started()
        return frozen.trial_id, frozen.number

    def started(self, task_id: int, label: int) -> None:
        pass  # shown as running from its reservation on

    def exhausted(self, task_id: int, label: int) -> None:
        self.display.withdrawn()

    def finished(self, result: TrialOutcome) -> None:
        self.display.finished(result.state, result.value, result.feasible)
        _call_back(self.study, self.settings, result)

    def lost(self, task_id: int, label: int, reason: str) -> None:
        """A worker went without reporting its trial's end: fail the trial with ``reason``, unless the
        worker recorded the end itself before it went (then that end is what is shown and counted)."""
        outcome = _fail_if_running(self.study.storage, task_id, label, reason)
        if outcome is None:
            logger.warning("trial %d failed: %s", label, reason)
            outcome = TrialOutcome(task_id, label, TrialState.FAIL.value, None, reason)
        elif outcome.state == TrialState.FAIL.value and error_headline(outcome.error) not in self._raised:  # e.g. a
            # worker stopped, or a KeyboardInterrupt the objective raised (unless it is the error raised)
            logger.warning("trial %d failed: %s", outcome.number, error_headline(outcome.error))
        self.display.finished(outcome.state, outcome.value, outcome.feasible)
        _call_back(self.study, self.settings, outcome)

    def fatal(
        self, error_class: str, message: str, args: tuple[Any, ...] | None = None, pickled: bytes | None = None
    ) -> None:
        error = _error_of(error_class, message, args, pickled)
        # What the worker recorded for the trial that raised it: not logged again as "trial N failed"
        # when the pool stops (the error itself is raised, as with n_workers=1).
        self._raised = {error_headline(message), f"interrupted: {error_class}: {error}"}
        raise error

    def stopped(
        self, task_id: int, label: int, error_class: str, message: str, args: tuple[Any, ...] | None = None,
        pickled: bytes | None = None,
    ) -> None:
        _fail_if_running(self.study.storage, task_id, label, message)
        self.fatal(error_class, message, args, pickled)

    def alive(self, task_ids: list[int]) -> None:
        """The driver's housekeeping at each poll: fail the study's lost trials as soon as their grace
        period ends, and beat for ``task_ids`` (trials reserved but not yet beating themselves)."""
        if self._stale is not None:
            try:
                self._stale.check()
            except Exception:
                logger.debug("stale-trial check failed", exc_info=True)
        hb = self.settings.heartbeat
        if hb is None or not task_ids or time.monotonic() - self._last_beat < hb.interval:
            return
        self._last_beat = time.monotonic()
        for task_id in task_ids:
            try:
                self.study.storage.heartbeat(task_id)
            except Exception:
                logger.debug("heartbeat failed", exc_info=True)


def _error_of(
    error_class: str, message: str, args: tuple[Any, ...] | None = None, pickled: bytes | None = None
) -> BaseException:
    """The exception a worker or task reported, raised again in the driver.

    ``pickled`` (the error itself, see :func:`_pickled_error`) is loaded first: the user's own
    ``Exception`` keeps its class, arguments and attributes, so ``except MyError`` around
    ``optimize()`` catches it with any ``n_workers``; unless it is tunelab's own (whose message says
    it all), the worker's traceback (``message``) is its ``__cause__``. Failing that, by class name:
    tunelab's own or a built-in one.

    A built-in that is no :class:`Exception` (``SystemExit``, ``KeyboardInterrupt``, ``GeneratorExit``,
    ``BaseException``), or the user's own such class named ``module:qualname`` (when this process has
    imported that module; a class sent by value from ``__main__`` is the driver's own ``__main__``'s),
    is raised again as it was raised in the worker: with its ``args`` (the exit
    code of ``SystemExit``), the worker's traceback (``message``) as its ``__cause__``, so that the
    study stops as it does when the objective runs in this process (``sys.exit(2)`` exits 2, a
    ``KeyboardInterrupt`` stops the study as Ctrl-C does).
    """
    if pickled is not None:
        try:
            loaded = pickle.loads(pickled)
        except Exception:  # a class this process cannot import, an __init__ pickle cannot call
            logger.debug("the error %s of a worker could not be loaded here", error_class, exc_info=True)
        else:
            if isinstance(loaded, BaseException):
                if not isinstance(loaded, TunelabError):
                    loaded.__cause__ = WorkerTraceback(message)
                return loaded
    cls = getattr(errors, error_class, None)
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        cls = getattr(builtins, error_class, None)
    if ":" in error_class:  # the user's own BaseException, "module:qualname": if this process has it
        module, _, qualname = error_class.partition(":")
        cls = sys.modules.get(module)
        for part in qualname.split("."):
            cls = getattr(cls, part, None)
    if isinstance(cls, type) and issubclass(cls, BaseException) and not issubclass(cls, Exception):
        for given in (args, ()) if args is not None else ():
            try:
                error = cls(*given)
            except Exception:  # noqa: BLE001 - arguments it does not take: without them, else RuntimeError
                continue
            error.__cause__ = WorkerTraceback(message)
            return error
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        return RuntimeError(message)
    try:
        return cls(message)
    except Exception:  # noqa: BLE001 - a built-in that wants other arguments
        return RuntimeError(message)


def _plain_args(error: BaseException) -> tuple[Any, ...]:
    """``error.args`` when they are plain data the driver can rebuild the error from (the code of a
    ``SystemExit``), else its text."""
    plain = (type(None), bool, int, float, str)
    if all(isinstance(a, plain) for a in error.args):
        return tuple(error.args)
    return (str(error),)


def _fatal_message(error: BaseException) -> tuple[Any, ...]:
    """What a worker or task reports of an error that must stop the run (see :func:`_error_of`)."""
    text = str(error) if isinstance(error, TunelabError) else _error_text(error)
    cls = type(error)
    name = cls.__name__
    if not issubclass(cls, Exception) and cls.__module__ != "builtins":  # the user's own: found by its module
        name = f"{cls.__module__}:{cls.__qualname__}"
    return ("fatal", name, text, _plain_args(error), _pickled_error(error))


def _pickled_error(error: BaseException) -> bytes | None:
    """``error`` as bytes the driver can load as the same class, or None when it cannot be pickled.

    pickle first: a class of an importable module, or of ``__main__`` in a forked worker, goes by
    reference and is the driver's own. Then cloudpickle: a class of the driver's ``__main__`` that reached a
    spawned worker by value comes back as that same class (cloudpickle tracks the classes it sends).
    Its traceback, cause and context are not pickled (the driver attaches the traceback's text).
    """
    try:
        return pickle.dumps(error)
    except Exception:  # noqa: BLE001 - pickling can fail in many ways
        pass
    try:
        return _dumps_keeping_file_names(error)
    except Exception:  # noqa: BLE001 - then the driver rebuilds it by name
        return None


def _optimize_in_processes(
    study: Study,
    objective: Objective,
    settings: OptimizeSettings,
    deadline: float | None,
    display: ProgressDisplay,
) -> None:
    worker_settings = OptimizeSettings(**{**settings.__dict__, "callbacks": (), "show_progress": False})
    server: StorageServer | None = None
    url = study.storage.url
    if url is None or not study.storage.shareable_across_processes:
        server = serve(study.storage)  # the in-memory storage: workers call this process
    try:
        where: str | ServedStorageAddress = server.address if server is not None else str(url)
        job = _Job(where, study.name, study.sampler, study.pruner, objective, worker_settings)
        payload = job if settings.start_method == "fork" else _pack(job)  # a forked child inherits it
        # The payload carries everything, by reference or by value: workers need not re-run the
        # user's main script (a notebook has none; an unguarded script would start optimize() again).
        # With GPUs each worker owns one slot for its life (CUDA cannot move a process), set in its
        # environment before it loads the objective; a replaced worker's successor gets the same one.
        worker_env = [slot_environment(slot) for slot in settings.gpu_slots] or None
        pool = ProcessPool(
            settings.n_workers, _worker_main, payload, settings.start_method, import_main=False, worker_env=worker_env
        )
        # A deterministic study's worker may wait, before planning, for results of trials that run for
        # hours: no planning timeout there (a lost trial it waits for is failed by the heartbeat check).
        waits = stored_width(study.system_attrs) is not None
        pool.run(
            settings.n_trials, deadline, settings.trial_timeout, _Driver(study, settings, display),
            prepare_timeout=None if settings.trial_timeout is None or waits
            else max(PLANNING_TIMEOUT, settings.trial_timeout),
        )
    finally:
        if server is not None:
            server.close()


def _pack(job: _Job) -> bytes:
    """The job as bytes for spawned workers (see :func:`pack_for_workers`)."""
    return pack_for_workers(job, "the objective")


def pack_for_workers(obj: object, what: str) -> bytes:
    """``obj`` as bytes a spawned worker can load: what can be imported goes by reference, the rest by value.

    cloudpickle (as joblib/loky and Ray use it) sends functions and classes defined in ``__main__`` (a
    notebook cell, a script), lambdas and closures by value, and module-level names of importable
    modules by reference, as pickle would. ConfigError naming ``what`` when something cannot be copied.
    """
    try:
        data = _dumps_keeping_file_names(obj)
    except Exception as e:  # noqa: BLE001 - pickling can fail in many ways
        raise ConfigError(
            f"{what} cannot be sent to worker processes ({type(e).__name__}: {e}): something it uses (an "
            "open file, a lock, a database connection, a model on a GPU) cannot be copied; create it inside "
            "the objective, run with n_workers=1, or pass start_method='fork'"
        ) from None
    return data


_DYNAMIC_CODE = "<dynamic-code>"


def _dumps_keeping_file_names(obj: object) -> bytes:
    """``cloudpickle.dumps(obj)``, but code sent by value keeps the name of the file it was defined in.

    cloudpickle 3.1 names it ``<dynamic-code>``, so a failed trial's traceback read
    ``File "<dynamic-code>", line 9`` and its summary ``<dynamic-code>:9: KeyError`` when the objective
    (a script's function, a lambda, a closure) ran in worker processes: the file to fix was gone.
    """
    import io
    import types
    from collections import ChainMap

    import cloudpickle

    parent = cloudpickle.Pickler.dispatch_table.get(types.CodeType)
    if parent is None:  # an older cloudpickle: it keeps the file name itself
        result: bytes = cloudpickle.dumps(obj)
        return result

    def reduce_code(code: types.CodeType) -> Any:
        rebuild, args, *rest = parent(code)
        args = tuple(code.co_filename if isinstance(a, str) and a == _DYNAMIC_CODE else a for a in args)
        return (rebuild, args, *rest)

    class Pickler(cloudpickle.Pickler):  # type: ignore[misc]
        dispatch_table = ChainMap({types.CodeType: reduce_code}, cloudpickle.Pickler.dispatch_table)

    buffer = io.BytesIO()
    Pickler(buffer, protocol=cloudpickle.DEFAULT_PROTOCOL).dump(obj)
    return buffer.getvalue()


# -- Ray -------------------------------------------------------------------------------------
def _fail_if_running(storage: BaseStorage, trial_id: int, number: int, error: str) -> TrialOutcome | None:
    """Mark a trial FAIL through the one final write, unless it was recorded already (e.g. by its
    worker before it went, or by the objective's worker just before a stop): None when this marked
    it, else how it was recorded. A worker that records its trial COMPLETE and is stopped before it
    says so must not have its trial logged and counted as failed."""
    try:
        record_end(TrialWriter(storage, trial_id), number, TrialState.FAIL, None, error)
    except TrialStateError:  # already recorded
        try:
            stored = storage.get_trial(trial_id)
        except Exception:  # noqa: BLE001 - what matters is that it is no longer RUNNING
            return TrialOutcome(trial_id, number, TrialState.FAIL.value, None, error)
        return TrialOutcome(trial_id, stored.number, stored.state.value, stored.value, stored.error, stored.feasible)
    return None


def _optimize_on_ray(
    study: Study,
    objective: Objective,
    settings: OptimizeSettings,
    deadline: float | None,
    display: ProgressDisplay,
) -> None:
    """Reserve each trial here, run it as a Ray task that reads and writes the storage itself."""
    assert settings.executor is not None and study.storage.url is not None
    task_settings = OptimizeSettings(
        **{**settings.__dict__, "callbacks": (), "show_progress": False, "executor": None}
    )
    job = _Job(_absolute_url(study.storage.url), study.name, study.sampler, study.pruner, objective, task_settings)
    settings.executor.run(_run_reserved_trial, job, settings.n_trials, deadline, _Driver(study, settings, display))


def _absolute_url(url: str) -> str:
    """Tasks may run in another directory: make a relative SQLite path absolute."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or os.path.isabs(parsed.database):
        return url
    return parsed.set(database=os.path.abspath(parsed.database)).render_as_string(hide_password=False)


_task_storage: tuple[str, BaseStorage] | None = None  # the storage of the last Ray task in this process


def _storage_for_task(url: str) -> BaseStorage:
    """The storage at ``url``, kept open between the tasks a Ray worker process runs."""
    global _task_storage
    if _task_storage is None or _task_storage[0] != url:
        if _task_storage is not None:
            _task_storage[1].close()
        _task_storage = (url, get_storage(url, create=False))
    return _task_storage[1]


def _run_reserved_trial(job: Any, trial_id: int) -> tuple[Any, ...]:
    """The body of one Ray task: run the trial the driver reserved; say how it went.

    Returns ``("finished", TrialOutcome)``, ``("exhausted",)`` or ``("fatal", class_name, message, args, pickled)``
    (see :mod:`tunelab.execution.ray`).
    """
    try:
        assert isinstance(job.storage, str)
        study = job.open(_storage_for_task(job.storage))
        stale = job.settings.stale_trials(study)
        return ("finished", run_trial(study, job.objective, job.settings, trial_id=trial_id, stale=stale))
    except SearchExhausted:
        return ("exhausted",)
    except BaseException as e:  # noqa: BLE001 - report anything fatal to the driver
        return _fatal_message(e)


_DRIVER_DIED = "the driver process died; its worker stopped"
_RECEIVED = "worker received signal "


_stop_received = False  # in a worker: SIGTERM came (the driver stops it, or died)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    global _stop_received
    _stop_received = True
    if driver_gone():
        raise KeyboardInterrupt(_DRIVER_DIED)
    raise KeyboardInterrupt(f"{_RECEIVED}{signal.Signals(signum).name}")


def _redeliver_interrupt(unraisable: Any) -> None:
    """``sys.unraisablehook`` of a worker: the stop that :func:`_raise_interrupt` raised inside code
    that cannot pass an exception on (a Cython callback such as scipy's Sobol set-up) is not lost
    and not printed as a traceback: SIGTERM is sent again, to land at the next line of Python."""
    error = unraisable.exc_value
    if isinstance(error, KeyboardInterrupt) and str(error).startswith((_RECEIVED, _DRIVER_DIED)):
        # From another thread, a moment later: the handler then runs in the main thread after this hook.
        again = threading.Timer(0.01, os.kill, args=(os.getpid(), signal.SIGTERM))
        again.daemon = True
        again.start()
        return
    sys.__unraisablehook__(unraisable)


def _quiet_stop(kind: type[BaseException], error: BaseException, tb: Any) -> None:
    """``sys.excepthook`` of a worker: Cython's handler of an error it cannot pass on (a ``noexcept``
    callback such as scipy's Sobol set-up) prints the error with ``sys.excepthook`` first and then hands
    it to ``sys.unraisablehook``; the stop :func:`_raise_interrupt` raised is delivered again there
    (:func:`_redeliver_interrupt`), so printing it here only showed a traceback in the middle of a clean stop."""
    if isinstance(error, KeyboardInterrupt) and str(error).startswith((_RECEIVED, _DRIVER_DIED)):
        return
    sys.__excepthook__(kind, error, tb)


def _handle_stops() -> None:
    """A worker's signals: Ctrl-C is the driver's to handle, SIGTERM (the driver stops us, or died, see
    ProcessPool) raises KeyboardInterrupt, which code that cannot pass it on neither loses nor prints."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    sys.unraisablehook = _redeliver_interrupt
    sys.excepthook = _quiet_stop


def _worker_main(conn: Connection, payload: object) -> None:
    """Entry point of a worker process: run the trial of each ("run", trial_id, number) ticket.

    The driver reserved the trial: the worker plans its parameters (``("started", ...)`` is sent
    when the objective starts, which starts the trial's timeout) and runs it through :func:`run_trial`.
    """
    _handle_stops()
    _single_threaded_torch()
    try:
        job = pickle.loads(payload) if isinstance(payload, bytes) else payload
        assert isinstance(job, _Job)
        study = job.open()
        stale = job.settings.stale_trials(study)
        gpus = assigned_gpus() if job.settings.gpu_slots else None  # set by the pool when it started us
        conn.send(("ready",))
        while True:
            msg = conn.recv()
            if msg[0] != "run":
                return
            try:
                outcome = run_trial(
                    study, job.objective, job.settings, trial_id=msg[1],
                    on_start=lambda tid, num: conn.send(("started", tid, num)), stale=stale, gpus=gpus,
                )
            except SearchExhausted:
                conn.send(("exhausted",))
                continue
            conn.send(("finished", outcome))
    except KeyboardInterrupt as e:
        if _stop_received:  # the driver stops us (SIGTERM), or it died: nothing to report
            return
        _report_fatal(conn, e)  # raised by the objective: it stops the study, as in the driver's process
    except (EOFError, BrokenPipeError):
        return
    except BaseException as e:  # noqa: BLE001 - report anything fatal to the driver
        _report_fatal(conn, e)


def _report_fatal(conn: Connection, error: BaseException) -> None:
    """Send the driver an error that must stop the run (it raises the same class again, see :func:`_error_of`).

    This worker ends now: the driver's stop (SIGTERM, sent once it reads this) has nothing left to
    interrupt, and would only print a second traceback from the middle of the send or the exit.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        conn.send(_fatal_message(error))
    except OSError:
        pass


def _single_threaded_torch() -> None:
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


