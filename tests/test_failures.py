"""A study whose every trial fails the same way (issue 16 item 12): the error summarised as file:line and
exception (tunelab.study.failures), the warning after the first trials, and best_trial's message."""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from types import ModuleType

import pytest

import tunelab
from tunelab.errors import TrialNotFoundError
from tunelab.records import TrialState
from tunelab.samplers import RandomSampler
from tunelab.study.failures import FailureWatch, first_trials, read_error, summarize_error

OBJECTIVE = '''\
import json


def objective(trial):
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    return lr * undefined_name


def parses(trial):
    trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    return json.loads("{")


def flaky(trial):
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    if trial.number == 1:
        raise ValueError(f"lr={lr} is bad")
    return lr
'''


@pytest.fixture()
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The objectives above in ``objective_file.py``, imported from the current directory (tmp_path)."""
    (tmp_path / "objective_file.py").write_text(OBJECTIVE)
    monkeypatch.chdir(tmp_path)
    spec = importlib.util.spec_from_file_location("objective_file", tmp_path / "objective_file.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "objective_file", mod)
    spec.loader.exec_module(mod)
    return mod


def failed_study(mod: ModuleType, fn: str, n: int = 4, name: str = "typo") -> tunelab.Study:
    study = tunelab.create_study(name=name, sampler=RandomSampler(), seed=0)
    study.optimize(getattr(mod, fn), n_trials=n, show_progress=False)
    return study


# -- summarize_error on the error texts the runner stores ----------------------------------------------
def test_a_stored_traceback_becomes_file_line_and_exception(module: ModuleType) -> None:
    study = failed_study(module, "objective", n=1)
    error = study.trials[0].error
    assert error is not None and error.startswith("Traceback")
    assert summarize_error(error) == "objective_file.py:6: NameError: name 'undefined_name' is not defined"


def test_the_place_is_the_users_code_not_the_library_that_raised(module: ModuleType) -> None:
    error = failed_study(module, "parses", n=1).trials[0].error
    assert error is not None and "json" + "/decoder.py" in error.replace("\\", "/")  # raised inside json
    summary = read_error(error)
    assert (summary.file, summary.line) == (str(Path("objective_file.py").resolve()), 11)
    assert summarize_error(error).startswith("objective_file.py:11: json.decoder.JSONDecodeError: Expecting")


def test_of_a_chain_the_last_exception() -> None:
    text = (
        'Traceback (most recent call last):\n  File "/x/a.py", line 3, in f\n    {}["k"]\nKeyError: \'k\'\n\n'
        "During handling of the above exception, another exception occurred:\n\n"
        'Traceback (most recent call last):\n  File "/x/a.py", line 5, in f\n    raise RuntimeError("wrapped")\n'
        "RuntimeError: wrapped\n"
    )
    assert summarize_error(text) == "/x/a.py:5: RuntimeError: wrapped"


def test_python_311_markers_and_texts_without_a_traceback() -> None:
    text = ('Traceback (most recent call last):\n  File "/x/b.py", line 9, in g\n    return 1 / zero\n'
            "           ~~^~~~~~\nZeroDivisionError: division by zero\n")
    assert summarize_error(text) == "/x/b.py:9: ZeroDivisionError: division by zero"
    nan = "the objective returned NaN (training often diverges so: try a lower learning rate)"
    assert summarize_error(nan) == nan
    assert summarize_error(None) == "(no error text)"
    assert len(summarize_error("x" * 1000)) == 300


# -- FailureWatch ----------------------------------------------------------------------------------------
def test_first_trials_grows_with_the_workers_up_to_five() -> None:
    assert [first_trials(n) for n in (1, 2, 3, 4, 16)] == [3, 4, 5, 5, 5]
    with pytest.raises(ValueError, match="n_workers"):
        first_trials(0)


def test_the_watch_warns_once_when_the_first_k_trials_fail_alike(module: ModuleType) -> None:
    study = failed_study(module, "objective", n=5)
    watch = FailureWatch(n_workers=1)
    said = [watch.observe(t.number, t.state, t.error, study.name) for t in study.trials]
    assert said[:2] == [None, None] and said[3:] == [None, None]
    message = said[2]
    assert message is not None
    assert "the first 3 trials all failed with the same error" in message
    assert "objective_file.py:6: NameError: name 'undefined_name' is not defined" in message
    assert "`tunelab trial typo 0`" in message


def test_the_watch_is_quiet_once_a_trial_completes_or_fails_otherwise(module: ModuleType) -> None:
    flaky = failed_study(module, "flaky", n=5)
    assert [t.state for t in flaky.trials].count(TrialState.FAIL) == 1
    watch = FailureWatch(n_workers=1)
    assert [watch.observe(t.number, t.state, t.error) for t in flaky.trials] == [None] * 5

    same_place = 'Traceback (most recent call last):\n  File "/x/a.py", line 3, in f\n    g()\nValueError: lr={}\n'
    watch = FailureWatch(n_workers=1)
    assert watch.observe(0, "FAIL", same_place.format(0.1)) is None
    assert watch.observe(1, "FAIL", same_place.format(0.2)) is None  # another message, same place and class
    assert watch.observe(2, "FAIL", same_place.format(0.3)) is not None
    watch = FailureWatch(n_workers=1)
    watch.observe(0, "FAIL", same_place.format(0.1))
    assert watch.observe(1, "FAIL", "the objective returned NaN") is None
    assert watch.observe(2, "FAIL", same_place.format(0.3)) is None  # no longer the first trials' error


def test_interrupted_trials_are_not_counted_and_workers_need_more_trials() -> None:
    watch = FailureWatch(n_workers=4)
    assert watch.k == 5
    for n in range(4):
        assert watch.observe(n, TrialState.FAIL, "boom") is None
    assert watch.observe(4, TrialState.FAIL, "interrupted: KeyboardInterrupt: ") is None
    message = watch.observe(5, TrialState.FAIL, "boom")
    assert message is not None and "the first 5 trials" in message and "study.trials[0].error" in message


# -- best_trial when nothing completed -------------------------------------------------------------------
def test_best_trial_says_how_many_failed_and_shows_the_first_error(module: ModuleType) -> None:
    study = failed_study(module, "objective", n=4)
    with pytest.raises(TrialNotFoundError) as info:
        _ = study.best_trial
    message = str(info.value)
    assert "no COMPLETE trial" in message
    assert "all 4 trials failed" in message
    assert "the first (trial 0): objective_file.py:6: NameError: name 'undefined_name' is not defined" in message
    assert "`tunelab trial typo 0` shows the whole error" in message
    assert "run optimize() first" not in message


def test_best_trial_of_an_empty_or_mixed_study() -> None:
    study = tunelab.create_study(name="empty")
    with pytest.raises(TrialNotFoundError, match=r"'empty' has no COMPLETE trial: it has no trials yet; run optimize"):
        _ = study.best_trial
    t = study.ask()
    study.tell(t, state="PRUNED")
    t = study.ask()
    study.tell(t, float("nan"))
    study.ask()  # running
    with pytest.raises(TrialNotFoundError) as info:
        _ = study.best_trial
    message = str(info.value)
    assert "no COMPLETE trial yet (3 trials: 1 failed, 1 pruned, 1 running)" in message
    assert "the first failure (trial 1): the objective returned NaN" in message


# -- the runner's warning (wired in study/runner.py by the engine's owner) --------------------------------
def test_optimize_warns_after_the_first_trials_fail_alike(module: ModuleType, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tunelab"):
        failed_study(module, "objective", n=4)
    assert "the first 3 trials all failed with the same error: objective_file.py:6: NameError" in caplog.text


# -- Ctrl-C: what the log line says was kept -------------------------------------------------------------
def test_the_interrupt_message_counts_finished_and_stopped_trials_apart() -> None:
    watch = FailureWatch(n_workers=2)
    watch.observe(0, "COMPLETE", None)
    watch.observe(1, TrialState.PRUNED, None)
    watch.observe(2, "FAIL", "interrupted: KeyboardInterrupt: worker received signal SIGTERM")
    watch.observe(3, "FAIL", "interrupted: KeyboardInterrupt: worker received signal SIGTERM")
    assert watch.interrupted_message() == (
        "interrupted: 2 trials finished in this run before the interrupt and keep their results (1 complete, "
        '1 pruned); 2 running trials were stopped and recorded as FAIL ("interrupted"), their checkpoints kept. '
        "Run it again (optimize(), or the same tunelab command) to resume the study"
    )
    alone = FailureWatch()
    assert alone.interrupted_message(still_running=1) == (
        "interrupted: no trial finished in this run before the interrupt; 1 running trial was stopped and recorded "
        'as FAIL ("interrupted"), its checkpoints kept. Run it again (optimize(), or the same tunelab command) '
        "to resume the study"
    )


def test_a_trial_failed_in_a_worker_process_names_the_file_of_an_objective_sent_by_value() -> None:
    # A closure (as a script's or a notebook's function) goes to worker processes by value; cloudpickle 3.1
    # renamed its file '<dynamic-code>', so the error read '<dynamic-code>:3: NameError', the file to fix gone.
    def objective(trial: tunelab.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        return float(lr * undefined_name)  # type: ignore[name-defined]  # noqa: F821

    study = tunelab.create_study(sampler=RandomSampler(), seed=0)
    study.optimize(objective, n_trials=2, n_workers=2, show_progress=False)
    raised_at = ("test_failures.py", objective.__code__.co_firstlineno + 2)
    for trial in study.trials:
        summary = read_error(trial.error)
        assert (Path(str(summary.file)).name, summary.line) == raised_at
        assert "<dynamic-code>" not in str(trial.error)
        assert "return float(lr * undefined_name)" in str(trial.error)  # the source line, read from the file
