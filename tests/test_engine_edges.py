"""Edge cases of the engine's front door met by a demanding user (noticed by helper qa-engine)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import objectives
import tunelab
from tunelab.errors import AttributeValueError, ConfigError, DistributionConflictError, TrialStateError


def _study() -> tunelab.Study:
    return tunelab.create_study(seed=0, sampler=tunelab.RandomSampler())


def test_optimize_takes_numpy_numbers_for_counts_and_seconds() -> None:
    study = _study()
    study.optimize(
        lambda trial: trial.suggest_float("x", 0.0, 1.0),
        n_trials=np.int64(3), n_workers=np.int32(1), timeout=np.float32(60.0),
    )
    assert len(study.trials) == 3


def test_create_study_takes_a_numpy_integer_seed() -> None:
    study = tunelab.create_study(seed=np.int64(3))
    assert study.seed == 3 and type(study.seed) is int


def test_one_callback_not_in_a_list_is_a_config_error_before_any_trial() -> None:
    study = _study()
    with pytest.raises(ConfigError, match=r"callbacks must be a list .*callbacks=\[f\]"):
        study.optimize(lambda trial: 1.0, n_trials=2, callbacks=lambda study, trial: None)  # type: ignore[arg-type]
    assert study.trials == []


@pytest.mark.parametrize("attrs", [{"a": object()}, {"a": float("nan")}, [1], {1: "x"}])
def test_user_attrs_that_are_not_json_data_are_config_errors_before_anything_is_stored(
    tmp_path: Path, attrs: object
) -> None:
    url = f"sqlite:///{tmp_path / 'attrs.db'}"
    with pytest.raises(ConfigError, match=r"create_study\(user_attrs=\.\.\.\)"):
        tunelab.create_study("s", storage=url, user_attrs=attrs)  # type: ignore[arg-type]
    study = tunelab.create_study("s", storage=url)  # the bad call stored nothing
    with pytest.raises(ConfigError, match=r"enqueue\(user_attrs=\.\.\.\)"):
        study.enqueue({"x": 0.5}, user_attrs=attrs)  # type: ignore[arg-type]
    assert study.trials == []
    if isinstance(attrs, dict) and isinstance(next(iter(attrs)), str):
        with pytest.raises(ConfigError, match="set_user_attr"):
            study.set_user_attr("a", attrs["a"])
    assert study.user_attrs == {}


def test_tell_refuses_a_trial_of_another_study_and_leaves_it_running() -> None:
    single, several = _study(), tunelab.create_study(directions=["minimize", "minimize"], seed=0)
    trial = single.ask()
    with pytest.raises(ConfigError, match=f"belongs to study '{single.name}'"):
        several.tell(trial, (1.0, 2.0))
    assert single.trials[0].state == tunelab.TrialState.RUNNING
    assert single.tell(trial, 1.0).value == 1.0


def test_a_finished_trial_refuses_a_new_parameter_and_still_answers_its_own() -> None:
    study = _study()
    trial = study.ask()
    x = trial.suggest_float("x", 0.0, 1.0)
    study.tell(trial, 1.0)
    with pytest.raises(TrialStateError, match="trial 0 is finished"):
        trial.suggest_float("y", 0.0, 1.0)
    assert trial.suggest_float("x", 0.0, 1.0) == x
    assert trial.params == study.trials[0].params == {"x": x}


def test_the_same_name_twice_in_a_trial_with_a_disjoint_range_is_a_conflict_not_an_outside_value() -> None:
    study = _study()
    trial = study.ask()
    x = trial.suggest_float("x", 0.0, 1.0)
    assert trial.suggest_float("x", 0.0, 2.0) == x  # a range that still holds the value: the same value
    with pytest.raises(DistributionConflictError, match=r"parameter 'x' was suggested twice in trial 0: .* is outside"):
        trial.suggest_float("x", 5.0, 6.0)
    n = trial.suggest_int("n", 0, 3)
    with pytest.raises(DistributionConflictError, match="is outside"):
        trial.suggest_int("n", 10, 20)
    assert trial.params == {"x": x, "n": n}


@pytest.mark.parametrize("enqueued", [False, True])
def test_the_record_tell_returns_has_the_start_and_duration_of_the_stored_one(tmp_path: Path, enqueued: bool) -> None:
    study = tunelab.create_study("s", storage=f"sqlite:///{tmp_path / 'tell.db'}", seed=0,
                                 sampler=tunelab.RandomSampler())
    if enqueued:
        study.enqueue({"x": 0.5})
    trial = study.ask()
    told = study.tell(trial, trial.suggest_float("x", 0.0, 1.0))
    stored = study.trials[0]
    assert told.datetime_start == stored.datetime_start is not None
    assert told.duration is not None and told.duration >= 0
    assert (told.params, told.system_attrs, told.values) == (stored.params, stored.system_attrs, stored.values)


@pytest.mark.parametrize("option", ["sampler", "pruner"])
def test_load_study_refuses_a_sampler_or_pruner_that_is_not_one(tmp_path: Path, option: str) -> None:
    url = f"sqlite:///{tmp_path / 'load.db'}"
    tunelab.create_study("s", storage=url)
    with pytest.raises(ConfigError, match=rf"load_study\({option}=\.\.\.\) must be a tunelab {option}"):
        tunelab.load_study("s", url, **{option: "tpe"})  # type: ignore[arg-type]


@pytest.mark.parametrize("option", [{"grace_period": 5.0}, {"requeue_lost_trials": True}])
def test_lost_trial_options_without_heartbeats_are_a_config_error_before_any_trial(option: dict[str, object]) -> None:
    study = _study()
    with pytest.raises(ConfigError, match=rf"{next(iter(option))} acts on trials .* heartbeat_interval=None"):
        study.optimize(lambda trial: 1.0, n_trials=1, heartbeat_interval=None, **option)  # type: ignore[arg-type]
    assert study.trials == []


def test_a_study_opened_for_reading_refuses_to_run_trials_with_a_stand_in_sampler(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'read.db'}"
    study = tunelab.create_study("s", storage=url, seed=0, sampler=tunelab.TPESampler(n_startup_trials=2))
    study.optimize(lambda trial: trial.suggest_float("x", 0.0, 1.0), n_trials=2)
    read = tunelab.read_study("s", url)
    with pytest.raises(ConfigError, match=r"optimize\(\): study 's' was opened by read_study\(\).*load_study\(\)"):
        read.optimize(lambda trial: trial.suggest_float("x", 0.0, 1.0), n_trials=1)
    with pytest.raises(ConfigError, match="opened by read_study"):
        read.ask()
    assert len(read.trials) == 2 and read.best_value == study.best_value  # reading still works
    assert read.enqueue({"x": 0.5}) == 2  # and so does queueing a configuration (the dashboard does)
    tunelab.load_study("s", url).optimize(lambda trial: trial.suggest_float("x", 0.0, 1.0), n_trials=1)
    assert [t.state.value for t in read.trials] == ["COMPLETE"] * 3


def _fails_first(trial: tunelab.Trial) -> float:
    x = trial.suggest_float("x", 0.0, 1.0)
    if trial.number == 0:
        raise ValueError("not caught")
    return x


def test_an_uncaught_error_in_a_worker_stops_the_study_without_a_second_traceback(
    capfd: pytest.CaptureFixture[str],
) -> None:
    study = _study()
    with pytest.raises(ValueError, match="not caught"):
        study.optimize(_fails_first, n_trials=4, n_workers=2, catch=())
    err = capfd.readouterr().err
    # the driver's SIGTERM reached the worker while it sent the error or exited: a KeyboardInterrupt traceback
    assert "worker received signal" not in err and "During handling" not in err, err
    assert study.trials[0].state == tunelab.TrialState.FAIL


def test_numpy_numbers_and_arrays_in_trial_attributes_are_stored_as_python_values(tmp_path: Path) -> None:
    study = tunelab.create_study("s", storage=f"sqlite:///{tmp_path / 'attrs.db'}", seed=0,
                                 sampler=tunelab.RandomSampler())

    def objective(trial: tunelab.Trial) -> float:
        trial.set_user_attr("acc", np.float32(0.5))
        trial.set_user_attr("per_class", {"counts": np.array([1, 2]), "best": np.int64(3), "ok": np.bool_(True)})
        return 1.0

    study.optimize(objective, n_trials=1)
    stored = study.trials[0]
    assert stored.state == tunelab.TrialState.COMPLETE, stored.error
    assert stored.user_attrs == {"acc": 0.5, "per_class": {"counts": [1, 2], "best": 3, "ok": True}}
    trial = study.ask()
    with pytest.raises(AttributeValueError, match="JSON data"):
        trial.set_user_attr("bad", np.float64("nan"))  # still not JSON data


def test_a_conditional_parameter_enqueued_without_its_parent_runs_with_the_parent_that_switches_it_on() -> None:
    space = {"optimizer": tunelab.Categorical(["sgd", "adam", "rms"]),
             "momentum": tunelab.Conditional(tunelab.Float(0.0, 0.99), when={"optimizer": ["sgd", "rms"]}),
             "nesterov": tunelab.Conditional(tunelab.Bool(), when={"momentum": [0.0, 0.9]})}
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler(), space=space)
    for _ in range(6):
        study.enqueue({"momentum": 0.5})
    study.enqueue({"nesterov": True})  # its parent is conditional too: both are filled in
    study.optimize(lambda trial: 1.0, n_trials=7)
    assert [t.params["optimizer"] for t in study.trials] == ["sgd"] * 7  # the random draws included 'adam'
    assert study.trials[-1].params == {"optimizer": "sgd", "momentum": 0.0, "nesterov": True}


def test_a_metric_with_an_empty_name_is_refused() -> None:
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler())
    trial = study.ask()
    with pytest.raises(ConfigError, match="empty name"):
        trial.report(0, **{"": 1.0})


def test_float32_bounds_and_step_are_read_as_the_decimals_they_print() -> None:
    # np.float32(0.1) is 0.10000000149011612 as a float64: a step of 0.2 'did not divide' 0.1 .. 0.7
    d = tunelab.Float(np.float32(0.1), np.float32(0.7), step=np.float32(0.2))
    assert (d.low, d.high, d.step) == (0.1, 0.7, 0.2)
    assert d.grid(4) == [0.1, 0.3, 0.5, 0.7]


def _stop_after(k: int):
    def callback(study: tunelab.Study, trial: tunelab.FrozenTrial) -> None:
        if len(study.trials) >= k:
            study.stop()
    return callback


def test_stop_from_a_callback_starts_no_new_trial_and_the_next_optimize_runs_afresh() -> None:
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler())
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=50, callbacks=[_stop_after(3)])
    assert len(study.trials) == 3
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)  # stop() held for that run only
    assert len(study.trials) == 5


def test_stop_with_worker_processes_lets_the_running_trials_finish(tmp_path: Path) -> None:
    study = tunelab.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", seed=0, sampler=tunelab.RandomSampler())
    study.optimize(objectives.quadratic, n_trials=40, n_workers=2, callbacks=[_stop_after(1)])
    trials = study.trials
    assert 1 <= len(trials) <= 3  # the first to finish stops it; at most the other worker's trials then end
    assert all(t.state == tunelab.TrialState.COMPLETE for t in trials), [(t.number, t.error) for t in trials]


def test_a_failed_trial_s_summary_is_its_exception_line_not_the_last_line_of_a_long_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A sweep trial's error goes on with the command's stderr: the summary showed "got TERM, ignoring"
    # (the script's last line), never "timed out"
    from tunelab.errors import TrialCommandError
    from tunelab.study.frames import trials_to_rows

    def timed_out(trial: tunelab.Trial) -> float:
        raise TrialCommandError("timed out after 1.5s (trial_timeout); the last lines of stderr:\ngot TERM, ignoring")

    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler())
    with caplog.at_level("WARNING", logger="tunelab"):
        study.optimize(timed_out, n_trials=1)
    (row,) = trials_to_rows(study.trials)
    assert row["error"].startswith("tunelab.errors.TrialCommandError: timed out after 1.5s"), row["error"]
    assert "trial 0 failed: tunelab.errors.TrialCommandError: timed out after 1.5s" in caplog.text
    told = study.tell(study.ask(), state="FAIL", error="first line\nlast line of the error")  # plain text: last line
    assert trials_to_rows([told])[0]["error"] == "last line of the error"


def test_a_study_s_user_attributes_take_numpy_numbers_as_a_trial_s_do() -> None:
    # one check for both: create_study(user_attrs=...) refused np.float32 that set_user_attr stores as 0.5
    study = tunelab.create_study(seed=0, user_attrs={"baseline": np.float32(0.5), "sizes": np.array([1, 2])})
    assert study.user_attrs == {"baseline": 0.5, "sizes": [1, 2]}
    with pytest.raises(ConfigError, match=r"create_study\(user_attrs=\.\.\.\)\['bad'\] = nan: .*JSON data"):
        tunelab.create_study(seed=0, user_attrs={"bad": float("nan")})
