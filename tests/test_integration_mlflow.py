"""tunelab.integrations.mlflow: every trial an MLflow run, nested under one run of the study."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

import tunelab
from integration_tracking_objectives import CRASHES, FAILS, PRUNED, STEPS, AboveLimit, descend, two_objectives
from tunelab.errors import ConfigError
from tunelab.integrations.mlflow import (
    KEY_TAG,
    PARENT_TAG,
    PRUNED_TAG,
    ROLE_TAG,
    STATE_TAG,
    TRIAL_TAG,
    MLflowCallback,
    study_key,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "integrations" / "track_mlflow.py"
PAGE = ROOT / "docs" / "integrations" / "mlflow.md"
STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with its tables (made once: creating them takes seconds)."""
    path = tmp_path_factory.mktemp("mlflow") / "template.db"
    MLflowCallback(tracking_uri=f"sqlite:///{path}")
    return path


@pytest.fixture
def uri(empty_store: Path, tmp_path: Path) -> str:
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _study(tmp_path: Path, name: str = "descent") -> tunelab.Study:
    return tunelab.create_study(name=name, storage=f"sqlite:///{tmp_path / 'study.db'}", seed=0,
                                sampler=tunelab.RandomSampler(), pruner=AboveLimit())


def _runs(uri: str, study: tunelab.Study, role: str) -> list[Any]:
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(study.name)
    return client.search_runs([experiment.experiment_id],
                              filter_string=f"tags.`{ROLE_TAG}` = '{role}' and tags.`{KEY_TAG}` = '{study_key(study)}'")


def _check_runs(uri: str, study: tunelab.Study) -> None:
    """One study run; one finished run per finished trial, nested under it, holding what the study holds."""
    client = MlflowClient(tracking_uri=uri)
    parents = _runs(uri, study, "study")
    assert len(parents) == 1
    assert parents[0].info.status == "FINISHED" and parents[0].info.end_time is not None  # not left RUNNING
    runs = {int(r.data.tags[TRIAL_TAG]): r for r in _runs(uri, study, "trial")}
    assert sorted(runs) == [t.number for t in study.trials]
    for trial in study.trials:
        run = runs[trial.number]
        assert run.data.tags[PARENT_TAG] == parents[0].info.run_id
        assert run.info.run_name == f"trial-{trial.number}"
        assert run.data.tags[STATE_TAG] == trial.state.value
        assert run.info.status == STATUS[trial.state.value]
        assert run.data.params == {k: str(v) for k, v in trial.params.items()}
        for name, (steps, values) in study.get_curves(trial.number).items():
            history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, name))
            assert history == list(zip(steps, values, strict=True))  # every point once
        if trial.state.value == "COMPLETE":
            assert run.data.metrics["value"] == pytest.approx(trial.value)
        else:
            assert "value" not in run.data.metrics


@pytest.mark.parametrize("live", [True, False])
def test_each_trial_is_a_run_with_params_curves_value_and_state(uri: str, tmp_path: Path, live: bool) -> None:
    study = _study(tmp_path)
    cb = MLflowCallback(tracking_uri=uri, tags={"team": "vision"})
    study.optimize(functools.partial(descend, cb=cb if live else None), n_trials=4, callbacks=[cb])
    assert [t.state.value for t in study.trials] == ["COMPLETE", "FAIL", "PRUNED", "COMPLETE"]
    _check_runs(uri, study)
    runs = {int(r.data.tags[TRIAL_TAG]): r for r in _runs(uri, study, "trial")}
    assert len(study.get_curves(0)["loss"][0]) == STEPS
    assert "boom in trial 1" in runs[FAILS].data.tags["tunelab.error"]
    assert json.loads(runs[PRUNED].data.tags[PRUNED_TAG])["rule"] == "above limit"
    assert PRUNED_TAG not in runs[0].data.tags and "tunelab.error" not in runs[0].data.tags
    assert all(r.data.tags["team"] == "vision" and r.data.tags["tunelab.study"] == "descent" for r in runs.values())
    # A later call (a new callback, as another process would have) finds the same study run.
    again = MLflowCallback(tracking_uri=uri)
    study.optimize(functools.partial(descend, cb=again), n_trials=2, callbacks=[again])
    _check_runs(uri, study)
    assert len(_runs(uri, study, "trial")) == 6


def test_a_run_left_running_by_a_dead_driver_is_completed_by_the_next_call(uri: str, tmp_path: Path) -> None:
    study = _study(tmp_path)
    cb = MLflowCallback(tracking_uri=uri)
    trial = study.ask()
    trial.suggest_float("x0", 1.0, 2.0)
    cb.report(trial, 0, loss=0.5)  # the run exists, RUNNING, not nested yet (no study run so far)
    study.tell(trial, 0.5)  # ... and the process that would have called the callbacks is gone
    (left,) = _runs(uri, study, "trial")
    assert left.info.status == "RUNNING" and PARENT_TAG not in left.data.tags
    history = MlflowClient(tracking_uri=uri).get_metric_history(left.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 0.5)] and left.data.params == {"x0": str(trial.params["x0"])}
    study.optimize(functools.partial(descend, cb=cb), n_trials=1, callbacks=[MLflowCallback(tracking_uri=uri)])
    _check_runs(uri, study)


def test_two_objectives_log_one_value_each_and_a_wrong_metric_name_fails_first(uri: str) -> None:
    study = tunelab.create_study(directions=["minimize", "maximize"], objective_names=["err", "acc"], seed=0)
    cb = MLflowCallback(tracking_uri=uri)
    study.optimize(functools.partial(two_objectives, cb=cb), n_trials=2, callbacks=[cb])
    for run in _runs(uri, study, "trial"):
        trial = study.trials[int(run.data.tags[TRIAL_TAG])]
        assert (run.data.metrics["err"], run.data.metrics["acc"]) == pytest.approx(trial.values)
    bad = MLflowCallback(tracking_uri=uri, metric_name=["err"])
    with pytest.raises(ConfigError, match=r"metric_name=\['err'\]\) has 1 name\(s\) but study .* has 2 objective"):
        study.optimize(functools.partial(two_objectives, cb=bad), n_trials=1, callbacks=[bad])
    assert study.trials[-1].state.value == "FAIL"  # stopped at its first report: one point


@pytest.mark.parametrize("live", [True, False])
def test_a_value_named_as_a_curve_is_mlflows_value_of_it_and_the_curve_keeps_every_point(uri: str, live: bool) -> None:
    """metric_name='val_loss' with a val_loss curve: the value was never logged (the curve "held" it), so MLflow
    showed the last epoch's 0.4 for a trial whose value (its best epoch) was 0.3."""
    cb = MLflowCallback(tracking_uri=uri, metric_name="val_loss")
    study = tunelab.create_study(name="named", seed=0)

    def objective(trial: tunelab.Trial) -> float:
        trial.suggest_float("x", 0.0, 1.0)
        curve = [0.9, 0.5, 0.3, 0.4] if trial.number == 0 else [0.8, 0.6]
        for step, value in enumerate(curve):
            (functools.partial(cb.report, trial) if live else trial.report)(step, val_loss=value)
        return min(curve)  # the best epoch's (trial 1: also its last point)

    study.optimize(objective, n_trials=2, callbacks=[cb])
    cb(study, study.trials[0])  # written again (a later call closing left-over runs): nothing doubles
    client = MlflowClient(tracking_uri=uri)
    runs = {int(r.data.tags[TRIAL_TAG]): r for r in _runs(uri, study, "trial")}
    histories = {n: [(m.step, m.value) for m in client.get_metric_history(r.info.run_id, "val_loss")]
                 for n, r in runs.items()}
    assert sorted(histories[0]) == [(0, 0.9), (1, 0.5), (2, 0.3), (3, 0.4), (4, 0.3)]  # one step past the curve
    assert sorted(histories[1]) == [(0, 0.8), (1, 0.6)]  # the last point is the value: nothing added
    assert [runs[n].data.metrics["val_loss"] for n in (0, 1)] == [t.value for t in study.trials] == [0.3, 0.6]


def test_constraints_are_logged_with_whether_the_trial_is_feasible(uri: str) -> None:
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler())
    cb = MLflowCallback(tracking_uri=uri)

    def objective(trial: tunelab.Trial) -> float:
        memory = [0.4, 0.9][trial.number]
        trial.set_constraint("memory_gb", memory, upper=0.5)
        return float(trial.number)

    study.optimize(objective, n_trials=2, callbacks=[cb])
    runs = {int(r.data.tags[TRIAL_TAG]): r for r in _runs(uri, study, "trial")}
    assert runs[0].data.metrics["constraint_memory_gb"] == 0.4 and runs[0].data.metrics["feasible"] == 1.0
    assert runs[1].data.metrics["constraint_memory_gb"] == 0.9 and runs[1].data.metrics["feasible"] == 0.0
    assert [runs[n].data.tags["tunelab.feasible"] for n in (0, 1)] == ["true", "false"]


@pytest.mark.parametrize("live", [True, False])
def test_names_mlflow_refuses_are_logged_as_mlflow_autologging_writes_them(uri: str, live: bool) -> None:
    # XGBoost and LightGBM name ranking metrics 'validation-ndcg@5': log_batch raised MlflowException
    # ("Names may only contain...") from the callback, which stopped the whole study after its first trial.
    cb = MLflowCallback(tracking_uri=uri, metric_name="ndcg@5 (best)")

    def objective(trial: tunelab.Trial) -> float:
        trial.suggest_float("lr[0]", 0.1, 1.0)
        for step in range(3):
            metrics = {"validation-ndcg@5": 0.5 + step / 10}
            if live:
                cb.report(trial, step, **metrics)
            else:
                trial.report(step, **metrics)
        return 0.7

    study = tunelab.create_study(direction="maximize", seed=0)
    study.optimize(objective, n_trials=2, callbacks=[cb])
    runs = _runs(uri, study, "trial")
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    client = MlflowClient(tracking_uri=uri)
    for run in runs:
        history = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "validation-ndcg_at_5")]
        assert sorted(history) == [(0, 0.5), (1, 0.6), (2, 0.7)]  # each point once
        assert run.data.metrics["ndcg_at_5 _best_"] == 0.7
        assert set(run.data.params) == {"lr_0_"}


def test_an_sqlite_store_that_cannot_be_opened_is_refused_at_once(tmp_path: Path) -> None:
    # A missing folder (or an unwritable file): MLflow retried opening the file for about two minutes, then
    # the constructor failed with SQLAlchemy's bare OperationalError 'unable to open database file'.
    missing = tmp_path / "no-such-folder" / "mlflow.db"
    with pytest.raises(ConfigError, match=r"tracking_uri='sqlite:///.*no-such-folder/mlflow.db'\): the folder "
                                          r"'.*no-such-folder' of the SQLite file does not exist"):
        MLflowCallback(tracking_uri=f"sqlite:///{missing}")
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=r"the folder '.*file' of the SQLite file does not exist"):
        MLflowCallback(tracking_uri=f"sqlite:///{tmp_path / 'file' / 'mlflow.db'}")
    assert not missing.parent.exists()


def test_a_deleted_experiment_is_refused_with_the_fix_before_any_trial(uri: str) -> None:
    # MLflow refuses runs in a deleted experiment: its MlflowException ("must be in the 'active' state")
    # came from the callback after the first trial, which stopped the study without saying what to do.
    client = MlflowClient(tracking_uri=uri)
    client.delete_experiment(client.create_experiment("gone"))
    with pytest.raises(ConfigError, match=r"experiment 'gone' \(id \d+\) is deleted.*restore it.*experiment_name"):
        MLflowCallback(tracking_uri=uri, experiment_name="gone")
    study = tunelab.create_study(name="gone", seed=0)  # the default experiment: the study's name
    cb = MLflowCallback(tracking_uri=uri)

    def objective(trial: tunelab.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        cb.report(trial, 0, loss=x)
        return x

    with pytest.raises(ConfigError, match=r"experiment 'gone' .* is deleted"):  # at the first report
        study.optimize(objective, n_trials=3, callbacks=[cb])
    assert [t.state.value for t in study.trials] == ["FAIL"]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"tracking_uri": 5}, "tracking_uri must be a URI"),
    ({"experiment_name": ""}, "experiment_name must be a non-empty string"),
    ({"metric_name": []}, "metric_name must be a name"),
    ({"metric_name": ["a", "a"]}, "metric_name must be a name"),
    ({"nested": "yes"}, "nested must be True or False"),
    ({"tags": ["a"]}, "tags must be a mapping"),
])
def test_bad_options_are_refused_at_construction(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        MLflowCallback(**kwargs)


@pytest.mark.slow
def test_two_workers_share_one_study_run_and_a_crashed_worker_leaves_its_trial_failed(uri: str, tmp_path: Path) -> None:
    study = _study(tmp_path, "shared")
    cb = MLflowCallback(tracking_uri=uri)
    study.optimize(functools.partial(descend, cb=cb, crash=True), n_trials=6, n_workers=2, callbacks=[cb])
    trials = study.trials
    assert len(trials) == 6 and trials[CRASHES].state.value == "FAIL"
    assert "SIGKILL" in (trials[CRASHES].error or "")
    assert len(study.get_curves(CRASHES)["loss"][0]) == 2  # what it reported before it died
    _check_runs(uri, study)
    runs = {int(r.data.tags[TRIAL_TAG]): r for r in _runs(uri, study, "trial")}
    assert "SIGKILL" in runs[CRASHES].data.tags["tunelab.error"]
    assert {r.info.status for r in runs.values()} <= {"FINISHED", "KILLED", "FAILED"}


@pytest.mark.slow
def test_the_example_runs_and_the_page_shows_it() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, str(EXAMPLE)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"trial runs: 8, nested under 1 study run", done.stdout), done.stdout
    block = re.search(r"```python\n(.*?)```", PAGE.read_text(), re.S)
    assert block is not None and block.group(1) == EXAMPLE.read_text()
