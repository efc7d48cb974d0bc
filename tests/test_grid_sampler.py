"""GridSampler: every cell once, conditional cells, explicit values, parallel safety, edge shifting."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tunelab
from tunelab import Categorical, Conditional, Float, GridSampler, Int
from tunelab.errors import ConfigError, SearchExhausted
from tunelab.history import History
from tunelab.records import TrialState
from tunelab.samplers import sampler_from_description
from tunelab.samplers.base import SamplingContext

LR_WD = {"lr": Float(1e-5, 1e-1, log=True), "wd": Float(1e-6, 1e-2, log=True)}


def lr_wd_objective(trial: tunelab.Trial) -> float:
    """Minimum 0 at lr=1e-3, wd=1e-4: both on the 5-point log grids of LR_WD."""
    lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    wd = trial.suggest_float("wd", 1e-6, 1e-2, log=True)
    return (math.log10(lr) + 3) ** 2 + (math.log10(wd) + 4) ** 2


def small_grid_objective(trial: tunelab.Trial) -> float:
    """Module level: spawned worker processes import it."""
    x = trial.suggest_float("x", 0.0, 1.0)
    act = trial.suggest_categorical("act", ["relu", "tanh", "gelu"])
    return x + len(str(act))


def cells_of(study: tunelab.Study, names: tuple[str, ...]) -> list[tuple[Any, ...]]:
    return [tuple(t.params.get(n) for n in names) for t in study.trials if t.state == TrialState.COMPLETE]


def history_of(study: tunelab.Study) -> History:
    return History(study.storage, study.storage.get_study(study.name), study.space)


# -- covering the grid -----------------------------------------------------------------------
def test_every_cell_runs_exactly_once_then_optimize_returns_early() -> None:
    sampler = GridSampler({"x": Float(0.0, 1.0), "act": ["relu", "tanh", "gelu"]}, n_points=4)
    study = tunelab.create_study(sampler=sampler, seed=0)
    study.optimize(small_grid_objective, n_trials=100)
    expected = set(itertools.product([0.0, 1 / 3, 2 / 3, 1.0], ["relu", "tanh", "gelu"]))
    ran = cells_of(study, ("x", "act"))
    assert len(study.trials) == 12
    assert Counter(ran) == Counter({cell: 1 for cell in expected})


def test_ask_after_the_last_cell_raises_search_exhausted() -> None:
    study = tunelab.create_study(sampler=GridSampler({"act": ["relu", "tanh"]}), seed=0)
    for _ in range(2):
        trial = study.ask()
        study.tell(trial, 1.0)
    with pytest.raises(SearchExhausted):
        study.ask()
    assert len(study.trials) == 2  # no trial is created for nothing


def test_log_parameters_get_log_spaced_points() -> None:
    study = tunelab.create_study(sampler=GridSampler({"lr": Float(1e-5, 1e-1, log=True)}), seed=0)
    study.optimize(lambda t: t.suggest_float("lr", 1e-5, 1e-1, log=True), n_trials=10)
    lrs = sorted(t.params["lr"] for t in study.trials)
    assert lrs == pytest.approx([1e-5, 1e-4, 1e-3, 1e-2, 1e-1], rel=1e-9)


def test_conditional_parameter_appears_only_in_cells_where_it_is_active() -> None:
    space = {
        "optimizer": Categorical(["sgd", "adam"]),
        "momentum": Conditional(Float(0.0, 0.9), when={"optimizer": "sgd"}),
        "lr": Float(1e-4, 1e-2, log=True),
    }
    study = tunelab.create_study(sampler=GridSampler(n_points=3), space=space, seed=0)  # the study's space
    study.optimize(lambda t: 0.0, n_trials=100)
    sgd = [t.params for t in study.trials if t.params["optimizer"] == "sgd"]
    adam = [t.params for t in study.trials if t.params["optimizer"] == "adam"]
    assert len(sgd) == 9 and len({(p["momentum"], p["lr"]) for p in sgd}) == 9
    assert len(adam) == 3 and all("momentum" not in p for p in adam)


def test_explicit_value_lists_are_the_values_tried() -> None:
    sampler = GridSampler({"batch_size": [32, 64, 128], "act": ["relu", "tanh"]})
    study = tunelab.create_study(sampler=sampler, seed=0)

    def objective(trial: tunelab.Trial) -> float:
        batch = trial.suggest_int("batch_size", 16, 256)
        trial.suggest_categorical("act", ["relu", "tanh"])
        return float(batch)

    study.optimize(objective, n_trials=100)
    assert sorted(cells_of(study, ("batch_size", "act"))) == sorted(
        itertools.product([32, 64, 128], ["relu", "tanh"])
    )


def test_numpy_arrays_of_values_are_taken_as_lists_of_python_scalars() -> None:
    sampler = GridSampler({"x": np.linspace(0.0, 1.0, 3), "n": np.array([1, 2])})
    assert sampler.describe()["space"] == {"x": {"values": [0.0, 0.5, 1.0]}, "n": {"values": [1, 2]}}
    assert all(type(v) is int for v in sampler.describe()["space"]["n"]["values"])


def test_finds_the_cell_of_a_known_optimum_on_two_log_parameters() -> None:
    study = tunelab.create_study(sampler=GridSampler(LR_WD, n_points=5), seed=1)
    study.optimize(lr_wd_objective, n_trials=100)
    assert len(study.trials) == 25
    assert study.best_params == pytest.approx({"lr": 1e-3, "wd": 1e-4}, rel=1e-9)
    assert study.best_value == pytest.approx(0.0, abs=1e-12)


# -- order -----------------------------------------------------------------------------------
def test_same_seed_gives_the_same_order_and_another_seed_another() -> None:
    def order(seed: int) -> list[dict[str, Any]]:
        study = tunelab.create_study(sampler=GridSampler(LR_WD), seed=seed)
        study.optimize(lr_wd_objective, n_trials=25)
        return [dict(t.params) for t in study.trials]

    assert order(3) == order(3)
    assert order(3) != order(4)


def test_early_trials_spread_over_the_space() -> None:
    study = tunelab.create_study(sampler=GridSampler(LR_WD), seed=0)
    study.optimize(lr_wd_objective, n_trials=10)
    assert len({t.params["lr"] for t in study.trials}) >= 4  # not row by row


# -- parallel safety -------------------------------------------------------------------------
def test_trials_asked_before_any_is_told_get_distinct_cells() -> None:
    study = tunelab.create_study(sampler=GridSampler({"x": Float(0, 1), "y": [1, 2]}, n_points=3), seed=0)
    trials = [study.ask() for _ in range(6)]
    cells = [(t.suggest_float("x", 0, 1), t.suggest_int("y", 1, 2)) for t in trials]
    assert len(set(cells)) == 6
    with pytest.raises(SearchExhausted):
        study.ask()


def test_trial_planned_while_a_lower_one_is_still_planning_leaves_it_the_first_free_cell() -> None:
    space = {"act": ["a", "b", "c", "d"]}
    sequential = tunelab.create_study(sampler=GridSampler(space), seed=0)
    sequential.optimize(lambda t: 0.0, n_trials=4, space={"act": Categorical(["a", "b", "c", "d"])})
    order = [t.params["act"] for t in sequential.trials]

    sampler = GridSampler(space)
    study = tunelab.create_study(sampler=sampler, seed=0)
    study_id = study.storage.get_study(study.name).study_id
    planning = study.storage.create_trial(study_id)  # trial 0: created, not planned yet
    late = study.ask()  # trial 1
    early = sampler.plan(history_of(study), SamplingContext(planning.number, study.seed))
    assert late.system_attrs["grid"]["cell"] == {"act": order[1]}
    assert early == {"act": order[0]}


def test_no_cell_left_for_a_new_reservation_raises_search_exhausted_and_adds_no_row() -> None:
    study = tunelab.create_study(sampler=GridSampler({"act": ["a", "b"]}), seed=0)
    study_id = study.storage.get_study(study.name).study_id
    study.storage.create_trial(study_id)  # reserved, being planned: each takes one of the free cells
    study.reserve_trial()
    with pytest.raises(SearchExhausted):
        study.reserve_trial()  # a driver reserving for several workers stops at the number of cells
    assert [t.state for t in study.trials] == [TrialState.RUNNING] * 2


def test_reservation_that_finds_its_cell_taken_when_planning_leaves_no_row() -> None:
    """Two processes reserved at once: the one whose cell went to a lower-numbered trial planning at
    the same time gets SearchExhausted, and its reservation is deleted, not left as a FAIL row."""
    sampler = GridSampler({"act": ["a"]})
    study = tunelab.create_study(sampler=sampler, seed=0)
    study_id = study.storage.get_study(study.name).study_id
    study.storage.create_trial(study_id)  # trial 0, being planned elsewhere: the only cell is its
    late = study.storage.create_trial(study_id)  # trial 1, reserved by another driver at the same moment
    with pytest.raises(SearchExhausted):
        study.ask_reserved(late.trial_id)
    assert [(t.number, t.state) for t in study.trials] == [(0, TrialState.RUNNING)]


def test_enqueued_configuration_takes_its_cell_and_partial_params_come_from_the_grid() -> None:
    study = tunelab.create_study(sampler=GridSampler({"x": [1, 2, 3], "y": [10, 20]}), seed=0)
    study.enqueue({"x": 2, "y": 20})
    study.enqueue({"x": 3})
    study.optimize(lambda t: t.suggest_int("x", 0, 9) + t.suggest_int("y", 0, 99), n_trials=100)
    cells = [(t.params["x"], t.params["y"]) for t in study.trials]
    assert cells[1][0] == 3 and cells[1][1] in (10, 20)
    assert Counter(cells) == Counter(itertools.product([1, 2, 3], [10, 20]))


def test_partially_enqueued_trial_claims_its_cell_before_its_other_params_are_suggested(tmp_path: Path) -> None:
    """A partially enqueued trial took no cell until its objective suggested the rest: trials asked
    meanwhile could take every cell, and the enqueued one then ran one of them a second time."""
    url = f"sqlite:///{tmp_path / 'grid.db'}"
    study = tunelab.create_study(name="g", storage=url, sampler=GridSampler({"x": [1, 2], "y": [10, 20, 30]}), seed=0)
    study.enqueue({"x": 1})
    enqueued = study.ask()
    others = []
    with pytest.raises(SearchExhausted):
        while True:  # five cells are left for the other trials, then the grid is exhausted
            others.append(study.ask())
    for trial in [enqueued, *others]:
        study.tell(trial, trial.suggest_int("x", 0, 9) + trial.suggest_int("y", 0, 99))
    assert len(others) == 5
    assert enqueued.params["x"] == 1
    assert Counter((t.params["x"], t.params["y"]) for t in study.trials) == Counter(
        itertools.product([1, 2], [10, 20, 30])
    )


def test_enqueued_trial_with_a_cell_already_run_takes_no_cell_and_still_runs() -> None:
    study = tunelab.create_study(sampler=GridSampler({"x": [1, 2]}), seed=0)
    study.optimize(lambda t: t.suggest_int("x", 0, 9), n_trials=10)
    study.enqueue({"x": 2})  # every cell has run: the configuration still runs, as asked
    study.optimize(lambda t: t.suggest_int("x", 0, 9), n_trials=10)
    assert [t.params["x"] for t in study.trials][2:] == [2]
    assert study.trials[2].system_attrs["grid"] == {"cell": None}


@pytest.mark.slow
def test_two_worker_processes_on_sqlite_run_every_cell_exactly_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'grid.db'}"
    sampler = GridSampler({"x": Float(0.0, 1.0), "act": ["relu", "tanh", "gelu"]}, n_points=5)
    study = tunelab.create_study(name="grid", storage=url, sampler=sampler, seed=0)
    study.optimize(small_grid_objective, n_trials=60, n_workers=2)
    again = tunelab.load_study("grid", url)  # rebuilt from the stored description
    assert isinstance(again.sampler, GridSampler)
    ran = cells_of(again, ("x", "act"))
    assert Counter(ran) == Counter(itertools.product([0.0, 0.25, 0.5, 0.75, 1.0], ["relu", "tanh", "gelu"]))
    assert [t.state for t in again.trials] == [TrialState.COMPLETE] * 15  # no FAIL row no objective made


def test_four_workers_on_a_small_grid_leave_no_fail_rows(tmp_path: Path) -> None:
    """Issue 16: grid studies ended with 1-2 FAIL rows ("could not start: SearchExhausted") when the
    driver reserved more trials than there were cells left."""
    url = f"sqlite:///{tmp_path / 'grid.db'}"
    sampler = GridSampler({"x": [0.0, 1.0], "act": ["relu", "tanh", "gelu"]})
    study = tunelab.create_study(name="g", storage=url, sampler=sampler, seed=0)
    study.optimize(small_grid_objective, n_trials=20, n_workers=4)
    assert Counter(cells_of(study, ("x", "act"))) == Counter(itertools.product([0.0, 1.0], ["relu", "tanh", "gelu"]))
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 6


# -- edge shifting ---------------------------------------------------------------------------
def far_optimum(trial: tunelab.Trial) -> float:
    """Minimum at lr=1e-6, below the first grid [1e-4, 1e-3, 1e-2, 1e-1]."""
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    act = trial.suggest_categorical("act", ["relu", "tanh"])
    return (math.log10(lr) + 6) ** 2 + (act == "tanh")


FAR_SPACE = {"lr": Float(1e-4, 1e-1, log=True), "act": ["relu", "tanh"]}


def test_with_edge_shifting_it_reaches_an_optimum_outside_the_first_grid() -> None:
    sampler = GridSampler(FAR_SPACE, n_points=4, shift_edges=True)
    study = tunelab.create_study(sampler=sampler, seed=0)
    study.optimize(far_optimum, n_trials=500)
    assert study.best_params["lr"] == pytest.approx(1e-6, rel=1e-9)
    assert study.best_trial.distributions["lr"].low == pytest.approx(1e-6)  # type: ignore[attr-defined]
    lrs = sorted(t.params["lr"] for t in study.trials if t.params["act"] == "relu")
    assert lrs == pytest.approx([1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1], rel=1e-9)  # one past, then stop
    assert len(study.trials) == 7 * 2


def test_without_edge_shifting_the_grid_stays_within_its_points() -> None:
    study = tunelab.create_study(sampler=GridSampler(FAR_SPACE, n_points=4), seed=0)
    study.optimize(far_optimum, n_trials=500)
    assert len(study.trials) == 8 and study.best_params["lr"] == pytest.approx(1e-4)


def test_edge_shifting_stops_after_max_shifts_per_side() -> None:
    sampler = GridSampler(FAR_SPACE, n_points=4, shift_edges=True, max_shifts=1)
    study = tunelab.create_study(sampler=sampler, seed=0)
    study.optimize(far_optimum, n_trials=500)
    assert min(t.params["lr"] for t in study.trials) == pytest.approx(1e-5)
    assert len(study.trials) == 8 + 2


def test_integer_edge_shifts_are_distinct_integers_with_the_same_ratio() -> None:
    sampler = GridSampler({"width": Int(1, 16, log=True)}, shift_edges=True, max_shifts=3)
    study = tunelab.create_study(sampler=sampler, direction="maximize", seed=0)
    study.optimize(lambda t: float(t.suggest_int("width", 1, 16, log=True)), n_trials=100)
    assert sorted(t.params["width"] for t in study.trials) == [1, 2, 4, 8, 16, 32, 64, 128]


def test_lattice_edge_shifts_stay_on_the_lattice() -> None:
    sampler = GridSampler({"p": Float(0.0, 1.0, step=0.25)}, n_points=3, shift_edges=True, max_shifts=2)
    study = tunelab.create_study(sampler=sampler, direction="maximize", seed=0)
    study.optimize(lambda t: t.suggest_float("p", 0.0, 1.0, step=0.25), n_trials=100)
    assert sorted(t.params["p"] for t in study.trials) == [0.0, 0.5, 1.0, 1.5, 2.0]


def test_explicit_numeric_values_shift_with_their_own_spacing() -> None:
    sampler = GridSampler({"lr": [1e-3, 1e-2, 1e-1], "depth": [2, 4, 6]}, shift_edges=True, max_shifts=1)
    study = tunelab.create_study(sampler=sampler, seed=0)
    study.optimize(lambda t: t.suggest_float("lr", 1e-6, 1.0) + t.suggest_int("depth", 0, 9), n_trials=100)
    assert min(t.params["lr"] for t in study.trials) == pytest.approx(1e-4)  # geometric values
    assert min(t.params["depth"] for t in study.trials) == 0  # evenly spaced values


def test_explicit_values_taken_as_categorical_choices_are_never_shifted() -> None:
    # The grid's own example takes explicit values with suggest_categorical: no value past them
    # can be taken, so the best on an edge adds nothing (it planned 16 and stopped the study).
    sampler = GridSampler({"bs": [32, 64, 128], "lr": Float(1e-4, 1e-1, log=True)}, n_points=4,
                          shift_edges=True, max_shifts=1)
    study = tunelab.create_study(sampler=sampler, seed=0)
    study.optimize(lambda t: t.suggest_categorical("bs", [32, 64, 128]) / 1000
                   + abs(math.log10(t.suggest_float("lr", 1e-4, 1e-1, log=True)) + 5), n_trials=100)
    assert {t.params["bs"] for t in study.trials} == {32, 64, 128}
    assert min(t.params["lr"] for t in study.trials) == pytest.approx(1e-5)  # numeric ones still shift
    assert len(study.trials) == 3 * 5 and all(t.state == TrialState.COMPLETE for t in study.trials)


# -- errors and description ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"space": {"x": [1, 2]}, "n_points": 0}, "n_points"),
        ({"space": {"x": [1, 2]}, "n_points": 2.5}, "n_points"),
        ({"space": {"x": [1, 2]}, "max_shifts": -1}, "max_shifts"),
        ({"space": {"x": [1, 2]}, "shift_edges": "yes"}, "shift_edges"),
        ({"space": {}}, "non-empty"),
        ({"space": {"x": []}}, "'x'.*empty"),
        ({"space": {"x": [1, 2, 1.0]}}, "'x'.*twice"),
        ({"space": {"x": [{"a": 1}]}}, "'x'.*str"),
        ({"space": {"x": [float("nan")]}}, "'x'.*finite"),
        ({"space": {"x": {1, 2}}}, "'x'.*list of values"),
        ({"space": {"m": Conditional(Float(0, 1), when={"opt": "sgd"})}}, "'m'.*'opt'"),
        ({"space": {f"p{i}": list(range(10)) for i in range(6)}}, "more than"),
    ],
)
def test_constructor_rejects_bad_arguments_naming_them(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        GridSampler(**kwargs)


def test_without_any_space_asking_is_a_config_error_naming_the_fix() -> None:
    study = tunelab.create_study(sampler=GridSampler(), seed=0)
    with pytest.raises(ConfigError, match="create_study\\(space="):
        study.ask()


def test_parameter_outside_the_grid_space_is_a_config_error() -> None:
    study = tunelab.create_study(sampler=GridSampler({"x": [1, 2]}), seed=0)
    trial = study.ask()
    with pytest.raises(ConfigError, match="'y' is not in the grid"):
        trial.suggest_float("y", 0, 1)


def test_describe_rebuilds_the_same_sampler() -> None:
    space = {
        "optimizer": ["sgd", "adam"],
        "momentum": Conditional(Float(0.0, 0.9), when={"optimizer": "sgd"}),
        "lr": Float(1e-5, 1e-1, log=True),
    }
    sampler = GridSampler(space, n_points=4, shift_edges=True, max_shifts=3)
    rebuilt = sampler_from_description(sampler.describe())
    assert isinstance(rebuilt, GridSampler) and rebuilt.describe() == sampler.describe()
    assert sampler_from_description(GridSampler().describe()).describe() == GridSampler().describe()
