"""Faults end to end, with real processes and a real SQLite file: crashes, NaN, SIGKILL,
hangs, lost heartbeats and Ctrl-C never lose finished trials nor leave trials RUNNING."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import tunelab
from objectives import chaotic, hangs_on_first
from tunelab.records import TrialState

pytestmark = pytest.mark.slow
TESTS_DIR = Path(__file__).parent


def wait_for(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def run_script(code: str, tmp_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    return subprocess.Popen(
        [sys.executable, str(script)],
        env={**os.environ, "PYTHONPATH": str(TESTS_DIR), "OMP_NUM_THREADS": "1", **(env or {})},
        start_new_session=True,  # its own process group, like a terminal job
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def test_four_workers_two_hundred_trials_with_crashes_nan_and_sigkill(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'e2e.db'}"
    study = tunelab.create_study(name="e2e", storage=url, seed=0)
    study.optimize(chaotic, n_trials=200, n_workers=4)
    trials = tunelab.load_study("e2e", url).trials
    states = collections.Counter(t.state for t in trials)
    assert len(trials) == 200
    assert states[TrialState.COMPLETE] + states[TrialState.FAIL] == 200
    assert states[TrialState.FAIL] == 60  # numbers ending in 3, 5 and 7
    assert sorted(t.number for t in trials) == list(range(200))
    errors = {t.number % 10: t.error for t in trials if t.state == TrialState.FAIL}
    assert "ValueError: boom" in (errors[3] or "")
    assert "NaN" in (errors[5] or "")
    assert "SIGKILL" in (errors[7] or "")


def test_hanging_trial_is_killed_after_trial_timeout(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hang.db'}"
    study = tunelab.create_study(name="hang", storage=url, seed=0)
    study.optimize(hangs_on_first, n_trials=4, n_workers=2, trial_timeout=2.0)
    trials = study.trials
    assert trials[0].state == TrialState.FAIL and "timed out" in (trials[0].error or "")
    assert [t.state for t in trials[1:]] == [TrialState.COMPLETE] * 3


def test_killed_independent_worker_is_failed_by_heartbeat_and_requeued(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hb.db'}"
    marker = tmp_path / "started"
    tunelab.create_study(name="hb", storage=url, seed=0)
    worker = run_script(f"""
        import tunelab
        from objectives import sleepy_reporting
        study = tunelab.load_study("hb", {url!r})
        study.optimize(sleepy_reporting, n_trials=1, heartbeat_interval=0.2, grace_period=1.0)
    """, tmp_path, env={"TUNELAB_TEST_MARKER": str(marker)})
    wait_for(marker.exists, what="the worker's trial to start")
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    study = tunelab.load_study("hb", url)
    assert study.trials[0].state == TrialState.RUNNING  # nobody has noticed yet
    time.sleep(1.2)  # let the grace time pass
    study.optimize(
        lambda t: t.suggest_float("x", 0, 1), n_trials=1,
        heartbeat_interval=0.2, grace_period=1.0, requeue_lost_trials=True,
    )
    trials = study.trials
    assert trials[0].state == TrialState.FAIL and "heartbeat lost" in (trials[0].error or "")
    assert trials[1].system_attrs.get("retry_of") == 0
    assert trials[1].params["x"] == trials[0].params["x"]
    assert trials[1].state == TrialState.COMPLETE


def test_keyboard_interrupt_in_process_keeps_finished_trials_and_resumes() -> None:
    def objective(trial: tunelab.Trial) -> float:
        if trial.number == 3:
            raise KeyboardInterrupt
        return trial.suggest_float("x", 0, 1)

    study = tunelab.create_study(seed=0)
    with pytest.raises(KeyboardInterrupt):
        study.optimize(objective, n_trials=10)
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE] * 3 + [TrialState.FAIL]
    assert "interrupted" in (study.trials[3].error or "")
    study.optimize(objective, n_trials=2)
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4, 5]


def test_ctrl_c_on_a_parallel_run_marks_running_trials_and_a_later_run_resumes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'int.db'}"
    marker = tmp_path / "started"
    tunelab.create_study(name="int", storage=url, seed=0)
    driver = run_script(f"""
        import faulthandler, signal
        import tunelab
        from objectives import sleepy
        faulthandler.register(signal.SIGUSR1, all_threads=True)  # the test asks for the stacks if it hangs
        # Ctrl-C as a terminal's foreground job gets it, whatever the test runner inherited: a shell
        # starts background jobs with SIGINT ignored, and an ignored signal stays ignored across exec.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if __name__ == "__main__":
            study = tunelab.load_study("int", {url!r})
            study.optimize(sleepy, n_trials=10, n_workers=2)
    """, tmp_path, env={"TUNELAB_TEST_MARKER": str(marker)})
    wait_for(marker.exists, what="a trial to start")
    os.killpg(driver.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    try:
        _, err = driver.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.kill(driver.pid, signal.SIGUSR1)  # where it hangs, for whoever reads the failure
        time.sleep(1.0)
        driver.kill()
        _, err = driver.communicate()
        pytest.fail("the driver did not stop within 30 s of Ctrl-C; its threads:\n" + err.decode()[-6000:])
    assert driver.returncode != 0 and b"KeyboardInterrupt" in err
    study = tunelab.load_study("int", url)
    assert study.trials, "the interrupted run should have started trials"
    assert all(t.state == TrialState.FAIL and "interrupted" in (t.error or "") for t in study.trials)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert [t.state for t in study.trials[-2:]] == [TrialState.COMPLETE] * 2
    assert not study.get_trials([TrialState.RUNNING])


def test_a_ctrl_c_while_a_worker_starts_is_held_back_not_lost() -> None:
    """The driver used to ignore SIGINT while it started a worker (so that the worker would start
    ignoring it): a Ctrl-C in that moment was lost and the run went on. It is now blocked: pending,
    and raised as soon as the worker has started."""
    from tunelab.execution.local import _sigint_ignored_by_children

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal's foreground job
    try:
        with pytest.raises(KeyboardInterrupt):
            with _sigint_ignored_by_children():
                os.kill(os.getpid(), signal.SIGINT)  # arrives while a worker would be starting
                time.sleep(0.05)
            time.sleep(0.5)  # raised by now, unless the Ctrl-C was lost
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)
