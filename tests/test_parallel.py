"""Several processes on one study: worker pools and independent processes, seeded reproducibly."""

from __future__ import annotations

import collections
import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from rich.console import Console

import tunelab
from objectives import quadratic
from tunelab.records import TrialState
from tunelab.study.progress import ProgressDisplay

pytestmark = pytest.mark.slow
TESTS_DIR = Path(__file__).parent


def test_random_search_gives_the_same_params_per_trial_number_with_any_worker_count(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'repro.db'}"
    one = tunelab.create_study(name="one", storage=url, seed=42, sampler=tunelab.RandomSampler())
    one.optimize(quadratic, n_trials=24)
    three = tunelab.create_study(name="three", storage=url, seed=42, sampler=tunelab.RandomSampler())
    three.optimize(quadratic, n_trials=24, n_workers=3)
    by_number = {t.number: t.params for t in three.trials}
    assert [t.params for t in one.trials] == [by_number[n] for n in range(24)]


def test_independent_processes_share_one_study(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    tunelab.create_study(name="shared", storage=url, seed=0)
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(f"""
        import tunelab
        from objectives import quadratic
        study = tunelab.load_study("shared", {url!r})
        study.optimize(quadratic, n_trials=40)
    """))
    env = {**os.environ, "PYTHONPATH": str(TESTS_DIR), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(script)], env=env) for _ in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    trials = tunelab.load_study("shared", url).trials
    assert len(trials) == 120
    assert sorted(t.number for t in trials) == list(range(120))
    assert collections.Counter(t.state for t in trials) == {TrialState.COMPLETE: 120}


def test_enqueued_trials_are_each_run_once_by_parallel_workers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'enq.db'}"
    study = tunelab.create_study(name="enq", storage=url, seed=0)
    for x in range(8):
        study.enqueue({"x": float(x) / 10, "lr": 1e-3})
    study.optimize(quadratic, n_trials=12, n_workers=3)
    xs = [t.params["x"] for t in study.trials[:8]]
    assert xs == [x / 10 for x in range(8)]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)


def test_progress_is_off_when_stdout_is_not_a_terminal() -> None:
    assert not ProgressDisplay(None, 10, "minimize").enabled  # pytest captures stdout


def test_progress_shows_done_running_failed_and_best() -> None:
    buffer = io.StringIO()
    display = ProgressDisplay(True, 4, "minimize", Console(file=buffer, width=120, force_terminal=False))
    with display:
        for state, value in [("COMPLETE", 3.0), ("FAIL", None), ("COMPLETE", 1.5)]:
            display.started()
            display.finished(state, value)
        display.started()
    text = buffer.getvalue()
    assert "3/4" in text and "running 1" in text and "failed 1" in text and "best 1.5" in text


def test_the_progress_bar_s_best_is_never_an_infeasible_trial(capsys: pytest.CaptureFixture[str]) -> None:
    def objective(trial: tunelab.Trial) -> float:
        trial.suggest_float("x", 0.0, 1.0)
        trial.set_constraint("memory_gb", 9.0 if trial.number == 1 else 1.0, upper=8.0)
        return [0.5, 0.1, 0.3][trial.number]  # the lowest value breaks its memory bound

    study = tunelab.create_study(sampler=tunelab.RandomSampler(), seed=0)
    study.optimize(objective, n_trials=3, show_progress=True)
    text = capsys.readouterr().out
    assert "best 0.3" in text and "best 0.1" not in text and study.best_value == 0.3


def test_the_progress_bar_of_a_study_with_several_objectives_names_the_objective_of_its_best(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # It said "best 0.9" for a study with no single best: the value is the first objective's best.
    study = tunelab.create_study(directions=["maximize", "minimize"], objective_names=["acc", "ms"],
                                 sampler=tunelab.RandomSampler(), seed=0)
    study.optimize(lambda t: ([0.5, 0.9][t.number], 1.0 + t.number), n_trials=2, show_progress=True)
    text = capsys.readouterr().out
    assert "best acc 0.9" in text


def test_fork_start_method_runs_a_lambda_objective(tmp_path: Path) -> None:
    study = tunelab.create_study(storage=f"sqlite:///{tmp_path / 'fork.db'}", seed=0)
    offset = 2.0  # a closure: spawn could not pickle it
    study.optimize(lambda t: t.suggest_float("x", 0, 1) + offset, n_trials=6, n_workers=2, start_method="fork")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 6
    assert all((t.value or 0) >= 2.0 for t in study.trials)


def test_grid_gives_the_same_cell_per_trial_number_with_any_worker_count(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'grid.db'}"
    space = {"x": tunelab.Float(-5, 5), "lr": tunelab.Float(1e-5, 1e-1, log=True)}
    runs = {}
    for workers in (1, 3):
        study = tunelab.create_study(name=f"grid{workers}", storage=url, seed=7,
                                     sampler=tunelab.GridSampler(space, n_points=4))
        study.optimize(quadratic, n_trials=16, n_workers=workers)
        runs[workers] = {t.number: t.params for t in study.trials}
    assert len(runs[1]) == 16 and runs[1] == runs[3]


def test_two_processes_a_thousand_trials_each_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'load.db'}"
    tunelab.create_study(name="load", storage=url, seed=0, sampler=tunelab.RandomSampler())  # the load: SQLite's
    script = tmp_path / "loop.py"
    script.write_text(textwrap.dedent(f"""
        import tunelab
        from objectives import cheap
        tunelab.load_study("load", {url!r}).optimize(cheap, n_trials=1000)
    """))
    env = {**os.environ, "PYTHONPATH": str(TESTS_DIR), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(script)], env=env, stderr=subprocess.PIPE) for _ in range(2)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], b"".join(errors).decode()[-2000:]
    assert not b"".join(errors).strip(), "no warnings or errors expected"
    trials = tunelab.load_study("load", url).trials
    assert sorted(t.number for t in trials) == list(range(2000))
    assert collections.Counter(t.state for t in trials) == {TrialState.COMPLETE: 2000}


def test_a_worker_that_recorded_its_trial_before_it_went_is_not_reported_as_failed_by_the_driver(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A worker stopped after it recorded its trial COMPLETE, before it could say so: the driver's
    log, progress and callbacks show the recorded end, not "trial N failed: interrupted"."""
    from tunelab.study.runner import OptimizeSettings, _Driver

    study = tunelab.create_study(seed=0)
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    study.tell(trial, 0.25)
    seen: list[tuple[str, float | None]] = []
    settings = OptimizeSettings.build(
        n_trials=1, timeout=None, n_workers=2, space=None, catch=(Exception,), trial_timeout=None,
        callbacks=[lambda s, t: seen.append((t.state.value, t.value))], show_progress=False,
        heartbeat_interval=None, grace_period=None, requeue_lost_trials=False, start_method="spawn",
    )
    display = ProgressDisplay(False, 1, "minimize")
    with caplog.at_level("WARNING", logger="tunelab"):
        _Driver(study, settings, display).lost(trial.trial_id, trial.number, "interrupted")
    assert "failed" not in caplog.text
    assert (display.done, display.failed) == (1, 0) and display.best == 0.25
    assert seen == [("COMPLETE", 0.25)]
    assert settings.failures.finished == collections.Counter({"COMPLETE": 1})


@pytest.mark.parametrize("kind", ["SystemExit", "KeyboardInterrupt", "BaseException", "StopEverything"])
def test_a_base_exception_raised_by_the_objective_in_a_worker_is_raised_again_as_in_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    """It came back as RuntimeError(the worker's traceback) (SystemExit, GeneratorExit, BaseException, the
    user's own BaseException), or
    the worker was replaced and the study went on (KeyboardInterrupt). Now the driver raises the same
    class (SystemExit with its code), the worker's traceback as its cause, and stops the study: the
    other worker's trial is recorded "interrupted", as with Ctrl-C."""
    import builtins

    from objectives import raises_base_exception_on_first

    monkeypatch.setenv("TUNELAB_TEST_RAISE", kind)  # spawned workers inherit it
    import objectives

    cls = getattr(builtins, kind, None) or getattr(objectives, kind)  # GeneratorExit: as BaseException
    errors = {}
    for n_workers in (1, 2):
        if n_workers == 2:  # trial 0 raises once trial 1 runs in the other worker
            monkeypatch.setenv("TUNELAB_TEST_MEET", str(tmp_path))
        study = tunelab.create_study(storage=f"sqlite:///{tmp_path / 'b.db'}", name=f"b{n_workers}", seed=0)
        with pytest.raises(cls) as raised, caplog.at_level("WARNING", logger="tunelab"):
            study.optimize(raises_base_exception_on_first, n_trials=3, n_workers=n_workers)
        assert type(raised.value) is cls
        assert raised.value.args == ((2,) if kind == "SystemExit" else ("raised by the objective",))
        first, *others = study.trials
        assert first.state == TrialState.FAIL and kind in (first.error or "")
        errors[n_workers] = first.error if kind in ("SystemExit", "KeyboardInterrupt") else None
        assert [(t.state, t.error) for t in others] == [
            (TrialState.FAIL, "interrupted: KeyboardInterrupt: worker received signal SIGTERM")
        ] * (n_workers - 1)
    cause = raised.value.__cause__
    assert type(cause).__name__ == "WorkerTraceback" and "raises_base_exception_on_first" in str(cause), cause
    assert errors[1] == errors[2]  # recorded the same way (with a traceback for the others: its lines differ)
    assert "trial 0 failed" not in caplog.text, caplog.text  # raised, not logged as well (as with one worker)


def test_a_users_own_exception_from_a_worker_fails_its_trial_and_the_study_goes_on(tmp_path: Path) -> None:
    from objectives import raises_own_error_on_first

    study = tunelab.create_study(storage=f"sqlite:///{tmp_path / 'own.db'}", name="own", seed=0)
    study.optimize(raises_own_error_on_first, n_trials=4, n_workers=2)  # catch=(Exception,): goes on
    first, *others = study.trials
    assert first.state == TrialState.FAIL and "OwnMistake: ('raised by the objective', 7)" in (first.error or "")
    assert "raises_own_error_on_first" in (first.error or "")  # the traceback
    assert [t.state for t in others] == [TrialState.COMPLETE] * 3


@pytest.mark.parametrize("start_method", ["spawn", "fork"])
def test_a_users_own_exception_outside_catch_is_raised_again_as_itself_with_the_workers_traceback(
    tmp_path: Path, start_method: str
) -> None:
    """It came back as RuntimeError(the worker's traceback) (a built-in one such as ValueError as
    ValueError(the traceback)): ``except OwnMistake`` in the caller missed it. Now the driver raises the
    same class with the same arguments and attributes, as with n_workers=1, the traceback as its cause."""
    from objectives import OwnMistake, raises_own_error_on_first

    raised = {}
    for n_workers in (1, 2):
        study = tunelab.create_study(storage=f"sqlite:///{tmp_path / 'own.db'}", name=f"own{n_workers}", seed=0)
        with pytest.raises(OwnMistake) as caught:
            study.optimize(raises_own_error_on_first, n_trials=3, n_workers=n_workers, catch=(),
                           start_method=start_method)
        raised[n_workers] = caught.value
        assert study.trials[0].state == TrialState.FAIL and "OwnMistake" in (study.trials[0].error or "")
    error = raised[2]
    assert type(error) is OwnMistake
    assert (error.args, error.code, str(error)) == (raised[1].args, 7, str(raised[1]))
    cause = error.__cause__
    assert type(cause) is tunelab.errors.WorkerTraceback
    assert "raises_own_error_on_first" in str(cause) and "OwnMistake: ('raised by the objective', 7)" in str(cause)


def test_an_exception_that_cannot_be_pickled_comes_back_as_runtime_error_with_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from objectives import raises_own_error_on_first

    monkeypatch.setenv("TUNELAB_TEST_RAISE", "Unsendable")  # spawned workers inherit it
    study = tunelab.create_study(storage=f"sqlite:///{tmp_path / 'lock.db'}", name="lock", seed=0)
    with pytest.raises(RuntimeError, match=r"(?s)raises_own_error_on_first.*Unsendable: holds a lock"):
        study.optimize(raises_own_error_on_first, n_trials=3, n_workers=2, catch=())
    assert study.trials[0].state == TrialState.FAIL


def test_an_exception_class_of_the_main_script_is_raised_again_as_itself(tmp_path: Path) -> None:
    """The class is sent to spawned workers by value (cloudpickle); the error comes back as the script's
    own class, so ``except Oops`` in the script catches it."""
    script = tmp_path / "main_error.py"
    script.write_text(textwrap.dedent(f"""
        import tunelab

        class Oops(Exception):
            pass

        def objective(trial):
            x = trial.suggest_float("x", 0.0, 1.0)
            if trial.number == 0:
                raise Oops("from the script", 3)
            return x

        if __name__ == "__main__":
            study = tunelab.create_study(name="s", storage="sqlite:///{tmp_path / 'main.db'}", seed=1)
            try:
                study.optimize(objective, n_trials=3, n_workers=2, catch=())
            except Oops as e:
                print("caught", e.args, type(e.__cause__).__name__, "line 10" in str(e.__cause__), flush=True)
    """))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240,
                          cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "caught ('from the script', 3) WorkerTraceback True", done.stdout + done.stderr


