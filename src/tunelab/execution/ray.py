"""Run tasks on a Ray cluster, a bounded number at a time, one Ray task per unit of work.

Like the local pool, the executor knows nothing of studies. The driver gives it a
``task`` function, run on a Ray worker as ``task(payload, task_id)``, and a
:class:`TaskEvents` handler. Before each submission the handler reserves the work
(``reserve() -> (task_id, label)``), so the driver knows what every in-flight task
holds and can record it whatever happens to the task. A task returns a plain tuple:

- ``("finished", result)``: done normally;
- ``("exhausted",)``: no work after all (the task recorded why); it does not count,
  and nothing more is submitted until another task finishes;
- ``("fatal", error_class_name, message, args, pickled)``: an error that must stop the run
  (``args``: its plain arguments, e.g. the code of a ``SystemExit``; ``pickled``: the error
  itself as bytes, or None).

A task that fails on Ray's side (its worker died, its node was lost, it could not be
deserialized: any ``RayError``) is reported as lost, with the error's text. Ray never
retries a task (``max_retries=0``): a trial that crashed its worker is a result.

Ray is optional: it is imported only when an executor runs.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from typing import Any, Protocol

from tunelab.errors import ConfigError, TasksFailingError

logger = logging.getLogger("tunelab")

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")
_MAX_ERROR_TEXT = 20_000
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Ray colours its task errors
_POLL_SECONDS = 1.0  # how long one ray.wait may block: keeps Ctrl-C and heartbeats prompt

TaskFunction = Callable[[Any, int], tuple[Any, ...]]


class TaskEvents(Protocol):
    """What the driver provides to, and hears from, the executor."""

    def reserve(self) -> tuple[int, int] | None:
        """Reserve the next unit of work: ``(task_id, label)``, or None if there is none now."""

    def started(self, task_id: int, label: int) -> None:
        """The task was submitted."""

    def finished(self, result: Any) -> None:
        """A task finished normally with ``result``."""

    def exhausted(self, task_id: int, label: int) -> None:
        """A task found no work after all; it does not count."""

    def lost(self, task_id: int, label: int, reason: str) -> None:
        """A task failed on Ray's side, or was cancelled (interrupt): record its work."""

    def stopped(
        self, task_id: int, label: int, error_class: str, message: str, args: tuple[Any, ...] | None = None,
        pickled: bytes | None = None,
    ) -> None:
        """A task hit an error that must stop the run: record its work, then raise the error (``args``: its
        arguments, ``pickled``: the error itself, pickled, when it could be)."""

    def alive(self, task_ids: list[int]) -> None:
        """These tasks are still in flight (called about once a second)."""


class RayExecutor:
    """Run each trial as a Ray task on the cluster ``ray.init(address=address)`` reaches.

    Pass it to :meth:`Study.optimize` as ``executor=``. Each task opens the study's
    storage itself, so the study needs a storage URL every node can reach (an SQLite
    file on one machine or a shared disk, PostgreSQL on a cluster), and tunelab and the
    objective's module must be importable on every node.

    Args:
        address: the Ray cluster, as for ``ray.init`` ('auto', 'ray://head:10001');
            None: ``RAY_ADDRESS`` or a running local cluster, else a new local one.
            Ignored when Ray is already initialized in this process.
        num_cpus_per_trial: CPUs Ray reserves for each trial (fractions allowed); the
            trial's math libraries get as many threads (at least one).
        num_gpus_per_trial: GPUs Ray reserves for each trial (fractions allowed).
        max_concurrent: trials in flight at once; default: as many as the cluster's
            CPUs (and GPUs, if requested) hold at the moment the run starts, at least 1.
    """

    def __init__(
        self,
        address: str | None = None,
        num_cpus_per_trial: float = 1.0,
        num_gpus_per_trial: float = 0.0,
        max_concurrent: int | None = None,
    ) -> None:
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise ConfigError(f"RayExecutor(address=...) must be a Ray address such as 'auto' or None, got {address!r}")
        for name, value in (("num_cpus_per_trial", num_cpus_per_trial), ("num_gpus_per_trial", num_gpus_per_trial)):
            if not _is_number(value) or not value >= 0 or not math.isfinite(value):
                raise ConfigError(f"RayExecutor({name}=...) must be a number >= 0, got {value!r}")
        if num_cpus_per_trial == 0 and num_gpus_per_trial == 0:
            raise ConfigError(
                "RayExecutor: a trial must reserve some resource; set num_cpus_per_trial > 0 "
                "(default 1) or num_gpus_per_trial > 0"
            )
        if num_gpus_per_trial > 1 and num_gpus_per_trial != int(num_gpus_per_trial):
            raise ConfigError(
                f"RayExecutor(num_gpus_per_trial=...) above 1 must be a whole number, got {num_gpus_per_trial!r}"
            )
        if max_concurrent is not None and (
            isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) or max_concurrent < 1
        ):
            raise ConfigError(
                f"RayExecutor(max_concurrent=...) must be an integer >= 1 (or None: fill the cluster), "
                f"got {max_concurrent!r}"
            )
        self.address = address
        self.num_cpus_per_trial = float(num_cpus_per_trial)
        self.num_gpus_per_trial = float(num_gpus_per_trial)
        self.max_concurrent = max_concurrent

    def __repr__(self) -> str:
        return (
            f"RayExecutor(address={self.address!r}, num_cpus_per_trial={self.num_cpus_per_trial:g}, "
            f"num_gpus_per_trial={self.num_gpus_per_trial:g}, max_concurrent={self.max_concurrent!r})"
        )

    @property
    def threads_per_trial(self) -> int:
        """Math-library threads in each task: its whole CPUs, at least one."""
        return max(1, math.floor(self.num_cpus_per_trial))

    def run(
        self,
        task: TaskFunction,
        payload: object,
        n_tasks: int | None,
        deadline: float | None,
        events: TaskEvents,
    ) -> None:
        """Run up to ``n_tasks`` tasks (None: no limit), starting none after ``deadline``."""
        ray = _import_ray()
        if not ray.is_initialized():
            ray.init(address=self.address)
        remote = ray.remote(task).options(
            num_cpus=self.num_cpus_per_trial,
            num_gpus=self.num_gpus_per_trial,
            max_retries=0,
            runtime_env={"env_vars": {k: str(self.threads_per_trial) for k in _THREAD_VARS}},
        )
        payload_ref = _put(ray, payload)
        _Run(ray, remote, payload_ref, self.concurrency(ray), events).loop(n_tasks, deadline)

    def concurrency(self, ray: Any) -> int:
        """``max_concurrent``, or how many trials the cluster's resources hold now."""
        if self.max_concurrent is not None:
            return self.max_concurrent
        total: dict[str, float] = ray.cluster_resources()
        fits = {
            key: math.floor(total.get(key, 0.0) / need + 1e-9)
            for key, need in (("CPU", self.num_cpus_per_trial), ("GPU", self.num_gpus_per_trial))
            if need > 0
        }
        for key, n in fits.items():
            if n == 0:
                logger.warning(
                    "the Ray cluster has %g %s now, less than one trial needs (%r); trials wait until "
                    "nodes with enough join", total.get(key, 0.0), key, self,
                )
        return max(1, min(fits.values()))


class _Run:
    """One run of the executor: the in-flight tasks and what to do when each ends."""

    def __init__(self, ray: Any, remote: Any, payload_ref: Any, limit: int, events: TaskEvents) -> None:
        self.ray = ray
        self.remote = remote
        self.payload_ref = payload_ref
        self.limit = limit
        self.events = events
        self.in_flight: dict[Any, tuple[int, int]] = {}  # ObjectRef -> (task_id, label)
        self.counted = 0  # tasks submitted and not handed back as "exhausted"
        self.exhausted = False
        self.any_finished = False
        self.failures_in_a_row = 0

    def loop(self, n_tasks: int | None, deadline: float | None) -> None:
        """Keep ``limit`` tasks in flight; submit the next as soon as one ends."""
        try:
            while True:
                open_for_work = deadline is None or time.monotonic() < deadline
                while (open_for_work and not self.exhausted and len(self.in_flight) < self.limit
                       and (n_tasks is None or self.counted < n_tasks)):
                    self._submit()
                if not self.in_flight:
                    return
                ready, _ = self.ray.wait(list(self.in_flight), num_returns=1, timeout=_POLL_SECONDS)
                for ref in ready:
                    self._collect(ref)
                if self.in_flight:
                    self.events.alive([task_id for task_id, _ in self.in_flight.values()])
        except KeyboardInterrupt:
            self._cancel_all("interrupted")
            raise
        except BaseException as e:
            self._cancel_all(f"cancelled: the run stopped on {type(e).__name__}")
            raise

    def _submit(self) -> None:
        reserved = self.events.reserve()
        if reserved is None:
            self.exhausted = True
            return
        try:
            ref = self.remote.remote(self.payload_ref, reserved[0])
        except BaseException as e:
            self.events.lost(*reserved, f"could not submit the Ray task: {type(e).__name__}: {e}")
            raise
        self.in_flight[ref] = reserved
        self.counted += 1
        self.events.started(*reserved)

    def _collect(self, ref: Any) -> None:
        """Hand a finished task's outcome to the driver."""
        task_id, label = self.in_flight.pop(ref)
        try:
            result = self.ray.get(ref)
        except self.ray.exceptions.RayError as e:
            self._lost(task_id, label, e)
            return
        kind = result[0]
        if kind == "finished":
            self.exhausted, self.any_finished, self.failures_in_a_row = False, True, 0
            self.events.finished(result[1])
        elif kind == "exhausted":  # does not count; wait for a running task to open new work
            self.counted -= 1
            self.exhausted = True
            self.events.exhausted(task_id, label)
        else:
            self.events.stopped(task_id, label, *result[1:])

    def _lost(self, task_id: int, label: int, error: BaseException) -> None:
        self.exhausted = False
        self.events.lost(task_id, label, _describe(error))
        self.failures_in_a_row += 1
        if not self.any_finished and self.failures_in_a_row >= 2 * self.limit:
            lines = [line for line in _describe(error).splitlines() if line.strip()]
            raise TasksFailingError(
                f"the first {self.failures_in_a_row} Ray tasks all failed ({lines[-1].strip()[:300]}). "
                "Check that tunelab and the objective's module are importable on every node (install "
                "them there, or ship your code with ray.init(runtime_env={'working_dir': ...})) and "
                "that every node reaches the storage URL"
            )

    def _cancel_all(self, reason: str) -> None:
        """Kill every in-flight task and record its work as lost."""
        for ref, (task_id, label) in list(self.in_flight.items()):
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - it may have just finished; record it anyway
                pass
            try:
                self.events.lost(task_id, label, reason)
            except Exception:  # noqa: BLE001 - shutting down; the first error wins
                pass
        self.in_flight.clear()


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "RayExecutor needs Ray, which is not installed: pip install 'tunelab[ray]'"
        ) from None
    return ray


def _put(ray: Any, payload: object) -> Any:
    """Store the payload once in Ray's object store; every task reads it from there."""
    try:
        return ray.put(payload)
    except Exception as e:  # noqa: BLE001 - serialization fails in many ways
        raise ConfigError(
            f"the objective cannot be sent to Ray tasks ({type(e).__name__}: {e}); make sure it and "
            "what it refers to can be pickled (e.g. no open files, locks or database connections)"
        ) from None


def _describe(error: BaseException) -> str:
    """The error text to record for a trial whose task failed on Ray's side (no colour codes)."""
    text = _ANSI.sub("", f"the Ray task running this trial failed: {type(error).__name__}: {error}")
    if len(text) <= _MAX_ERROR_TEXT:
        return text
    half = _MAX_ERROR_TEXT // 2
    return text[:half] + "\n...\n" + text[-half:]


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)
