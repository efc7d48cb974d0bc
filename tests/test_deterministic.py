"""Deterministic studies (issue 21, part 3): the parameters of trial n depend only on the seed and the
trials numbered below n, whatever the number of workers and the order in which they finish."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import tunelab
from objectives import jittered_styblinski_tang_3d, jittered_two_objectives
from tunelab.errors import ConfigError, TrialStateError
from tunelab.samplers import Sampler

SAMPLERS: dict[str, Callable[[], Sampler]] = {
    "gp": lambda: tunelab.GPSampler(n_startup_trials=5),
    "tpe": lambda: tunelab.TPESampler(n_startup_trials=5),
    "tpe-univariate": lambda: tunelab.TPESampler(n_startup_trials=5, multivariate=False),
    "auto": lambda: tunelab.AutoSampler(n_startup_trials=4, switch_at=8),
    "random": tunelab.RandomSampler,
}


def run(tmp_path: Path, make: Callable[[], Sampler], n_workers: int, n_trials: int = 16) -> list[dict[str, object]]:
    url = f"sqlite:///{tmp_path / f'det-{n_workers}.db'}"
    study = tunelab.create_study(name="d", storage=url, sampler=make(), seed=7, deterministic=True)
    study.optimize(jittered_styblinski_tang_3d, n_trials=n_trials, n_workers=n_workers)
    trials = study.trials
    assert [t.number for t in trials] == list(range(n_trials))
    assert all(t.state == tunelab.TrialState.COMPLETE for t in trials)
    return [dict(t.params) for t in trials]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_one_two_and_four_workers_give_the_same_parameters_bit_for_bit(tmp_path: Path, name: str) -> None:
    one = run(tmp_path, SAMPLERS[name], 1)
    assert run(tmp_path, SAMPLERS[name], 2) == one
    assert run(tmp_path, SAMPLERS[name], 4) == one
    assert len({tuple(sorted(p.items())) for p in one}) == len(one)  # and the search did search


@pytest.mark.slow
def test_several_objectives_replay_with_multi_objective_tpe(tmp_path: Path) -> None:
    def params(n_workers: int) -> list[dict[str, object]]:
        study = tunelab.create_study(name="mo", storage=f"sqlite:///{tmp_path / f'mo-{n_workers}.db'}", seed=3,
                                     directions=["minimize", "minimize"], deterministic=True,
                                     sampler=tunelab.TPESampler(n_startup_trials=4))
        study.optimize(jittered_two_objectives, n_trials=14, n_workers=n_workers)
        assert all(t.state == tunelab.TrialState.COMPLETE for t in study.trials)
        return [dict(t.params) for t in study.trials]

    assert params(1) == params(3)
    with pytest.raises(ConfigError, match=r"TPESampler\(\) \(multi-objective TPE\) or RandomSampler"):
        tunelab.create_study(directions=["minimize"] * 3, deterministic=True)  # AutoSampler: NSGA-II for 3
    tunelab.create_study(directions=["minimize", "minimize"], deterministic=True)  # AutoSampler: MO TPE for 2


@pytest.mark.parametrize(
    ("sampler", "reason"),
    [(tunelab.GridSampler({"x": [1, 2]}), "the cell a trial takes"),
     (tunelab.CoarseToFineSampler(), "zoomed stages"),
     (tunelab.NSGAIIISampler(), "its parents are whichever earlier trials")],
)
def test_several_objectives_refuse_a_sampler_that_cannot_replay_with_its_own_reason(
    sampler: Sampler, reason: str
) -> None:
    # The message said every such sampler "runs NSGA-II here (after switch_at trials)", which is AutoSampler's case.
    with pytest.raises(ConfigError, match="deterministic=True with several objectives") as caught:
        tunelab.create_study(directions=["minimize", "minimize"], deterministic=True, sampler=sampler)
    assert reason in str(caught.value) and "switch_at" not in str(caught.value)
    assert f"{type(sampler).__name__} cannot replay" in str(caught.value)


def test_in_process_runs_replay_and_differ_from_a_non_deterministic_one() -> None:
    def objective(trial: tunelab.Trial) -> float:
        return (trial.suggest_float("x", -2, 2) - 1) ** 2 + trial.suggest_float("y", -2, 2) ** 2

    def params(**kwargs: object) -> list[dict[str, object]]:
        study = tunelab.create_study(sampler=tunelab.TPESampler(n_startup_trials=3), seed=1, **kwargs)  # type: ignore[arg-type]
        study.optimize(objective, n_trials=12)
        return [t.params for t in study.trials]

    assert params(deterministic=True) == params(deterministic=True)
    assert params(deterministic=2) != params(deterministic=True)  # the width is part of the result
    assert params(deterministic=1) == params()  # width 1: every result counts, as in a sequential study


def test_the_width_is_stored_and_rebuilt_by_load_study(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    tunelab.create_study(name="w", storage=url, seed=0, deterministic=3, sampler=tunelab.RandomSampler())
    loaded = tunelab.load_study("w", url)
    assert loaded.system_attrs["deterministic"] == {"width": 3}
    assert tunelab.create_study(name="w", storage=url, load_if_exists=True).system_attrs["deterministic"] == {
        "width": 3}
    with pytest.raises(ConfigError, match="created with deterministic=3"):
        tunelab.create_study(name="w", storage=url, load_if_exists=True, deterministic=True)
    with pytest.raises(ConfigError, match=r"GridSampler.*cannot replay.*cell a trial takes"):
        loaded.sampler = tunelab.GridSampler({"x": [1, 2]})
    with pytest.raises(ConfigError, match="pruner"):
        loaded.pruner = tunelab.MedianPruner()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"deterministic": 0}, "width >= 1"), ({"deterministic": 2.5}, "width >= 1"), ({"deterministic": "yes"}, "width"),
     ({"deterministic": True, "pruner": tunelab.MedianPruner()}, "cannot be combined with a pruner"),
     ({"deterministic": True, "sampler": tunelab.GridSampler({"x": [1, 2]})}, "GridSampler"),
     ({"deterministic": True, "sampler": tunelab.CoarseToFineSampler()}, "zoomed stages")],
)
def test_what_cannot_replay_is_refused_before_any_trial(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        tunelab.create_study(seed=0, **kwargs)  # type: ignore[arg-type]


def test_ask_does_not_wait_for_a_result_its_own_caller_holds() -> None:
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler(), deterministic=2)
    first = study.ask()
    second = study.ask()  # trial 1 plans from trials below 0: nothing to wait for
    with pytest.raises(TrialStateError, match=r"trial 2 .* below 1, and trial\(s\) \[0\] are not finished: tell"):
        study.ask()
    assert len(study.trials) == 2  # refused before a number is spent: no FAIL row shifting the later plans
    study.tell(first, 1.0)
    study.tell(second, 2.0)
    assert study.ask().number == 2


def test_a_worker_waits_for_the_results_its_trial_plans_from(tmp_path: Path) -> None:
    study = tunelab.create_study(seed=0, sampler=tunelab.TPESampler(n_startup_trials=1), deterministic=2)
    first = study.ask()
    first.suggest_float("x", 0, 1)
    study.ask()  # trial 1: running
    reserved = study.reserve_trial()  # trial 2 needs trial 0's result
    planned: list[tunelab.Trial] = []
    worker = threading.Thread(target=lambda: planned.append(study.ask_reserved(reserved.trial_id)))
    worker.start()
    time.sleep(0.3)
    assert not planned  # still waiting for trial 0
    study.tell(first, 0.5)
    worker.join(timeout=10)
    assert planned and planned[0].number == 2
