"""tunelab.integrations.xgboost: a real XGBoost training reports its rounds, stops hopeless trials
and gives the best round's score."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import xgboost as xgb

import tunelab
from integration_tabular_objectives import (
    ROUNDS,
    Watching,
    data,
    example_text,
    page_python_blocks,
    run_example,
    xgboost_objective,
)
from tunelab.errors import ConfigError
from tunelab.integrations.xgboost import TunelabCallback


def _asha() -> tunelab.SuccessiveHalvingPruner:
    # Rungs at rounds 1, 3 (min_resource * 3 ** k, rounds counted from 0); with two trials at a
    # rung a trial goes on only if it is the better of the two.
    return tunelab.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3, metric="validation-logloss")


def _curves_equal_logged(study: tunelab.Study, number: int) -> None:
    trial = study.trials[number]
    logged = trial.user_attrs["logged"]
    curves = study.get_curves(number)
    expected = {f"{data}-{metric}": values for data, metrics in logged.items() for metric, values in metrics.items()}
    assert set(curves) == set(expected) == {"train-logloss", "validation-logloss"}
    for name, values in expected.items():
        steps, reported = curves[name]
        assert steps == list(range(len(values)))
        assert reported == pytest.approx(values, rel=1e-12)


def test_rounds_are_reported_as_xgboost_logged_them_and_the_value_is_the_best_rounds_score() -> None:
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler())
    study.enqueue({"lr": 0.3})
    study.optimize(xgboost_objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state.value == "COMPLETE"
    _curves_equal_logged(study, 0)
    validation = trial.user_attrs["logged"]["validation"]["logloss"]
    assert len(validation) == ROUNDS
    assert trial.value == min(validation)
    assert trial.user_attrs["best_iteration"] == validation.index(min(validation))


def test_a_hopeless_trial_is_pruned_at_the_first_rung_with_its_curve() -> None:
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler(), pruner=_asha())
    study.enqueue({"lr": 0.3})
    study.enqueue({"lr": 1e-6})  # learns nothing: its loss stays at log(2)
    study.optimize(xgboost_objective, n_trials=2)
    good, hopeless = study.trials
    assert (good.state.value, hopeless.state.value) == ("COMPLETE", "PRUNED")
    assert hopeless.value is None  # the objective returned the best score; the trial ends PRUNED
    pruned = hopeless.system_attrs["pruned"]
    assert (pruned["step"], pruned["metric"]) == (1, "validation-logloss")
    assert study.get_curves(1)["validation-logloss"][0] == [0, 1]
    assert len(hopeless.user_attrs["logged"]["validation"]["logloss"]) == 2  # XGBoost stopped after round 1
    _curves_equal_logged(study, 1)


def test_best_score_follows_the_direction() -> None:
    x, y, xv, yv = data()
    dtrain, dvalid = xgb.DMatrix(x, y), xgb.DMatrix(xv, yv)
    study = tunelab.create_study(direction="maximize", seed=0, sampler=tunelab.RandomSampler())
    trial = study.ask()
    maximized = TunelabCallback(trial, "validation-auc")
    minimized = TunelabCallback(trial, "validation-logloss", direction="minimize")
    logged: dict[str, dict[str, list[float]]] = {}
    xgb.train({"objective": "binary:logistic", "eval_metric": ["logloss", "auc"], "eta": 0.5, "nthread": 1},
              dtrain, num_boost_round=6, evals=[(dvalid, "validation")], evals_result=logged,
              verbose_eval=False, callbacks=[maximized, minimized])
    auc, logloss = logged["validation"]["auc"], logged["validation"]["logloss"]
    assert maximized.best_score == max(auc) and maximized.best_iteration == auc.index(max(auc))
    assert minimized.best_score == min(logloss) and minimized.best_iteration == logloss.index(min(logloss))
    assert study.get_curves(trial.number)["validation-auc"][1] == pytest.approx(auc, rel=1e-12)


def test_xgb_cv_reports_the_mean_over_folds() -> None:
    x, y, _, _ = data()
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler())
    trial = study.ask()
    callback = TunelabCallback(trial, "test-logloss")
    frame = xgb.cv({"objective": "binary:logistic", "eta": 0.3, "nthread": 1}, xgb.DMatrix(x, y),
                   num_boost_round=4, nfold=3, seed=0, callbacks=[callback])
    steps, values = study.get_curves(trial.number)["test-logloss"]
    assert steps == [0, 1, 2, 3]
    assert values == pytest.approx(list(frame["test-logloss-mean"]), rel=1e-12)
    assert callback.best_score == pytest.approx(frame["test-logloss-mean"].min(), rel=1e-12)


def test_xgb_cv_stops_a_pruned_trial_and_returns_its_rounds() -> None:
    x, y, _, _ = data()
    dtrain = xgb.DMatrix(x, y)
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler(), pruner=tunelab.SuccessiveHalvingPruner(
        min_resource=1, reduction_factor=3, metric="test-logloss"))
    frames = []

    def objective(trial: tunelab.Trial) -> float:
        callback = TunelabCallback(trial, "test-logloss")
        frames.append(xgb.cv({"objective": "binary:logistic", "eta": trial.suggest_float("lr", 1e-6, 1.0, log=True),
                              "nthread": 1}, dtrain, num_boost_round=6, nfold=3, seed=0, callbacks=[callback]))
        assert callback.best_score is not None
        return callback.best_score

    study.enqueue({"lr": 0.3})
    study.enqueue({"lr": 1e-6})  # learns nothing: pruned at round 1
    study.optimize(objective, n_trials=2)
    assert [t.state.value for t in study.trials] == ["COMPLETE", "PRUNED"]  # not FAIL: xgb.cv returned
    assert len(frames[1]) == 2  # the rounds done, 0 and 1
    assert list(frames[1]["test-logloss-mean"]) == pytest.approx(study.get_curves(1)["test-logloss"][1], rel=1e-12)


@pytest.mark.slow
def test_two_workers_share_one_sqlite_study(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'xgb.db'}"
    study = tunelab.create_study(name="xgb", storage=storage, seed=0, sampler=tunelab.RandomSampler())
    study.optimize(xgboost_objective, n_trials=4, n_workers=2)
    study = tunelab.load_study("xgb", storage)
    assert [t.state.value for t in study.trials] == ["COMPLETE"] * 4
    assert {t.user_attrs["pid"] for t in study.trials}.isdisjoint({os.getpid()})
    for trial in study.trials:
        _curves_equal_logged(study, trial.number)
        assert trial.value == min(trial.user_attrs["logged"]["validation"]["logloss"])


def test_bad_input_names_the_fix() -> None:
    x, y, xv, yv = data()
    dtrain, dvalid = xgb.DMatrix(x, y), xgb.DMatrix(xv, yv)
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler())
    trial = study.ask()
    params = {"objective": "binary:logistic", "eval_metric": "logloss", "nthread": 1}
    with pytest.raises(ConfigError, match=r"logs only \['train-logloss', 'valid-logloss'\]"):
        xgb.train(params, dtrain, num_boost_round=3, evals=[(dtrain, "train"), (dvalid, "valid")],
                  verbose_eval=False, callbacks=[TunelabCallback(trial, "validation-logloss")])
    assert study.get_curves(trial.number) == {}  # refused before anything was reported
    with pytest.raises(ConfigError, match=r"evals=\[\(dvalid, 'validation'\)\]"):
        xgb.train(params, dtrain, num_boost_round=3, callbacks=[TunelabCallback(trial)])
    with pytest.raises(ConfigError, match=r"tunelab\.Trial"):
        TunelabCallback(None)
    with pytest.raises(ConfigError, match="observation_key"):
        TunelabCallback(trial, "")
    with pytest.raises(ConfigError, match=r"direction=\.\.\."):
        TunelabCallback(trial, direction="lower")
    several = tunelab.create_study(directions=["minimize", "minimize"], sampler=tunelab.RandomSampler())
    with pytest.raises(ConfigError, match="pass direction='minimize'"):
        TunelabCallback(several.ask())


def test_the_observation_key_decides_what_the_pruner_prunes_on_and_a_pruner_metric_not_logged_is_refused() -> None:
    """Several eval metrics and a pruner without metric=: the pruner's naming rule chose among them (here two
    minimized metrics: no decision at all) instead of the monitored observation_key, unlike the Lightning
    callback's monitor."""
    x, y, xv, yv = data()
    dtrain, dvalid = xgb.DMatrix(x, y), xgb.DMatrix(xv, yv)
    params = {"objective": "binary:logistic", "eval_metric": ["error", "logloss"], "nthread": 1}
    watching = Watching()
    trial = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler(), pruner=watching).ask()
    xgb.train(params, dtrain, num_boost_round=3, evals=[(dvalid, "validation")], verbose_eval=False,
              callbacks=[TunelabCallback(trial, "validation-logloss")])
    assert watching.decided == [(step, "validation-logloss") for step in range(3)]
    assert set(trial.study.get_curves(trial.number)) == {"validation-error", "validation-logloss"}
    trial = tunelab.create_study(pruner=Watching(metric="validation-auc", direction="maximize")).ask()
    with pytest.raises(ConfigError, match=r"TunelabCallback\(observation_key='validation-logloss'\): the study's "
                       r"Watching stops trials on metric 'validation-auc', which XGBoost does not log \(it logs "
                       r"\['validation-error', 'validation-logloss'\]\); set the pruner's metric"):
        xgb.train(params, dtrain, num_boost_round=3, evals=[(dvalid, "validation")], verbose_eval=False,
                  callbacks=[TunelabCallback(trial, "validation-logloss")])
    assert trial.study.get_curves(trial.number) == {}  # refused before anything was reported


@pytest.mark.slow
def test_the_example_runs_and_prunes(tmp_path: Path) -> None:
    out = run_example("xgboost", tmp_path)
    assert out.returncode == 0, out.stderr
    study = tunelab.load_study("xgboost", f"sqlite:///{tmp_path / 'xgboost.db'}")
    states = [t.state.value for t in study.trials]
    assert states.count("PRUNED") >= 1 and states.count("COMPLETE") >= 1
    assert study.best_value < 0.2
    assert f"best validation logloss {study.best_value:.4f}" in out.stdout


def test_the_docs_page_shows_the_example_verbatim() -> None:
    assert example_text("xgboost") in page_python_blocks("xgboost")


class _WatchingRungs(Watching):
    """Stops nothing, records where it is asked; its rungs are rounds 1 and 3."""

    def next_decision(self, history, number, previous):  # type: ignore[no-untyped-def]
        return next((r for r in (1, 3) if r > previous), tunelab.pruners.NO_DECISION)


def test_rounds_between_rungs_are_reported_together_and_the_pruner_is_asked_at_its_rungs() -> None:
    # A round every few milliseconds: each costs a list append, and the trial hears of the rounds at the pruner's
    # rungs (and at least every half second), each round at its own step
    x, y, xv, yv = data()
    dtrain, dvalid = xgb.DMatrix(x, y), xgb.DMatrix(xv, yv)
    pruner = _WatchingRungs(metric="validation-logloss")
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler(), pruner=pruner)
    trial = study.ask()
    logged: dict[str, dict[str, list[float]]] = {}
    callback = TunelabCallback(trial, "validation-logloss")
    xgb.train({"objective": "binary:logistic", "eval_metric": "logloss", "max_depth": 3, "nthread": 1, "seed": 0},
              dtrain, num_boost_round=60, evals=[(dtrain, "train"), (dvalid, "validation")], evals_result=logged,
              verbose_eval=False, callbacks=[callback])
    asked = [step for step, _ in pruner.decided]
    assert asked[:2] == [1, 3]  # the rungs
    assert len(asked) < 20  # not every round: later ones only when half a second has passed
    trial.set_user_attr("logged", logged)
    study.tell(trial, callback.best_score)
    _curves_equal_logged(study, trial.number)
    assert callback.best_score == min(logged["validation"]["logloss"])


def test_every_round_is_in_the_storage_once_training_ends(tmp_path: Path) -> None:
    # Rounds are held back and gathered for the storage; when xgb.train returns, the stored curve is complete
    x, y, xv, yv = data()
    dtrain, dvalid = xgb.DMatrix(x, y), xgb.DMatrix(xv, yv)
    study = tunelab.create_study(name="held", storage=f"sqlite:///{tmp_path / 'held.db'}", seed=0,
                                 sampler=tunelab.RandomSampler(), pruner=_asha())
    trial = study.ask()
    xgb.train({"objective": "binary:logistic", "eval_metric": "logloss", "max_depth": 3, "nthread": 1, "seed": 0},
              dtrain, num_boost_round=40, evals=[(dvalid, "validation")], verbose_eval=False,
              callbacks=[TunelabCallback(trial, "validation-logloss")])
    steps, _ = tunelab.load_study("held", storage=f"sqlite:///{tmp_path / 'held.db'}").get_curves(trial.number)[
        "validation-logloss"]
    assert steps == list(range(40))


def test_a_callback_used_for_a_second_training_asks_the_pruner_at_its_rungs_again() -> None:
    x, y, xv, yv = data()
    dtrain, dvalid = xgb.DMatrix(x, y), xgb.DMatrix(xv, yv)
    pruner = _WatchingRungs(metric="validation-logloss")
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler(), pruner=pruner)
    callback = TunelabCallback(study.ask(), "validation-logloss")
    params = {"objective": "binary:logistic", "eval_metric": "logloss", "max_depth": 3, "nthread": 1, "seed": 0}
    for _ in range(2):  # e.g. an XGBClassifier fitted twice with the same callbacks
        xgb.train(params, dtrain, num_boost_round=10, evals=[(dvalid, "validation")], verbose_eval=False,
                  callbacks=[callback])
    asked = [step for step, _ in pruner.decided]  # Watching records the curve's highest step: 9 in the second
    assert asked == [1, 3, 9, 9]  # asked at rounds 1 and 3 of each training (before: the second held to its end)
