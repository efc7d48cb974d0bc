"""RayExecutor end to end on a local Ray cluster (2 CPUs) and a real SQLite file: exact counts,
concurrency, failures, a worker that kills itself, reproducibility, Ctrl-C, and bad configurations."""

from __future__ import annotations

import collections
import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

import tunelab
from objectives import (
    fails_or_nan,
    hangs_on_first,
    kills_itself_on_three,
    misconfigured,
    naps,
    quadratic,
    sums_params,
)
from tunelab.errors import ConfigError, DistributionConflictError, TasksFailingError
from tunelab.records import FrozenTrial, TrialState

pytestmark = pytest.mark.slow
TESTS_DIR = Path(__file__).parent


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    """One local Ray for the module; its workers import the objectives from this directory."""
    path = os.pathsep.join(p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH")) if p)
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    yield
    ray.shutdown()


def sqlite_study(tmp_path: Path, name: str, seed: int = 0) -> tunelab.Study:
    return tunelab.create_study(name=name, storage=f"sqlite:///{tmp_path / 'ray.db'}", seed=seed)


def test_twenty_trials_run_once_each_with_callbacks(tmp_path: Path) -> None:
    study = sqlite_study(tmp_path, "twenty")
    seen: list[FrozenTrial] = []
    study.optimize(quadratic, n_trials=20, executor=tunelab.RayExecutor(), callbacks=[lambda s, t: seen.append(t)])
    trials = tunelab.load_study("twenty", study.storage.url).trials
    assert len(trials) == 20
    assert sorted(t.number for t in trials) == list(range(20))
    assert collections.Counter(t.state for t in trials) == {TrialState.COMPLETE: 20}
    assert sorted(t.number for t in seen) == list(range(20))
    assert all(set(t.params) == {"x", "lr"} for t in trials)


def test_trials_run_concurrently(tmp_path: Path) -> None:
    study = sqlite_study(tmp_path, "overlap")
    study.optimize(naps, n_trials=2, executor=tunelab.RayExecutor())
    first, second = study.trials
    assert max(first.user_attrs["start"], second.user_attrs["start"]) < min(
        first.user_attrs["end"], second.user_attrs["end"]
    ), "the two sleeping trials should overlap in time"


def test_failures_nan_and_pruning_are_recorded_and_the_study_goes_on(tmp_path: Path) -> None:
    study = sqlite_study(tmp_path, "faults")
    study.optimize(fails_or_nan, n_trials=6, executor=tunelab.RayExecutor())
    trials = study.trials
    assert [t.state for t in trials] == [
        TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL,
        TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE,
    ]
    assert "ValueError: boom in trial 1" in (trials[1].error or "")
    assert "NaN" in (trials[2].error or "")


def test_a_task_that_kills_its_worker_fails_its_trial_and_the_study_goes_on(tmp_path: Path) -> None:
    study = sqlite_study(tmp_path, "sigkill")
    study.optimize(kills_itself_on_three, n_trials=8, executor=tunelab.RayExecutor())
    trials = study.trials
    assert len(trials) == 8 and sorted(t.number for t in trials) == list(range(8))
    assert trials[3].state == TrialState.FAIL
    assert "WorkerCrashedError" in (trials[3].error or "")
    assert [t.state for t in trials if t.number != 3] == [TrialState.COMPLETE] * 7


def test_seeded_random_search_gives_the_same_params_per_trial_number_as_in_process(tmp_path: Path) -> None:
    here = sqlite_study(tmp_path, "here", seed=7)
    here.optimize(quadratic, n_trials=10)
    there = sqlite_study(tmp_path, "there", seed=7)
    there.optimize(quadratic, n_trials=10, executor=tunelab.RayExecutor(max_concurrent=2))
    by_number = {t.number: t.params for t in there.trials}
    assert [t.params for t in here.trials] == [by_number[n] for n in range(10)]


def test_an_exhausted_grid_stops_the_run(tmp_path: Path) -> None:
    space = {"a": tunelab.Categorical([1, 2, 3])}
    study = tunelab.create_study(
        name="grid", storage=f"sqlite:///{tmp_path / 'ray.db'}", sampler=tunelab.GridSampler(space), seed=0
    )
    study.optimize(sums_params, n_trials=10, space=space, executor=tunelab.RayExecutor())
    completed = study.get_trials([TrialState.COMPLETE])
    assert sorted(t.params["a"] for t in completed) == [1, 2, 3]
    assert not study.get_trials([TrialState.RUNNING])


def test_interrupt_cancels_running_tasks_and_fails_their_trials(tmp_path: Path) -> None:
    study = sqlite_study(tmp_path, "interrupt")

    def interrupt(study: tunelab.Study, trial: FrozenTrial) -> None:
        raise KeyboardInterrupt  # as if Ctrl-C arrived while trial 0 still runs

    with pytest.raises(KeyboardInterrupt):
        study.optimize(hangs_on_first, n_trials=5, executor=tunelab.RayExecutor(), callbacks=[interrupt])
    trials = {t.number: t for t in study.trials}
    assert trials[0].state == TrialState.FAIL and trials[0].error == "interrupted"
    assert trials[1].state == TrialState.COMPLETE
    assert not study.get_trials([TrialState.RUNNING])


def test_a_usage_error_in_the_objective_stops_the_study_with_nothing_left_running(tmp_path: Path) -> None:
    study = sqlite_study(tmp_path, "usage")
    with pytest.raises(DistributionConflictError, match="parameter 'x'"):
        study.optimize(misconfigured, n_trials=10, executor=tunelab.RayExecutor())
    trials = study.trials
    assert trials[2].state == TrialState.FAIL and "DistributionConflictError" in (trials[2].error or "")
    assert len(trials) < 10 and not study.get_trials([TrialState.RUNNING])


def test_an_objective_the_workers_cannot_import_stops_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "unshipped.py").write_text("def objective(trial):\n    return trial.suggest_float('x', 0, 1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # importable here, not in the Ray workers
    objective = importlib.import_module("unshipped").objective
    study = sqlite_study(tmp_path, "unshipped")
    with pytest.raises(TasksFailingError, match="No module named 'unshipped'"):
        study.optimize(objective, n_trials=20, executor=tunelab.RayExecutor())
    trials = study.trials
    assert 4 <= len(trials) < 20 and all(t.state == TrialState.FAIL for t in trials)
    # Tasks fail in any order: the ones that failed first carry the import error, and the run
    # stopped after them cancels the rest.
    errors = [t.error or "" for t in trials]
    assert sum("No module named 'unshipped'" in e for e in errors) >= 4
    assert all("\x1b[" not in e for e in errors)


def test_in_memory_storage_is_a_config_error_before_any_trial() -> None:
    study = tunelab.create_study(seed=0)
    with pytest.raises(ConfigError, match="storage URL"):
        study.optimize(quadratic, n_trials=2, executor=tunelab.RayExecutor())
    assert study.trials == []


def test_n_workers_with_an_executor_is_a_config_error_before_any_trial(tmp_path: Path) -> None:
    study = sqlite_study(tmp_path, "workers")
    with pytest.raises(ConfigError, match=r"n_workers=2 .*max_concurrent"):
        study.optimize(quadratic, n_trials=2, n_workers=2, executor=tunelab.RayExecutor())
    with pytest.raises(ConfigError, match="trial_timeout"):
        study.optimize(quadratic, n_trials=2, trial_timeout=5.0, executor=tunelab.RayExecutor())
    with pytest.raises(ConfigError, match="executor must be"):
        study.optimize(quadratic, n_trials=2, executor="ray")  # type: ignore[arg-type]
    assert study.trials == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_cpus_per_trial": -1}, "num_cpus_per_trial"),
        ({"num_cpus_per_trial": 0}, "must reserve some resource"),
        ({"num_gpus_per_trial": 1.5}, "whole number"),
        ({"max_concurrent": 0}, "max_concurrent"),
        ({"address": ""}, "address"),
    ],
)
def test_bad_executor_arguments_are_config_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        tunelab.RayExecutor(**kwargs)  # type: ignore[arg-type]


def test_default_concurrency_fills_the_cluster(caplog: pytest.LogCaptureFixture) -> None:
    assert tunelab.RayExecutor().concurrency(ray) == 2
    assert tunelab.RayExecutor(num_cpus_per_trial=0.5).concurrency(ray) == 4
    assert tunelab.RayExecutor(max_concurrent=7).concurrency(ray) == 7
    # tunelab's own warnings only: Ray logs an earlier test's failed task (the unshipped module)
    # whenever its worker reports it, which may be during this test
    assert not [r for r in caplog.records if r.name == "tunelab"]
    assert tunelab.RayExecutor(num_gpus_per_trial=1).concurrency(ray) == 1  # this cluster has no GPU
    assert any(r.name == "tunelab" and "0 GPU now" in r.getMessage() for r in caplog.records)


def test_missing_ray_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    study = sqlite_study(tmp_path, "noray")
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'tunelab\[ray\]'"):
        study.optimize(quadratic, n_trials=2, executor=tunelab.RayExecutor())
    assert study.trials == []
