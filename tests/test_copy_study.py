"""copy_study and ``tunelab copy``: a study moved to another storage (a real SQLite file, a real PostgreSQL server)
keeps every trial's number, state, values, parameters, distributions, attributes, constraints, curves and times,
and goes on from there."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import tunelab
from tunelab.cli import app
from tunelab.errors import ConfigError, StudyNotFoundError
from tunelab.records import FrozenTrial, TrialState
from tunelab.study.copy import RUNNING_WHEN_COPIED


def objective(trial: tunelab.Trial) -> float:
    x = trial.suggest_float("x", -3.0, 3.0)
    opt = trial.suggest_categorical("opt", ["sgd", "adam"])
    width = trial.suggest_int("width", 8, 256, log=True)
    trial.set_user_attr("note", {"width": width})
    trial.set_constraint("mem", width / 100, upper=2.0)
    for step in range(3):
        trial.report(step, loss=x * x + 1.0 / (step + 1), acc=0.5 + step / 10)
    if trial.number == 2:
        raise ValueError("diverged")
    if trial.number == 3:
        raise tunelab.TrialPruned()
    return x * x + (opt == "sgd")


def _source(url: str) -> tunelab.Study:
    study = tunelab.create_study(name="cnn", storage=url, seed=3, sampler=tunelab.TPESampler(n_startup_trials=3),
                                 pruner=tunelab.MedianPruner(), user_attrs={"dataset": "digits"})
    study.optimize(objective, n_trials=6, show_progress=False)
    study.ask()  # running, never told
    study.enqueue({"x": 0.5})  # waiting in the queue
    return study


def _same(a: FrozenTrial, b: FrozenTrial) -> None:
    assert (a.number, a.params, a.distributions, a.user_attrs) == (b.number, b.params, b.distributions, b.user_attrs)
    assert (a.value, a.values, a.error) == (b.value, b.values, b.error)
    assert a.constraints == b.constraints and a.system_attrs == b.system_attrs
    assert (a.datetime_start, a.datetime_complete) == (b.datetime_start, b.datetime_complete)


def _check_copy(old: tunelab.Study, new: tunelab.Study) -> None:
    assert len(new.trials) == len(old.trials) == 8
    for a, b in zip(old.trials, new.trials, strict=True):
        if a.state is TrialState.RUNNING:
            assert b.state is TrialState.FAIL and b.error == RUNNING_WHEN_COPIED and b.number == a.number
            continue
        assert a.state is b.state
        _same(a, b)
        assert new.get_curves(b.number) == old.get_curves(a.number)
    assert {t.state for t in new.trials} == {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL,
                                             TrialState.WAITING}
    assert (new.seed, new.user_attrs, new.best_params) == (old.seed, old.user_attrs, old.best_params)
    assert isinstance(new.sampler, tunelab.TPESampler) and isinstance(new.pruner, tunelab.MedianPruner)
    assert new.artifact_dir != old.artifact_dir  # its own folder: the two never write each other's checkpoints


def test_a_study_moves_to_another_sqlite_file_with_everything_and_goes_on(tmp_path: Path) -> None:
    old = _source(f"sqlite:///{tmp_path / 'laptop.db'}")
    to = f"sqlite:///{tmp_path / 'shared.db'}"
    new = tunelab.copy_study("cnn", f"sqlite:///{tmp_path / 'laptop.db'}", to)
    _check_copy(old, new)
    new.optimize(objective, n_trials=2, show_progress=False)  # the queued one first, then the sampler's
    numbers = [t.number for t in tunelab.load_study("cnn", to).trials]
    assert numbers == list(range(9))
    assert tunelab.load_study("cnn", to).trials[7].params["x"] == 0.5


def test_a_study_moves_to_postgresql(tmp_path: Path, pg_url: str) -> None:
    old = _source(f"sqlite:///{tmp_path / 'laptop.db'}")
    _check_copy(old, tunelab.copy_study("cnn", old.storage, pg_url, "cnn-cluster"))


def test_several_objectives_keep_their_names_and_values(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mo.db'}"
    old = tunelab.create_study(name="mo", storage=url, directions=["minimize", "maximize"],
                               objective_names=["loss", "acc"], sampler=tunelab.RandomSampler(), seed=0)
    old.optimize(lambda t: (t.suggest_float("x", 0, 1), 1 - t.params["x"] ** 2), n_trials=5, show_progress=False)
    new = tunelab.copy_study("mo", url, None)
    assert list(new.objective_names) == ["loss", "acc"] and [t.values for t in new.trials] == [
        t.values for t in old.trials]
    assert {t.number for t in new.best_trials} == {t.number for t in old.best_trials}


def test_mistakes_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    tunelab.create_study(name="s", storage=url, seed=0).tell(tunelab.load_study("s", url).ask(), 1.0)
    with pytest.raises(ConfigError, match="onto itself"):
        tunelab.copy_study("s", url, url)
    with pytest.raises(StudyNotFoundError):
        tunelab.copy_study("nope", url, f"sqlite:///{tmp_path / 'b.db'}")
    tunelab.copy_study("s", url, url, "s2")  # the same storage under another name
    with pytest.raises(ConfigError, match="'s2' is already in the target storage"):
        tunelab.copy_study("s", url, url, "s2")
    assert [s.name for s in tunelab.get_storage(url).list_studies()] == ["s", "s2"]


def test_the_copy_command(tmp_path: Path) -> None:
    url, to = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    study = tunelab.create_study(name="s", storage=url, seed=0, sampler=tunelab.RandomSampler())
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3, show_progress=False)
    runner = CliRunner(env={"TUNELAB_STORAGE": None, "COLUMNS": "200", "NO_COLOR": "1"})
    done = runner.invoke(app, ["copy", "s", "--storage", url, "--to", to, "--name", "t"])
    assert done.exit_code == 0, done.output
    assert f"copied study 's' (3 trials) from {url} to 't' in {to}" in done.output
    assert [t.value for t in tunelab.load_study("t", to).trials] == [t.value for t in study.trials]
    again = runner.invoke(app, ["copy", "s", "--storage", url, "--to", to, "--name", "t"])
    assert again.exit_code == 1 and "already in the target storage" in again.output
