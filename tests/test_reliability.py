"""One path to a terminal state (issue 16): whatever goes wrong while a trial is planned, runs, is
judged or is recorded, the trial ends COMPLETE, PRUNED or FAIL with the reason, and only errors
that would repeat (or a storage that refuses every write) stop the study, cleanly."""

from __future__ import annotations

import collections
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

import tunelab
from objectives import SlowPlanningSampler, nan_attr_on_one, quick
from tunelab.errors import AttributeValueError, StorageError
from tunelab.records import TrialState
from tunelab.storage import SQLStorage
from tunelab.study import runner
from tunelab.study import trial as trial_module

TESTS_DIR = Path(__file__).parent
FAIL, COMPLETE = TrialState.FAIL, TrialState.COMPLETE


@pytest.fixture(autouse=True)
def quick_final_write_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trial_module, "FINAL_WRITE_PAUSES", (0.0, 0.01, 0.02))


def states(study: tunelab.Study) -> list[TrialState]:
    return [t.state for t in study.trials]


# -- judging what the objective returned ----------------------------------------------------------
@pytest.mark.parametrize(("returned", "error"), [
    ("0.5", "the objective returned '0.5' (str); return a number"),
    (True, "the objective returned True (bool); return a number"),
    (np.bool_(False), "(bool); return a number"),
    ([0.5, 0.6], "the objective returned [0.5, 0.6] (list); return a number (a study with several objectives"),
    pytest.param(10**400, "too large for a float", id="10**400"),
    (float("nan"), "NaN"),
    (None, "returned None"),
])
def test_values_that_are_not_finite_numbers_fail_the_trial_and_the_study_goes_on(returned: Any, error: str) -> None:
    study = tunelab.create_study(seed=0)
    study.optimize(lambda t: returned if t.number == 0 else t.suggest_float("x", 0, 1), n_trials=2)
    first, second = study.trials
    assert first.state == FAIL and error in (first.error or "")
    assert second.state == COMPLETE


def test_numpy_and_torch_scalars_are_numbers() -> None:
    torch = pytest.importorskip("torch")
    values = [np.float32(0.25), np.float64(0.5), np.int64(3), np.array(1.5), torch.tensor(0.75),
              torch.tensor(2, dtype=torch.int64), 4]
    study = tunelab.create_study(seed=0)
    study.optimize(lambda t: values[t.number], n_trials=len(values))
    assert [t.value for t in study.trials] == [0.25, 0.5, 3.0, 1.5, 0.75, 2.0, 4.0]
    assert study.best_value == 0.25
    one_element = study.tell(study.ask(), torch.tensor([0.5]))  # a loss of shape (1,): its one value
    assert one_element.state == tunelab.TrialState.COMPLETE and one_element.value == 0.5
    two = study.tell(study.ask(), torch.tensor([0.5, 0.6]))
    assert two.state == FAIL and "(Tensor); return a number" in (two.error or "")


def test_tell_uses_the_same_judge() -> None:
    study = tunelab.create_study(seed=0)
    told = study.tell(study.ask(), "0.5")  # type: ignore[arg-type]
    assert told.state == FAIL and told.error == "the objective returned '0.5' (str); return a number"
    assert study.trials[0].state == FAIL


# -- errors while recording -----------------------------------------------------------------------
@pytest.mark.parametrize("where", ["memory", "sqlite"])
def test_an_attribute_the_storage_cannot_take_fails_its_trial_and_the_study_goes_on(
    where: str, tmp_path: Path
) -> None:
    storage = None if where == "memory" else f"sqlite:///{tmp_path / 'nan.db'}"
    study = tunelab.create_study(storage=storage, seed=0)
    study.optimize(nan_attr_on_one, n_trials=3)
    trials = study.trials
    assert [t.state for t in trials] == [COMPLETE, FAIL, COMPLETE]
    assert "could not be recorded" in (trials[1].error or "") and "cannot be stored" in (trials[1].error or "")
    assert "x" in trials[1].params  # what could be kept was kept


@pytest.mark.parametrize("value", [float("nan"), float("inf"), {"a": [1, float("-inf")]}, object(), {1j: 2}])
def test_set_user_attr_refuses_what_json_cannot_hold_where_it_is_set(value: object) -> None:
    study = tunelab.create_study(seed=0)
    trial = study.ask()
    with pytest.raises(AttributeValueError, match=r"set_user_attr\('val_acc', .*JSON data"):
        trial.set_user_attr("val_acc", value)
    assert "val_acc" not in trial.user_attrs
    assert study.tell(trial, 0.5).state == COMPLETE  # nothing was kept: the trial can still end well


def test_an_objective_setting_a_nan_attribute_fails_with_its_line_and_the_study_goes_on() -> None:
    def objective(trial: tunelab.Trial) -> float:
        trial.set_user_attr("val_acc", float("nan") if trial.number == 0 else 0.9)
        return 0.5

    study = tunelab.create_study(seed=0)
    study.optimize(objective, n_trials=2)
    assert states(study) == [FAIL, COMPLETE]
    error = study.trials[0].error or ""
    assert "AttributeValueError" in error and "test_reliability.py" in error


def test_tell_records_fail_when_the_attributes_cannot_be_stored() -> None:
    study = tunelab.create_study(seed=0)
    trial = study.ask()
    box = [0.9]
    trial.set_user_attr("val_acc", box)
    box[0] = float("nan")  # changed after it was checked
    told = study.tell(trial, 0.5)
    assert told.state == FAIL and "ended COMPLETE with value 0.5, but that could not be recorded" in (told.error or "")
    assert study.trials[0].state == FAIL


def full_disk() -> sa.exc.OperationalError:
    return sa.exc.OperationalError("UPDATE trials ...", {}, sqlite3.OperationalError("database or disk is full"))


def test_the_final_write_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    study = tunelab.create_study(storage=f"sqlite:///{tmp_path / 'retry.db'}", seed=0)
    # The result fails in the first two rounds (an unavailable database: the result is tried again, not
    # replaced by FAIL); the last round records it.
    failures = iter([True, True])
    real = SQLStorage.finish_trial

    def flaky(self: SQLStorage, *args: Any, **kwargs: Any) -> None:
        if next(failures, False):
            raise self._failure("finish_trial", full_disk())  # as the storage raises it
        real(self, *args, **kwargs)

    monkeypatch.setattr(SQLStorage, "finish_trial", flaky)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert states(study) == [COMPLETE, COMPLETE]


def test_a_final_write_that_finds_the_sqlite_file_locked_records_the_result_once_the_lock_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another connection holds the write lock as the trial ends: its value was recorded as FAIL ("the trial
    ended COMPLETE with value ..., but that could not be recorded: ... database is locked") by the fallback
    that came right after, once the lock was gone; the result is what must be written."""
    path = tmp_path / "locked.db"
    study = tunelab.create_study(storage=SQLStorage(f"sqlite:///{path}", busy_timeout=0.05), seed=0)
    holder = sqlite3.connect(path, isolation_level=None)  # another process's connection
    real = SQLStorage.finish_trial

    def finish_then_the_other_writer_commits(self: SQLStorage, *args: Any, **kwargs: Any) -> None:
        try:
            real(self, *args, **kwargs)
        finally:
            if holder.in_transaction:
                holder.rollback()

    def objective(trial: tunelab.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        holder.execute("BEGIN IMMEDIATE")  # the other writer takes the lock as the trial ends
        return x

    monkeypatch.setattr(SQLStorage, "finish_trial", finish_then_the_other_writer_commits)
    study.optimize(objective, n_trials=2)
    holder.close()
    assert [(t.state, t.error) for t in study.trials] == [(COMPLETE, None)] * 2
    assert all(t.value == t.params["x"] for t in study.trials)


def test_a_storage_that_refuses_every_final_write_stops_optimize_cleanly_and_the_trial_goes_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'down.db'}"
    study = tunelab.create_study(name="down", storage=url, seed=0)

    def refuse(self: SQLStorage, *args: Any, **kwargs: Any) -> None:
        raise full_disk()

    with monkeypatch.context() as m:
        m.setattr(SQLStorage, "finish_trial", refuse)
        with pytest.raises(StorageError, match=r"database or disk is full.*stays RUNNING until its heartbeat"):
            study.optimize(quick, n_trials=3, heartbeat_interval=0.1, grace_period=0.5)
    assert states(study) == [TrialState.RUNNING]  # the storage took nothing: it could not be recorded
    beat = study.storage.get_trials(study.study_id)[0]
    time.sleep(0.7)  # its heartbeat has stopped: it goes stale
    tunelab.load_study("down", url).optimize(quick, n_trials=1, heartbeat_interval=0.1, grace_period=0.5)
    assert states(study) == [FAIL, COMPLETE]
    assert "heartbeat lost" in (study.trials[0].error or "") and beat.trial_id == study.trials[0].trial_id


def test_a_full_sqlite_database_stops_optimize_with_a_storage_error_and_leaves_nothing_running(
    tmp_path: Path,
) -> None:
    path = tmp_path / "small.db"
    storage = SQLStorage(f"sqlite:///{path}")
    study = tunelab.create_study(name="small", storage=storage, seed=0)
    pages = sa.text("PRAGMA page_count")
    with storage.engine.connect() as conn:
        limit = int(conn.execute(pages).scalar_one()) + 8
    storage.engine.dispose()

    @sa.event.listens_for(storage.engine, "connect")
    def _small(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute(f"PRAGMA max_page_count={limit}")

    def fills(trial: tunelab.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        for step in range(50):
            trial.report(step, loss=x, acc=x, lr=x)
        trial.set_user_attr("notes", "x" * 3000)
        return x

    with pytest.raises(StorageError):
        study.optimize(fills, n_trials=500, heartbeat_interval=0.2, grace_period=1.0)
    trials = study.trials
    assert 0 < len(trials) < 500
    running = [t for t in trials if t.state == TrialState.RUNNING]
    if running:  # not even a bare FAIL fitted: it goes stale once its heartbeat has stopped
        time.sleep(1.3)
        storage.engine.dispose()
        sa.event.remove(storage.engine, "connect", _small)
        tunelab.load_study("small", storage).optimize(quick, n_trials=1, heartbeat_interval=0.2, grace_period=1.0)
        trials = study.trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert all(t.state in (COMPLETE, FAIL) for t in trials)


# -- worker processes ---------------------------------------------------------------------------
def wait_for(condition: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.slow
def test_an_attribute_the_storage_cannot_take_does_not_stop_the_other_workers(tmp_path: Path) -> None:
    study = tunelab.create_study(storage=f"sqlite:///{tmp_path / 'nan2.db'}", seed=0)
    study.optimize(nan_attr_on_one, n_trials=6, n_workers=2)
    counts = collections.Counter(t.state for t in study.trials)
    assert counts == {COMPLETE: 5, FAIL: 1}
    assert not any("interrupted" in (t.error or "") for t in study.trials)


@pytest.mark.slow
def test_trial_timeout_runs_from_the_objectives_start_not_from_planning(tmp_path: Path) -> None:
    study = tunelab.create_study(
        storage=f"sqlite:///{tmp_path / 'plan.db'}", seed=0, sampler=SlowPlanningSampler(seconds=1.5)
    )
    study.optimize(quick, n_trials=4, n_workers=2, trial_timeout=1.0)
    assert states(study) == [COMPLETE] * 4


@pytest.mark.slow
def test_a_worker_killed_while_planning_fails_its_trial_and_the_run_keeps_its_count(tmp_path: Path) -> None:
    study = tunelab.create_study(
        storage=f"sqlite:///{tmp_path / 'killplan.db'}", seed=0, sampler=SlowPlanningSampler(kill_on=2)
    )
    study.optimize(quick, n_trials=5, n_workers=2, trial_timeout=30.0)
    trials = study.trials
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]
    assert [t.state for t in trials] == [COMPLETE, COMPLETE, FAIL, COMPLETE, COMPLETE]
    assert "killed by SIGKILL" in (trials[2].error or "") and "planning" in (trials[2].error or "")


@pytest.mark.slow
def test_planning_has_its_own_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "PLANNING_TIMEOUT", 3.0)
    study = tunelab.create_study(
        storage=f"sqlite:///{tmp_path / 'hangplan.db'}", seed=0, sampler=SlowPlanningSampler(hang_on=1)
    )
    study.optimize(quick, n_trials=3, n_workers=2, trial_timeout=0.5)
    trials = study.trials
    assert [t.state for t in trials] == [COMPLETE, FAIL, COMPLETE]
    assert "not ready after 3s" in (trials[1].error or "")


def run_script(code: str, tmp_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    return subprocess.Popen(
        [sys.executable, str(script)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), *sys.path]), "OMP_NUM_THREADS": "1",
             **(env or {})},
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


@pytest.mark.slow
def test_workers_die_with_their_driver_and_record_their_trials(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'driver.db'}"
    tunelab.create_study(name="d", storage=url, seed=0)
    driver = run_script(f"""
        import tunelab
        from objectives import hangs_writing_pid
        if __name__ == "__main__":
            tunelab.load_study("d", {url!r}).optimize(
                hangs_writing_pid, n_trials=4, n_workers=2, heartbeat_interval=0.3, grace_period=1.5)
    """, tmp_path, env={"TUNELAB_TEST_MARKER": str(tmp_path)})
    wait_for(lambda: len(list(tmp_path.glob("*.pid"))) == 2, what="both workers' trials to start")
    pids = [int(p.read_text()) for p in tmp_path.glob("*.pid")]
    os.kill(driver.pid, signal.SIGKILL)
    killed = time.monotonic()
    driver.wait()
    wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=10, what="the workers to die with their driver")
    study = tunelab.load_study("d", url)
    wait_for(lambda: not study.get_trials([TrialState.RUNNING]), timeout=10, what="the trials to end")
    assert time.monotonic() - killed < 8
    assert [t.state for t in study.trials] == [FAIL, FAIL]
    assert all("driver process died" in (t.error or "") for t in study.trials)


@pytest.mark.slow
def test_a_resume_inside_the_grace_period_fails_the_dead_runs_trials_when_it_ends(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'resume.db'}"
    tunelab.create_study(name="r", storage=url, seed=0)
    dead = run_script(f"""
        import tunelab
        from objectives import hangs_writing_pid
        tunelab.load_study("r", {url!r}).optimize(hangs_writing_pid, n_trials=1, heartbeat_interval=0.2,
                                                  grace_period=1.0)
    """, tmp_path, env={"TUNELAB_TEST_MARKER": str(tmp_path)})
    wait_for(lambda: (tmp_path / "0.pid").exists(), what="the trial to start")
    os.kill(dead.pid, signal.SIGKILL)  # in-process trial: nobody records it, its heartbeat stops
    dead.wait()
    killed = time.time()
    study = tunelab.load_study("r", url)

    def long(trial: tunelab.Trial) -> float:
        time.sleep(3.0)  # the resume's only ask came before the grace period ended
        return trial.suggest_float("x", 0, 1)

    study.optimize(long, n_trials=1, heartbeat_interval=0.2, grace_period=1.0)
    first, second = study.trials
    assert first.state == FAIL and "heartbeat lost" in (first.error or "")
    assert second.state == COMPLETE
    assert first.datetime_complete is not None and second.datetime_complete is not None
    assert first.datetime_complete.timestamp() - killed < 1.0 + 1.0
    assert first.datetime_complete < second.datetime_complete
