"""Stopping a running trial from another process: Study.request_stop and Trial.should_prune."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

import tunelab
from tunelab.babysit import request_stop
from tunelab.errors import TrialNotFoundError, TrialStateError
from tunelab.samplers import RandomSampler
from tunelab.study import STOPPED_RULE


def test_a_second_study_object_stops_a_trial_that_polls_should_prune(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = tunelab.create_study(name="s", storage=url, sampler=RandomSampler(), seed=0)
    steps: list[int] = []
    started = threading.Event()

    def objective(trial: tunelab.Trial) -> float:
        trial.suggest_float("x", 0, 1)
        for step in range(2000):
            trial.report(step, val_loss=1.0 / (step + 1))
            steps.append(step)
            started.set()
            if trial.should_prune():  # no pruner: only a stop request makes it True
                raise tunelab.TrialPruned()
            time.sleep(0.005)
        return 0.0

    runner = threading.Thread(target=study.optimize, args=(objective,), kwargs={"n_trials": 1, "show_progress": False})
    runner.start()
    assert started.wait(10)
    other = tunelab.load_study("s", url)  # e.g. the dashboard's process
    request_stop(other, 0)
    runner.join(20)
    assert not runner.is_alive()
    t = other.trials[0]
    assert t.state == tunelab.TrialState.PRUNED
    pruned = t.system_attrs["pruned"]
    assert pruned["rule"] == STOPPED_RULE == "stopped on request"
    assert pruned["metric"] == "val_loss" and pruned["step"] == steps[-1] and "stop_requested" in t.system_attrs
    assert len(steps) < 2000


def test_stop_before_any_report_and_without_a_pruner() -> None:
    study = tunelab.create_study(sampler=RandomSampler(), seed=0)
    trial = study.ask()
    assert trial.should_prune() is False
    request_stop(study, trial.number)
    assert trial.should_prune() is True
    study.tell(trial, state="PRUNED")
    pruned = study.trials[0].system_attrs["pruned"]
    assert pruned["rule"] == STOPPED_RULE and pruned["step"] is None and pruned["metric"] is None


@pytest.mark.parametrize("from_thread", [False, True])
def test_in_memory_should_prune_reads_the_row_once_then_the_storage_tells_of_a_stop(from_thread: bool) -> None:
    study = tunelab.create_study(sampler=RandomSampler(), seed=0)
    trial = study.ask()
    trial.report(0, loss=1.0)
    storage = study.storage
    reads = []
    read = storage.get_trial_system_attr

    def counted(trial_id: int, key: str) -> object:
        reads.append(key)
        return read(trial_id, key)

    storage.get_trial_system_attr = counted  # type: ignore[method-assign]
    for step in range(1, 200):
        trial.report(step, loss=1.0 / step)
        assert trial.should_prune() is False
    assert reads == ["stop_requested"]  # one read; the old code read the row before every answer
    if from_thread:
        asker = threading.Thread(target=request_stop, args=(study, trial.number))
        asker.start()
        asker.join(10)
    else:
        request_stop(study, trial.number)
    assert trial.should_prune() is True
    study.tell(trial, state="PRUNED")
    assert study.trials[0].system_attrs["pruned"]["rule"] == STOPPED_RULE


def test_only_a_running_trial_can_be_asked_to_stop() -> None:
    study = tunelab.create_study(sampler=RandomSampler(), seed=0)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1, show_progress=False)
    waiting = study.enqueue({"x": 0.5})
    for number in (0, waiting):
        with pytest.raises(TrialStateError, match="only a RUNNING trial"):
            request_stop(study, number)
    with pytest.raises(TrialNotFoundError):
        request_stop(study, 7)


def test_should_prune_on_sqlite_costs_one_small_select_and_no_write(tmp_path: Path) -> None:
    study = tunelab.create_study(storage=f"sqlite:///{tmp_path / 'b.db'}", sampler=RandomSampler(), seed=0)
    trial = study.ask()
    trial.report(0, loss=1.0)
    trial.should_prune()
    statements: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    engine = study.storage.engine  # type: ignore[attr-defined]
    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        for _ in range(20):
            assert trial.should_prune() is False
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 20 and len(statements) <= 2 * 20  # one read a call, at most a BEGIN beside it
    assert not any(s.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")) for s in statements)
    # the trial's own row, one column: not a whole trial's record with its params and curves
    assert all("FROM trials" in s and "WHERE trials.trial_id" in s and "JOIN" not in s.upper() for s in selects)
