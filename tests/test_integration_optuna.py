"""Importing an Optuna study (a real Optuna RDB storage in a SQLite file) into tunelab: every finished trial with
its parameters, distributions, state, values, intermediate values, attributes and constraints; a warm start from
the copy; the ``tunelab import-optuna`` command and its errors."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
import pytest
from typer.testing import CliRunner

import tunelab
from tunelab.cli import app
from tunelab.distributions import Categorical, Float, Int
from tunelab.errors import ConfigError
from tunelab.integrations.optuna import import_study
from tunelab.records import TrialState
from tunelab.study.warm import load_sources, stored_sources

optuna.logging.set_verbosity(optuna.logging.ERROR)


def _objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -5.0, 5.0)
    lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    width = trial.suggest_int("width", 16, 256, log=True)
    depth = trial.suggest_int("depth", 2, 8, step=2)
    drop = trial.suggest_float("dropout", 0.0, 0.5, step=0.1)
    opt = trial.suggest_categorical("optimizer", ["adam", "sgd", None])
    trial.set_user_attr("note", {"width": width})
    for step in range(3):
        trial.report(x * x + 1.0 / (step + 1), step)
        if trial.number % 4 == 1 and step == 1:
            raise optuna.TrialPruned()
    if trial.number % 5 == 3:
        raise ValueError("boom")
    return x * x + lr + width / 1000 + depth + drop + (opt is None)


def _optuna_study(tmp_path: Path, n_trials: int = 10) -> optuna.Study:
    study = optuna.create_study(study_name="cnn", storage=f"sqlite:///{tmp_path / 'optuna.db'}",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.set_user_attr("dataset", "digits")
    study.optimize(_objective, n_trials=n_trials, catch=(ValueError,))
    study.enqueue_trial({"x": 0.0})  # WAITING: no result, not copied
    return study


def test_every_finished_trial_is_copied_with_its_distributions_state_values_and_curve(tmp_path: Path) -> None:
    old = _optuna_study(tmp_path)
    new = import_study(old, storage=f"sqlite:///{tmp_path / 't.db'}", name="cnn-optuna")
    finished = [t for t in old.trials if t.state != optuna.trial.TrialState.WAITING]
    assert [t.number for t in new.trials] == list(range(len(finished)))
    states = {"COMPLETE": TrialState.COMPLETE, "PRUNED": TrialState.PRUNED, "FAIL": TrialState.FAIL}
    assert {t.state.name for t in finished} == set(states)  # every state is exercised
    for o, t in zip(finished, new.trials, strict=True):
        assert t.state is states[o.state.name] and t.params == o.params
        assert t.value == (o.value if o.state.name == "COMPLETE" else None)
        assert t.user_attrs["note"] == o.user_attrs["note"] and t.user_attrs["optuna"]["number"] == o.number
        curve = new.get_curves(t.number)["value"]
        assert dict(zip(curve[0], curve[1], strict=True)) == o.intermediate_values
    assert new.trials[0].distributions == {
        "x": Float(-5.0, 5.0), "lr": Float(1e-5, 1e-1, log=True), "width": Int(16, 256, log=True),
        "depth": Int(2, 8, step=2), "dropout": Float(0.0, 0.5, step=0.1),
        "optimizer": Categorical(["adam", "sgd", None])}
    assert new.best_value == old.best_value and new.best_params == old.best_params
    assert new.user_attrs == {"dataset": "digits"}
    assert new.system_attrs["imported_from"]["trials"] == len(finished)
    # read back from the file by a new process's view, the copy is an ordinary study
    again = tunelab.load_study("cnn-optuna", storage=f"sqlite:///{tmp_path / 't.db'}")
    assert len(again.trials) == len(finished) and again.best_value == old.best_value


def test_a_new_study_warm_starts_from_the_copy(tmp_path: Path) -> None:
    old = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    old.optimize(lambda t: (t.suggest_float("x", -5.0, 5.0) - 1.0) ** 2, n_trials=15)
    url = f"sqlite:///{tmp_path / 't.db'}"
    import_study(old, storage=url, name="source")
    study = tunelab.create_study(name="target", storage=url, seed=0, warm_start=["source"],
                                 sampler=tunelab.TPESampler())
    (source,) = load_sources(stored_sources(study.system_attrs), study.storage)
    assert source.direction == "minimize"
    assert sorted(t.params["x"] for t in source.trials) == sorted(t.params["x"] for t in old.trials)
    study.optimize(lambda t: (t.suggest_float("x", -5.0, 5.0) - 1.2) ** 2, n_trials=2)
    assert len(study.trials) == 2  # the source's trials inform the model, they are not this study's


def test_several_objectives_names_and_constraints_come_along(tmp_path: Path) -> None:
    def objective(trial: optuna.Trial) -> tuple[float, float]:
        x = trial.suggest_float("x", 0.0, 2.0)
        trial.set_constraint("x_at_most_1", x - 1.0)  # feasible at 0 or below
        return x, -x

    study = optuna.create_study(directions=["minimize", "maximize"], sampler=optuna.samplers.RandomSampler(0))
    study.set_metric_names(["loss", "acc"])
    study.optimize(objective, n_trials=8)
    new = import_study(study, storage=None, name="mo")
    assert list(new.objective_names) == ["loss", "acc"] and new.is_multi_objective
    for o, t in zip(study.trials, new.trials, strict=True):
        assert list(t.values or ()) == o.values
        assert t.feasible == (o.params["x"] <= 1.0)
        assert math.isclose(t.violation, max(0.0, o.params["x"] - 1.0))
        assert t.system_attrs["constraints"]["x_at_most_1"]["upper"] == 0.0
    assert {t.number for t in new.best_trials} == {t.number for t in study.best_trials}


def test_an_older_optuna_s_constraint_list_is_read_too(tmp_path: Path) -> None:
    study = optuna.create_study()
    for x in (0.5, 1.5, 1.0):  # what constraints_func stored before Optuna 5: a list
        study.add_trial(optuna.trial.create_trial(
            params={"x": x}, distributions={"x": optuna.distributions.FloatDistribution(0.0, 2.0)}, value=x,
            system_attrs={"constraints": [x - 1.0, -1.0]}))
    new = import_study(study, storage=None, name="old")
    for o, t in zip(study.trials, new.trials, strict=True):
        assert set(t.system_attrs["constraints"]) == {"constraint_0", "constraint_1"}
        assert t.feasible == (o.params["x"] <= 1.0)


def test_mistakes_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    old = _optuna_study(tmp_path, n_trials=3)
    url = f"sqlite:///{tmp_path / 't.db'}"
    with pytest.raises(ConfigError, match=r"takes an optuna.Study, got str: load it with optuna.load_study"):
        import_study("cnn", storage=url)
    with pytest.raises(ConfigError, match="metric=''"):
        import_study(old, storage=url, metric="")
    import_study(old, storage=url)
    with pytest.raises(ConfigError, match=r"'cnn' is already in the target storage: give the copy another name"):
        import_study(old, storage=url)  # the name is taken
    assert len(tunelab.load_study("cnn", storage=url).trials) == 3


def _cli(*args: str) -> Any:
    return CliRunner(env={"TUNELAB_STORAGE": None, "COLUMNS": "200", "NO_COLOR": "1"}).invoke(app, list(args))


def test_the_command_copies_a_study_and_names_what_is_wrong(tmp_path: Path) -> None:
    _optuna_study(tmp_path, n_trials=4)
    source, url = f"sqlite:///{tmp_path / 'optuna.db'}", f"sqlite:///{tmp_path / 't.db'}"
    done = _cli("import-optuna", "cnn", "--from", source, "--storage", url, "--metric", "val_loss")
    assert done.exit_code == 0, done.output
    assert "copied 4 of 5 trials of Optuna study 'cnn' into 'cnn'" in done.output
    assert tunelab.load_study("cnn", storage=url).get_curves(0).keys() == {"val_loss"}
    missing = _cli("import-optuna", "mlp", "--from", source, "--storage", url)
    assert missing.exit_code == 1 and "no Optuna study 'mlp'" in missing.output and "it holds: 'cnn'" in missing.output
    empty = _cli("import-optuna", "cnn", "--from", source, "--storage", url, "--metric", "")
    assert empty.exit_code == 2 and "--metric" in empty.output and "metric=" not in empty.output
    nowhere = _cli("import-optuna", "cnn", "--from", f"sqlite:///{tmp_path / 'nope.db'}", "--storage", url)
    assert nowhere.exit_code == 1 and "no such file" in nowhere.output
    assert not (tmp_path / "nope.db").exists()


@pytest.mark.parametrize(("call", "named"), [
    (lambda db: tunelab.create_study(study_name="s", storage=db), "name="),
    (lambda db: tunelab.load_study(study_name="s", storage=db), "name="),
    (lambda db: tunelab.delete_study(study_name="s", storage=db), "name="),
    (lambda db: tunelab.create_study(name="s", storage=db).optimize(lambda t: 0.0, n_trials=1, n_jobs=2),
     "n_workers="),
    (lambda db: tunelab.create_study(name="s", storage=db).optimize(lambda t: 0.0, n_trials=1,
                                                                   show_progress_bar=False), "show_progress="),
    (lambda db: tunelab.create_study(name="s", storage=db).optimize(lambda t: 0.0, n_trials=1,
                                                                   gc_after_trial=True), "remove it"),
])
def test_a_call_written_for_optuna_names_tunelab_s_keyword_before_anything_runs(
        call: Any, named: str, tmp_path: Path) -> None:
    from tunelab.errors import OptunaKeywordError

    db = f"sqlite:///{tmp_path / 'o.db'}"
    with pytest.raises(OptunaKeywordError, match="Optuna's keyword") as e:
        call(db)
    assert named in str(e.value)
    assert isinstance(e.value, TypeError) and isinstance(e.value, ValueError)  # Python's kind, and a ConfigError
    if "optimize" in str(e.value):
        assert tunelab.load_study("s", db).trials == []  # refused before a trial ran
