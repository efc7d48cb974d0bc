"""A pool of local worker processes that run one task per ticket.

The pool knows nothing of studies: the driver gives it a picklable ``target``
(run in each worker as ``target(conn, payload)``) and a :class:`PoolEvents`
handler. The handler reserves each task before a worker gets it, so the driver
knows from that moment which task every worker holds. Workers and driver speak
plain tuples over pipes:

- driver -> worker: ``("run", task_id, label)`` or ``("stop",)``
- worker -> driver: ``("ready",)``, ``("started", task_id, label)`` (the task's
  work proper begins: its timeout runs from now), ``("finished", result)``,
  ``("exhausted",)`` (no work after all: the ticket comes back),
  ``("fatal", error_class_name, message, args, pickled)`` (``args``: the error's plain arguments, e.g.
  the code of a ``SystemExit``; ``pickled``: the error itself as bytes, or None: so the driver can raise
  the same error again)

A worker that dies, runs past ``task_timeout`` after starting its task, or past
``prepare_timeout`` before starting it, is replaced; the handler is told which
task it lost so the driver can record it. A worker dies with its driver: on
Linux the kernel sends it SIGTERM when the driver dies (``PR_SET_PDEATHSIG``),
and everywhere a thread of the worker checks for its driver twice a second,
sends its own process SIGTERM when the driver is gone and ends it 3 s later.

With ``worker_env``, worker ``i`` starts with environment variables of its own (e.g.
``CUDA_VISIBLE_DEVICES``: the devices it owns), set before it loads the payload, and
whichever process replaces it (it died, timed out) starts with the same ones.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol, TypeAlias

from tunelab.errors import ConfigError, WorkersDyingError

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


class PoolEvents(Protocol):
    """What the driver provides to, and hears from, the pool."""

    def reserve(self) -> tuple[int, int] | None:
        """Reserve the next task: ``(task_id, label)``, or None when there is none now."""

    def started(self, task_id: int, label: int) -> None:
        """A worker began the work proper of task ``task_id`` (its timeout runs from now)."""

    def finished(self, result: Any) -> None:
        """A worker finished a task normally."""

    def exhausted(self, task_id: int, label: int) -> None:
        """A worker found no work in its task after all; the task does not count."""

    def lost(self, task_id: int, label: int, reason: str) -> None:
        """A task's worker died or was killed (timeout, interrupt)."""

    def fatal(
        self, error_class: str, message: str, args: tuple[Any, ...] | None = None, pickled: bytes | None = None
    ) -> None:
        """A worker hit an error that must stop the run; the handler raises it (``args``: its arguments,
        ``pickled``: the error itself, pickled, when it could be)."""

    def alive(self, task_ids: list[int]) -> None:
        """Called at every poll (at least twice a second); ``task_ids``: tasks reserved but not yet
        handed to a worker (their worker died before taking them; the next ready one will)."""


@dataclass
class _Slot:
    process: Any
    conn: Connection
    ready: bool = False
    busy: bool = False
    task: tuple[int, int] | None = None  # (task_id, label) from the moment it is handed over
    started: bool = False  # the task's work proper has begun
    since: float = 0.0  # when it was handed over, then when it started


@contextmanager
def _threads_per_worker(n: int) -> Iterator[None]:
    """Children inherit the environment: cap their math-library threads while starting them.

    On a machine with few cores, k workers each using every core slow each other down
    many times over.
    """
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    for k in _THREAD_VARS:
        os.environ.setdefault(k, str(n))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)


@contextmanager
def _sigint_ignored_by_children() -> Iterator[None]:
    """Start children with Ctrl-C held back; they ignore it from their first line on (:func:`_worker_entry`).

    Ctrl-C is the driver's to handle; a worker still importing the user's module would otherwise
    die printing a traceback. SIGINT is *blocked* while a child starts (a blocked signal stays
    blocked across exec, and stays pending in the driver), not ignored: a Ctrl-C that came while
    the driver ignored it, starting a replacement worker, was lost, and the run went on.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


_spawn_preparation_lock = threading.Lock()
_environment_lock = threading.Lock()

WorkerEnv: TypeAlias = "Callable[[int], Mapping[str, str]] | Sequence[Mapping[str, str]]"
"""Per-worker environment variables: a function of the worker's index, or one mapping per index."""


@contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    """Set ``env`` in this process while a child starts (a spawned child's interpreter starts with it),
    then put back what was there."""
    if not env:
        yield
        return
    with _environment_lock:
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_DRIVER_POLL_SECONDS = 0.5
_DRIVER_GONE_GRACE = 3.0  # seconds between SIGTERM and the end, as when the driver stops its workers
_driver: tuple[int, int] | None = None  # in a worker: (driver pid, parent pid at start)


def _worker_entry(
    target: Callable[[Connection, Any], None],
    driver_pid: int,
    conn: Connection,
    payload: Any,
    env: Mapping[str, str] | None = None,
) -> None:
    """What a worker process runs: take its own environment, arrange to die with the driver, then
    ``target(conn, payload)``.

    ``env`` is set again here, before ``target`` loads the payload: a forkserver's children do not
    see what the driver set while starting them.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's: held back until now, then ignored
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if env:
        os.environ.update(env)
    _die_with_driver(driver_pid)
    target(conn, payload)


def _die_with_driver(driver_pid: int) -> None:
    """End this process when the driver dies, even by SIGKILL (see the module docstring)."""
    global _driver
    _driver = (driver_pid, os.getppid())
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the thread below still watches
            pass
    threading.Thread(target=_watch_driver, daemon=True, name="tunelab-driver-watch").start()


def driver_gone() -> bool:
    """In a worker process of a pool: whether its driver has died (False elsewhere)."""
    if _driver is None:
        return False
    driver_pid, parent = _driver
    if os.getppid() != parent:  # reparented: the parent (the driver, or a fork server of it) died
        return True
    try:
        os.kill(driver_pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, but not ours to signal
        return False
    return False


def _watch_driver() -> None:
    while not driver_gone():
        time.sleep(_DRIVER_POLL_SECONDS)
    os.kill(os.getpid(), signal.SIGTERM)  # the worker records its trial as interrupted and ends
    time.sleep(_DRIVER_GONE_GRACE)
    os._exit(1)  # stuck where SIGTERM cannot reach (C code): its heartbeat stops, the trial goes stale


@contextmanager
def _main_module(imported: bool) -> Iterator[None]:
    """Start spawned children without running the parent's ``__main__`` first, unless ``imported``.

    A spawned child normally runs the parent's main script (as ``__mp_main__``) so that names
    pickled from it resolve. A payload that needs no such name does not need that, and it hurts:
    a notebook has no main script to run, and a script without the ``if __name__ == "__main__":``
    guard would start its own optimize() again in every worker. ``multiprocessing`` decides this in
    ``spawn.get_preparation_data``; here the two entries that ask for it are dropped.
    """
    if imported:
        yield
        return
    from multiprocessing import spawn

    original = spawn.get_preparation_data

    def without_main(name: str) -> dict[str, Any]:
        data: dict[str, Any] = original(name)
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
        return data

    with _spawn_preparation_lock:
        spawn.get_preparation_data = without_main  # type: ignore[assignment]
        try:
            yield
        finally:
            spawn.get_preparation_data = original  # type: ignore[assignment]


class ProcessPool:
    """``n_workers`` processes running ``target(conn, payload)`` (see the module docstring).

    ``target`` must be importable by reference (a module-level function of a module). With
    ``import_main=False`` spawned workers do not run the parent's main script first: pass it when
    the payload names nothing from ``__main__`` (e.g. it was packed by value with cloudpickle).
    ``worker_env`` gives worker ``i`` (and whichever process replaces it) environment variables of
    its own, set before it starts: a function of ``i``, or a sequence with one mapping per worker.
    """

    def __init__(
        self,
        n_workers: int,
        target: Callable[[Connection, Any], None],
        payload: object,
        start_method: str = "spawn",
        threads_per_worker: int = 1,
        import_main: bool = True,
        worker_env: WorkerEnv | None = None,
    ) -> None:
        if start_method not in multiprocessing.get_all_start_methods():
            raise ConfigError(
                f"start_method={start_method!r} is not available here; use one of "
                f"{multiprocessing.get_all_start_methods()}"
            )
        self._ctx: Any = multiprocessing.get_context(start_method)
        self._n = n_workers
        self._target = target
        self._payload = payload
        self._threads = threads_per_worker
        self._import_main = import_main or start_method != "spawn"
        if isinstance(worker_env, Sequence) and len(worker_env) < n_workers:
            raise ConfigError(f"worker_env has {len(worker_env)} entries for {n_workers} workers; give one per worker")
        self._worker_env = worker_env
        self._slots: list[_Slot] = []
        self._early_deaths = 0
        self._issued = 0
        self._exhausted = False
        self._finished_since_exhausted = 0
        self._undelivered: list[tuple[int, int]] = []  # reserved, but their worker died before taking them

    def _env(self, index: int) -> dict[str, str]:
        """The environment variables of worker ``index`` of its own."""
        if self._worker_env is None:
            return {}
        env = self._worker_env(index) if callable(self._worker_env) else self._worker_env[index]
        return {str(k): str(v) for k, v in env.items()}

    def _spawn(self, index: int) -> _Slot:
        parent, child = self._ctx.Pipe()
        env = self._env(index)
        with (
            _threads_per_worker(self._threads), _sigint_ignored_by_children(), _main_module(self._import_main),
            _environment(env),
        ):
            p = self._ctx.Process(
                target=_worker_entry, args=(self._target, os.getpid(), child, self._payload, env), daemon=True
            )
            p.start()
        child.close()
        return _Slot(p, parent)

    def run(
        self,
        n_tasks: int | None,
        deadline: float | None,
        task_timeout: float | None,
        events: PoolEvents,
        prepare_timeout: float | None = None,
    ) -> None:
        """Run up to ``n_tasks`` tasks (None: no limit) until ``deadline`` (time.monotonic).

        ``task_timeout`` counts from a task's ``started``; ``prepare_timeout`` bounds the time from
        handing a task over to its ``started``.
        """
        self._issued = 0
        self._exhausted = False
        self._finished_since_exhausted = 0
        self._undelivered = []
        self._slots = [self._spawn(i) for i in range(self._n)]
        try:
            while True:
                now = time.monotonic()
                open_for_work = deadline is None or now < deadline
                idle = not any(s.busy for s in self._slots)
                if idle and self._exhausted and not self._undelivered:
                    if self._finished_since_exhausted == 0:
                        return  # nothing left to propose and nothing running that could change it
                    self._exhausted = False  # finished tasks may have opened new work: ask again
                for slot in self._slots:
                    if slot.ready and not slot.busy and (self._undelivered or (
                        open_for_work and not self._exhausted and (n_tasks is None or self._issued < n_tasks)
                    )):
                        self._hand_over(slot, events, now)
                if not any(s.busy for s in self._slots) and not self._undelivered:
                    if self._exhausted and self._finished_since_exhausted == 0:
                        return  # the handler has nothing to reserve, and nothing runs
                    if not open_for_work or (n_tasks is not None and self._issued >= n_tasks):
                        return
                self._poll(task_timeout, prepare_timeout, deadline, events)
        except BaseException:
            self._shutdown(events, "interrupted")
            raise
        finally:
            self._close()

    def _hand_over(self, slot: _Slot, events: PoolEvents, now: float) -> None:
        """Give ``slot`` a task: one whose worker died before taking it, else a newly reserved one."""
        if self._undelivered:
            task = self._undelivered.pop(0)
        else:
            reserved = events.reserve()
            if reserved is None:
                if not self._exhausted:
                    self._exhausted, self._finished_since_exhausted = True, 0
                return
            task = reserved
            self._issued += 1
        slot.busy, slot.task, slot.started, slot.since = True, task, False, now
        try:
            slot.conn.send(("run", *task))
        except OSError:  # the worker is gone (replaced at the next poll): the task waits for the next ready one
            slot.busy, slot.task = False, None
            self._undelivered.append(task)

    def _poll(
        self, task_timeout: float | None, prepare_timeout: float | None, deadline: float | None, events: PoolEvents
    ) -> None:
        """Wait for news and act on it."""
        wait_for = 0.5
        now = time.monotonic()
        for s in self._slots:
            limit = self._limit(s, task_timeout, prepare_timeout)
            if limit is not None:
                wait_for = min(wait_for, max(0.0, s.since + limit - now))
        if deadline is not None:
            wait_for = min(wait_for, max(0.01, deadline - now))
        handles: list[Any] = [s.conn for s in self._slots] + [s.process.sentinel for s in self._slots]
        wait(handles, timeout=wait_for)
        for i, slot in enumerate(self._slots):
            alive = self._drain(slot, events)
            limit = self._limit(slot, task_timeout, prepare_timeout)
            if alive and limit is not None and time.monotonic() - slot.since > limit:
                slot.process.kill()
                slot.process.join()
                was_started = slot.started
                self._drain(slot, events)
                if slot.busy:
                    reason = (
                        f"trial timed out after {limit:g}s; its worker process was killed" if was_started else
                        f"the trial's parameters were not ready after {limit:g}s (planning took too long); "
                        "its worker process was killed"
                    )
                    self._replace(i, events, reason)
            elif not alive:
                self._replace(i, events, None)
        events.alive([task_id for task_id, _ in self._undelivered])

    @staticmethod
    def _limit(slot: _Slot, task_timeout: float | None, prepare_timeout: float | None) -> float | None:
        if not slot.busy:
            return None
        return task_timeout if slot.started else prepare_timeout

    def _drain(self, slot: _Slot, events: PoolEvents) -> bool:
        """Handle every message waiting on the slot's pipe; False if the worker is gone."""
        try:
            while slot.conn.poll():
                msg = slot.conn.recv()
                kind = msg[0]
                if kind == "ready":
                    slot.ready = True
                elif kind == "started":
                    slot.started, slot.since = True, time.monotonic()
                    self._early_deaths = 0
                    events.started(msg[1], msg[2])
                elif kind == "finished":
                    slot.busy, slot.task, slot.started = False, None, False
                    self._finished_since_exhausted += 1
                    events.finished(msg[1])
                elif kind == "exhausted":  # the ticket comes back unused
                    task = slot.task
                    slot.busy, slot.task, slot.started = False, None, False
                    self._issued -= 1
                    if not self._exhausted:
                        self._exhausted, self._finished_since_exhausted = True, 0
                    if task is not None:
                        events.exhausted(*task)
                elif kind == "fatal":
                    events.fatal(*msg[1:])
        except (EOFError, OSError):
            return False
        return bool(slot.process.is_alive())

    def _replace(self, index: int, events: PoolEvents, reason: str | None) -> None:
        """Replace a dead or killed worker; ``reason`` None means: describe how it died."""
        slot = self._slots[index]
        slot.process.join(timeout=5)  # its pipe may close before it is reaped
        slot.conn.close()
        if reason is None:
            how = _describe_exit(slot.process.exitcode)
            reason = (
                f"the worker process died ({how}) while running this trial" if slot.started else
                f"the worker process died ({how}) while planning this trial's parameters"
            )
        if slot.busy and slot.task is not None:
            self._finished_since_exhausted += 1
            events.lost(slot.task[0], slot.task[1], reason)
        elif not slot.ready:
            self._early_deaths += 1
            if self._early_deaths >= 2 * self._n:
                raise WorkersDyingError(
                    f"worker processes keep dying before they start a trial ("
                    f"{_describe_exit(slot.process.exitcode)}; see their error output above). "
                    "With start_method='spawn' the objective must be importable: define it in a "
                    "module or script file, guard the script with `if __name__ == '__main__':`, "
                    "or run with n_workers=1 to see the error in this process"
                )
        self._slots[index] = self._spawn(index)  # the same index: the same environment (devices)

    def _shutdown(self, events: PoolEvents, reason: str) -> None:
        """Stop every worker now: SIGTERM (the trial records itself), then SIGKILL."""
        for s in self._slots:
            if s.process.is_alive():
                s.process.terminate()
        end = time.monotonic() + 3.0
        for s in self._slots:
            s.process.join(timeout=max(0.0, end - time.monotonic()))
            if s.process.is_alive():
                s.process.kill()
                s.process.join()
            try:
                self._drain(s, events)
            except BaseException:  # noqa: BLE001 - shutting down; the first error wins
                pass
            if s.busy and s.task is not None:
                self._lose(events, s.task, reason)
                s.busy = False
        for task in self._undelivered:
            self._lose(events, task, reason)
        self._undelivered = []

    @staticmethod
    def _lose(events: PoolEvents, task: tuple[int, int], reason: str) -> None:
        """Tell the handler of a task lost while shutting down; the error that stopped the run wins."""
        try:
            events.lost(task[0], task[1], reason)
        except Exception:  # noqa: BLE001 - e.g. a failing storage: the first error is the one raised
            pass

    def _close(self) -> None:
        for s in self._slots:
            if s.process.is_alive():
                try:
                    s.conn.send(("stop",))
                except OSError:
                    pass
        for s in self._slots:
            s.process.join(timeout=5)
            if s.process.is_alive():
                s.process.kill()
                s.process.join()
            s.conn.close()
        self._slots = []


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
