"""tunelab.integrations.keras: a real Keras 3 training (torch backend) reports its epochs and stops
hopeless trials through model.stop_training."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["KERAS_BACKEND"] = "torch"

import keras
import pytest
import torch

import tunelab
from integration_tabular_objectives import (
    EPOCHS,
    Watching,
    data,
    example_text,
    keras_objective,
    page_python_blocks,
    run_example,
)
from tunelab.errors import ConfigError
from tunelab.integrations.keras import TunelabCallback

torch.set_num_threads(1)
LOGGED = {"loss", "accuracy", "val_loss", "val_accuracy"}


def _asha() -> tunelab.SuccessiveHalvingPruner:
    # Rungs at epochs 1, 3 (counted from 0, as Keras does); with two trials at a rung only the better goes on.
    # No metric=: of the four Keras logs, the pruner's naming rule takes val_loss in a study that minimizes.
    return tunelab.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)


def _curves_equal_history(study: tunelab.Study, number: int) -> None:
    history = study.trials[number].user_attrs["logged"]
    curves = study.get_curves(number)
    assert set(curves) == set(history) == LOGGED
    for name, values in history.items():
        steps, reported = curves[name]
        assert steps == list(range(len(values)))
        assert reported == pytest.approx(values, rel=1e-12)


def test_epochs_are_reported_as_keras_history_has_them() -> None:
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler())
    study.enqueue({"lr": 0.01})
    study.optimize(keras_objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state.value == "COMPLETE"
    _curves_equal_history(study, 0)
    assert len(trial.user_attrs["logged"]["val_loss"]) == EPOCHS
    assert trial.value == min(trial.user_attrs["logged"]["val_loss"]) < 0.5


def test_a_hopeless_trial_is_pruned_at_the_first_rung_and_fit_stops() -> None:
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler(), pruner=_asha())
    study.enqueue({"lr": 0.01})
    study.enqueue({"lr": 1e-6})  # learns nothing
    study.optimize(keras_objective, n_trials=2)
    good, hopeless = study.trials
    assert (good.state.value, hopeless.state.value) == ("COMPLETE", "PRUNED")
    assert hopeless.value is None  # the objective returned after fit; the trial ends PRUNED
    pruned = hopeless.system_attrs["pruned"]
    assert (pruned["step"], pruned["metric"]) == (1, "val_loss")
    assert len(hopeless.user_attrs["logged"]["val_loss"]) == 2  # fit stopped after epoch 1
    _curves_equal_history(study, 1)


def test_an_objective_may_raise_trial_pruned_after_fit() -> None:
    x, y, xv, yv = data()

    def objective(trial: tunelab.Trial) -> float:
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer=keras.optimizers.SGD(trial.suggest_float("lr", 1e-6, 1.0, log=True)),
                      loss="binary_crossentropy")
        callback = TunelabCallback(trial, monitor="val_loss")
        history = model.fit(x, y, validation_data=(xv, yv), epochs=4, batch_size=200, verbose=0, callbacks=[callback])
        if trial.marked_pruned:
            assert callback.pruned_epoch == 1 and len(history.history["val_loss"]) == 2
            raise tunelab.TrialPruned()
        return float(history.history["val_loss"][-1])

    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler(), pruner=_asha())
    study.enqueue({"lr": 0.5})
    study.enqueue({"lr": 1e-6})
    study.optimize(objective, n_trials=2)
    assert [t.state.value for t in study.trials] == ["COMPLETE", "PRUNED"]
    assert study.get_curves(1)["val_loss"][0] == [0, 1]


@pytest.mark.slow
def test_two_workers_share_one_sqlite_study(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'keras.db'}"
    study = tunelab.create_study(name="keras", storage=storage, seed=0, sampler=tunelab.RandomSampler())
    study.optimize(keras_objective, n_trials=4, n_workers=2)
    study = tunelab.load_study("keras", storage)
    assert [t.state.value for t in study.trials] == ["COMPLETE"] * 4
    assert {t.user_attrs["pid"] for t in study.trials}.isdisjoint({os.getpid()})
    for trial in study.trials:
        _curves_equal_history(study, trial.number)


def test_bad_input_names_the_fix() -> None:
    x, y, _, _ = data()
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler())
    trial = study.ask()
    model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["accuracy"])
    # No validation data: Keras logs no val_loss.
    with pytest.raises(ConfigError, match=r"logged only \['accuracy', 'loss'\].*validation_data"):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[TunelabCallback(trial)])
    assert study.get_curves(trial.number) == {}  # refused before anything was reported
    with pytest.raises(ConfigError, match=r"tunelab\.Trial"):
        TunelabCallback(study)
    with pytest.raises(ConfigError, match="monitor"):
        TunelabCallback(trial, monitor=None)  # type: ignore[arg-type]


def test_monitor_decides_what_the_pruner_prunes_on_and_a_pruner_metric_not_logged_is_refused() -> None:
    """Of Keras's four logs, a pruner without metric= took the one its naming rule picks (val_loss in a study
    that minimizes) instead of the callback's monitor, unlike the Lightning callback."""
    x, y, xv, yv = data()
    model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["accuracy"])
    watching = Watching()
    trial = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler(), pruner=watching).ask()
    model.fit(x, y, validation_data=(xv, yv), epochs=2, batch_size=200, verbose=0,
              callbacks=[TunelabCallback(trial, monitor="loss")])
    assert watching.decided == [(0, "loss"), (1, "loss")]
    assert set(trial.study.get_curves(trial.number)) == LOGGED
    trial = tunelab.create_study(pruner=Watching(metric="val_auc", direction="maximize")).ask()
    with pytest.raises(ConfigError, match=r"TunelabCallback\(monitor='val_loss'\): the study's Watching stops "
                       r"trials on metric 'val_auc', which Keras does not log \(it logs \['accuracy', 'loss', "
                       r"'val_accuracy', 'val_loss'\]\)"):
        model.fit(x, y, validation_data=(xv, yv), epochs=2, batch_size=200, verbose=0,
                  callbacks=[TunelabCallback(trial, monitor="val_loss")])
    assert trial.study.get_curves(trial.number) == {}  # refused before anything was reported


@pytest.mark.slow
def test_the_example_runs_and_prunes(tmp_path: Path) -> None:
    out = run_example("keras", tmp_path)
    assert out.returncode == 0, out.stderr
    study = tunelab.load_study("keras", f"sqlite:///{tmp_path / 'keras.db'}")
    states = [t.state.value for t in study.trials]
    assert states.count("PRUNED") >= 1 and states.count("COMPLETE") >= 1
    assert study.best_value > 0.9
    assert f"best validation accuracy {study.best_value:.4f}" in out.stdout


def test_the_docs_page_shows_the_example_verbatim() -> None:
    assert example_text("keras") in page_python_blocks("keras")
