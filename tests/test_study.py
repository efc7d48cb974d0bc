"""Study, Trial, ask/tell, enqueue, define-by-run and declared spaces, and bad input."""

from __future__ import annotations

import copy
import math
import pickle
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import tunelab
from objectives import PruneAll, quadratic, staircase, sums_params
from tunelab.errors import (
    ConfigError,
    DistributionConflictError,
    DuplicatedStudyError,
    InvalidDistributionError,
    StudyNotFoundError,
    TrialNotFoundError,
    TrialStateError,
)
from tunelab.records import TrialState


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"


def test_optimize_minimizes_and_reports_best(tmp_path: Path) -> None:
    study = tunelab.create_study(storage=sqlite_url(tmp_path), seed=0)
    study.optimize(lambda t: (t.suggest_float("x", -3, 3) - 1) ** 2, n_trials=40)
    assert len(study.trials) == 40
    assert study.best_value == min(t.value for t in study.trials if t.value is not None)
    assert abs(study.best_params["x"] - 1) < 0.5


def test_maximize_direction_picks_the_largest_value() -> None:
    study = tunelab.create_study(direction="maximize", seed=0)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=20)
    assert study.best_value == max(t.value for t in study.trials if t.value is not None)


def test_same_seed_gives_same_parameters_per_trial_number() -> None:
    a = tunelab.create_study(seed=7)
    b = tunelab.create_study(seed=7)
    for s in (a, b):
        s.optimize(lambda t: t.suggest_float("lr", 1e-5, 1e-1, log=True), n_trials=10)
    assert [t.params for t in a.trials] == [t.params for t in b.trials]


def test_parameter_draw_does_not_depend_on_suggestion_order() -> None:
    a, b = tunelab.create_study(seed=3), tunelab.create_study(seed=3)
    ta, tb = a.ask(), b.ask()
    xa, ya = ta.suggest_float("x", 0, 1), ta.suggest_float("y", 0, 1)
    yb, xb = tb.suggest_float("y", 0, 1), tb.suggest_float("x", 0, 1)
    assert (xa, ya) == (xb, yb)


def test_unseeded_study_stores_its_seed_and_reloads_it(tmp_path: Path) -> None:
    study = tunelab.create_study(name="s", storage=sqlite_url(tmp_path))
    again = tunelab.load_study("s", sqlite_url(tmp_path))
    assert isinstance(study.seed, int) and again.seed == study.seed


def test_ask_and_tell_loop_driven_by_the_user() -> None:
    study = tunelab.create_study(seed=0)
    for _ in range(5):
        trial = study.ask()
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        frozen = study.tell(trial, math.log10(lr))
        assert frozen.state == TrialState.COMPLETE
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4]


def test_tell_twice_is_refused() -> None:
    study = tunelab.create_study()
    trial = study.ask()
    study.tell(trial, 1.0)
    with pytest.raises(TrialStateError):
        study.tell(trial, 2.0)


@pytest.mark.parametrize("bad", [None, float("nan"), float("inf"), "abc"])
def test_tell_with_a_non_finite_or_missing_value_marks_fail_with_reason(bad: object) -> None:
    study = tunelab.create_study()
    frozen = study.tell(study.ask(), bad)  # type: ignore[arg-type]
    assert frozen.state == TrialState.FAIL and frozen.error
    assert study.trials[0].state == TrialState.FAIL


@pytest.mark.parametrize("values", [[0.25], (0.25,), np.array([0.25])])
def test_tell_values_with_one_number_on_a_study_with_one_objective(values: object) -> None:
    study = tunelab.create_study()
    frozen = study.tell(study.ask(), values=values)
    assert frozen.state == TrialState.COMPLETE and frozen.value == 0.25
    assert study.best_value == 0.25


def test_tell_values_with_two_numbers_on_a_study_with_one_objective_fails_the_trial() -> None:
    study = tunelab.create_study()
    frozen = study.tell(study.ask(), values=[0.25, 1.0])
    assert frozen.state == TrialState.FAIL and "several objectives" in (frozen.error or "")


def test_tell_pruned_state() -> None:
    study = tunelab.create_study()
    study.tell(study.ask(), state="PRUNED")
    assert study.trials[0].state == TrialState.PRUNED


def test_suggest_same_name_twice_in_a_trial_returns_the_same_value() -> None:
    trial = tunelab.create_study(seed=0).ask()
    assert trial.suggest_float("x", 0, 1) == trial.suggest_float("x", 0, 1)


def test_one_name_with_two_kinds_of_distribution_is_an_error() -> None:
    study = tunelab.create_study(seed=0)
    study.optimize(lambda t: t.suggest_float("width", 1, 100), n_trials=1)
    with pytest.raises(DistributionConflictError, match="width"):
        study.optimize(lambda t: t.suggest_int("width", 1, 100), n_trials=1)
    # The conflicting trial is recorded, not left RUNNING.
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL]


def test_one_name_switching_log_scale_is_an_error() -> None:
    study = tunelab.create_study(seed=0)
    trial = study.ask()
    study.tell(trial, trial.suggest_float("lr", 1e-4, 1, log=True))
    with pytest.raises(DistributionConflictError, match="lr"):
        study.ask().suggest_float("lr", 1e-4, 1)


def test_a_range_may_change_between_trials() -> None:
    study = tunelab.create_study(seed=0)
    study.optimize(lambda t: t.suggest_float("lr", 1e-4, 1e-2, log=True), n_trials=2)
    study.optimize(lambda t: t.suggest_float("lr", 1e-5, 1e-1, log=True), n_trials=2)
    assert study.trials[-1].distributions["lr"].low == 1e-5  # type: ignore[attr-defined]


def test_invalid_suggestion_names_the_parameter() -> None:
    trial = tunelab.create_study().ask()
    with pytest.raises(InvalidDistributionError, match=r"'lr'.*low > 0"):
        trial.suggest_float("lr", 0.0, 1.0, log=True)


def test_config_error_inside_objective_stops_the_study_and_records_the_trial() -> None:
    study = tunelab.create_study()
    with pytest.raises(InvalidDistributionError):
        study.optimize(lambda t: t.suggest_float("lr", 0.0, 1.0, log=True), n_trials=5)
    assert [t.state for t in study.trials] == [TrialState.FAIL]


def test_declared_space_with_conditional_parameters() -> None:
    space = {
        "lr": tunelab.Float(1e-5, 1e-1, log=True),
        "optimizer": tunelab.Categorical(["sgd", "adam"]),
        "momentum": tunelab.Conditional(tunelab.Float(0.0, 0.99), when={"optimizer": "sgd"}),
        "use_bn": tunelab.Bool(),
    }
    study = tunelab.create_study(seed=1)
    study.optimize(lambda t: t.params["lr"], n_trials=30, space=space)
    for t in study.trials:
        assert ("momentum" in t.params) == (t.params["optimizer"] == "sgd")
        assert set(t.params) >= {"lr", "optimizer", "use_bn"}
    assert {t.params["optimizer"] for t in study.trials} == {"sgd", "adam"}


def test_define_by_run_conditional_parameters() -> None:
    def objective(trial: tunelab.Trial) -> float:
        if trial.suggest_categorical("optimizer", ["sgd", "adam"]) == "sgd":
            trial.suggest_float("momentum", 0.0, 0.99)
        return 0.0

    study = tunelab.create_study(seed=2)
    study.optimize(objective, n_trials=20)
    assert all(("momentum" in t.params) == (t.params["optimizer"] == "sgd") for t in study.trials)


def test_space_given_to_create_study_is_used_by_load_study(tmp_path: Path) -> None:
    space = {"x": tunelab.Int(0, 10, step=2)}
    tunelab.create_study(name="s", storage=sqlite_url(tmp_path), space=space)
    study = tunelab.load_study("s", sqlite_url(tmp_path))
    study.optimize(lambda t: t.params["x"], n_trials=5)
    assert all(t.params["x"] in {0, 2, 4, 6, 8, 10} for t in study.trials)


def test_enqueued_configuration_runs_first_and_missing_params_are_sampled() -> None:
    study = tunelab.create_study(seed=0)
    number = study.enqueue({"lr": 0.01})
    assert number == 0
    study.optimize(lambda t: t.suggest_float("lr", 1e-5, 1e-1, log=True) + t.suggest_float("x", 0, 1), n_trials=3)
    first = study.trials[0]
    assert first.params["lr"] == 0.01 and "x" in first.params
    assert first.system_attrs.get("enqueued") is True


def test_enqueue_checks_values_against_the_declared_space() -> None:
    study = tunelab.create_study(space={"lr": tunelab.Float(1e-5, 1e-1, log=True)})
    with pytest.raises(ConfigError, match="lr"):
        study.enqueue({"lr": 5.0})


def test_enqueue_refuses_a_conditional_parameter_its_enqueued_parents_switch_off() -> None:
    # {'optimizer': 'adam', 'momentum': 0.5} ran with momentum, which the space gives sgd alone.
    space = {"optimizer": tunelab.Categorical(["sgd", "adam", None]),
             "momentum": tunelab.Conditional(tunelab.Float(0.0, 0.99), when={"optimizer": "sgd"}),
             "nesterov": tunelab.Conditional(tunelab.Bool(), when={"optimizer": ["sgd", None]})}
    study = tunelab.create_study(sampler=tunelab.RandomSampler(), seed=0, space=space)
    with pytest.raises(ConfigError, match=r"'momentum' exists only when optimizer='sgd' .* has optimizer='adam'; "
                                          r"leave 'momentum' out, or enqueue optimizer='sgd'"):
        study.enqueue({"optimizer": "adam", "momentum": 0.5})
    with pytest.raises(ConfigError, match=r"'nesterov' exists only when optimizer in \['sgd', None\]"):
        study.enqueue({"optimizer": "adam", "nesterov": True})
    assert study.trials == []
    study.enqueue({"optimizer": "sgd", "momentum": 0.5, "nesterov": True})
    study.enqueue({"optimizer": None, "nesterov": False})
    study.enqueue({"momentum": 0.9})  # its parent is sampled when the trial runs
    study.optimize(lambda t: 1.0, n_trials=3)
    assert [t.params for t in study.trials[:2]] == [{"optimizer": "sgd", "momentum": 0.5, "nesterov": True},
                                                    {"optimizer": None, "nesterov": False}]


def _lr_and_optimizer(trial: tunelab.Trial) -> float:
    trial.suggest_categorical("optimizer", ["sgd", "adam"])
    trial.suggest_int("layers", 1, 4)
    return trial.suggest_float("lr", 1e-5, 1e-1, log=True)


@pytest.mark.parametrize(("params", "words"), [
    ({"lr": 5.0}, ["'lr' = 5.0", "[1e-05, 0.1]", "Enqueue a number in [1e-05, 0.1]", "leave 'lr' out"]),
    ({"lr": "fast"}, ["'lr' = 'fast'", "Float(low=1e-05, high=0.1"]),
    ({"layers": 2.5}, ["'layers' = 2.5", "an integer in [1, 4]"]),
    ({"optimizer": "rmsprop"}, ["'optimizer' = 'rmsprop'", "one of ['sgd', 'adam']"]),
    ({"lr": 1e-3, "batch": [32, 64]}, ["'batch'", "list", "None, a bool, a number or a string"]),
    ({"lr": 1e-3, "batch": math.inf}, ["'batch'", "not finite"]),
])
def test_enqueue_from_another_process_checks_the_studys_stored_distributions(
    tmp_path: Path, params: dict[str, object], words: list[str]
) -> None:
    # Issue 16, item 2: a script, the dashboard or another process has seen no distribution itself.
    url = sqlite_url(tmp_path)
    tunelab.create_study(name="s", storage=url, seed=0).optimize(_lr_and_optimizer, n_trials=2)
    other = tunelab.load_study("s", url)
    with pytest.raises(ConfigError) as raised:
        other.enqueue(params)  # type: ignore[arg-type]
    for word in words:
        assert word in str(raised.value)
    assert len(other.trials) == 2  # nothing stored


def test_enqueue_keeps_the_types_of_the_stored_distributions_and_takes_new_scalars(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    tunelab.create_study(name="s", storage=url, seed=0).optimize(_lr_and_optimizer, n_trials=2)
    other = tunelab.load_study("s", url)
    number = other.enqueue({"layers": 3.0, "lr": 1e-3, "note": "from a script", "flag": None})
    waiting = other.get_trial(number)
    assert waiting.params == {"layers": 3, "lr": 1e-3, "note": "from a script", "flag": None}
    assert type(waiting.params["layers"]) is int
    assert set(waiting.distributions) == {"layers", "lr"}


def test_enqueue_accepts_a_range_a_later_trial_widened(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    study = tunelab.create_study(name="s", storage=url, seed=0)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    study.optimize(lambda t: t.suggest_float("x", 0, 10), n_trials=1)  # ranges may widen, kinds may not
    other = tunelab.load_study("s", url)
    number = other.enqueue({"x": 5.0})
    assert other.get_trial(number).distributions["x"] == tunelab.Float(0, 10)
    with pytest.raises(ConfigError, match=r"'x' = 50\.0 .*Float\(low=0\.0, high=1\.0"):
        other.enqueue({"x": 50.0})


@pytest.mark.parametrize("n_workers", [1, 2])
def test_an_enqueued_value_that_does_not_fit_fails_its_trial_not_the_study(tmp_path: Path, n_workers: int) -> None:
    # A value stored before the range changed (or by an older version) fails the trial that claims
    # it, with the reason; the other trials run (it used to stop the whole run).
    study = tunelab.create_study(name="s", storage=sqlite_url(tmp_path), seed=0, sampler=tunelab.RandomSampler())
    study.storage.create_trial(study.study_id, TrialState.WAITING, params={"x": 50.0, "lr": 1e-3})
    study.optimize(quadratic, n_trials=3, n_workers=n_workers)
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert "the enqueued value 50.0 of parameter 'x' does not fit Float(low=-5.0, high=5.0" in (trials[0].error or "")
    assert "EnqueuedValueError" in (trials[0].error or "")


@pytest.mark.parametrize("n_workers", [1, 2])
def test_an_enqueued_value_the_declared_space_refuses_fails_its_trial_not_the_study(
    tmp_path: Path, n_workers: int
) -> None:
    space = {"x": tunelab.Float(-5, 5), "n": tunelab.Int(1, 3)}
    study = tunelab.create_study(name="s", storage=sqlite_url(tmp_path), seed=0, space=space,
                                 sampler=tunelab.RandomSampler())
    study.storage.create_trial(study.study_id, TrialState.WAITING, params={"x": 1.0, "n": 7})
    study.optimize(sums_params, n_trials=3, n_workers=n_workers)
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert "the enqueued value 7 of parameter 'n' does not fit Int(low=1, high=3" in (trials[0].error or "")


def test_report_stores_several_metrics_per_step(tmp_path: Path) -> None:
    study = tunelab.create_study(storage=sqlite_url(tmp_path))

    def objective(trial: tunelab.Trial) -> float:
        for epoch in range(3):
            trial.report(epoch, train_loss=1.0 / (epoch + 1), val_acc=0.5 + epoch / 10)
        return 0.0

    study.optimize(objective, n_trials=1)
    curves = study.get_curves(0)
    assert curves["train_loss"] == ([0, 1, 2], [1.0, 0.5, 1 / 3])
    assert curves["val_acc"][0] == [0, 1, 2]


@pytest.mark.parametrize("step", [-1, True, 1.0, "1", None])
def test_report_refuses_a_step_that_is_not_a_non_negative_integer(step: object) -> None:
    trial = tunelab.create_study().ask()
    with pytest.raises(ConfigError, match="non-negative integer"):
        trial.report(step, loss=1.0)  # type: ignore[arg-type]
    assert trial.study.get_curves(trial.number) == {}


def test_report_refuses_a_step_past_a_64_bit_integer_on_every_storage(tmp_path: Path) -> None:
    for storage in (None, sqlite_url(tmp_path)):  # SQLite raised a bare OverflowError, memory kept it
        trial = tunelab.create_study(storage=storage).ask()
        trial.report(2**63 - 1, loss=1.0)
        with pytest.raises(ConfigError, match=r"at most 2\*\*63 - 1"):
            trial.report(2**63, loss=1.0)
        assert trial.study.get_curves(trial.number)["loss"][0] == [2**63 - 1]


def test_report_refuses_a_metric_that_is_not_a_number_and_an_empty_report() -> None:
    trial = tunelab.create_study().ask()
    with pytest.raises(ConfigError, match="metric 'acc' must be a real number, got 'high'"):
        trial.report(0, loss=1.0, acc="high")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="at least one metric"):
        trial.report(0)
    assert trial.study.get_curves(trial.number) == {}


@pytest.mark.parametrize("value", ["0.5", "nan", True, np.bool_(False), b"1", 10**400, [0.5]],
                         ids=["str", "str-nan", "bool", "numpy-bool", "bytes", "10**400", "list"])
def test_report_refuses_a_metric_value_that_is_not_a_real_number_naming_the_metric_and_value(
    tmp_path: Path, value: object
) -> None:
    # "0.5", "nan" and True were stored (float() reads them); 10**400 raised a bare OverflowError
    for storage in (None, sqlite_url(tmp_path)):
        trial = tunelab.create_study(storage=storage).ask()
        with pytest.raises(ConfigError) as refused:
            trial.report(0, loss=1.0, acc=value)  # type: ignore[arg-type]
        message = str(refused.value)
        assert message.startswith(f"metric 'acc' must be a real number, got {repr(value)[:60]}"), message
        assert trial.study.get_curves(trial.number) == {}


def test_report_keeps_real_numbers_of_any_kind_nan_and_infinities(tmp_path: Path) -> None:
    import torch
    for storage in (None, sqlite_url(tmp_path)):
        trial = tunelab.create_study(storage=storage).ask()
        trial.report(0, a=1, b=np.float32(0.5), c=np.int64(3), d=np.array(0.25), e=torch.tensor(0.75),
                     nan=float("nan"), up=math.inf, down=np.float64(-math.inf))
        curves = trial.study.get_curves(trial.number)
        assert {k: v[1][0] for k, v in curves.items() if k != "nan"} == {
            "a": 1.0, "b": 0.5, "c": 3.0, "d": 0.25, "e": 0.75, "up": math.inf, "down": -math.inf}
        assert math.isnan(curves["nan"][1][0])


def test_a_value_given_by_position_names_the_call_by_name() -> None:
    trial = tunelab.create_study().ask()
    with pytest.raises(ConfigError, match=r"trial.report\(epoch, val_loss=...\), got report\(0.42, 3\).*Optuna"):
        trial.report(0.42, 3)  # type: ignore[arg-type]  # Optuna's report(value, step)
    assert trial.study.get_curves(trial.number) == {}


def test_report_takes_numpy_steps_and_values_as_plain_numbers() -> None:
    import numpy as np

    trial = tunelab.create_study().ask()
    trial.report(np.int64(2), loss=np.float32(0.5), count=3)
    curves = trial.study.get_curves(trial.number)
    assert curves == {"loss": ([2], [0.5]), "count": ([2], [3.0])}
    assert type(curves["count"][1][0]) is float and type(curves["loss"][0][0]) is int


def test_a_finished_trial_cannot_report() -> None:
    study = tunelab.create_study()
    trial = study.ask()
    study.tell(trial, 1.0)
    with pytest.raises(TrialStateError):
        trial.report(0, loss=1.0)


def test_params_are_visible_to_other_readers_after_the_first_report(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    study = tunelab.create_study(name="s", storage=url)
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    trial.report(0, loss=1.0)
    reader = tunelab.load_study("s", url)
    assert reader.trials[0].state == TrialState.RUNNING and "x" in reader.trials[0].params


def test_user_attrs_on_trials_and_studies(tmp_path: Path) -> None:
    study = tunelab.create_study(name="s", storage=sqlite_url(tmp_path))
    study.set_user_attr("dataset", "digits-v1")

    def objective(trial: tunelab.Trial) -> float:
        trial.set_user_attr("epochs", 3)
        return 1.0

    study.optimize(objective, n_trials=1)
    again = tunelab.load_study("s", sqlite_url(tmp_path))
    assert again.user_attrs == {"dataset": "digits-v1"}
    assert again.trials[0].user_attrs == {"epochs": 3}


def test_system_attrs_of_tunelab_tools_persist_and_the_study_s_own_are_protected(tmp_path: Path) -> None:
    study = tunelab.create_study(name="s", storage=sqlite_url(tmp_path), sampler=tunelab.RandomSampler())
    study.set_system_attr("recipe", {"steps": [{"step": "initial_loss", "verdict": "pass"}]})
    again = tunelab.load_study("s", sqlite_url(tmp_path))
    assert again.system_attrs["recipe"] == {"steps": [{"step": "initial_loss", "verdict": "pass"}]}
    assert again.system_attrs["sampler"]["name"] == "RandomSampler"  # kept beside it
    for key in ("sampler", "pruner", "space", "artifact_dir", "checkpoint_policy"):
        with pytest.raises(ConfigError, match=f"'{key}' belongs to the study itself"):
            study.set_system_attr(key, {})
    with pytest.raises(ConfigError, match="non-empty strings"):
        study.set_system_attr("", 1)


def test_trials_dataframe_has_one_row_per_trial() -> None:
    study = tunelab.create_study(seed=0)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=4)
    df = study.trials_dataframe()
    assert list(df["number"]) == [0, 1, 2, 3] and "params_x" in df.columns


def test_best_trial_without_complete_trials_is_a_clear_error() -> None:
    with pytest.raises(TrialNotFoundError, match="no COMPLETE trial"):
        _ = tunelab.create_study().best_trial


def test_callbacks_see_each_finished_trial() -> None:
    seen: list[int] = []
    study = tunelab.create_study()
    study.optimize(lambda t: 1.0, n_trials=3, callbacks=[lambda s, t: seen.append(t.number)])
    assert seen == [0, 1, 2]


def test_timeout_stops_starting_new_trials() -> None:
    import time

    study = tunelab.create_study()
    study.optimize(lambda t: time.sleep(0.05) or 1.0, timeout=0.3)
    assert 1 <= len(study.trials) <= 10


def test_trial_pruned_marks_the_trial_pruned() -> None:
    def objective(trial: tunelab.Trial) -> float:
        trial.report(0, loss=1.0)
        raise tunelab.TrialPruned()

    study = tunelab.create_study()
    study.optimize(objective, n_trials=2)
    assert {t.state for t in study.trials} == {TrialState.PRUNED}


def test_exceptions_outside_catch_propagate_after_recording_the_trial() -> None:
    def objective(trial: tunelab.Trial) -> float:
        raise KeyError("not caught")

    study = tunelab.create_study()
    with pytest.raises(KeyError):
        study.optimize(objective, n_trials=3, catch=(ValueError,))
    assert [t.state for t in study.trials] == [TrialState.FAIL]


# -- bad input, before any trial runs ----------------------------------------------------------
def test_unknown_direction_is_rejected() -> None:
    with pytest.raises(ConfigError, match="direction"):
        tunelab.create_study(direction="minimise")


def test_loading_a_missing_study_names_it(tmp_path: Path) -> None:
    with pytest.raises(StudyNotFoundError, match="nope"):
        tunelab.load_study("nope", sqlite_url(tmp_path))


def test_creating_an_existing_study_fails_unless_load_if_exists(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    first = tunelab.create_study(name="s", storage=url)
    first.optimize(lambda t: 1.0, n_trials=2)
    with pytest.raises(DuplicatedStudyError, match="load_if_exists"):
        tunelab.create_study(name="s", storage=url)
    again = tunelab.create_study(name="s", storage=url, load_if_exists=True)
    assert len(again.trials) == 2


@pytest.mark.parametrize("value", ["no", 0, None])
def test_load_if_exists_must_be_a_bool(tmp_path: Path, value: object) -> None:
    # was read by its truth: load_if_exists="no" loaded the existing study
    url = f"sqlite:///{tmp_path / 't.db'}"
    with pytest.raises(ConfigError, match=r"load_if_exists must be True .* or False, got"):
        tunelab.create_study(name="s", storage=url, load_if_exists=value)  # type: ignore[arg-type]
    assert not (tmp_path / "t.db").exists()  # refused before the storage was opened


def test_load_if_exists_refuses_a_direction_other_than_the_stored_one(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    tunelab.create_study(name="acc", storage=url, direction="maximize")
    with pytest.raises(ConfigError, match="exists with direction 'maximize', not 'minimize'"):
        tunelab.create_study(name="acc", storage=url, direction="minimize", load_if_exists=True)  # it minimized unsaid
    assert tunelab.create_study(name="acc", storage=url, load_if_exists=True).direction == "maximize"
    assert tunelab.create_study(name="acc", storage=url, direction="maximize", load_if_exists=True).direction == (
        "maximize")


def test_workers_use_the_drivers_pruner_not_the_stored_one(tmp_path: Path) -> None:
    # Issue 16, item 10: the driver used a new pruner while spawned workers rebuilt the stored one.
    url = sqlite_url(tmp_path)
    never = tunelab.MedianPruner(n_startup_trials=100)
    tunelab.create_study(name="s", storage=url, seed=0, sampler=tunelab.RandomSampler(), pruner=never)
    study = tunelab.load_study("s", url, pruner=PruneAll())  # load_study stores nothing
    study.optimize(staircase, n_trials=6, n_workers=2)
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.PRUNED] * 6
    assert {(t.system_attrs["pruned"]["rule"], t.system_attrs["pruned"]["step"]) for t in trials} == {("prune all", 1)}
    assert study.system_attrs["pruner"] == never.describe()


def test_load_if_exists_with_a_new_pruner_stores_it(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    tunelab.create_study(name="s", storage=url, seed=0, sampler=tunelab.RandomSampler(),
                         pruner=tunelab.MedianPruner(n_startup_trials=100))  # never prunes
    study = tunelab.create_study(name="s", storage=url, load_if_exists=True, pruner=PruneAll())
    assert isinstance(study.sampler, tunelab.RandomSampler)  # the stored sampler: none was given
    # Stored: a `tunelab worker`, the dashboard or a script that loads the study later gets it too.
    assert study.system_attrs["pruner"] == PruneAll().describe()
    later = tunelab.load_study("s", url)
    assert isinstance(later.pruner, PruneAll)
    later.optimize(staircase, n_trials=2, n_workers=2)
    assert [t.state for t in later.trials] == [TrialState.PRUNED] * 2


def test_load_if_exists_with_a_new_sampler_stores_it(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    tunelab.create_study(name="s", storage=url, seed=0, sampler=tunelab.RandomSampler())
    tpe = tunelab.TPESampler(n_startup_trials=4)
    assert tunelab.create_study(name="s", storage=url, load_if_exists=True, sampler=tpe).sampler is tpe
    loaded = tunelab.load_study("s", url)
    assert isinstance(loaded.sampler, tunelab.TPESampler) and loaded.sampler.describe() == tpe.describe()
    again = tunelab.create_study(name="s", storage=url, load_if_exists=True)  # none given: the stored one
    assert again.sampler.describe() == tpe.describe() and again.pruner is None


@pytest.mark.parametrize("kwargs, word", [
    ({"n_trials": 0}, "n_trials"),
    ({"n_trials": -3}, "n_trials"),
    ({"n_trials": 2.5}, "n_trials"),
    ({"n_workers": 0}, "n_workers"),
    ({"timeout": -1}, "timeout"),
    ({"catch": "ValueError"}, "catch"),
    ({"heartbeat_interval": 5, "grace_period": 1}, "grace_period"),
    ({"n_trials": 1, "show_progress": "no"}, "show_progress must be True, False or None"),  # was a bar
    ({"n_trials": 1, "requeue_lost_trials": "no"}, "requeue_lost_trials must be True or False"),  # requeued
])
def test_bad_optimize_options_are_rejected_before_any_trial(kwargs: dict[str, object], word: str) -> None:
    study = tunelab.create_study()
    with pytest.raises(ConfigError, match=word):
        study.optimize(lambda t: 1.0, **kwargs)  # type: ignore[arg-type]
    assert study.trials == []


@pytest.mark.parametrize("sampler", ["RandomSampler", "TPESampler", "GPSampler", "AutoSampler", "NSGAIISampler"])
def test_a_sampler_given_a_seed_says_where_the_seed_goes(sampler: str) -> None:
    # TPESampler(seed=0), as in Optuna, was Python's "got an unexpected keyword argument 'seed'"
    with pytest.raises(ConfigError, match=rf"{sampler}\(\) takes no seed: .*create_study\(seed=\.\.\.\)"):
        getattr(tunelab, sampler)(seed=0)


def test_get_trials_reads_states_by_name_and_refuses_an_unknown_one() -> None:
    # states="COMPLETE" was read letter by letter and states=["DONE"] matched nothing: both returned [] unsaid
    study = tunelab.create_study(sampler=tunelab.RandomSampler(), seed=0)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    complete = study.get_trials([TrialState.COMPLETE])
    assert len(complete) == 2
    assert study.get_trials("COMPLETE") == study.get_trials(["complete"]) == complete  # type: ignore[arg-type]
    assert study.get_trials(TrialState.COMPLETE) == complete  # type: ignore[arg-type]
    assert study.get_trials([TrialState.FAIL]) == []
    with pytest.raises(ConfigError, match=r"'DONE' is no trial state; use WAITING, RUNNING, COMPLETE, PRUNED, FAIL"):
        study.get_trials(["DONE"])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match=r"states=\.\.\.\) must be a list of trial states"):
        study.get_trials(3)  # type: ignore[arg-type]


def test_parallel_workers_are_served_the_in_memory_storage() -> None:
    study = tunelab.create_study()  # in memory: this process serves it to its workers
    study.optimize(lambda t: 1.0, n_trials=2, n_workers=2)  # a lambda goes by value
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2


def test_an_objective_that_cannot_be_copied_to_workers_is_a_clear_error(tmp_path: Path) -> None:
    study = tunelab.create_study(storage=sqlite_url(tmp_path))
    lock = threading.Lock()

    def holds_a_lock(trial: tunelab.Trial) -> float:
        with lock:
            return 1.0

    with pytest.raises(ConfigError, match=r"cannot be sent to worker processes .*create it inside the objective"):
        study.optimize(holds_a_lock, n_trials=2, n_workers=2)
    assert study.trials == []


def test_bad_space_is_rejected_before_any_trial() -> None:
    study = tunelab.create_study()
    with pytest.raises(ConfigError, match="momentum"):
        study.optimize(lambda t: 1.0, n_trials=1, space={
            "momentum": tunelab.Conditional(tunelab.Float(0, 1), when={"optimizer": "sgd"}),
        })
    assert study.trials == []


def test_study_name_with_sql_is_stored_verbatim(tmp_path: Path) -> None:
    name = "x'; DROP TABLE trials; --"
    url = sqlite_url(tmp_path)
    study = tunelab.create_study(name=name, storage=url, user_attrs={"note": "'); DELETE FROM studies; --"})
    study.optimize(lambda t: 1.0, n_trials=2)
    again = tunelab.load_study(name, url)
    assert again.name == name and len(again.trials) == 2
    assert again.user_attrs["note"] == "'); DELETE FROM studies; --"


def test_non_url_storage_gets_a_hint() -> None:
    with pytest.raises(tunelab.errors.StorageError, match=r"sqlite:///tunelab\.db"):
        tunelab.create_study(storage="tunelab.db")


def test_reserve_then_ask_reserved_is_ask_in_two_steps() -> None:
    study = tunelab.create_study(seed=3, sampler=tunelab.RandomSampler())
    study.enqueue({"x": 0.25})
    first, second = study.reserve_trial(), study.reserve_trial()
    assert (first.number, second.number) == (0, 1) and first.state == TrialState.RUNNING
    trial = study.ask_reserved(first.trial_id)
    assert trial.suggest_float("x", 0, 1) == 0.25  # the enqueued configuration
    study.tell(trial, 1.0)
    other = tunelab.create_study(seed=3, sampler=tunelab.RandomSampler())
    other.enqueue({"x": 0.25})
    other.tell(other.ask(), 1.0)
    expected = other.ask().suggest_float("x", 0, 1)
    assert study.ask_reserved(second.trial_id).suggest_float("x", 0, 1) == expected  # same draw as ask()


def test_ask_reserved_refuses_a_finished_trial_and_fails_one_with_a_bad_space() -> None:
    study = tunelab.create_study(seed=0)
    done = study.reserve_trial()
    study.tell(study.ask_reserved(done.trial_id), 1.0)
    with pytest.raises(TrialStateError, match="not RUNNING"):
        study.ask_reserved(done.trial_id)
    reserved = study.reserve_trial()
    with pytest.raises(ConfigError):
        study.ask_reserved(reserved.trial_id, space={})
    assert study.trials[1].state == TrialState.FAIL and "could not start" in (study.trials[1].error or "")


def test_ask_reserved_refuses_a_trial_of_another_study_naming_both(tmp_path: Path) -> None:
    """A trial reserved in study 'b' was taken into study 'a' (planned by a's sampler, its values written to b's
    trial): trial ids are unique across the storage, and both studies had a trial 0."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    a = tunelab.create_study(name="a", storage=url, seed=0)
    b = tunelab.create_study(name="b", storage=url, seed=0)
    a.tell(a.ask(), 1.0)  # a's trial 0 exists: only the id tells them apart
    theirs = b.reserve_trial()
    for given in (theirs.trial_id, theirs):
        with pytest.raises(TrialStateError, match=r"trial 0 \(trial_id \d+\) belongs to study 'b', not to study 'a'"):
            a.ask_reserved(given)
    assert [t.state for t in b.trials] == [TrialState.RUNNING] and len(a.trials) == 1  # nothing written
    b.tell(b.ask_reserved(theirs), 2.0)
    assert b.trials[0].value == 2.0


def test_a_study_in_a_database_pickles_and_deep_copies_as_the_same_study(tmp_path: Path) -> None:
    # It could not be copied at all (its storage holds a lock and a thread-local): an objective, a callback
    # or a Ray task holding the study failed to reach a worker process.
    url = f"sqlite:///{tmp_path / 'copy.db'}"
    sampler, pruner = tunelab.CoarseToFineSampler(trials_per_stage=3), tunelab.MedianPruner()
    space = {"x": tunelab.Float(0, 1)}
    study = tunelab.create_study(name="copied", storage=url, seed=4, sampler=sampler, pruner=pruner, space=space)
    study.optimize(sums_params, n_trials=3)
    for again in (pickle.loads(pickle.dumps(study)), copy.deepcopy(study)):
        assert (again.name, again.seed) == ("copied", 4)
        assert [t.params for t in again.trials] == [t.params for t in study.trials]
        assert isinstance(again.sampler, tunelab.CoarseToFineSampler) and again.sampler.trials_per_stage == 3
        assert isinstance(again.pruner, tunelab.MedianPruner) and again.space == study.space
        again.optimize(sums_params, n_trials=1)  # the same study: its trials land where the original reads
    assert len(study.trials) == 5
    reading = pickle.loads(pickle.dumps(tunelab.read_study("copied", url)))
    with pytest.raises(ConfigError):
        reading.ask()


def test_copying_a_study_in_memory_or_a_running_trial_says_what_to_do() -> None:
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler())
    with pytest.raises(TypeError, match="storage URL"):
        pickle.dumps(study)
    trial = study.ask()
    with pytest.raises(TypeError, match=r"trial\.params"):
        copy.deepcopy(trial)


# -- coming from Optuna: what its users write ---------------------------------------------------
@pytest.mark.parametrize("catch", [[ValueError], [ValueError, KeyError], ValueError])
def test_catch_takes_a_list_or_one_class_as_optuna_does(catch: object) -> None:
    def objective(trial: tunelab.Trial) -> float:
        if trial.number == 0:
            raise ValueError("caught")
        return 1.0

    study = tunelab.create_study()
    study.optimize(objective, n_trials=2, catch=catch)  # type: ignore[arg-type]
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]


def test_optuna_names_missing_from_study_and_trials_say_what_to_use() -> None:
    study = tunelab.create_study(seed=0)
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=1)
    with pytest.raises(AttributeError, match=r"study\.enqueue\(params"):
        study.enqueue_trial({"x": 0.5})
    with pytest.raises(AttributeError, match=r"study\.name"):
        getattr(study, "study_name")  # noqa: B009 - what a user writes: study.study_name
    with pytest.raises(AttributeError, match=r"study\.get_curves\(trial\.number\)"):
        getattr(study.trials[0], "intermediate_values")  # noqa: B009
    trial = study.ask()
    with pytest.raises(AttributeError, match=r"suggest_float\(name, low, high, log=True\)"):
        trial.suggest_loguniform("lr", 1e-5, 1e-1)
    # any other name is a plain AttributeError: hasattr, pickling and copies work as before
    assert not hasattr(study, "nope") and not hasattr(trial, "nope")
    assert not hasattr(study.trials[0], "nope")
    import copy
    import pickle

    frozen = study.trials[0]
    assert pickle.loads(pickle.dumps(frozen)) == frozen == copy.deepcopy(frozen)
    study.tell(trial, 0.5)


def test_tell_given_a_trial_number_says_to_pass_the_trial() -> None:
    study = tunelab.create_study()
    trial = study.ask()
    with pytest.raises(ConfigError, match=r"a trial number is not enough.*study\.tell\(trial, value\)"):
        study.tell(trial.number, 1.0)  # type: ignore[arg-type]
    assert study.tell(trial, 1.0).state == TrialState.COMPLETE


def test_public_types_let_typed_user_code_use_params_and_choices() -> None:
    """What mypy sees: ``optimizer: str = trial.suggest_categorical("optimizer", ["adam", "sgd"])`` and
    ``train(**study.best_params)`` type-check (as with Optuna), so the values are not a union."""
    import typing
    from collections.abc import Mapping, Sequence

    from tunelab.records import FrozenTrial
    from tunelab.study import Study, Trial

    def returns(f: typing.Any) -> object:
        return typing.get_type_hints(f)["return"]

    assert returns(Study.best_params.fget) == dict[str, typing.Any]
    assert returns(Trial.params.fget) == dict[str, typing.Any]
    assert returns(Trial.suggest_space) == dict[str, typing.Any]
    assert typing.get_type_hints(FrozenTrial)["params"] == Mapping[str, typing.Any]
    if sys.version_info >= (3, 11):  # typing.get_overloads
        overloads = typing.get_overloads(Trial.suggest_categorical)
        by_choice = {typing.get_type_hints(f)["choices"]: returns(f) for f in overloads}
        assert by_choice[Sequence[str]] is str and by_choice[Sequence[int]] is int
        assert by_choice[Sequence[float]] is float and by_choice[Sequence[bool]] is bool
    else:  # Python 3.10 keeps no overloads at run time: read them in the source
        import inspect
        import re

        source = inspect.getsource(sys.modules[Trial.__module__])
        pattern = r"def suggest_categorical\(\s*self, name: str, choices: Sequence\[(\w+)\].*?\) -> (\w+)"
        found = re.findall(pattern, source, re.S)
        assert {("str", "str"), ("int", "int"), ("float", "float"), ("bool", "bool")} <= set(found)


@pytest.mark.parametrize("sampler", ["TPESampler", "RandomSampler", "GPSampler", "AutoSampler", "NSGAIISampler"])
def test_a_sampler_given_a_seed_says_the_seed_is_the_studys(sampler: str) -> None:
    with pytest.raises(ConfigError, match=rf"create_study\(seed=42, sampler={sampler}\(\.\.\.\)\)"):
        getattr(tunelab, sampler)(seed=42)  # Optuna's TPESampler(seed=42)
    with pytest.raises(TypeError):  # other unknown arguments are refused as before
        getattr(tunelab, sampler)(sead=42)
    study = tunelab.create_study(seed=42, sampler=getattr(tunelab, sampler)())
    assert study.seed == 42


def test_enqueue_skip_if_exists_queues_a_configuration_once(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    study = tunelab.create_study(name="s", storage=url, seed=0, sampler=tunelab.RandomSampler())
    first = study.enqueue({"x": 0.5, "opt": "adam"}, skip_if_exists=True)
    again = tunelab.load_study("s", url)  # another worker enqueues the same baseline
    assert again.enqueue({"opt": "adam", "x": 0.5}, skip_if_exists=True) == first
    assert again.enqueue({"x": 0.25, "opt": "adam"}, skip_if_exists=True) == first + 1  # another value: queued
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0) + (t.suggest_categorical("opt", ["adam", "sgd"]) == "sgd"),
                   n_trials=3)
    assert study.enqueue({"x": 0.5, "opt": "adam"}, skip_if_exists=True) == first  # finished: still skipped
    assert study.enqueue({"x": 0.5, "opt": "adam"}) == 3  # without it: queued again
    assert [t.params for t in study.trials[:2]] == [{"x": 0.5, "opt": "adam"}, {"x": 0.25, "opt": "adam"}]


def test_tell_returns_the_trial_as_stored_with_an_enqueued_value_the_objective_never_asked_for(tmp_path: Path) -> None:
    # the returned record said params == {} while the storage held {"x": 1.0}
    study = tunelab.create_study(storage=f"sqlite:///{tmp_path / 'e.db'}", seed=0, sampler=tunelab.RandomSampler())
    study.enqueue({"x": 1.0, "y": 2})
    trial = study.ask()
    trial.suggest_int("y", 0, 5)
    told = study.tell(trial, 0.3)
    assert told.params == study.trials[0].params == {"x": 1.0, "y": 2}
    assert set(told.distributions) == set(study.trials[0].distributions) == {"y"}
