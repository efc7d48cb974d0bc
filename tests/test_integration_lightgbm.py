"""tunelab.integrations.lightgbm: a real LightGBM training reports its rounds, stops hopeless trials
cleanly (lgb.train returns) and gives the best round's score."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import lightgbm as lgb
import pytest

import tunelab
from integration_tabular_objectives import (
    ROUNDS,
    Watching,
    data,
    example_text,
    lightgbm_objective,
    page_python_blocks,
    run_example,
)
from tunelab.errors import ConfigError
from tunelab.integrations.lightgbm import TunelabCallback

PARAMS = {"objective": "binary", "num_leaves": 7, "min_data_in_leaf": 5, "num_threads": 1, "verbose": -1, "seed": 0}


def _asha() -> tunelab.SuccessiveHalvingPruner:
    # Rungs at iterations 1, 3 (counted from 0); with two trials at a rung, only the better goes on.
    return tunelab.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3, metric="valid-binary_logloss")


def _curves_equal_logged(study: tunelab.Study, number: int) -> None:
    logged = study.trials[number].user_attrs["logged"]
    curves = study.get_curves(number)
    expected = {f"{data}-{metric}": values for data, metrics in logged.items() for metric, values in metrics.items()}
    assert set(curves) == set(expected) == {"train-binary_logloss", "valid-binary_logloss"}
    for name, values in expected.items():
        steps, reported = curves[name]
        assert steps == list(range(len(values)))
        assert reported == pytest.approx(values, rel=1e-12)


def _datasets() -> tuple[lgb.Dataset, lgb.Dataset]:
    x, y, xv, yv = data()
    dtrain = lgb.Dataset(x, y)
    return dtrain, lgb.Dataset(xv, yv, reference=dtrain)


def test_rounds_are_reported_as_lightgbm_recorded_them_and_the_value_is_the_best_rounds_score() -> None:
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler())
    study.enqueue({"lr": 0.3})
    study.optimize(lightgbm_objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state.value == "COMPLETE"
    _curves_equal_logged(study, 0)
    valid = trial.user_attrs["logged"]["valid"]["binary_logloss"]
    assert len(valid) == ROUNDS
    assert trial.value == min(valid)
    assert trial.user_attrs["best_iteration"] == valid.index(min(valid))


def test_a_hopeless_trial_is_pruned_at_the_first_rung_and_lgb_train_returns() -> None:
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler(), pruner=_asha())
    study.enqueue({"lr": 0.3})
    study.enqueue({"lr": 1e-6})  # learns nothing
    study.optimize(lightgbm_objective, n_trials=2)
    good, hopeless = study.trials
    assert (good.state.value, hopeless.state.value) == ("COMPLETE", "PRUNED")
    assert hopeless.value is None  # the objective returned after lgb.train; the trial ends PRUNED
    pruned = hopeless.system_attrs["pruned"]
    assert (pruned["step"], pruned["metric"]) == (1, "valid-binary_logloss")
    assert len(hopeless.user_attrs["logged"]["valid"]["binary_logloss"]) == 2  # LightGBM stopped after iteration 1
    _curves_equal_logged(study, 1)


def test_pruning_stops_lgb_train_at_the_best_iteration_so_far() -> None:
    dtrain, dvalid = _datasets()

    class StopAtThree(tunelab.Pruner):
        def decide(self, history, number, metric, curve):  # type: ignore[no-untyped-def]
            return tunelab.pruners.PruneDecision("test", "stop at 3") if max(curve) == 3 else None

    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler(), pruner=StopAtThree())
    trial = study.ask()
    callback = TunelabCallback(trial, "binary_logloss")  # valid_0: the first of valid_sets
    booster = lgb.train({**PARAMS, "learning_rate": 0.3}, dtrain, num_boost_round=10, valid_sets=[dvalid],
                        callbacks=[callback])
    assert trial.marked_pruned and callback.pruned_iteration == 3
    steps, values = study.get_curves(trial.number)["valid_0-binary_logloss"]
    assert steps == [0, 1, 2, 3]
    assert callback.best_score == min(values) and callback.best_iteration == values.index(min(values))
    assert booster.best_iteration == callback.best_iteration + 1  # LightGBM counts from 1
    assert booster.best_score["valid_0"]["binary_logloss"] == callback.best_score
    assert booster.num_trees() == 4


def test_a_metric_nan_at_every_round_is_pruned_and_lgb_train_returns() -> None:
    # No round had a best score: the pruner's stop raised EarlyStopException(None, ...) and lgb.train
    # failed the trial with TypeError (None + 1) instead of returning a PRUNED trial.
    dtrain, dvalid = _datasets()

    def nan_metric(preds, data):  # type: ignore[no-untyped-def]
        return "nan_metric", float("nan"), False

    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler(),
                                 pruner=tunelab.MedianPruner(n_startup_trials=0, n_warmup_steps=0))
    trial = study.ask()
    callback = TunelabCallback(trial, "nan_metric")
    booster = lgb.train({**PARAMS, "metric": "None"}, dtrain, num_boost_round=10, valid_sets=[dvalid],
                        feval=nan_metric, callbacks=[callback])
    assert trial.marked_pruned and callback.pruned_iteration == 0
    assert callback.best_score is None and callback.best_iteration is None
    assert booster.best_iteration == 1 and booster.num_trees() == 1


def test_best_score_follows_lightgbms_own_direction_or_the_given_one() -> None:
    dtrain, dvalid = _datasets()
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler())
    trial = study.ask()
    auc = TunelabCallback(trial, "auc")  # LightGBM says higher is better
    auc_as_given = TunelabCallback(trial, "auc", direction="minimize")
    logged: dict[str, dict[str, list[float]]] = {}
    lgb.train({**PARAMS, "metric": ["binary_logloss", "auc"], "learning_rate": 0.5}, dtrain, num_boost_round=6,
              valid_sets=[dvalid], callbacks=[lgb.record_evaluation(logged), auc, auc_as_given])
    values = logged["valid_0"]["auc"]
    assert auc.best_score == max(values) and auc.best_iteration == values.index(max(values))
    assert auc_as_given.best_score == min(values)
    assert set(study.get_curves(trial.number)) == {"valid_0-binary_logloss", "valid_0-auc"}


def test_lgb_cv_reports_the_mean_over_folds_as_valid() -> None:
    dtrain, _ = _datasets()
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler())
    trial = study.ask()
    callback = TunelabCallback(trial, "binary_logloss")  # in lgb.cv the default valid_name means "valid"
    results = lgb.cv({**PARAMS, "learning_rate": 0.3}, dtrain, num_boost_round=4, nfold=3, seed=0,
                     callbacks=[callback])
    steps, values = study.get_curves(trial.number)["valid-binary_logloss"]
    assert steps == [0, 1, 2, 3]
    assert values == pytest.approx(results["valid binary_logloss-mean"], rel=1e-12)
    assert callback.best_score == pytest.approx(min(results["valid binary_logloss-mean"]), rel=1e-12)


@pytest.mark.slow
def test_two_workers_share_one_sqlite_study(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'lgb.db'}"
    study = tunelab.create_study(name="lgb", storage=storage, seed=0, sampler=tunelab.RandomSampler())
    study.optimize(lightgbm_objective, n_trials=4, n_workers=2)
    study = tunelab.load_study("lgb", storage)
    assert [t.state.value for t in study.trials] == ["COMPLETE"] * 4
    assert {t.user_attrs["pid"] for t in study.trials}.isdisjoint({os.getpid()})
    for trial in study.trials:
        _curves_equal_logged(study, trial.number)
        assert trial.value == min(trial.user_attrs["logged"]["valid"]["binary_logloss"])


def test_bad_input_names_the_fix() -> None:
    dtrain, dvalid = _datasets()
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler())
    trial = study.ask()
    params = {**PARAMS, "metric": "binary_logloss"}
    # valid_sets=[dtrain, dvalid] without names: LightGBM calls them "training" and "valid_1".
    with pytest.raises(ConfigError, match=r"logs only \['training-binary_logloss', 'valid_1-binary_logloss'\]"):
        lgb.train(params, dtrain, num_boost_round=3, valid_sets=[dtrain, dvalid],
                  callbacks=[TunelabCallback(trial, "binary_logloss")])
    with pytest.raises(ConfigError, match=r"logs only \['valid_0-binary_logloss'\]"):
        lgb.train(params, dtrain, num_boost_round=3, valid_sets=[dvalid], callbacks=[TunelabCallback(trial, "auc")])
    assert study.get_curves(trial.number) == {}  # refused before anything was reported
    with pytest.raises(ConfigError, match=r"valid_sets=\[dvalid\]"):
        lgb.train(params, dtrain, num_boost_round=3, callbacks=[TunelabCallback(trial)])
    with pytest.raises(ConfigError, match=r"tunelab\.Trial"):
        TunelabCallback("trial")
    with pytest.raises(ConfigError, match="valid_name"):
        TunelabCallback(trial, "auc", valid_name="")
    with pytest.raises(ConfigError, match=r"direction=\.\.\."):
        TunelabCallback(trial, direction="up")


def test_the_monitored_metric_decides_what_the_pruner_prunes_on_and_a_pruner_metric_not_logged_is_refused() -> None:
    """Several eval metrics and a pruner without metric=: the pruner's naming rule chose among them
    (binary_error) instead of the monitored binary_logloss, unlike the Lightning callback's monitor."""
    dtrain, dvalid = _datasets()
    params = {**PARAMS, "metric": ["binary_error", "binary_logloss"]}
    watching = Watching()
    trial = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler(), pruner=watching).ask()
    lgb.train(params, dtrain, num_boost_round=3, valid_sets=[dvalid],
              callbacks=[TunelabCallback(trial, "binary_logloss")])
    assert watching.decided == [(step, "valid_0-binary_logloss") for step in range(3)]
    assert set(trial.study.get_curves(trial.number)) == {"valid_0-binary_error", "valid_0-binary_logloss"}
    trial = tunelab.create_study(pruner=Watching(metric="valid_0-auc", direction="maximize")).ask()
    with pytest.raises(ConfigError, match=r"TunelabCallback\(metric='binary_logloss', valid_name='valid_0'\): the "
                       r"study's Watching stops trials on metric 'valid_0-auc', which LightGBM does not log"):
        lgb.train(params, dtrain, num_boost_round=3, valid_sets=[dvalid],
                  callbacks=[TunelabCallback(trial, "binary_logloss")])
    assert trial.study.get_curves(trial.number) == {}  # refused before anything was reported


@pytest.mark.slow
def test_the_example_runs_and_prunes(tmp_path: Path) -> None:
    out = run_example("lightgbm", tmp_path)
    assert out.returncode == 0, out.stderr
    study = tunelab.load_study("lightgbm", f"sqlite:///{tmp_path / 'lightgbm.db'}")
    states = [t.state.value for t in study.trials]
    assert states.count("PRUNED") >= 1 and states.count("COMPLETE") >= 1
    assert study.best_value < 0.2
    assert f"best validation logloss {study.best_value:.4f}" in out.stdout


def test_the_docs_page_shows_the_example_verbatim() -> None:
    assert example_text("lightgbm") in page_python_blocks("lightgbm")


def test_rounds_held_back_when_lightgbms_early_stopping_ends_training_are_stored() -> None:
    # The callback reports rounds in batches; LightGBM's early stopping (a callback after it) ends training between
    # two batches, and calls no callback at the end: the trial's end reports the rounds held back
    dtrain, dvalid = _datasets()
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler(),
                                 pruner=tunelab.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3))
    trial = study.ask()
    logged: dict[str, dict[str, list[float]]] = {}
    callback = TunelabCallback(trial, "binary_logloss")
    lgb.train({**PARAMS, "learning_rate": 1.0}, dtrain, num_boost_round=200, valid_sets=[dvalid],
              callbacks=[lgb.record_evaluation(logged), callback, lgb.early_stopping(3, verbose=False)])
    recorded = logged["valid_0"]["binary_logloss"]
    assert len(recorded) < 200 and len(recorded) - 1 not in (0, 1, 3, 9, 27, 81)  # stopped early, off a rung
    study.tell(trial, callback.best_score)
    steps, values = study.get_curves(trial.number)["valid_0-binary_logloss"]
    assert steps == list(range(len(recorded)))
    assert values == pytest.approx(recorded, rel=1e-12)
    assert callback.best_score == min(recorded)
