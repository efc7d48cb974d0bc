"""A trial's storage calls stay within a small share of its loop's time: reports that come faster
than the storage writes them are gathered and written together (never lost, never reordered),
and the stop request is read at a pace the storage affords (never missed)."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

import tunelab
from tunelab.babysit.control import request_stop
from tunelab.errors import StorageError
from tunelab.storage import get_storage
from tunelab.storage.sql import SQLStorage
from tunelab.study.services import MAX_STORAGE_DELAY, Pacer


class CountingSQLite(SQLStorage):
    """A real SQLite storage that counts its report transactions (and can be told to fail gathered ones)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.report_calls = 0
        self.fail_next = False

    def report(self, trial_id: int, step: int, metrics: Mapping[str, float]) -> None:
        self.report_calls += 1
        super().report(trial_id, step, metrics)

    def report_steps(self, trial_id: int, points: Sequence[tuple[int, Mapping[str, float]]]) -> None:
        self.report_calls += 1
        if self.fail_next:
            self.fail_next = False
            raise StorageError("the disk is full (a test's failure)")
        super().report_steps(trial_id, points)


def wait_until(condition: Any, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    pause = threading.Event()
    while time.monotonic() < deadline:
        if condition():
            return True
        pause.wait(0.01)
    return condition()


def reports_until_pruned(trial: tunelab.Trial, first_step: int = 0) -> bool:
    """Report a step at a time until ``should_prune`` answers True (a stop request is seen), within
    the pacing delay and a margin; True when it did."""
    step = [first_step]

    def pruned() -> bool:
        trial.report(step[0], loss=1.0)
        step[0] += 1
        return trial.should_prune()

    return wait_until(pruned, seconds=MAX_STORAGE_DELAY + 10)


@pytest.fixture
def storage(tmp_path: Path) -> CountingSQLite:
    return CountingSQLite(f"sqlite:///{tmp_path / 'study.db'}")


def test_fast_reports_are_gathered_into_fewer_transactions_and_all_stored(storage: CountingSQLite) -> None:
    study = tunelab.create_study(name="fast", storage=storage, direction="minimize")
    trial = study.ask()
    trial.gather_reports = True
    for step in range(300):  # far faster than 0.2% of the time a SQLite write takes
        trial.report(step, loss=1.0 / (step + 1), acc=step / 300)
    study.tell(trial, 0.5)
    assert storage.report_calls < 30, storage.report_calls
    curves = study.get_curves(trial.number)
    assert curves["loss"] == (list(range(300)), [1.0 / (s + 1) for s in range(300)])
    assert curves["acc"][0] == list(range(300))


def test_a_later_report_of_the_same_step_wins_when_gathered(storage: CountingSQLite) -> None:
    study = tunelab.create_study(name="same-step", storage=storage)
    trial = study.ask()
    trial.gather_reports = True
    trial.report(0, loss=9.0)
    trial.report(1, loss=3.0)
    trial.report(1, loss=2.0, acc=0.5)
    trial.flush()
    assert study.get_curves(trial.number) == {"loss": ([0, 1], [9.0, 2.0]), "acc": ([1], [0.5])}


def test_a_gathered_report_is_written_without_a_further_report(storage: CountingSQLite) -> None:
    study = tunelab.create_study(name="idle", storage=storage)
    trial = study.ask()
    trial.gather_reports = True
    trial.report(0, loss=1.0)  # written at once: nothing was written before
    trial.report(1, loss=0.5)  # gathered: the write just before has not paid for itself yet
    assert storage.report_calls == 1
    assert wait_until(lambda: study.get_curves(trial.number)["loss"][0] == [0, 1], seconds=MAX_STORAGE_DELAY + 10)
    study.tell(trial, 0.5)


def test_a_checkpoint_writes_the_gathered_reports_first(storage: CountingSQLite, tmp_path: Path) -> None:
    study = tunelab.create_study(name="ckpt", storage=storage, artifact_dir=tmp_path / "art")
    trial = study.ask()
    trial.gather_reports = True
    for step in range(20):
        trial.report(step, loss=float(step))
    with trial.checkpoint(19) as folder:
        (folder / "w").write_text("weights")
        assert study.get_curves(trial.number)["loss"][0] == list(range(20))
    study.tell(trial, 0.0)


def test_a_failed_background_write_is_raised_by_the_next_call_and_its_points_kept(storage: CountingSQLite) -> None:
    study = tunelab.create_study(name="failing", storage=storage)
    trial = study.ask()
    trial.gather_reports = True
    trial.report(0, loss=1.0)
    storage.fail_next = True
    trial.report(1, loss=0.5)  # gathered; the background write fails
    assert wait_until(lambda: storage.report_calls >= 2, seconds=MAX_STORAGE_DELAY + 10)
    with pytest.raises(StorageError, match="disk is full"):
        trial.report(2, loss=0.25)  # raised before it counts: the loop may report it again
    trial.flush()  # the kept point
    assert study.get_curves(trial.number)["loss"] == ([0, 1], [1.0, 0.5])
    trial.report(2, loss=0.25)
    trial.flush()
    assert study.get_curves(trial.number)["loss"] == ([0, 1, 2], [1.0, 0.5, 0.25])
    study.tell(trial, 0.25)


def test_the_end_is_written_when_the_last_points_cannot_be(storage: CountingSQLite) -> None:
    study = tunelab.create_study(name="end", storage=storage)
    trial = study.ask()
    trial.gather_reports = True
    trial.report(0, loss=1.0)
    trial.report(1, loss=0.5)  # gathered
    storage.fail_next = True
    study.tell(trial, 0.5)
    got = study.trials[0]
    assert (got.state, got.value) == (tunelab.TrialState.COMPLETE, 0.5)
    assert study.get_curves(trial.number)["loss"] == ([0], [1.0])


def test_a_stop_request_is_seen_within_the_pacing_delay(storage: CountingSQLite) -> None:
    study = tunelab.create_study(name="stop", storage=storage)
    trial = study.ask()
    trial.gather_reports = True
    trial.report(0, loss=1.0)
    assert not trial.should_prune()
    request_stop(study, trial.number)
    assert reports_until_pruned(trial, first_step=1)
    assert trial._ctx.recorded["pruned"]["rule"] == "stopped on request"


def test_with_gathering_the_stop_request_is_read_off_the_training_thread(tmp_path: Path) -> None:
    class ThreadNoting(SQLStorage):
        def __init__(self, url: str) -> None:
            super().__init__(url)
            self.readers: list[str] = []

        def get_trial_system_attr(self, trial_id: int, key: str) -> Any:
            self.readers.append(threading.current_thread().name)
            return super().get_trial_system_attr(trial_id, key)

    storage = ThreadNoting(f"sqlite:///{tmp_path / 'study.db'}")
    study = tunelab.create_study(name="off-thread", storage=storage)
    trial = study.ask()
    trial.gather_reports = True
    request_stop(study, trial.number)
    assert reports_until_pruned(trial)
    assert storage.readers and threading.current_thread().name not in storage.readers
    assert set(storage.readers) == {"tunelab-background"}


def test_in_memory_reports_are_visible_at_once() -> None:
    study = tunelab.create_study(name="memory")
    trial = study.ask()
    trial.gather_reports = True
    trial.report(0, loss=1.0)
    trial.report(1, loss=0.5)
    assert study.get_curves(trial.number)["loss"] == ([0, 1], [1.0, 0.5])


def test_by_default_every_report_is_written_at_once_and_every_stop_request_read(storage: CountingSQLite) -> None:
    study = tunelab.create_study(name="default", storage=storage)
    trial = study.ask()
    assert trial.gather_reports is False
    for step in range(20):
        trial.report(step, loss=float(step))
        assert study.get_curves(trial.number)["loss"][0] == list(range(step + 1))
    assert storage.report_calls == 20
    assert not trial.should_prune()
    request_stop(study, trial.number)
    assert trial.should_prune()  # the very next call sees it


def test_turning_gathering_off_writes_what_was_gathered(storage: CountingSQLite) -> None:
    study = tunelab.create_study(name="toggle", storage=storage)
    trial = study.ask()
    trial.gather_reports = True
    for step in range(10):
        trial.report(step, loss=float(step))
    trial.gather_reports = False
    assert study.get_curves(trial.number)["loss"][0] == list(range(10))
    with pytest.raises(tunelab.ConfigError, match="gather_reports must be True or False"):
        trial.gather_reports = "yes"  # type: ignore[assignment]


def test_the_pacer_spaces_calls_by_their_cost_over_the_share() -> None:
    pacer = Pacer(share=0.01, max_delay=0.5)
    assert pacer.wait() <= 0
    pacer.ran(time.monotonic() - 0.001)  # a call of about 1 ms: due again about 0.1 s later
    assert 0.05 < pacer.wait() <= 0.11
    pacer.ran(time.monotonic() - 1.0)  # a slow call: the delay is capped
    assert pacer.wait() <= 0.5
    with pytest.raises(tunelab.ConfigError, match="share"):
        Pacer(share=0)


def test_reports_of_a_sqlite_url_study_are_all_stored(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'url.db'}"
    study = tunelab.create_study(name="url", storage=url)
    trial = study.ask()
    trial.gather_reports = True
    for step in range(100):
        trial.report(step, loss=float(step))
    study.tell(trial, 1.0)
    again = tunelab.load_study(name="url", storage=get_storage(url))
    assert again.get_curves(0)["loss"][0] == list(range(100))


def test_the_background_thread_runs_chores_in_time_order_skips_cancelled_ones_and_survives_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tunelab.study.background import Background

    background = Background()
    ran: list[str] = []
    done = threading.Event()

    def fail() -> None:
        raise RuntimeError("a defective chore")

    background.call_later(0.2, lambda: (ran.append("late"), done.set()))
    background.call_later(0.0, fail)
    background.call_later(0.05, lambda: ran.append("early")).cancel()
    background.call_later(0.1, lambda: ran.append("middle"))
    assert done.wait(10)
    assert ran == ["middle", "late"]
    assert "a background chore failed" in caplog.text


def test_steps_reported_together_are_one_transaction_and_the_same_curves(storage: CountingSQLite) -> None:
    study = tunelab.create_study(name="together", storage=storage)
    trial = study.ask()
    trial.gather_reports = True
    points = [(step, {"loss": 1.0 / (step + 1), "acc": step / 100}) for step in range(100)]
    trial.report_steps(points)  # due at once (nothing written yet): one transaction for the hundred steps
    assert storage.report_calls == 1
    trial.report_steps([(100, {"loss": 0.001}), (100, {"acc": 1})])  # two reports of one step: both kept
    study.tell(trial, 0.5)
    curves = study.get_curves(trial.number)
    assert curves["loss"] == (list(range(101)), [1.0 / (s + 1) for s in range(100)] + [0.001])
    assert curves["acc"] == (list(range(101)), [s / 100 for s in range(100)] + [1.0])

    memory = tunelab.create_study(seed=0)
    trial = memory.ask()
    trial.report_steps(points[:3])
    assert memory.get_curves(trial.number)["loss"] == ([0, 1, 2], [1.0, 0.5, 1 / 3])
    trial.report_steps([])  # nothing to report: nothing happens
    for bad, match in [([(-1, {"loss": 1.0})], "step"), ([(3, {})], "metrics by name"),
                       ([(3, {"loss": "0.5"})], "loss")]:
        with pytest.raises(tunelab.errors.ConfigError, match=match):
            trial.report_steps(bad)  # type: ignore[arg-type]
    assert memory.get_curves(trial.number)["loss"][0] == [0, 1, 2]  # refused before anything is stored
