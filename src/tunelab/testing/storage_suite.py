"""The storage conformance suite: the rules of :class:`~tunelab.storage.BaseStorage`, as tests.

Every backend runs the same tests. Subclass :class:`StorageSuite` in a test module (name the
subclass ``Test...`` so pytest collects it) and return a new, empty storage from
``make_storage``::

    class TestInMemoryStorage(StorageSuite):
        def make_storage(self, tmp_path: Path) -> BaseStorage:
            return InMemoryStorage()

A backend that several processes share through a URL subclasses :class:`SharedStorageSuite`
instead and returns that URL from ``make_url``; it also gets the tests that run real worker
processes against one storage::

    class TestSQLiteStorage(SharedStorageSuite):
        def make_url(self, tmp_path: Path) -> str:
            return "sqlite:///" + str(tmp_path / "tunelab.db")

Each test gets its own storage from the ``storage`` fixture, closed afterwards. A new
backend needs nothing else: no test here knows which backend it runs on. The worker processes
(spawned once per class, released together at a barrier) open the storage the way tunelab's
own workers do: ``get_storage(storage.url)``.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest

from tunelab.distributions import Bool, Categorical, Distribution, Float, Int, ParamValue
from tunelab.errors import (
    DuplicatedStudyError,
    StorageError,
    StudyNotFoundError,
    TrialNotFoundError,
    TrialStateError,
)
from tunelab.records import FrozenTrial, TrialState
from tunelab.storage import BaseStorage, MetricPoint, get_storage

__all__ = ["SharedStorageSuite", "StorageSuite"]

#: Heartbeat grace time of the stale-trial tests: short, so the suite stays fast.
GRACE = 0.2
#: Seconds a test waits for a condition (a trial going stale, a worker finishing) before failing.
TIMEOUT = 60.0
#: Trial ids no storage has handed out.
UNKNOWN_TRIAL_ID = 987_654_321

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)

#: Text that would break a storage that pastes user text into SQL, and text beyond ASCII.
HOSTILE_TEXTS = (
    "x'; DROP TABLE trials; --",
    'y"); DELETE FROM studies; --',
    "z' OR '1'='1",
    "Ünïcödé 研究 🚀 — ñ",
    "100% _wild_ \\back\\slash",
    "  spaces  \nnewline\ttab",
)

#: Parameter values whose exact value and Python type every storage must keep.
PARAMS: dict[str, ParamValue] = {
    "lr": 0.1 + 0.2,  # 0.30000000000000004: every bit counts
    "tiny": 5e-324,
    "huge": 1.7976931348623157e308,
    "negative_zero": -0.0,
    "whole_float": 2.0,
    "layers": 3,
    "negative_int": -7,
    "big_int": 2**53 + 1,
    "optimizer": "adam",
    "empty": "",
    "batch_norm": True,
    "dropout_off": False,
    "activation": None,
}

#: Distributions whose exact arguments, class and choice types every storage must keep.
DISTRIBUTIONS: dict[str, Distribution] = {
    "lr": Float(1e-5, 1e-1, log=True),
    "dropout": Float(0.0, 0.5, step=0.1),
    "momentum": Float(0.0, 1.0),
    "layers": Int(1, 8),
    "width": Int(16, 1024, log=True),
    "even": Int(0, 10, step=2),
    "optimizer": Categorical(["adam", "sgd"]),
    "mixed": Categorical([None, 1, 1.0, True, "1"]),
    "batch_norm": Bool(),
    "biased": Bool(0.25),
}


# -- helpers -------------------------------------------------------------------------------
def wait_until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.01)


def typed(mapping: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """Each value with its type and repr: 1, 1.0, True and -0.0 all differ here."""
    return {k: (type(v).__name__, repr(v)) for k, v in mapping.items()}


def assert_same_distributions(
    actual: Mapping[str, Distribution], expected: Mapping[str, Distribution]
) -> None:
    """Same names, classes, arguments and choice types (Categorical([1]) == Categorical([True]))."""
    assert set(actual) == set(expected)
    for name, want in expected.items():
        got = actual[name]
        assert type(got) is type(want), name
        assert got == want, name
        assert typed(got.to_json()) == typed(want.to_json()), name
        if isinstance(want, Categorical):
            assert isinstance(got, Categorical)
            assert [typed({"c": c}) for c in got.choices] == [typed({"c": c}) for c in want.choices], name


def is_utc(dt: datetime | None) -> bool:
    return dt is not None and dt.utcoffset() == timedelta(0)


def near_now(dt: datetime | None, before: float, after: float) -> bool:
    """Whether ``dt`` lies between the epoch times ``before`` and ``after`` (1 s slack)."""
    return dt is not None and before - 1.0 <= dt.timestamp() <= after + 1.0


def numbers(trials: list[FrozenTrial]) -> list[int]:
    return [t.number for t in trials]


def finished_trial(
    storage: BaseStorage, study_id: int, state: TrialState, value: float | None = None
) -> FrozenTrial:
    """A new trial, finished at once with ``state`` and ``value``."""
    trial = storage.create_trial(study_id)
    error = "failed" if state == TrialState.FAIL else None
    storage.finish_trial(trial.trial_id, state, value=value, error=error)
    return storage.get_trial(trial.trial_id)


C, P, F, R = TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING

#: What :func:`report_pruning_curves` leaves in a study: every trial's "loss", by number then step.
PRUNING_LOSS = [
    MetricPoint(0, C, 0, 1.0), MetricPoint(0, C, 1, 0.5), MetricPoint(0, C, 2, 0.25),
    MetricPoint(1, P, 0, 2.0), MetricPoint(1, P, 1, 1.5),
    MetricPoint(3, F, 1, 3.0),
    MetricPoint(4, R, 0, 0.75), MetricPoint(4, R, 2, 0.125),
]


def report_pruning_curves(storage: BaseStorage, study_id: int) -> None:
    """Six trials as a pruner finds them: several metrics and steps, reported out of order.

    ======  ========  ================================  =============================
    number  state     "loss" at step                    other metrics
    ======  ========  ================================  =============================
    0       COMPLETE  0: 1.0, 1: 0.5, 2: 0.25           "acc" at 0, 1, 2
    1       PRUNED    0: 2.0, 1: 1.5                    "acc" at 0, 1; "loss_2" at 1
    2       WAITING   (none: a WAITING trial cannot report)
    3       FAIL      1: 3.0                            "val_loss" at 1
    4       RUNNING   0: 0.75, 2: 0.125                 "acc" at 2
    5       COMPLETE  (none)                            "acc" at 0, 1, 2
    ======  ========  ================================  =============================
    """
    t0, t1 = storage.create_trial(study_id), storage.create_trial(study_id)
    storage.create_trial(study_id, state=TrialState.WAITING)
    t3, t4, t5 = (storage.create_trial(study_id) for _ in range(3))
    for trial, step, metrics in [
        (t4, 2, {"loss": 0.125, "acc": 0.9}),
        (t5, 2, {"acc": 0.3}),
        (t1, 1, {"loss": 1.5, "loss_2": 9.0}),
        (t0, 2, {"loss": 0.25, "acc": 0.8}),
        (t3, 1, {"val_loss": 4.0, "loss": 3.0}),
        (t0, 0, {"acc": 0.1, "loss": 1.0}),
        (t4, 0, {"loss": 0.75}),
        (t5, 0, {"acc": 0.1}),
        (t1, 0, {"loss": 2.0, "acc": 0.2}),
        (t0, 1, {"loss": 0.5, "acc": 0.4}),
        (t5, 1, {"acc": 0.2}),
        (t1, 1, {"acc": 0.3}),
    ]:
        storage.report(trial.trial_id, step, metrics)
    storage.finish_trial(t0.trial_id, TrialState.COMPLETE, value=0.25)
    storage.finish_trial(t1.trial_id, TrialState.PRUNED)
    storage.finish_trial(t3.trial_id, TrialState.FAIL, error="failed")
    storage.finish_trial(t5.trial_id, TrialState.COMPLETE, value=0.5)


def fail_stale_until(
    storage: BaseStorage, study_id: int, n: int, beat: Callable[[], None]
) -> list[FrozenTrial]:
    """Call ``fail_stale_trials`` (after ``beat()`` each time) until it has failed ``n`` trials in all."""
    failed: list[FrozenTrial] = []

    def enough() -> bool:
        beat()
        failed.extend(storage.fail_stale_trials(study_id, GRACE))
        return len(failed) >= n

    wait_until(enough, f"{n} stale trial(s) to be failed")
    return failed


def exercise_every_table(storage: BaseStorage) -> None:
    """Use studies, attributes, distributions, trials and curves; fail if any is broken."""
    name = "still works"
    study = storage.create_study(name, "minimize", seed=1, user_attrs={"a": 1})
    storage.set_study_attrs(study.study_id, user_attrs={"b": 2})
    assert storage.get_study(name).user_attrs == {"a": 1, "b": 2}
    assert storage.register_distribution(study.study_id, "x", Float(0.0, 1.0)) == Float(0.0, 1.0)
    trial = storage.create_trial(study.study_id, user_attrs={"u": "v"})
    storage.update_trial(trial.trial_id, params={"x": 0.5}, distributions={"x": Float(0.0, 1.0)})
    storage.report(trial.trial_id, 0, {"loss": 1.0})
    storage.finish_trial(trial.trial_id, TrialState.COMPLETE, value=0.25)
    assert storage.get_curves(trial.trial_id) == {"loss": ([0], [1.0])}
    assert storage.get_metric_at(study.study_id, "loss") == [MetricPoint(0, TrialState.COMPLETE, 0, 1.0)]
    assert storage.count_trials(study.study_id) == 1
    best = storage.get_best_trial(study.study_id, "minimize")
    assert best is not None and best.params == {"x": 0.5} and best.value == 0.25
    assert name in {s.name for s in storage.list_studies()}


# -- workers of the multi-process tests (module level, so that spawned processes import them) --
N_PROCESSES = 4
_start_line: Barrier | None = None


def _init_worker(start_line: Barrier) -> None:
    global _start_line
    _start_line = start_line


def _wait_for_every_worker() -> None:
    """Block until all N_PROCESSES workers are here: each task runs in its own process, at once."""
    assert _start_line is not None, "run the task in the pool of the processes fixture"
    _start_line.wait(TIMEOUT)


def _warm_up() -> int:
    _wait_for_every_worker()
    return os.getpid()


def _create_and_finish(url: str, study_name: str, n_trials: int, worker: int) -> list[int]:
    """Create, report and finish ``n_trials`` trials; return their numbers."""
    _wait_for_every_worker()
    storage = get_storage(url)
    study_id = storage.get_study(study_name).study_id
    made: list[int] = []
    for i in range(n_trials):
        trial = storage.create_trial(study_id, user_attrs={"worker": worker})
        storage.report(trial.trial_id, 0, {"loss": float(i)})
        storage.finish_trial(trial.trial_id, TrialState.COMPLETE, value=float(trial.number), params={"i": i})
        made.append(trial.number)
    storage.close()
    return made


def _claim_until_none_waits(url: str, study_name: str, worker: int) -> list[int]:
    """Claim and finish WAITING trials until none is left; return their numbers."""
    _wait_for_every_worker()
    storage = get_storage(url)
    study_id = storage.get_study(study_name).study_id
    claimed: list[int] = []
    while (trial := storage.claim_waiting_trial(study_id)) is not None:
        assert trial.state == TrialState.RUNNING
        assert trial.params == {"n": trial.number}, "the claimed trial lost its enqueued params"
        storage.finish_trial(trial.trial_id, TrialState.COMPLETE, value=1.0, user_attrs={"worker": worker})
        claimed.append(trial.number)
    storage.close()
    return claimed


def _start_trials(url: str, study_name: str, n_trials: int, worker: int) -> list[int]:
    """Start (claim or create) and finish ``n_trials`` trials; return their numbers."""
    _wait_for_every_worker()
    storage = get_storage(url)
    study_id = storage.get_study(study_name).study_id
    started: list[int] = []
    for _ in range(n_trials):
        trial = storage.start_trial(study_id)
        assert trial.state == TrialState.RUNNING
        storage.finish_trial(trial.trial_id, TrialState.COMPLETE, value=1.0, user_attrs={"worker": worker})
        started.append(trial.number)
    storage.close()
    return started


def _append_events(url: str, trial_id: int, n_events: int, worker: int) -> list[int]:
    """Append ``n_events`` events ``{"worker", "i"}`` to a trial's "changes"; return their indices."""
    _wait_for_every_worker()
    storage = get_storage(url)
    indices = [storage.append_trial_event(trial_id, "changes", {"worker": worker, "i": i}) for i in range(n_events)]
    storage.close()
    return indices


def _fail_stale(url: str, study_name: str, worker: int) -> list[int]:
    """Fail the stale trials of the study once; return the numbers of those this call failed."""
    _wait_for_every_worker()
    storage = get_storage(url)
    failed = storage.fail_stale_trials(storage.get_study(study_name).study_id, GRACE)
    storage.close()
    return [t.number for t in failed]


def run_in_processes(
    pool: ProcessPoolExecutor, task: Callable[..., list[int]], *args: Any
) -> dict[int, list[int]]:
    """Run ``task(*args, worker)`` once in each process of ``pool``, all starting together.

    Returns worker -> what its task returned; a task's exception fails the test with its traceback.
    """
    futures = {i: pool.submit(task, *args, i) for i in range(N_PROCESSES)}
    return {i: f.result(timeout=TIMEOUT) for i, f in futures.items()}


def run_threads(target: Callable[[int], list[int]], n: int) -> dict[int, list[int]]:
    """Run ``target(worker)`` in ``n`` threads; returns worker -> what it returned."""
    with ThreadPoolExecutor(n) as pool:
        futures = {i: pool.submit(target, i) for i in range(n)}
        return {i: f.result(timeout=TIMEOUT) for i, f in futures.items()}


def assert_each_exactly_once(handled: Mapping[int, list[int]], expected: range) -> None:
    everything = [number for numbers_ in handled.values() for number in numbers_]
    duplicates = sorted({x for x in everything if everything.count(x) > 1})
    assert not duplicates, f"trial numbers handled more than once: {duplicates}"
    assert sorted(everything) == list(expected)


# -- the suite -----------------------------------------------------------------------------
class StorageSuite:
    """Conformance tests every :class:`BaseStorage` passes. Subclass it and implement ``make_storage``."""

    def make_storage(self, tmp_path: Path) -> BaseStorage:
        """A new, empty storage (``tmp_path`` is the test's own temporary directory)."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_storage(tmp_path)")

    @pytest.fixture
    def storage(self, tmp_path: Path) -> Iterator[BaseStorage]:
        storage = self.make_storage(tmp_path)
        try:
            yield storage
        finally:
            storage.close()

    @pytest.fixture
    def study_id(self, storage: BaseStorage) -> int:
        return storage.create_study("study", "minimize", seed=0).study_id

    # -- studies ---------------------------------------------------------------------------
    def test_create_study_returns_its_record(self, storage: BaseStorage) -> None:
        before = time.time()
        record = storage.create_study(
            "s", "maximize", seed=42, user_attrs={"u": 1}, system_attrs={"s": [1, 2]}
        )
        assert (record.name, record.direction, record.seed) == ("s", "maximize", 42)
        assert (record.user_attrs, record.system_attrs) == ({"u": 1}, {"s": [1, 2]})
        assert is_utc(record.datetime_created)
        assert near_now(record.datetime_created, before, time.time())

    def test_get_study_reads_what_create_study_wrote(self, storage: BaseStorage) -> None:
        created = storage.create_study(
            "s", "maximize", seed=42, user_attrs={"u": 1}, system_attrs={"s": [1, 2]}
        )
        read = storage.get_study("s")
        assert (read.study_id, read.name, read.direction, read.seed) == (
            created.study_id, "s", "maximize", 42,
        )
        assert (read.user_attrs, read.system_attrs) == ({"u": 1}, {"s": [1, 2]})
        assert read.datetime_created is not None and created.datetime_created is not None
        assert abs((read.datetime_created - created.datetime_created).total_seconds()) < 1e-3

    def test_study_ids_are_distinct(self, storage: BaseStorage) -> None:
        ids = [storage.create_study(f"s{i}", "minimize", seed=i).study_id for i in range(3)]
        assert len(set(ids)) == 3

    def test_duplicate_study_name_raises_duplicated_study_error(self, storage: BaseStorage) -> None:
        storage.create_study("s", "minimize", seed=1)
        with pytest.raises(DuplicatedStudyError, match="'s'"):
            storage.create_study("s", "maximize", seed=2)
        kept = storage.get_study("s")
        assert (kept.direction, kept.seed) == ("minimize", 1)
        assert len(storage.list_studies()) == 1

    def test_study_names_differing_in_case_or_accents_are_two_studies(self, storage: BaseStorage) -> None:
        # MySQL/MariaDB compare text case- and accent-insensitively unless a column says otherwise:
        # 'MO' was a duplicate of 'mo' there, and get_study('Mo') gave study 'mo'.
        first = storage.create_study("mo", "minimize", seed=1)
        for name in ("MO", "Mo", "mö"):
            storage.create_study(name, "maximize", seed=2)
        assert storage.get_study("mo").study_id == first.study_id
        assert {storage.get_study(n).name for n in ("mo", "MO", "Mo", "mö")} == {"mo", "MO", "Mo", "mö"}
        with pytest.raises(StudyNotFoundError):
            storage.get_study("mO")

    def test_get_missing_study_raises_study_not_found_error(self, storage: BaseStorage) -> None:
        storage.create_study("s", "minimize", seed=0)
        with pytest.raises(StudyNotFoundError, match="'missing'"):
            storage.get_study("missing")

    def test_list_studies_is_empty_in_a_new_storage(self, storage: BaseStorage) -> None:
        assert storage.list_studies() == []

    def test_list_studies_lists_every_study(self, storage: BaseStorage) -> None:
        storage.create_study("a", "minimize", seed=0)
        storage.create_study("b", "maximize", seed=0)
        summaries = {s.name: s for s in storage.list_studies()}
        assert set(summaries) == {"a", "b"}
        assert (summaries["a"].direction, summaries["b"].direction) == ("minimize", "maximize")
        for s in summaries.values():
            assert (s.n_trials, s.best_value) == (0, None)
            assert not any(s.counts.values())
            assert is_utc(s.datetime_created)

    def test_delete_study_removes_the_study_and_its_trials(self, storage: BaseStorage, study_id: int) -> None:
        trial = storage.create_trial(study_id)
        storage.report(trial.trial_id, 0, {"loss": 1.0})
        storage.delete_study(study_id)
        with pytest.raises(StudyNotFoundError):
            storage.get_study("study")
        assert storage.list_studies() == []
        with pytest.raises(TrialNotFoundError):
            storage.get_trial(trial.trial_id)

    def test_deleted_study_name_can_be_reused_from_scratch(self, storage: BaseStorage, study_id: int) -> None:
        storage.register_distribution(study_id, "x", Float(0.0, 1.0))
        storage.create_trial(study_id)
        storage.delete_study(study_id)
        again = storage.create_study("study", "maximize", seed=5)
        assert storage.get_study("study").direction == "maximize"
        assert storage.get_trials(again.study_id) == []
        assert storage.create_trial(again.study_id).number == 0
        assert storage.register_distribution(again.study_id, "x", Float(0.0, 2.0)) == Float(0.0, 2.0)

    def test_ids_of_a_deleted_study_are_never_reused(self, storage: BaseStorage) -> None:
        # A worker still holding a trial id of a deleted study must not reach another study's trial.
        old_study = storage.create_study("old", "minimize", seed=0).study_id
        old_trial = storage.create_trial(old_study)
        storage.delete_study(old_study)
        new_study = storage.create_study("new", "minimize", seed=0).study_id
        new_trial = storage.create_trial(new_study)
        assert new_study != old_study
        assert new_trial.trial_id != old_trial.trial_id
        with pytest.raises(TrialNotFoundError):
            storage.finish_trial(old_trial.trial_id, TrialState.FAIL, error="late worker")
        assert storage.get_trial(new_trial.trial_id).state == TrialState.RUNNING

    def test_set_study_attrs_merges_user_and_system_attrs(self, storage: BaseStorage) -> None:
        sid = storage.create_study(
            "s", "minimize", 0, user_attrs={"a": 1, "b": 2}, system_attrs={"x": 1}
        ).study_id
        storage.set_study_attrs(sid, user_attrs={"b": 20, "c": 30})
        assert storage.get_study("s").user_attrs == {"a": 1, "b": 20, "c": 30}
        assert storage.get_study("s").system_attrs == {"x": 1}
        storage.set_study_attrs(sid, system_attrs={"y": 2})
        assert storage.get_study("s").user_attrs == {"a": 1, "b": 20, "c": 30}
        assert storage.get_study("s").system_attrs == {"x": 1, "y": 2}

    def test_attributes_past_64_kib_are_kept(self, storage: BaseStorage) -> None:
        # MySQL/MariaDB's TEXT keeps 64 KiB: a trial with a long log in its user attributes ended FAIL
        # ("could not be recorded") there, and such study attributes could not be set.
        big = "line\n" * 40_000  # 200 kB
        study_id = storage.create_study("big", "minimize", seed=0, user_attrs={"log": big}).study_id
        storage.set_study_attrs(study_id, system_attrs={"record": [big]})
        study = storage.get_study("big")
        assert (study.user_attrs["log"], study.system_attrs["record"]) == (big, [big])
        trial = storage.create_trial(study_id, params={"p" * 400: 1.0}, user_attrs={"log": big})
        storage.update_trial(trial.trial_id, system_attrs={"record": big})
        storage.finish_trial(trial.trial_id, TrialState.FAIL, error="E" * 100_000, user_attrs={"more": big})
        done = storage.get_trial(trial.trial_id)
        assert (done.state, done.user_attrs, done.system_attrs["record"]) == (
            TrialState.FAIL, {"log": big, "more": big}, big)
        assert done.error == "E" * 100_000

    def test_study_attrs_keep_nested_json(self, storage: BaseStorage) -> None:
        nested = {
            "list": [1, 2.5, "three", None, True], "dict": {"k": {"deep": [[]]}}, "int": 2**40, "f": 0.1,
        }
        sid = storage.create_study("s", "minimize", 0, user_attrs=nested).study_id
        storage.set_study_attrs(sid, system_attrs={"sampler": nested})
        record = storage.get_study("s")
        assert record.user_attrs == nested
        assert [type(v) for v in record.user_attrs["list"]] == [int, float, str, type(None), bool]
        assert record.system_attrs == {"sampler": nested}

    def test_returned_study_record_is_a_snapshot(self, storage: BaseStorage) -> None:
        created = storage.create_study("s", "minimize", 0, user_attrs={"history": [1]})
        created.user_attrs["history"].append(2)
        storage.get_study("s").user_attrs["history"].append(3)
        assert storage.get_study("s").user_attrs == {"history": [1]}

    def test_list_studies_counts_trials_per_state(self, storage: BaseStorage, study_id: int) -> None:
        finished_trial(storage, study_id, TrialState.COMPLETE, 3.0)
        finished_trial(storage, study_id, TrialState.COMPLETE, 1.0)
        finished_trial(storage, study_id, TrialState.FAIL)
        finished_trial(storage, study_id, TrialState.PRUNED, 0.5)
        storage.create_trial(study_id)
        storage.create_trial(study_id, state=TrialState.WAITING)
        storage.create_trial(study_id, state=TrialState.WAITING)
        (summary,) = storage.list_studies()
        assert summary.n_trials == 7
        assert {k: v for k, v in summary.counts.items() if v} == {
            "COMPLETE": 2, "FAIL": 1, "PRUNED": 1, "RUNNING": 1, "WAITING": 2,
        }

    @pytest.mark.parametrize(("direction", "best"), [("minimize", -1.0), ("maximize", 3.0)])
    def test_list_studies_reports_the_best_value(
        self, storage: BaseStorage, direction: str, best: float
    ) -> None:
        sid = storage.create_study("s", direction, seed=0).study_id
        for value in (3.0, -1.0, 2.0):
            finished_trial(storage, sid, TrialState.COMPLETE, value)
        finished_trial(storage, sid, TrialState.PRUNED, -100.0)
        finished_trial(storage, sid, TrialState.PRUNED, 100.0)
        storage.create_trial(sid)
        (summary,) = storage.list_studies()
        assert summary.best_value == best

    def test_two_studies_never_see_each_others_trials(self, storage: BaseStorage) -> None:
        a = storage.create_study("a", "minimize", seed=0).study_id
        b = storage.create_study("b", "minimize", seed=0).study_id
        ta = [finished_trial(storage, a, TrialState.COMPLETE, 10.0 + i) for i in range(3)]
        tb = finished_trial(storage, b, TrialState.COMPLETE, 1.0)
        storage.create_trial(b, state=TrialState.WAITING)
        assert [t.trial_id for t in storage.get_trials(a)] == [t.trial_id for t in ta]
        assert numbers(storage.get_trials(b)) == [0, 1]
        assert (storage.count_trials(a), storage.count_trials(b)) == (3, 2)
        best_a, best_b = storage.get_best_trial(a, "minimize"), storage.get_best_trial(b, "minimize")
        assert best_a is not None and best_a.trial_id == ta[0].trial_id
        assert best_b is not None and best_b.trial_id == tb.trial_id
        assert storage.claim_waiting_trial(a) is None
        summaries = {s.name: s for s in storage.list_studies()}
        assert (summaries["a"].n_trials, summaries["a"].best_value) == (3, 10.0)
        assert (summaries["b"].n_trials, summaries["b"].best_value) == (2, 1.0)

    def test_deleting_one_study_leaves_the_other_intact(self, storage: BaseStorage) -> None:
        keep = storage.create_study("keep", "minimize", seed=0, user_attrs={"k": 1}).study_id
        drop = storage.create_study("drop", "minimize", seed=0).study_id
        for sid in (keep, drop):
            storage.register_distribution(sid, "x", Float(0.0, 1.0 + sid))
            for i in range(2):
                trial = storage.create_trial(sid, params={"x": 0.5}, distributions={"x": Float(0.0, 1.0)})
                storage.report(trial.trial_id, 0, {"loss": float(i)})
                storage.finish_trial(trial.trial_id, TrialState.COMPLETE, value=float(i))
            storage.create_trial(sid, state=TrialState.WAITING)
        kept_before = storage.get_trials(keep)
        storage.delete_study(drop)
        assert [s.name for s in storage.list_studies()] == ["keep"]
        assert storage.get_study("keep").user_attrs == {"k": 1}
        assert storage.get_trials(keep) == kept_before
        assert [storage.get_curves(t.trial_id) for t in kept_before[:2]] == [
            {"loss": ([0], [0.0])}, {"loss": ([0], [1.0])},
        ]
        assert storage.register_distribution(keep, "x", Float(0.0, 99.0)) == Float(0.0, 1.0 + keep)
        assert storage.create_trial(keep).number == 3
        claimed = storage.claim_waiting_trial(keep)
        assert claimed is not None and claimed.number == 2

    # -- user text is data, never SQL ------------------------------------------------------
    @pytest.mark.parametrize("text", HOSTILE_TEXTS)
    def test_hostile_study_name_is_stored_verbatim(self, storage: BaseStorage, text: str) -> None:
        sid = storage.create_study(text, "minimize", seed=0).study_id
        assert storage.get_study(text).name == text
        assert storage.get_study(text).study_id == sid
        assert [s.name for s in storage.list_studies()] == [text]
        with pytest.raises(DuplicatedStudyError):
            storage.create_study(text, "minimize", seed=0)
        exercise_every_table(storage)
        assert storage.get_study(text).study_id == sid

    @pytest.mark.parametrize("text", HOSTILE_TEXTS)
    def test_hostile_text_in_attrs_params_and_metrics_is_stored_verbatim(
        self, storage: BaseStorage, study_id: int, text: str
    ) -> None:
        attrs = {text: text, "list": [text]}
        storage.set_study_attrs(study_id, user_attrs=attrs, system_attrs=attrs)
        assert storage.register_distribution(study_id, text, Categorical([text])) == Categorical([text])
        trial = storage.create_trial(study_id, params={text: text}, distributions={text: Categorical([text])},
                                     user_attrs=attrs, system_attrs=attrs)
        storage.report(trial.trial_id, 0, {text: 1.0})
        storage.finish_trial(trial.trial_id, TrialState.FAIL, error=text)
        study = storage.get_study("study")
        assert (study.user_attrs, study.system_attrs) == (attrs, attrs)
        got = storage.get_trial(trial.trial_id)
        assert (got.params, got.distributions, got.error) == ({text: text}, {text: Categorical([text])}, text)
        assert (got.user_attrs, got.system_attrs) == (attrs, attrs)
        assert storage.get_curves(trial.trial_id) == {text: ([0], [1.0])}
        assert storage.get_metric_at(study_id, text) == [MetricPoint(0, TrialState.FAIL, 0, 1.0)]
        assert storage.get_metric_at(study_id, text, [0]) == [MetricPoint(0, TrialState.FAIL, 0, 1.0)]
        assert storage.register_distribution(study_id, text, Categorical(["other"])) == Categorical([text])
        exercise_every_table(storage)
        assert storage.get_trial(trial.trial_id) == got

    # -- trials ----------------------------------------------------------------------------
    def test_trial_numbers_count_from_zero_in_each_study(self, storage: BaseStorage) -> None:
        a = storage.create_study("a", "minimize", seed=0).study_id
        b = storage.create_study("b", "minimize", seed=0).study_id
        made = [storage.create_trial(sid).number for sid in (a, a, b, a, b)]
        storage.create_trial(a, state=TrialState.WAITING)
        assert made == [0, 1, 0, 2, 1]
        assert numbers(storage.get_trials(a)) == [0, 1, 2, 3]
        assert numbers(storage.get_trials(b)) == [0, 1]

    def test_trial_ids_are_unique_across_studies(self, storage: BaseStorage) -> None:
        a = storage.create_study("a", "minimize", seed=0).study_id
        b = storage.create_study("b", "minimize", seed=0).study_id
        ids = [storage.create_trial(sid).trial_id for sid in (a, b, a, b)]
        assert len(set(ids)) == 4

    def test_new_running_trial_reads_back_as_created(self, storage: BaseStorage, study_id: int) -> None:
        before = time.time()
        created = storage.create_trial(study_id, user_attrs={"u": 1}, system_attrs={"s": 2})
        got = storage.get_trial(created.trial_id)
        assert (got.number, got.state, got.value, got.error) == (0, TrialState.RUNNING, None, None)
        assert (got.user_attrs, got.system_attrs) == ({"u": 1}, {"s": 2})
        assert is_utc(got.datetime_start) and near_now(got.datetime_start, before, time.time())
        assert got.datetime_complete is None
        assert created.datetime_start is not None and got.datetime_start is not None
        assert abs((created.datetime_start - got.datetime_start).total_seconds()) < 1e-3

    def test_waiting_trial_has_no_start_time(self, storage: BaseStorage, study_id: int) -> None:
        trial = storage.create_trial(study_id, state=TrialState.WAITING)
        got = storage.get_trial(trial.trial_id)
        assert (got.state, got.datetime_start, got.datetime_complete) == (TrialState.WAITING, None, None)

    def test_params_round_trip_with_their_python_types(self, storage: BaseStorage, study_id: int) -> None:
        created = storage.create_trial(study_id, params=PARAMS)
        waiting = storage.create_trial(study_id, state=TrialState.WAITING, params=PARAMS)
        assert typed(storage.get_trial(created.trial_id).params) == typed(PARAMS)
        assert [typed(t.params) for t in storage.get_trials(study_id)] == [typed(PARAMS)] * 2
        claimed = storage.claim_waiting_trial(study_id)
        assert claimed is not None and claimed.trial_id == waiting.trial_id
        assert typed(claimed.params) == typed(PARAMS)

    def test_distributions_round_trip_exactly(self, storage: BaseStorage, study_id: int) -> None:
        created = storage.create_trial(study_id, distributions=DISTRIBUTIONS)
        assert_same_distributions(storage.get_trial(created.trial_id).distributions, DISTRIBUTIONS)
        other = storage.create_trial(study_id)
        storage.finish_trial(other.trial_id, TrialState.COMPLETE, value=1.0, distributions=DISTRIBUTIONS)
        (done,) = storage.get_trials(study_id, states=[TrialState.COMPLETE])
        assert_same_distributions(done.distributions, DISTRIBUTIONS)

    def test_registered_distributions_round_trip_exactly(self, storage: BaseStorage, study_id: int) -> None:
        for name, dist in DISTRIBUTIONS.items():
            storage.register_distribution(study_id, name, dist)
        stored = {name: storage.register_distribution(study_id, name, Bool(0.5)) for name in DISTRIBUTIONS}
        assert_same_distributions(stored, DISTRIBUTIONS)

    def test_parameters_differing_in_case_have_their_own_distributions(
        self, storage: BaseStorage, study_id: int
    ) -> None:
        # On MySQL/MariaDB 'LR' got the distribution registered for 'lr' (a DistributionConflictError).
        assert storage.register_distribution(study_id, "lr", Float(0.0, 1.0)) == Float(0.0, 1.0)
        assert storage.register_distribution(study_id, "LR", Categorical(("x", "y"))) == Categorical(("x", "y"))
        assert storage.get_distributions(study_id) == {"lr": Float(0.0, 1.0), "LR": Categorical(("x", "y"))}

    def test_update_trial_merges_params_distributions_and_attrs(
        self, storage: BaseStorage, study_id: int
    ) -> None:
        trial = storage.create_trial(study_id, params={"a": 1}, distributions={"a": Int(0, 9)},
                                     user_attrs={"u1": 1}, system_attrs={"s1": 1})
        storage.update_trial(trial.trial_id, params={"b": "x"}, distributions={"b": Categorical(["x"])})
        storage.update_trial(trial.trial_id, params={"a": 2}, user_attrs={"u2": [2]})
        storage.update_trial(trial.trial_id, system_attrs={"s1": "new"})
        got = storage.get_trial(trial.trial_id)
        assert typed(got.params) == typed({"a": 2, "b": "x"})
        assert got.distributions == {"a": Int(0, 9), "b": Categorical(["x"])}
        assert got.user_attrs == {"u1": 1, "u2": [2]}
        assert got.system_attrs == {"s1": "new"}
        assert got.state == TrialState.RUNNING

    def test_finish_trial_writes_state_value_and_end_time(self, storage: BaseStorage, study_id: int) -> None:
        trial = storage.create_trial(study_id)
        before = time.time()
        storage.finish_trial(trial.trial_id, TrialState.COMPLETE, value=0.125)
        got = storage.get_trial(trial.trial_id)
        assert (got.state, got.value, got.error) == (TrialState.COMPLETE, 0.125, None)
        assert is_utc(got.datetime_complete) and near_now(got.datetime_complete, before, time.time())
        assert got.duration is not None and got.duration >= 0

    def test_finish_trial_writes_every_objectives_value(self, storage: BaseStorage, study_id: int) -> None:
        several = storage.create_trial(study_id)
        one = storage.create_trial(study_id)
        storage.finish_trial(several.trial_id, TrialState.COMPLETE, values=[0.1, -2.5, 1e300],
                             system_attrs={"constraints": {"mem": {"value": 9.0, "lower": None, "upper": 8.0}}})
        storage.finish_trial(one.trial_id, TrialState.COMPLETE, value=0.25)
        got = storage.get_trial(several.trial_id)
        assert (got.state, got.value, got.values) == (TrialState.COMPLETE, 0.1, (0.1, -2.5, 1e300))
        assert got.constraints["mem"].upper == 8.0 and not got.feasible and got.violation == 1.0
        assert [t.values for t in storage.get_trials(study_id)] == [(0.1, -2.5, 1e300), (0.25,)]
        assert storage.get_trial(one.trial_id).feasible

    def test_finish_trial_stores_negative_zero_as_zero_on_every_storage(
        self, storage: BaseStorage, study_id: int
    ) -> None:
        # SQLite read a value of -0.0 back as 0.0 (its REAL keeps no sign of zero) but kept -0.0 in the values
        # (JSON): a trial of two objectives read value 0.0 and values (-0.0, ...); the memory storage kept -0.0
        one, several = storage.create_trial(study_id), storage.create_trial(study_id)
        storage.finish_trial(one.trial_id, TrialState.COMPLETE, value=-0.0)
        storage.finish_trial(several.trial_id, TrialState.COMPLETE, values=[-0.0, 1.0])
        got = [storage.get_trial(one.trial_id), storage.get_trial(several.trial_id)]
        assert [(repr(t.value), [repr(v) for v in t.values or ()]) for t in got] == [
            ("0.0", ["0.0"]), ("0.0", ["0.0", "1.0"])]
        assert [repr(v.value) for v in storage.get_trial_values(study_id)] == ["0.0", "0.0"]

    def test_restore_times_sets_a_finished_trial_s_start_and_end(self, storage: BaseStorage, study_id: int) -> None:
        trial = storage.create_trial(study_id)
        storage.finish_trial(trial.trial_id, TrialState.COMPLETE, value=1.0)
        start = datetime(2026, 1, 2, 3, 4, 5, 250000, tzinfo=timezone.utc)
        end = datetime(2026, 1, 2, 5, 6, 7, 500000, tzinfo=timezone.utc)
        if not storage.restore_times(trial.trial_id, start, end):
            return  # a storage that cannot keep them says so: the copy keeps its own times
        got = storage.get_trial(trial.trial_id)
        assert (got.datetime_start, got.datetime_complete) == (start, end) and got.value == 1.0
        running = storage.create_trial(study_id)
        with pytest.raises(TrialStateError):
            storage.restore_times(running.trial_id, start, end)
        assert storage.get_trial(running.trial_id).datetime_complete is None

    def test_finish_trial_refuses_non_finite_objective_values(self, storage: BaseStorage, study_id: int) -> None:
        trial = storage.create_trial(study_id)
        for bad in ([0.1, math.nan], [math.inf, 1.0], []):
            with pytest.raises(StorageError):
                storage.finish_trial(trial.trial_id, TrialState.COMPLETE, values=bad)
        assert storage.get_trial(trial.trial_id).state == TrialState.RUNNING

    def test_discard_trial_deletes_only_a_running_trial_that_recorded_nothing(
        self, storage: BaseStorage, study_id: int
    ) -> None:
        kept = storage.create_trial(study_id)
        empty = storage.create_trial(study_id, heartbeat=True)
        with_params = storage.create_trial(study_id, params={"a": 1}, distributions={"a": Int(0, 9)})
        reported = storage.create_trial(study_id)
        storage.report(reported.trial_id, 0, {"loss": 1.0})
        finished = storage.create_trial(study_id)
        storage.finish_trial(finished.trial_id, TrialState.FAIL, error="x")
        assert storage.discard_trial(empty.trial_id) is True
        assert [storage.discard_trial(t.trial_id) for t in (with_params, reported, finished)] == [False] * 3
        assert storage.discard_trial(empty.trial_id) is False  # already gone
        assert [t.number for t in storage.get_trials(study_id)] == [0, 2, 3, 4]
        assert storage.count_trials(study_id) == 4
        assert storage.create_trial(study_id).number == 5  # numbers are never reused
        assert storage.fail_stale_trials(study_id, 0.0) == []  # its heartbeat went with it
        with pytest.raises(TrialNotFoundError):
            storage.get_trial(empty.trial_id)
        assert storage.get_trial(kept.trial_id).state == TrialState.RUNNING

    def test_finish_trial_writes_the_error_of_a_failed_trial(
        self, storage: BaseStorage, study_id: int
    ) -> None:
        trial = storage.create_trial(study_id)
        storage.finish_trial(trial.trial_id, TrialState.FAIL, error="ValueError: boom\n  line 2")
        got = storage.get_trial(trial.trial_id)
        assert (got.state, got.value, got.error) == (TrialState.FAIL, None, "ValueError: boom\n  line 2")
        assert got.datetime_complete is not None

    def test_finish_trial_merges_last_params_and_attrs(self, storage: BaseStorage, study_id: int) -> None:
        trial = storage.create_trial(study_id, params={"a": 1}, distributions={"a": Int(0, 9)},
                                     user_attrs={"u": 1}, system_attrs={"s": 1})
        storage.update_trial(trial.trial_id, params={"b": 2.5}, distributions={"b": Float(0.0, 5.0)})
        storage.finish_trial(trial.trial_id, TrialState.PRUNED, value=0.5, params={"c": True},
                             distributions={"c": Bool()}, user_attrs={"u": 2}, system_attrs={"t": [1]})
        got = storage.get_trial(trial.trial_id)
        assert (got.state, got.value) == (TrialState.PRUNED, 0.5)
        assert typed(got.params) == typed({"a": 1, "b": 2.5, "c": True})
        assert got.distributions == {"a": Int(0, 9), "b": Float(0.0, 5.0), "c": Bool()}
        assert (got.user_attrs, got.system_attrs) == ({"u": 2}, {"s": 1, "t": [1]})

    @pytest.mark.parametrize("state", FINISHED)
    def test_finishing_twice_raises_trial_state_error(
        self, storage: BaseStorage, study_id: int, state: TrialState
    ) -> None:
        first = finished_trial(storage, study_id, state, 1.0)
        for again in FINISHED:
            with pytest.raises(TrialStateError):
                storage.finish_trial(first.trial_id, again, value=2.0, error="again")
        assert storage.get_trial(first.trial_id) == first

    @pytest.mark.parametrize("state", FINISHED)
    def test_rejected_finish_writes_none_of_its_params_or_attrs(
        self, storage: BaseStorage, study_id: int, state: TrialState
    ) -> None:
        first = finished_trial(storage, study_id, state, 1.0)
        with pytest.raises(TrialStateError):
            storage.finish_trial(first.trial_id, TrialState.COMPLETE, value=2.0, params={"late": 1},
                                 distributions={"late": Int(0, 1)}, user_attrs={"late": 1},
                                 system_attrs={"late": 1})
        assert storage.get_trial(first.trial_id) == first

    @pytest.mark.parametrize("state", FINISHED)
    def test_finished_trial_cannot_be_updated(
        self, storage: BaseStorage, study_id: int, state: TrialState
    ) -> None:
        first = finished_trial(storage, study_id, state, 1.0)
        with pytest.raises(TrialStateError):
            storage.update_trial(first.trial_id, params={"late": 1})
        with pytest.raises(TrialStateError):
            storage.update_trial(first.trial_id, user_attrs={"late": 1})
        assert storage.get_trial(first.trial_id) == first

    @pytest.mark.parametrize("state", [*FINISHED, TrialState.RUNNING, TrialState.WAITING])
    def test_annotate_trial_merges_user_attrs_in_any_state_and_nothing_else(
        self, storage: BaseStorage, study_id: int, state: TrialState
    ) -> None:
        if state.is_finished:
            trial = storage.create_trial(study_id, user_attrs={"keep": 1})
            storage.finish_trial(trial.trial_id, state, value=1.0 if state == TrialState.COMPLETE else None)
        else:
            trial = storage.create_trial(study_id, state, user_attrs={"keep": 1})
        before = storage.get_trial(trial.trial_id)
        storage.annotate_trial(trial.trial_id, {"note": "lr too high 'here'", "keep": 1})
        storage.annotate_trial(trial.trial_id, {"note": "second thought"})
        after = storage.get_trial(trial.trial_id)
        assert dict(after.user_attrs) == {"keep": 1, "note": "second thought"}
        assert after == FrozenTrial(**{**before.__dict__, "user_attrs": after.user_attrs})

    def test_annotate_unknown_trial_raises_trial_not_found_error(self, storage: BaseStorage, study_id: int) -> None:
        with pytest.raises(TrialNotFoundError):
            storage.annotate_trial(UNKNOWN_TRIAL_ID, {"note": "x"})

    def test_another_writer_can_update_a_running_trials_system_attrs(
        self, storage: BaseStorage, study_id: int
    ) -> None:
        # A stop request from the dashboard: merged with what the trial itself writes later.
        trial = storage.create_trial(study_id, system_attrs={"planned": {"a": 1}})
        storage.update_trial(trial.trial_id, system_attrs={"stop_requested": {"at": "now"}})
        storage.finish_trial(trial.trial_id, TrialState.PRUNED, system_attrs={"pruned": {"rule": "r"}})
        assert dict(storage.get_trial(trial.trial_id).system_attrs) == {
            "planned": {"a": 1}, "stop_requested": {"at": "now"}, "pruned": {"rule": "r"}}

    def test_one_system_attr_is_read_alone(self, storage: BaseStorage, study_id: int) -> None:
        trial = storage.create_trial(study_id, system_attrs={"planned": {"a": [1, 2]}})
        assert storage.get_trial_system_attr(trial.trial_id, "planned") == {"a": [1, 2]}
        assert storage.get_trial_system_attr(trial.trial_id, "stop_requested") is None
        storage.update_trial(trial.trial_id, system_attrs={"stop_requested": {"at": "now"}})
        found = storage.get_trial_system_attr(trial.trial_id, "stop_requested")
        assert found == {"at": "now"}
        found["at"] = "changed"  # a copy: the stored value stays
        assert storage.get_trial_system_attr(trial.trial_id, "stop_requested") == {"at": "now"}
        with pytest.raises(TrialNotFoundError):
            storage.get_trial_system_attr(trial.trial_id + 10_000, "planned")

    def test_several_system_attrs_are_read_together(self, storage: BaseStorage, study_id: int) -> None:
        trial = storage.create_trial(study_id, system_attrs={"planned": {"a": [1, 2]}})
        storage.update_trial(trial.trial_id, system_attrs={"live_requests": [{"lr": 0.1}]})
        found = storage.get_trial_system_attrs(trial.trial_id, ["planned", "stop_requested", "live_requests"])
        assert found == {"planned": {"a": [1, 2]}, "stop_requested": None, "live_requests": [{"lr": 0.1}]}
        found["live_requests"].append({"lr": 0.2})  # a copy: the stored value stays
        assert storage.get_trial_system_attrs(trial.trial_id, ["live_requests"]) == {"live_requests": [{"lr": 0.1}]}
        with pytest.raises(TrialNotFoundError):
            storage.get_trial_system_attrs(trial.trial_id + 10_000, ["planned"])

    @pytest.mark.parametrize("state", FINISHED)
    def test_finished_trial_cannot_report(
        self, storage: BaseStorage, study_id: int, state: TrialState
    ) -> None:
        trial = storage.create_trial(study_id)
        storage.report(trial.trial_id, 0, {"loss": 1.0})
        storage.finish_trial(trial.trial_id, state, value=1.0)
        with pytest.raises(TrialStateError):
            storage.report(trial.trial_id, 1, {"loss": 0.5})
        with pytest.raises(TrialStateError):
            storage.report(trial.trial_id, 0, {"loss": 0.5})
        assert storage.get_curves(trial.trial_id) == {"loss": ([0], [1.0])}

    def test_waiting_trial_cannot_be_finished(self, storage: BaseStorage, study_id: int) -> None:
        trial = storage.create_trial(study_id, state=TrialState.WAITING)
        with pytest.raises(TrialStateError):
            storage.finish_trial(trial.trial_id, TrialState.COMPLETE, value=1.0)
        assert storage.get_trial(trial.trial_id).state == TrialState.WAITING

    @pytest.mark.parametrize("operation", ["update_trial", "finish_trial", "report", "get_trial"])
    def test_unknown_trial_raises_trial_not_found_error(
        self, storage: BaseStorage, study_id: int, operation: str
    ) -> None:
        storage.create_trial(study_id)
        calls: dict[str, Callable[[], object]] = {
            "update_trial": lambda: storage.update_trial(UNKNOWN_TRIAL_ID, params={"a": 1}),
            "finish_trial": lambda: storage.finish_trial(UNKNOWN_TRIAL_ID, TrialState.COMPLETE, value=1.0),
            "report": lambda: storage.report(UNKNOWN_TRIAL_ID, 0, {"loss": 1.0}),
            "get_trial": lambda: storage.get_trial(UNKNOWN_TRIAL_ID),
        }
        with pytest.raises(TrialNotFoundError):
            calls[operation]()

    def test_returned_trial_is_a_snapshot(self, storage: BaseStorage, study_id: int) -> None:
        created = storage.create_trial(study_id, params={"a": 1}, user_attrs={"history": [1]})
        created.user_attrs["history"].append(2)
        read = storage.get_trial(created.trial_id)
        read.user_attrs["history"].append(3)
        read.params["a"] = 99  # type: ignore[index]  # a caller breaking the rules must not reach the store
        got = storage.get_trial(created.trial_id)
        assert (got.params, got.user_attrs) == ({"a": 1}, {"history": [1]})

    # -- curves ----------------------------------------------------------------------------
    def test_report_stores_several_metrics_per_step(self, storage: BaseStorage, study_id: int) -> None:
        trial = storage.create_trial(study_id)
        storage.report(trial.trial_id, 0, {"train_loss": 0.9, "val_loss": 1.0, "val_acc": 0.5})
        storage.report(trial.trial_id, 1, {"train_loss": 0.7, "val_loss": 0.8, "val_acc": 0.6})
        assert storage.get_curves(trial.trial_id) == {
            "train_loss": ([0, 1], [0.9, 0.7]),
            "val_loss": ([0, 1], [1.0, 0.8]),
            "val_acc": ([0, 1], [0.5, 0.6]),
        }

    def test_metrics_differing_in_case_are_two_curves(self, storage: BaseStorage, study_id: int) -> None:
        # On MySQL/MariaDB 'Loss' overwrote 'loss' at the same step and get_metric_at('loss') read both.
        trial = storage.create_trial(study_id)
        storage.report(trial.trial_id, 0, {"loss": 1.0, "Loss": 2.0})
        storage.report(trial.trial_id, 1, {"loss": 1.5})
        storage.report(trial.trial_id, 2, {"Loss": 2.5})
        assert storage.get_curves(trial.trial_id) == {"loss": ([0, 1], [1.0, 1.5]), "Loss": ([0, 2], [2.0, 2.5])}
        assert storage.get_metric_at(study_id, "loss") == [MetricPoint(0, TrialState.RUNNING, 0, 1.0),
                                                            MetricPoint(0, TrialState.RUNNING, 1, 1.5)]

    def test_steps_past_32_bits_are_kept(self, storage: BaseStorage, study_id: int) -> None:
        # A step counting samples or tokens seen passes 2**31: PostgreSQL and MariaDB failed the report
        # ("integer out of range") where SQLite kept it.
        trial = storage.create_trial(study_id)
        steps = [2**31 - 1, 2**31, 5_000_000_000, 2**62]
        for i, step in enumerate(steps):
            storage.report(trial.trial_id, step, {"loss": float(i)})
        storage.report_steps(trial.trial_id, [(2**40, {"loss": 9.0})])
        assert storage.get_curves(trial.trial_id) == {"loss": ([*steps[:3], 2**40, 2**62], [0.0, 1.0, 2.0, 9.0, 3.0])}
        assert storage.get_metric_at(study_id, "loss", [2**40]) == [MetricPoint(0, TrialState.RUNNING, 2**40, 9.0)]

    def test_report_last_write_wins_on_the_same_step(self, storage: BaseStorage, study_id: int) -> None:
        trial = storage.create_trial(study_id)
        storage.report(trial.trial_id, 3, {"loss": 1.0, "acc": 0.5})
        storage.report(trial.trial_id, 3, {"loss": 0.75})
        storage.report(trial.trial_id, 3, {"loss": 0.25})
        assert storage.get_curves(trial.trial_id) == {"loss": ([3], [0.25]), "acc": ([3], [0.5])}

    def test_report_steps_stores_every_point_and_a_later_point_wins(self, storage: BaseStorage, study_id: int) -> None:
        trial = storage.create_trial(study_id)
        storage.report(trial.trial_id, 0, {"loss": 9.0})
        storage.report_steps(trial.trial_id, [
            (0, {"loss": 1.0, "acc": 0.5}), (1, {"loss": 0.8}), (1, {"loss": 0.7, "acc": 0.6}), (2, {"acc": 0.7}),
        ])
        storage.report_steps(trial.trial_id, [])
        assert storage.get_curves(trial.trial_id) == {
            "loss": ([0, 1], [1.0, 0.7]), "acc": ([0, 1, 2], [0.5, 0.6, 0.7]),
        }

    def test_report_steps_on_a_finished_trial_raises_and_writes_nothing(
        self, storage: BaseStorage, study_id: int
    ) -> None:
        trial = storage.create_trial(study_id)
        storage.report(trial.trial_id, 0, {"loss": 1.0})
        storage.finish_trial(trial.trial_id, TrialState.COMPLETE, value=1.0)
        with pytest.raises(TrialStateError):
            storage.report_steps(trial.trial_id, [(1, {"loss": 0.5}), (2, {"loss": 0.25})])
        assert storage.get_curves(trial.trial_id) == {"loss": ([0], [1.0])}

    def test_get_curves_returns_steps_ascending(self, storage: BaseStorage, study_id: int) -> None:
        trial = storage.create_trial(study_id)
        for step in (5, 0, 10, 2, 7):
            storage.report(trial.trial_id, step, {"loss": float(step) / 10})
        storage.report(trial.trial_id, 1, {"other": 1})
        curves = storage.get_curves(trial.trial_id)
        assert curves["loss"] == ([0, 2, 5, 7, 10], [0.0, 0.2, 0.5, 0.7, 1.0])
        assert typed({"v": curves["other"][1][0]}) == typed({"v": 1.0})

    def test_get_curves_is_empty_before_any_report(self, storage: BaseStorage, study_id: int) -> None:
        trial = storage.create_trial(study_id)
        assert storage.get_curves(trial.trial_id) == {}

    def test_curves_belong_to_their_trial(self, storage: BaseStorage, study_id: int) -> None:
        a, b = storage.create_trial(study_id), storage.create_trial(study_id)
        storage.report(a.trial_id, 0, {"loss": 1.0})
        storage.report(b.trial_id, 0, {"loss": 2.0})
        storage.report(b.trial_id, 1, {"loss": 3.0})
        assert storage.get_curves(a.trial_id) == {"loss": ([0], [1.0])}
        assert storage.get_curves(b.trial_id) == {"loss": ([0, 1], [2.0, 3.0])}

    def test_report_keeps_non_finite_values(self, storage: BaseStorage, study_id: int) -> None:
        # A diverging network reports loss=nan; Trial.report passes it on as a float.
        trial = storage.create_trial(study_id)
        storage.report(trial.trial_id, 0, {"loss": math.inf, "low": -math.inf})
        storage.report(trial.trial_id, 1, {"loss": math.nan})
        steps, values = storage.get_curves(trial.trial_id)["loss"]
        assert steps == [0, 1]
        assert values[0] == math.inf and math.isnan(values[1])
        assert storage.get_curves(trial.trial_id)["low"] == ([0], [-math.inf])

    def test_report_stores_negative_zero_and_the_largest_floats_alike_on_every_storage(
        self, storage: BaseStorage, study_id: int
    ) -> None:
        # SQLite read -0.0 back as 0.0 (its REAL keeps no sign of zero) and +-DBL_MAX as +-inf (the SQL
        # storages store an infinity as +-DBL_MAX: MySQL has none); the memory storage kept both as given
        biggest = 1.7976931348623157e308
        below = math.nextafter(biggest, 0.0)
        trial = storage.create_trial(study_id)
        reported = {"zero": -0.0, "max": biggest, "min": -biggest, "below": below, "tiny": -5e-324, "inf": math.inf}
        storage.report(trial.trial_id, 0, reported)
        storage.report_steps(trial.trial_id, [(1, reported)])
        expected = {"zero": 0.0, "max": below, "min": -below, "below": below, "tiny": -5e-324, "inf": math.inf}
        curves = storage.get_curves(trial.trial_id)
        for step in (0, 1):  # repr: 0.0 and -0.0 are equal, but not the same value
            assert {k: repr(v[1][step]) for k, v in curves.items()} == {k: repr(v) for k, v in expected.items()}
        for name, value in expected.items():  # a finite value stays finite, one step below DBL_MAX
            assert [repr(p.value) for p in storage.get_metric_at(study_id, name)] == [repr(value)] * 2, name

    # -- one metric across a study (what pruners read) ------------------------------------
    def test_get_metric_at_returns_every_trials_value_at_the_steps(self, storage: BaseStorage, study_id: int) -> None:
        report_pruning_curves(storage, study_id)
        assert storage.get_metric_at(study_id, "loss", [1]) == [
            MetricPoint(0, C, 1, 0.5), MetricPoint(1, P, 1, 1.5), MetricPoint(3, F, 1, 3.0),
        ]
        assert storage.get_metric_at(study_id, "loss", [0, 2]) == [
            p for p in PRUNING_LOSS if p.step in (0, 2)
        ]

    def test_get_metric_at_without_steps_returns_every_step(self, storage: BaseStorage, study_id: int) -> None:
        report_pruning_curves(storage, study_id)
        assert storage.get_metric_at(study_id, "loss") == PRUNING_LOSS
        assert storage.get_metric_at(study_id, "loss", None) == PRUNING_LOSS
        assert storage.get_metric_at(study_id, "val_loss") == [MetricPoint(3, F, 1, 4.0)]
        assert [(p.number, p.step) for p in storage.get_metric_at(study_id, "acc")] == [
            (0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (4, 2), (5, 0), (5, 1), (5, 2),
        ]

    def test_get_metric_at_includes_trials_in_every_state(self, storage: BaseStorage, study_id: int) -> None:
        report_pruning_curves(storage, study_id)
        states = {p.number: p.state for p in storage.get_metric_at(study_id, "acc")}
        assert states == {0: C, 1: P, 4: R, 5: C}
        assert {p.state for p in storage.get_metric_at(study_id, "loss")} == {C, P, F, R}

    def test_get_metric_at_reads_each_trials_state_as_it_is_now(self, storage: BaseStorage, study_id: int) -> None:
        trial = storage.create_trial(study_id)
        storage.report(trial.trial_id, 0, {"loss": 1.0})
        assert storage.get_metric_at(study_id, "loss") == [MetricPoint(0, R, 0, 1.0)]
        storage.finish_trial(trial.trial_id, TrialState.PRUNED)
        assert storage.get_metric_at(study_id, "loss") == [MetricPoint(0, P, 0, 1.0)]

    def test_get_metric_at_orders_by_number_then_step_whatever_order_the_steps_come_in(
        self, storage: BaseStorage, study_id: int
    ) -> None:
        report_pruning_curves(storage, study_id)
        assert storage.get_metric_at(study_id, "loss", [2, 0, 1]) == PRUNING_LOSS
        assert storage.get_metric_at(study_id, "loss", (2, 1, 2, 0, 1)) == PRUNING_LOSS  # each point once
        trial = storage.create_trial(study_id)  # number 6
        for step in (30, 10, 20, 0):
            storage.report(trial.trial_id, step, {"loss": float(step)})
        assert [(p.number, p.step) for p in storage.get_metric_at(study_id, "loss", [30, 0, 20, 2])] == [
            (0, 0), (0, 2), (1, 0), (4, 0), (4, 2), (6, 0), (6, 20), (6, 30),
        ]

    def test_get_metric_at_a_step_nobody_reported_is_empty(self, storage: BaseStorage, study_id: int) -> None:
        report_pruning_curves(storage, study_id)
        assert storage.get_metric_at(study_id, "loss", [3]) == []
        assert storage.get_metric_at(study_id, "loss", [3, 1, 99]) == storage.get_metric_at(study_id, "loss", [1])
        assert storage.get_metric_at(study_id, "val_loss", [0]) == []

    def test_get_metric_at_an_empty_step_list_is_empty(self, storage: BaseStorage, study_id: int) -> None:
        report_pruning_curves(storage, study_id)
        assert storage.get_metric_at(study_id, "loss", []) == []
        assert storage.get_metric_at(study_id, "loss", ()) == []

    def test_get_metric_at_matches_the_metric_name_exactly(self, storage: BaseStorage, study_id: int) -> None:
        report_pruning_curves(storage, study_id)
        assert storage.get_metric_at(study_id, "loss_2") == [MetricPoint(1, P, 1, 9.0)]
        for name in ("nobody reported this", "los", "los_", "loss%", "%", "_", "*", ""):
            assert storage.get_metric_at(study_id, name) == [], name
            assert storage.get_metric_at(study_id, name, [0, 1, 2]) == [], name

    def test_get_metric_at_of_a_study_without_values_is_empty(self, storage: BaseStorage, study_id: int) -> None:
        assert storage.get_metric_at(study_id, "loss") == []
        storage.create_trial(study_id)
        storage.create_trial(study_id, state=TrialState.WAITING)
        assert storage.get_metric_at(study_id, "loss") == []
        assert storage.get_metric_at(study_id, "loss", [0]) == []

    def test_get_metric_at_keeps_nan_and_inf(self, storage: BaseStorage, study_id: int) -> None:
        trial = storage.create_trial(study_id)
        storage.report(trial.trial_id, 0, {"loss": math.inf})
        storage.report(trial.trial_id, 1, {"loss": -math.inf})
        storage.report(trial.trial_id, 2, {"loss": math.nan})
        storage.finish_trial(trial.trial_id, TrialState.PRUNED)
        finite = storage.create_trial(study_id)
        storage.report(finite.trial_id, 2, {"loss": 5e-324})
        storage.report(finite.trial_id, 3, {"loss": -1.0e308})
        points = storage.get_metric_at(study_id, "loss")
        assert [(p.number, p.state, p.step) for p in points] == [(0, P, 0), (0, P, 1), (0, P, 2), (1, R, 2), (1, R, 3)]
        values = [p.value for p in points]
        assert values[:2] == [math.inf, -math.inf] and math.isnan(values[2])
        assert values[3:] == [5e-324, -1.0e308]
        nan, tiny = storage.get_metric_at(study_id, "loss", [2])
        assert (nan.number, tiny.number) == (0, 1)
        assert math.isnan(nan.value) and tiny.value == 5e-324
        assert [p.value for p in storage.get_metric_at(study_id, "loss", [0, 1])] == [math.inf, -math.inf]

    def test_get_metric_at_decodes_values_as_get_curves_does(self, storage: BaseStorage, study_id: int) -> None:
        trial = storage.create_trial(study_id)
        reported = [math.inf, -math.inf, math.nan, 0.0, -0.0, 5e-324, 1.7976931348623157e308, -1.7976931348623157e308]
        for step, value in enumerate(reported):  # DBL_MAX itself is kept one step below (see stored_metric)
            storage.report(trial.trial_id, step, {"loss": value})
        steps, curve = storage.get_curves(trial.trial_id)["loss"]
        points = storage.get_metric_at(study_id, "loss")
        assert [p.step for p in points] == steps
        assert [repr(p.value) for p in points] == [repr(v) for v in curve]
    def test_get_metric_at_never_sees_other_studies(self, storage: BaseStorage) -> None:
        a = storage.create_study("a", "minimize", seed=0).study_id
        b = storage.create_study("b", "minimize", seed=0).study_id
        empty = storage.create_study("empty", "minimize", seed=0).study_id
        for sid, base in ((a, 10.0), (b, 20.0), (a, 30.0), (b, 40.0)):  # numbers 0, 0, 1, 1
            trial = storage.create_trial(sid)
            storage.report(trial.trial_id, 0, {"loss": base})
            storage.report(trial.trial_id, 1, {"loss": base + 1})
        assert storage.get_metric_at(a, "loss") == [
            MetricPoint(0, R, 0, 10.0), MetricPoint(0, R, 1, 11.0),
            MetricPoint(1, R, 0, 30.0), MetricPoint(1, R, 1, 31.0),
        ]
        assert storage.get_metric_at(b, "loss", [1]) == [MetricPoint(0, R, 1, 21.0), MetricPoint(1, R, 1, 41.0)]
        assert storage.get_metric_at(empty, "loss") == []
        assert storage.get_metric_at(empty, "loss", [0, 1]) == []
        storage.delete_study(b)
        assert [p.value for p in storage.get_metric_at(a, "loss")] == [10.0, 11.0, 30.0, 31.0]

    def test_get_metric_at_shows_the_latest_value_of_a_step_reported_again(
        self, storage: BaseStorage, study_id: int
    ) -> None:
        first, second = storage.create_trial(study_id), storage.create_trial(study_id)
        storage.report(first.trial_id, 3, {"loss": 1.0, "acc": 0.5})
        storage.report(second.trial_id, 3, {"loss": 7.0})
        storage.report(first.trial_id, 3, {"loss": 0.75})
        storage.report(first.trial_id, 3, {"acc": 0.25})  # another metric at the step: loss stays
        storage.report(first.trial_id, 3, {"loss": 0.5})
        storage.report(second.trial_id, 3, {"loss": math.nan})
        storage.report(second.trial_id, 3, {"loss": 6.0})  # NaN replaced again
        expected = [MetricPoint(0, R, 3, 0.5), MetricPoint(1, R, 3, 6.0)]
        assert storage.get_metric_at(study_id, "loss") == expected
        assert storage.get_metric_at(study_id, "loss", [3]) == expected
        assert storage.get_metric_at(study_id, "acc", [3]) == [MetricPoint(0, R, 3, 0.25)]

    def test_get_metric_at_returns_metric_points_of_plain_types(self, storage: BaseStorage, study_id: int) -> None:
        trial = storage.create_trial(study_id)
        storage.report(trial.trial_id, 2, {"loss": 1})  # an int reported: a float read back
        storage.finish_trial(trial.trial_id, TrialState.COMPLETE, value=1.0)
        for points in (storage.get_metric_at(study_id, "loss"), storage.get_metric_at(study_id, "loss", [2])):
            (point,) = points
            assert isinstance(point, MetricPoint)
            assert point == MetricPoint(number=0, state=TrialState.COMPLETE, step=2, value=1.0)
            assert typed(point._asdict()) == typed({"number": 0, "state": TrialState.COMPLETE, "step": 2, "value": 1.0})

    @pytest.mark.parametrize("steps", [None, [0], []], ids=["all-steps", "steps", "no-steps"])
    def test_get_metric_at_of_an_unknown_study_raises_study_not_found(
        self, storage: BaseStorage, steps: list[int] | None
    ) -> None:
        gone = storage.create_study("gone", "minimize", seed=0).study_id
        trial = storage.create_trial(gone)
        storage.report(trial.trial_id, 0, {"loss": 1.0})
        storage.delete_study(gone)
        for study_id in (gone, 987654):
            with pytest.raises(StudyNotFoundError):
                storage.get_metric_at(study_id, "loss", steps)

    # -- WAITING trials --------------------------------------------------------------------
    def test_waiting_trials_are_claimed_in_number_order(self, storage: BaseStorage, study_id: int) -> None:
        for n in range(4):
            storage.create_trial(study_id, state=TrialState.WAITING, params={"n": n})
            storage.create_trial(study_id)  # RUNNING trials in between are never claimed
        claimed = [storage.claim_waiting_trial(study_id) for _ in range(4)]
        assert [t.number if t else None for t in claimed] == [0, 2, 4, 6]
        assert [t.params if t else None for t in claimed] == [{"n": 0}, {"n": 1}, {"n": 2}, {"n": 3}]

    def test_each_waiting_trial_is_claimed_once(self, storage: BaseStorage, study_id: int) -> None:
        for _ in range(3):
            storage.create_trial(study_id, state=TrialState.WAITING)
        claimed = [storage.claim_waiting_trial(study_id) for _ in range(3)]
        assert sorted(t.number for t in claimed if t) == [0, 1, 2]
        assert storage.claim_waiting_trial(study_id) is None
        assert storage.claim_waiting_trial(study_id) is None
        assert storage.count_trials(study_id, [TrialState.RUNNING]) == 3

    def test_claim_returns_none_when_nothing_waits(self, storage: BaseStorage, study_id: int) -> None:
        assert storage.claim_waiting_trial(study_id) is None
        storage.create_trial(study_id)
        assert storage.claim_waiting_trial(study_id) is None

    def test_claimed_trial_is_running_with_a_start_time(self, storage: BaseStorage, study_id: int) -> None:
        storage.create_trial(study_id, state=TrialState.WAITING, params={"x": 0.5},
                             distributions={"x": Float(0.0, 1.0)}, user_attrs={"u": 1}, system_attrs={"s": 1})
        before = time.time()
        claimed = storage.claim_waiting_trial(study_id)
        assert claimed is not None
        got = storage.get_trial(claimed.trial_id)
        for t in (claimed, got):
            assert (t.number, t.state, t.params, t.distributions) == (
                0, TrialState.RUNNING, {"x": 0.5}, {"x": Float(0.0, 1.0)},
            )
            assert (t.user_attrs, t.system_attrs) == ({"u": 1}, {"s": 1})
            assert is_utc(t.datetime_start) and near_now(t.datetime_start, before, time.time())
        storage.finish_trial(claimed.trial_id, TrialState.COMPLETE, value=1.0)
        assert storage.get_trial(claimed.trial_id).state == TrialState.COMPLETE

    def test_claim_takes_only_its_own_studys_trials(self, storage: BaseStorage) -> None:
        a = storage.create_study("a", "minimize", seed=0).study_id
        b = storage.create_study("b", "minimize", seed=0).study_id
        waiting_b = storage.create_trial(b, state=TrialState.WAITING)
        assert storage.claim_waiting_trial(a) is None
        claimed = storage.claim_waiting_trial(b)
        assert claimed is not None and claimed.trial_id == waiting_b.trial_id

    def test_start_trial_claims_the_lowest_waiting_trial_first(
        self, storage: BaseStorage, study_id: int
    ) -> None:
        storage.create_trial(study_id)
        storage.create_trial(study_id, state=TrialState.WAITING, params={"n": 1})
        storage.create_trial(study_id, state=TrialState.WAITING, params={"n": 2})
        first, second = storage.start_trial(study_id), storage.start_trial(study_id)
        assert [(t.number, t.state, t.params) for t in (first, second)] == [
            (1, TrialState.RUNNING, {"n": 1}), (2, TrialState.RUNNING, {"n": 2}),
        ]
        assert storage.get_trial(first.trial_id).state == TrialState.RUNNING
        assert storage.count_trials(study_id, [TrialState.WAITING]) == 0

    def test_start_trial_creates_a_new_trial_when_none_waits(
        self, storage: BaseStorage, study_id: int
    ) -> None:
        storage.create_trial(study_id)
        before = time.time()
        started = storage.start_trial(study_id)
        got = storage.get_trial(started.trial_id)
        for t in (started, got):
            assert (t.number, t.state, t.params, t.value) == (1, TrialState.RUNNING, {}, None)
            assert is_utc(t.datetime_start) and near_now(t.datetime_start, before, time.time())
        assert storage.count_trials(study_id) == 2

    # -- queries ---------------------------------------------------------------------------
    def _mixed_study(self, storage: BaseStorage, study_id: int) -> list[TrialState]:
        states = [
            TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING,
            TrialState.PRUNED, TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING,
        ]
        for i, state in enumerate(states):
            if state in (TrialState.RUNNING, TrialState.WAITING):
                storage.create_trial(study_id, state=state)
            else:
                finished_trial(storage, study_id, state, float(i))
        return states

    def test_get_trials_returns_all_in_number_order(self, storage: BaseStorage, study_id: int) -> None:
        states = self._mixed_study(storage, study_id)
        trials = storage.get_trials(study_id)
        assert numbers(trials) == list(range(len(states)))
        assert [t.state for t in trials] == states

    def test_get_trials_filters_by_states(self, storage: BaseStorage, study_id: int) -> None:
        self._mixed_study(storage, study_id)
        assert numbers(storage.get_trials(study_id, states=[TrialState.COMPLETE])) == [0, 5]
        unfinished = {TrialState.RUNNING, TrialState.WAITING}
        assert numbers(storage.get_trials(study_id, states=unfinished)) == [2, 3, 6, 7]
        assert numbers(storage.get_trials(study_id, states=(s for s in FINISHED))) == [0, 1, 4, 5]
        assert storage.get_trials(study_id, states=[]) == []

    def test_get_trials_filters_by_min_number(self, storage: BaseStorage, study_id: int) -> None:
        self._mixed_study(storage, study_id)
        assert numbers(storage.get_trials(study_id, min_number=0)) == list(range(8))
        assert numbers(storage.get_trials(study_id, min_number=5)) == [5, 6, 7]
        assert storage.get_trials(study_id, min_number=8) == []

    def test_get_trials_filters_by_max_number(self, storage: BaseStorage, study_id: int) -> None:
        self._mixed_study(storage, study_id)
        assert numbers(storage.get_trials(study_id, max_number=2)) == [0, 1, 2]
        assert numbers(storage.get_trials(study_id, min_number=4, max_number=4)) == [4]  # one trial by number
        assert numbers(storage.get_trials(study_id, min_number=6, max_number=100)) == [6, 7]
        assert storage.get_trials(study_id, min_number=5, max_number=4) == []
        assert storage.get_trials(study_id, max_number=-1) == []

    def test_get_trials_combines_states_and_min_number(self, storage: BaseStorage, study_id: int) -> None:
        self._mixed_study(storage, study_id)
        wanted = [TrialState.WAITING, TrialState.COMPLETE]
        assert numbers(storage.get_trials(study_id, wanted, min_number=3)) == [3, 5, 6]

    def test_append_trial_event_appends_in_order_and_returns_the_index(
        self, storage: BaseStorage, study_id: int
    ) -> None:
        trial = storage.create_trial(study_id, system_attrs={"planned": {"a": 1}})
        assert storage.append_trial_event(trial.trial_id, "changes", {"lr": 0.1, "note": "x'; --"}) == 0
        assert storage.append_trial_event(trial.trial_id, "changes", {"lr": 0.2}) == 1
        assert storage.append_trial_event(trial.trial_id, "other", {"n": 1}) == 0
        storage.update_trial(trial.trial_id, system_attrs={"pruned": {"rule": "r"}})  # merged, not replaced
        attrs = storage.get_trial(trial.trial_id).system_attrs
        assert attrs["changes"] == [{"lr": 0.1, "note": "x'; --"}, {"lr": 0.2}]
        assert attrs["other"] == [{"n": 1}] and attrs["planned"] == {"a": 1}

    def test_append_trial_event_with_a_known_id_is_not_appended_twice(
        self, storage: BaseStorage, study_id: int
    ) -> None:
        trial = storage.create_trial(study_id)
        assert storage.append_trial_event(trial.trial_id, "changes", {"id": "a", "lr": 0.1}) == 0
        assert storage.append_trial_event(trial.trial_id, "changes", {"id": "b", "lr": 0.2}) == 1
        assert storage.append_trial_event(trial.trial_id, "changes", {"id": "a", "lr": 0.1}) == 0  # a retry
        assert len(storage.get_trial(trial.trial_id).system_attrs["changes"]) == 2

    @pytest.mark.parametrize("state", [*FINISHED, TrialState.WAITING])
    def test_append_trial_event_needs_a_running_trial(
        self, storage: BaseStorage, study_id: int, state: TrialState
    ) -> None:
        if state == TrialState.WAITING:
            trial = storage.create_trial(study_id, TrialState.WAITING)
        else:
            trial = finished_trial(storage, study_id, state, 1.0)
        with pytest.raises(TrialStateError):
            storage.append_trial_event(trial.trial_id, "changes", {"lr": 0.1})
        assert "changes" not in storage.get_trial(trial.trial_id).system_attrs

    def test_append_trial_event_refuses_unknown_trials_non_lists_and_non_json(
        self, storage: BaseStorage, study_id: int
    ) -> None:
        with pytest.raises(TrialNotFoundError):
            storage.append_trial_event(UNKNOWN_TRIAL_ID, "changes", {"lr": 0.1})
        trial = storage.create_trial(study_id, system_attrs={"changes": {"not": "a list"}})
        with pytest.raises(StorageError, match="not a list"):
            storage.append_trial_event(trial.trial_id, "changes", {"lr": 0.1})
        with pytest.raises(StorageError):
            storage.append_trial_event(trial.trial_id, "events", {"x": object()})
        assert storage.get_trial(trial.trial_id).system_attrs == {"changes": {"not": "a list"}}

    def test_threads_appending_events_lose_none(self, storage: BaseStorage, study_id: int) -> None:
        trial = storage.create_trial(study_id)
        n_each = 25
        got = run_threads(lambda w: [storage.append_trial_event(trial.trial_id, "changes", {"worker": w, "i": i})
                                     for i in range(n_each)], 4)
        assert_each_exactly_once(got, range(4 * n_each))
        events = storage.get_trial(trial.trial_id).system_attrs["changes"]
        for w, indices in got.items():  # each thread's events at the indices it was told, in its own order
            assert [events[i] for i in indices] == [{"worker": w, "i": i} for i in range(n_each)]

    def test_get_trial_values_reads_number_state_and_value(self, storage: BaseStorage, study_id: int) -> None:
        states = self._mixed_study(storage, study_id)
        values = storage.get_trial_values(study_id)
        trials = storage.get_trials(study_id)
        assert [(v.number, v.state, v.value) for v in values] == [(t.number, t.state, t.value) for t in trials]
        assert [v.state for v in values] == states
        assert any(v.value is not None for v in values)
        assert [v.number for v in storage.get_trial_values(study_id, min_number=5)] == [5, 6, 7]
        assert storage.get_trial_values(study_id, min_number=8) == []
        assert all(type(v.number) is int and isinstance(v.state, TrialState) for v in values)

    def test_get_trial_values_of_an_unknown_study_raises_study_not_found(self, storage: BaseStorage) -> None:
        study_id = storage.create_study("empty", "minimize", 0).study_id
        assert storage.get_trial_values(study_id) == []
        with pytest.raises(StudyNotFoundError):
            storage.get_trial_values(study_id + 1000)

    def test_count_trials(self, storage: BaseStorage, study_id: int) -> None:
        assert storage.count_trials(study_id) == 0
        self._mixed_study(storage, study_id)
        assert storage.count_trials(study_id) == 8
        assert storage.count_trials(study_id, [TrialState.COMPLETE]) == 2
        assert storage.count_trials(study_id, [TrialState.RUNNING, TrialState.FAIL]) == 3
        assert storage.count_trials(study_id, []) == 0

    @pytest.mark.parametrize(("direction", "best_number"), [("minimize", 2), ("maximize", 1)])
    def test_get_best_trial_follows_the_direction(
        self, storage: BaseStorage, direction: str, best_number: int
    ) -> None:
        sid = storage.create_study("s", direction, seed=0).study_id
        for value in (0.5, 10.0, -3.0, 2.0):
            finished_trial(storage, sid, TrialState.COMPLETE, value)
        best = storage.get_best_trial(sid, direction)
        assert best is not None and best.number == best_number and best.state == TrialState.COMPLETE

    @pytest.mark.parametrize("direction", ["minimize", "maximize"])
    def test_get_best_trial_ignores_fail_pruned_and_unfinished(
        self, storage: BaseStorage, direction: str
    ) -> None:
        sid = storage.create_study("s", direction, seed=0).study_id
        finished_trial(storage, sid, TrialState.PRUNED, -1e9)
        finished_trial(storage, sid, TrialState.PRUNED, 1e9)
        finished_trial(storage, sid, TrialState.FAIL, -1e9)
        finished_trial(storage, sid, TrialState.FAIL, 1e9)
        storage.create_trial(sid)
        storage.create_trial(sid, state=TrialState.WAITING)
        assert storage.get_best_trial(sid, direction) is None
        finished_trial(storage, sid, TrialState.COMPLETE, 1.0)
        best = storage.get_best_trial(sid, direction)
        assert best is not None and (best.number, best.value) == (6, 1.0)

    @pytest.mark.parametrize("direction", ["minimize", "maximize"])
    def test_get_best_trial_breaks_ties_by_lower_number(self, storage: BaseStorage, direction: str) -> None:
        sid = storage.create_study("s", direction, seed=0).study_id
        worse = -1.0 if direction == "maximize" else 9.0
        trials = [storage.create_trial(sid) for _ in range(4)]
        for trial, value in reversed(list(zip(trials, (worse, 4.0, 4.0, 4.0), strict=True))):
            storage.finish_trial(trial.trial_id, TrialState.COMPLETE, value=value)  # highest number first
        best = storage.get_best_trial(sid, direction)
        assert best is not None and (best.number, best.value) == (1, 4.0)

    def test_get_best_trial_is_none_without_trials(self, storage: BaseStorage, study_id: int) -> None:
        assert storage.get_best_trial(study_id, "minimize") is None

    def test_register_distribution_returns_the_first_registered(
        self, storage: BaseStorage, study_id: int
    ) -> None:
        first = Float(0.0, 1.0)
        assert storage.register_distribution(study_id, "x", first) == first
        assert storage.register_distribution(study_id, "x", Float(-5.0, 5.0, log=False)) == first
        assert storage.register_distribution(study_id, "x", Int(0, 3)) == first
        assert storage.register_distribution(study_id, "y", Int(0, 3)) == Int(0, 3)

    def test_register_distribution_is_per_study(self, storage: BaseStorage, study_id: int) -> None:
        other = storage.create_study("other", "minimize", seed=0).study_id
        storage.register_distribution(study_id, "x", Float(0.0, 1.0))
        assert storage.register_distribution(other, "x", Categorical(["a"])) == Categorical(["a"])
        assert storage.register_distribution(study_id, "x", Categorical(["b"])) == Float(0.0, 1.0)

    def test_get_distributions_reads_every_first_registered_one(self, storage: BaseStorage, study_id: int) -> None:
        assert storage.get_distributions(study_id) == {}
        for name, dist in DISTRIBUTIONS.items():
            storage.register_distribution(study_id, name, dist)
            storage.register_distribution(study_id, name, Bool(0.5))  # the first one stays
        assert_same_distributions(storage.get_distributions(study_id), DISTRIBUTIONS)
        other = storage.create_study("other", "minimize", seed=0).study_id
        assert storage.get_distributions(other) == {}
        storage.register_distribution(other, "x", Int(0, 3))
        assert storage.get_distributions(other) == {"x": Int(0, 3)}
        with pytest.raises(StudyNotFoundError):
            storage.get_distributions(987_654_321)

    # -- heartbeats ------------------------------------------------------------------------
    def test_fail_stale_trials_fails_only_trials_beyond_the_grace_time(
        self, storage: BaseStorage, study_id: int
    ) -> None:
        stale = storage.create_trial(study_id, heartbeat=True)
        alive = storage.create_trial(study_id, heartbeat=True)
        assert storage.fail_stale_trials(study_id, TIMEOUT) == []  # both beat just now
        failed = fail_stale_until(storage, study_id, 1, beat=lambda: storage.heartbeat(alive.trial_id))
        assert [t.trial_id for t in failed] == [stale.trial_id]
        assert storage.get_trial(alive.trial_id).state == TrialState.RUNNING
        storage.finish_trial(alive.trial_id, TrialState.COMPLETE, value=1.0)

    def test_fail_stale_trials_records_fail_with_an_error_and_end_time(
        self, storage: BaseStorage, study_id: int
    ) -> None:
        stale = storage.create_trial(study_id, params={"x": 1}, heartbeat=True)
        (failed,) = fail_stale_until(storage, study_id, 1, beat=lambda: None)
        got = storage.get_trial(stale.trial_id)
        for t in (failed, got):
            assert (t.trial_id, t.number, t.state, t.params) == (stale.trial_id, 0, TrialState.FAIL, {"x": 1})
            assert t.error and t.datetime_complete is not None
        with pytest.raises(TrialStateError):
            storage.finish_trial(stale.trial_id, TrialState.COMPLETE, value=1.0)

    def test_fail_stale_trials_never_fails_trials_that_never_beat(
        self, storage: BaseStorage, study_id: int
    ) -> None:
        silent = storage.create_trial(study_id)
        waiting = storage.create_trial(study_id, state=TrialState.WAITING, heartbeat=True)
        witness = storage.create_trial(study_id, heartbeat=True)  # stale once the grace time has passed
        failed = fail_stale_until(storage, study_id, 1, beat=lambda: None)
        assert [t.trial_id for t in failed] == [witness.trial_id]
        assert storage.get_trial(silent.trial_id).state == TrialState.RUNNING
        assert storage.get_trial(waiting.trial_id).state == TrialState.WAITING

    def test_fail_stale_trials_returns_each_failed_trial_once(
        self, storage: BaseStorage, study_id: int
    ) -> None:
        stale = [storage.create_trial(study_id, heartbeat=True) for _ in range(3)]
        failed = fail_stale_until(storage, study_id, 3, beat=lambda: None)
        assert sorted(t.trial_id for t in failed) == [t.trial_id for t in stale]
        time.sleep(GRACE / 4)
        assert storage.fail_stale_trials(study_id, GRACE) == []
        assert storage.fail_stale_trials(study_id, 0.0) == []

    def test_fail_stale_trials_leaves_finished_trials_untouched(
        self, storage: BaseStorage, study_id: int
    ) -> None:
        done = {state: storage.create_trial(study_id, heartbeat=True) for state in FINISHED}
        for state, trial in done.items():
            error = "e" if state == TrialState.FAIL else None
            storage.finish_trial(trial.trial_id, state, value=1.0, error=error)
        before = {state: storage.get_trial(t.trial_id) for state, t in done.items()}
        witness = storage.create_trial(study_id, heartbeat=True)
        failed = fail_stale_until(storage, study_id, 1, beat=lambda: None)
        assert [t.trial_id for t in failed] == [witness.trial_id]
        assert {state: storage.get_trial(t.trial_id) for state, t in done.items()} == before

    def test_claim_with_heartbeat_beats_once(self, storage: BaseStorage, study_id: int) -> None:
        storage.create_trial(study_id, state=TrialState.WAITING)
        storage.create_trial(study_id, state=TrialState.WAITING)
        beating = storage.claim_waiting_trial(study_id, heartbeat=True)
        silent = storage.claim_waiting_trial(study_id)
        assert beating is not None and silent is not None
        witness = storage.create_trial(study_id, heartbeat=True)
        failed = fail_stale_until(storage, study_id, 2, beat=lambda: None)
        assert sorted(t.trial_id for t in failed) == [beating.trial_id, witness.trial_id]
        assert storage.get_trial(silent.trial_id).state == TrialState.RUNNING

    def test_start_trial_with_heartbeat_beats_once(self, storage: BaseStorage, study_id: int) -> None:
        storage.create_trial(study_id, state=TrialState.WAITING)
        claimed = storage.start_trial(study_id, heartbeat=True)
        created = storage.start_trial(study_id, heartbeat=True)
        silent = storage.start_trial(study_id)
        assert (claimed.number, created.number, silent.number) == (0, 1, 2)
        failed = fail_stale_until(storage, study_id, 2, beat=lambda: None)
        assert sorted(t.trial_id for t in failed) == [claimed.trial_id, created.trial_id]
        assert storage.get_trial(silent.trial_id).state == TrialState.RUNNING

    def test_fail_stale_trials_is_per_study(self, storage: BaseStorage, study_id: int) -> None:
        other = storage.create_study("other", "minimize", seed=0).study_id
        mine = storage.create_trial(study_id, heartbeat=True)
        theirs = storage.create_trial(other, heartbeat=True)
        failed = fail_stale_until(storage, study_id, 1, beat=lambda: None)
        assert [t.trial_id for t in failed] == [mine.trial_id]
        assert storage.get_trial(theirs.trial_id).state == TrialState.RUNNING

    # -- threads sharing one storage object --------------------------------------------------
    def test_threads_creating_trials_get_distinct_numbers(self, storage: BaseStorage, study_id: int) -> None:
        start = threading.Barrier(4)

        def work(worker: int) -> list[int]:
            start.wait(TIMEOUT)
            made = []
            for _ in range(25):
                trial = storage.create_trial(study_id)
                storage.finish_trial(trial.trial_id, TrialState.COMPLETE, value=float(worker))
                made.append(trial.number)
            return made

        assert_each_exactly_once(run_threads(work, 4), range(100))
        assert storage.count_trials(study_id, [TrialState.COMPLETE]) == 100

    def test_threads_racing_to_claim_get_each_waiting_trial_once(
        self, storage: BaseStorage, study_id: int
    ) -> None:
        for _ in range(60):
            storage.create_trial(study_id, state=TrialState.WAITING)
        start = threading.Barrier(4)

        def work(worker: int) -> list[int]:
            start.wait(TIMEOUT)
            claimed = []
            while (trial := storage.claim_waiting_trial(study_id)) is not None:
                storage.finish_trial(trial.trial_id, TrialState.COMPLETE, value=float(worker))
                claimed.append(trial.number)
            return claimed

        assert_each_exactly_once(run_threads(work, 4), range(60))
        assert storage.count_trials(study_id, [TrialState.COMPLETE]) == 60


    def test_threads_starting_trials_claim_each_waiting_trial_once_then_create(
        self, storage: BaseStorage, study_id: int
    ) -> None:
        for n in range(30):
            storage.create_trial(study_id, state=TrialState.WAITING, params={"n": n})
        start = threading.Barrier(4)

        def work(worker: int) -> list[int]:
            start.wait(TIMEOUT)
            started = []
            for _ in range(20):
                trial = storage.start_trial(study_id)
                storage.finish_trial(trial.trial_id, TrialState.COMPLETE, value=float(worker))
                started.append(trial.number)
            return started

        assert_each_exactly_once(run_threads(work, 4), range(80))
        trials = storage.get_trials(study_id)
        assert [t.params for t in trials] == [{"n": n} for n in range(30)] + [{}] * 50


    # -- edge cases every backend answers the same way -------------------------------------
    def test_heartbeat_after_the_end_is_ignored(self, storage: BaseStorage, study_id: int) -> None:
        trial = storage.create_trial(study_id, heartbeat=True)
        storage.finish_trial(trial.trial_id, TrialState.COMPLETE, 1.0)
        storage.heartbeat(trial.trial_id)
        assert storage.get_trial(trial.trial_id).state == TrialState.COMPLETE

    def test_curves_of_an_unknown_trial_raise_trial_not_found(self, storage: BaseStorage) -> None:
        with pytest.raises(TrialNotFoundError):
            storage.get_curves(987654)

    def test_deleting_an_unknown_study_raises_study_not_found(self, storage: BaseStorage) -> None:
        with pytest.raises(StudyNotFoundError):
            storage.delete_study(987654)

    @pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
    def test_a_non_finite_trial_value_is_refused(self, storage: BaseStorage, study_id: int, value: float) -> None:
        trial = storage.create_trial(study_id)
        with pytest.raises(StorageError):
            storage.finish_trial(trial.trial_id, TrialState.COMPLETE, value)
        assert storage.get_trial(trial.trial_id).state == TrialState.RUNNING

    @pytest.mark.parametrize("bad", [{1, 2}, math.nan, object()])
    def test_attributes_that_are_not_json_are_refused(self, storage: BaseStorage, study_id: int, bad: object) -> None:
        trial = storage.create_trial(study_id)
        with pytest.raises(StorageError):
            storage.update_trial(trial.trial_id, user_attrs={"bad": bad})
        with pytest.raises(StorageError):
            storage.set_study_attrs(study_id, user_attrs={"bad": bad})

    def test_a_negative_min_number_means_from_the_start(self, storage: BaseStorage, study_id: int) -> None:
        for _ in range(3):
            storage.create_trial(study_id)
        assert [t.number for t in storage.get_trials(study_id, min_number=-1)] == [0, 1, 2]


class SharedStorageSuite(StorageSuite):
    """:class:`StorageSuite` plus the rules of storages that separate processes share by URL."""

    def make_url(self, tmp_path: Path) -> str:
        """The URL of a new, empty storage (``tmp_path`` is the test's own temporary directory)."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_url(tmp_path)")

    def make_storage(self, tmp_path: Path) -> BaseStorage:
        return get_storage(self.make_url(tmp_path))

    @staticmethod
    def url_of(storage: BaseStorage) -> str:
        url = storage.url
        assert url is not None, f"{storage!r} is shared across processes but has no url"
        return url

    def test_storage_says_it_is_shareable(self, storage: BaseStorage) -> None:
        assert storage.shareable_across_processes
        assert storage.url is not None

    def test_second_handle_sees_committed_writes(self, storage: BaseStorage, study_id: int) -> None:
        trial = storage.create_trial(study_id, params={"x": 1.5})
        storage.report(trial.trial_id, 2, {"loss": 0.5})
        storage.finish_trial(trial.trial_id, TrialState.COMPLETE, value=0.5, user_attrs={"u": "v"})
        other = get_storage(self.url_of(storage))
        try:
            assert other.get_study("study").study_id == study_id
            assert other.get_trials(study_id) == storage.get_trials(study_id)
            assert other.get_curves(trial.trial_id) == {"loss": ([2], [0.5])}
            assert other.get_metric_at(study_id, "loss") == [MetricPoint(0, TrialState.COMPLETE, 2, 0.5)]
            assert other.create_trial(study_id).number == 1
            assert storage.count_trials(study_id) == 2
        finally:
            other.close()

    @pytest.fixture(scope="class")
    @classmethod
    def processes(cls) -> Iterator[ProcessPoolExecutor]:
        """N_PROCESSES spawned worker processes, started once per class (a spawn costs ~0.5 s)."""
        ctx = multiprocessing.get_context("spawn")
        start_line = ctx.Barrier(N_PROCESSES)
        with ProcessPoolExecutor(N_PROCESSES, mp_context=ctx, initializer=_init_worker,
                                 initargs=(start_line,)) as pool:
            pids = [f.result(timeout=TIMEOUT) for f in [pool.submit(_warm_up) for _ in range(N_PROCESSES)]]
            assert len(set(pids)) == N_PROCESSES
            yield pool

    def test_processes_creating_trials_concurrently_get_distinct_numbers(
        self, storage: BaseStorage, study_id: int, processes: ProcessPoolExecutor
    ) -> None:
        n_trials = 50
        total = N_PROCESSES * n_trials
        made = run_in_processes(processes, _create_and_finish, self.url_of(storage), "study", n_trials)
        assert_each_exactly_once(made, range(total))
        assert storage.count_trials(study_id) == total
        trials = storage.get_trials(study_id)
        assert numbers(trials) == list(range(total))
        assert all(t.state == TrialState.COMPLETE and t.value == float(t.number) for t in trials)
        for worker, handled in made.items():
            assert {t.number for t in trials if t.user_attrs["worker"] == worker} == set(handled)

    def test_processes_racing_to_claim_get_each_waiting_trial_once(
        self, storage: BaseStorage, study_id: int, processes: ProcessPoolExecutor
    ) -> None:
        n_waiting = 80
        for n in range(n_waiting):
            storage.create_trial(study_id, state=TrialState.WAITING, params={"n": n})
        claimed = run_in_processes(processes, _claim_until_none_waits, self.url_of(storage), "study")
        assert_each_exactly_once(claimed, range(n_waiting))
        trials = storage.get_trials(study_id)
        assert all(t.state == TrialState.COMPLETE for t in trials)
        for worker, handled in claimed.items():
            assert {t.number for t in trials if t.user_attrs["worker"] == worker} == set(handled)

    def test_processes_starting_trials_claim_each_waiting_trial_once_then_create(
        self, storage: BaseStorage, study_id: int, processes: ProcessPoolExecutor
    ) -> None:
        n_waiting, n_each = 30, 20
        total = N_PROCESSES * n_each
        for n in range(n_waiting):
            storage.create_trial(study_id, state=TrialState.WAITING, params={"n": n})
        started = run_in_processes(processes, _start_trials, self.url_of(storage), "study", n_each)
        assert_each_exactly_once(started, range(total))
        trials = storage.get_trials(study_id)
        assert numbers(trials) == list(range(total))
        assert all(t.state == TrialState.COMPLETE for t in trials)
        assert [t.params for t in trials] == [{"n": n} for n in range(n_waiting)] + [{}] * (total - n_waiting)

    def test_processes_appending_events_lose_none_and_keep_their_order(
        self, storage: BaseStorage, study_id: int, processes: ProcessPoolExecutor
    ) -> None:
        # Two shells changing a running trial's hyperparameters at once: every change kept, in order.
        trial = storage.create_trial(study_id)
        n_each = 20
        got = run_in_processes(processes, _append_events, self.url_of(storage), trial.trial_id, n_each)
        assert_each_exactly_once(got, range(N_PROCESSES * n_each))
        events = storage.get_trial(trial.trial_id).system_attrs["changes"]
        for worker, indices in got.items():
            assert indices == sorted(indices)
            assert [events[i] for i in indices] == [{"worker": worker, "i": i} for i in range(n_each)]

    def test_processes_failing_stale_trials_each_fail_a_trial_once(
        self, storage: BaseStorage, study_id: int, processes: ProcessPoolExecutor
    ) -> None:
        n_stale = 40
        stale = [storage.create_trial(study_id, heartbeat=True) for _ in range(n_stale)]
        last_beat = time.time()
        wait_until(lambda: time.time() > last_beat + 1.5 * GRACE, "the trials to go stale")
        failed = run_in_processes(processes, _fail_stale, self.url_of(storage), "study")
        assert_each_exactly_once(failed, range(n_stale))
        assert all(storage.get_trial(t.trial_id).state == TrialState.FAIL for t in stale)
