"""An in-process storage served to worker processes over a local socket.

The in-memory storage lives in one process. To run its trials in worker processes (a notebook
user's ``create_study()`` then ``optimize(..., n_workers=4)``), the driver serves it:
:func:`serve` starts a thread that answers storage calls on a local socket protected by a
random key, and each worker opens a :class:`RemoteStorage` from the picklable
:class:`ServedStorageAddress`. Every call is one round trip; the served storage's own lock keeps
concurrent calls atomic, exactly as for threads in one process, and errors (TrialStateError, ...)
travel back as themselves.
"""

from __future__ import annotations

import logging
import secrets
import socket
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any

from tunelab.distributions import Distribution, ParamValue
from tunelab.errors import StorageError
from tunelab.records import FrozenTrial, StudyRecord, StudySummary, TrialState
from tunelab.storage.base import BaseStorage, Curves, MetricPoint, TrialValue

logger = logging.getLogger("tunelab")

#: The storage methods a worker may call (everything but ``close``, which stays the owner's).
SERVED_METHODS = frozenset({
    "create_study", "get_study", "list_studies", "delete_study", "set_study_attrs", "register_distribution",
    "get_distributions",
    "create_trial", "claim_waiting_trial", "start_trial", "update_trial", "annotate_trial", "append_trial_event",
    "finish_trial", "discard_trial", "restore_times", "report", "report_steps", "get_curves", "get_metric_at",
    "heartbeat", "fail_stale_trials",
    "get_trial", "get_trial_system_attr", "get_trial_system_attrs", "get_trials", "get_trial_values", "count_trials",
    "get_best_trial",
})


@dataclass(frozen=True)
class ServedStorageAddress:
    """Where a served storage answers, and the key it asks for: plain data sent to workers."""

    address: str
    authkey: bytes

    def connect(self) -> RemoteStorage:
        """A storage that forwards every call to the served one."""
        return RemoteStorage(self)


class StorageServer:
    """Answers storage calls from other processes until :meth:`close` (see :func:`serve`)."""

    def __init__(self, storage: BaseStorage) -> None:
        self._storage = storage
        self._folder = tempfile.TemporaryDirectory(prefix="tunelab-serve-")
        authkey = secrets.token_bytes(32)
        path = str(Path(self._folder.name) / "storage.sock")
        self._listener = Listener(path, family="AF_UNIX", authkey=authkey)
        self.address = ServedStorageAddress(path, authkey)
        self._closed = threading.Event()
        self._connections: list[Connection] = []
        self._thread = threading.Thread(target=self._accept, daemon=True, name="tunelab-storage-server")
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn = self._listener.accept()
            except Exception:  # a failed handshake (wrong key) or the listener closed
                if self._closed.is_set():
                    return
                logger.debug("a storage client could not connect", exc_info=True)
                continue
            self._connections.append(conn)
            threading.Thread(target=self._answer, args=(conn,), daemon=True, name="tunelab-storage-client").start()

    def _answer(self, conn: Connection) -> None:
        with conn:
            while True:
                try:
                    method, args, kwargs = conn.recv()
                except (EOFError, OSError):
                    return  # the worker went away
                try:
                    if method not in SERVED_METHODS:
                        raise StorageError(f"the served storage does not answer {method!r}")
                    reply: tuple[str, Any] = ("ok", getattr(self._storage, method)(*args, **kwargs))
                except Exception as e:  # noqa: BLE001 - every error goes back to the caller
                    reply = ("error", e)
                try:
                    conn.send(reply)
                except (EOFError, OSError):
                    return
                except Exception as e:  # noqa: BLE001 - an error that cannot be pickled
                    conn.send(("error", StorageError(f"{method} failed: {type(e).__name__}: {e}")))

    def close(self) -> None:
        """Stop answering; clients' next calls fail with StorageError."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._listener.close()
        for conn in self._connections:
            # Shut the socket down, do not close it: its answering thread, blocked in recv, then sees
            # the end of the stream and closes it itself. Closing it from here raced that thread (a
            # closed descriptor read or closed twice, and the number possibly reused meanwhile).
            try:
                sock = socket.socket(fileno=conn.fileno())
            except OSError:
                continue  # closed already: its worker went away
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            finally:
                sock.detach()
        self._folder.cleanup()

    def __enter__(self) -> StorageServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(storage: BaseStorage) -> StorageServer:
    """Serve ``storage`` to other processes on this machine; pass ``server.address`` to them."""
    return StorageServer(storage)


class RemoteStorage(BaseStorage):
    """A storage served by another process (:func:`serve`): each call is one round trip."""

    #: Opened from an address that only the serving process's workers receive.
    shareable_across_processes = False

    def __init__(self, address: ServedStorageAddress) -> None:
        self._address = address
        self._lock = threading.Lock()  # one call at a time on the connection (the heartbeat thread too)
        try:
            self._conn: Connection | None = Client(address.address, family="AF_UNIX", authkey=address.authkey)
        except (OSError, EOFError) as e:
            raise StorageError(f"cannot reach the storage served at {address.address}: {e}") from e

    def __repr__(self) -> str:
        return f"RemoteStorage({self._address.address!r})"

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            if self._conn is None:
                raise StorageError("this RemoteStorage is closed")
            try:
                self._conn.send((method, args, kwargs))
                status, result = self._conn.recv()
            except (OSError, EOFError) as e:
                raise StorageError(
                    f"{method} failed: the process serving the storage is gone ({type(e).__name__}: {e})"
                ) from e
        if status == "error":
            raise result
        return result

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- studies ---------------------------------------------------------------------------
    def create_study(
        self, name: str, direction: str, seed: int, user_attrs: Mapping[str, Any] | None = None,
        system_attrs: Mapping[str, Any] | None = None,
    ) -> StudyRecord:
        result: StudyRecord = self._call("create_study", name, direction, seed, user_attrs, system_attrs)
        return result

    def get_study(self, name: str) -> StudyRecord:
        result: StudyRecord = self._call("get_study", name)
        return result

    def list_studies(self) -> list[StudySummary]:
        result: list[StudySummary] = self._call("list_studies")
        return result

    def delete_study(self, study_id: int) -> None:
        self._call("delete_study", study_id)

    def set_study_attrs(
        self, study_id: int, user_attrs: Mapping[str, Any] | None = None, system_attrs: Mapping[str, Any] | None = None
    ) -> None:
        self._call("set_study_attrs", study_id, user_attrs, system_attrs)

    def register_distribution(self, study_id: int, name: str, distribution: Distribution) -> Distribution:
        result: Distribution = self._call("register_distribution", study_id, name, distribution)
        return result

    def get_distributions(self, study_id: int) -> dict[str, Distribution]:
        result: dict[str, Distribution] = self._call("get_distributions", study_id)
        return result

    # -- trials ----------------------------------------------------------------------------
    def create_trial(
        self, study_id: int, state: TrialState = TrialState.RUNNING, params: Mapping[str, ParamValue] | None = None,
        distributions: Mapping[str, Distribution] | None = None, user_attrs: Mapping[str, Any] | None = None,
        system_attrs: Mapping[str, Any] | None = None, heartbeat: bool = False,
    ) -> FrozenTrial:
        result: FrozenTrial = self._call(
            "create_trial", study_id, state, params, distributions, user_attrs, system_attrs, heartbeat
        )
        return result

    def claim_waiting_trial(self, study_id: int, heartbeat: bool = False) -> FrozenTrial | None:
        result: FrozenTrial | None = self._call("claim_waiting_trial", study_id, heartbeat)
        return result

    def start_trial(self, study_id: int, heartbeat: bool = False) -> FrozenTrial:
        result: FrozenTrial = self._call("start_trial", study_id, heartbeat)
        return result

    def update_trial(
        self, trial_id: int, params: Mapping[str, ParamValue] | None = None,
        distributions: Mapping[str, Distribution] | None = None, user_attrs: Mapping[str, Any] | None = None,
        system_attrs: Mapping[str, Any] | None = None,
    ) -> None:
        self._call("update_trial", trial_id, params, distributions, user_attrs, system_attrs)

    def annotate_trial(self, trial_id: int, user_attrs: Mapping[str, Any]) -> None:
        self._call("annotate_trial", trial_id, user_attrs)

    def append_trial_event(self, trial_id: int, key: str, event: Mapping[str, Any]) -> int:
        result: int = self._call("append_trial_event", trial_id, key, event)
        return result

    def finish_trial(
        self, trial_id: int, state: TrialState, value: float | None = None, error: str | None = None,
        params: Mapping[str, ParamValue] | None = None, distributions: Mapping[str, Distribution] | None = None,
        user_attrs: Mapping[str, Any] | None = None, system_attrs: Mapping[str, Any] | None = None,
        values: Sequence[float] | None = None,
    ) -> None:
        self._call("finish_trial", trial_id, state, value, error, params, distributions, user_attrs, system_attrs,
                   None if values is None else list(values))

    def discard_trial(self, trial_id: int) -> bool:
        return bool(self._call("discard_trial", trial_id))

    def restore_times(self, trial_id: int, start: datetime | None, complete: datetime | None) -> bool:
        return bool(self._call("restore_times", trial_id, start, complete))

    def report(self, trial_id: int, step: int, metrics: Mapping[str, float]) -> None:
        self._call("report", trial_id, step, dict(metrics))

    def report_steps(self, trial_id: int, points: Sequence[tuple[int, Mapping[str, float]]]) -> None:
        self._call("report_steps", trial_id, [(int(step), dict(metrics)) for step, metrics in points])

    def get_curves(self, trial_id: int) -> Curves:
        result: Curves = self._call("get_curves", trial_id)
        return result

    def get_metric_at(self, study_id: int, metric: str, steps: Sequence[int] | None = None) -> list[MetricPoint]:
        wanted = None if steps is None else list(steps)
        result: list[MetricPoint] = self._call("get_metric_at", study_id, metric, wanted)
        return result

    def heartbeat(self, trial_id: int) -> None:
        self._call("heartbeat", trial_id)

    def fail_stale_trials(self, study_id: int, grace_seconds: float) -> list[FrozenTrial]:
        result: list[FrozenTrial] = self._call("fail_stale_trials", study_id, grace_seconds)
        return result

    def get_trial(self, trial_id: int) -> FrozenTrial:
        result: FrozenTrial = self._call("get_trial", trial_id)
        return result

    def get_trial_system_attr(self, trial_id: int, key: str) -> Any:
        return self._call("get_trial_system_attr", trial_id, key)

    def get_trial_system_attrs(self, trial_id: int, keys: Sequence[str]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("get_trial_system_attrs", trial_id, list(keys))
        return result

    def get_trials(
        self, study_id: int, states: Iterable[TrialState] | None = None, min_number: int = 0,
        max_number: int | None = None,
    ) -> list[FrozenTrial]:
        result: list[FrozenTrial] = self._call(
            "get_trials", study_id, None if states is None else list(states), min_number, max_number
        )
        return result

    def get_trial_values(self, study_id: int, min_number: int = 0) -> list[TrialValue]:
        result: list[TrialValue] = self._call("get_trial_values", study_id, min_number)
        return result

    def count_trials(self, study_id: int, states: Iterable[TrialState] | None = None) -> int:
        result: int = self._call("count_trials", study_id, None if states is None else list(states))
        return result

    def get_best_trial(self, study_id: int, direction: str) -> FrozenTrial | None:
        result: FrozenTrial | None = self._call("get_best_trial", study_id, direction)
        return result
