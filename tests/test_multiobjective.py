"""Studies with several objectives and constraints (issue 19): the engine, the storage, the
Pareto numerics against a reference implementation, NSGA-II on problems with known fronts."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import moocore
import numpy as np
import pytest

import tunelab
from objectives import zdt1_constrained
from tunelab.errors import AttributeValueError, ConfigError, TrialNotFoundError
from tunelab.history import History
from tunelab.multiobjective import (
    crowding_distance,
    dominates,
    hypervolume,
    hypervolume_improvement,
    losses,
    non_dominated_sort,
    pareto_front_trials,
    pareto_mask,
)
from tunelab.records import FrozenTrial, TrialState


class OneObjectiveSampler(tunelab.RandomSampler):
    """A user's sampler that handles one objective only (every built-in one handles several)."""

    multi_objective = False


# -- problems with known fronts ---------------------------------------------------------------


def zdt1(trial: tunelab.Trial) -> tuple[float, float]:
    x = np.array([trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(5)])
    g = 1.0 + 9.0 * x[1:].mean()
    return float(x[0]), float(g * (1.0 - math.sqrt(x[0] / g)))


def zdt2(trial: tunelab.Trial) -> tuple[float, float]:
    x = np.array([trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(5)])
    g = 1.0 + 9.0 * x[1:].mean()
    return float(x[0]), float(g * (1.0 - (x[0] / g) ** 2))


def dtlz2(trial: tunelab.Trial) -> tuple[float, float, float]:
    x = np.array([trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(5)])
    g = float(((x[2:] - 0.5) ** 2).sum())
    a, b = x[0] * math.pi / 2, x[1] * math.pi / 2
    return ((1 + g) * math.cos(a) * math.cos(b), (1 + g) * math.cos(a) * math.sin(b), (1 + g) * math.sin(a))


def assert_non_dominated(front: list[FrozenTrial], directions: list[str]) -> None:
    points = losses([t.values for t in front], directions)  # type: ignore[misc]
    for i in range(len(points)):
        for j in range(len(points)):
            assert not dominates(points[i], points[j]), (front[i].number, front[j].number)


def front_hypervolume(study: tunelab.Study, reference: list[float]) -> float:
    points = losses([t.values for t in study.best_trials], study.directions)  # type: ignore[misc]
    return hypervolume(points, reference)


# -- the numerics against moocore ----------------------------------------------------------------


@pytest.mark.parametrize("m", [2, 3, 4])
@pytest.mark.parametrize("n", [1, 2, 7, 40, 120])
def test_hypervolume_equals_the_reference_implementation(m: int, n: int) -> None:
    rng = np.random.default_rng(1000 * m + n)
    for kind in ("uniform", "front"):
        if kind == "uniform":
            points = rng.random((n, m))
        else:  # points on a concave front: every one non-dominated
            raw = np.abs(rng.normal(size=(n, m)))
            points = 1.0 - raw / np.linalg.norm(raw, axis=1, keepdims=True)
        if m == 4 and n == 120:
            points = points[:60]  # keep the 4-d slicing quick
        reference = np.full(m, 1.2)
        ours = hypervolume(points, reference)
        theirs = float(moocore.hypervolume(points, ref=reference))
        assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("m", [2, 3, 4])
def test_hypervolume_improvement_is_what_a_point_adds_to_the_front(m: int) -> None:
    rng = np.random.default_rng(m)
    reference = np.full(m, 1.1)
    for _ in range(30):
        front = rng.random((int(rng.integers(0, 25)), m))
        front = front[pareto_mask(front)] if len(front) else front.reshape(0, m)
        point = rng.random(m) * rng.choice([0.5, 1.0, 1.2])  # inside, on the front's side, or past the reference
        before = hypervolume(front, reference) if len(front) else 0.0
        after = hypervolume(np.vstack([front, point]), reference)
        assert hypervolume_improvement(point, front, reference) == pytest.approx(after - before, rel=1e-9, abs=1e-12)


def test_the_three_objective_sweep_holds_with_ties_and_duplicates() -> None:
    rng = np.random.default_rng(7)
    points = np.round(rng.random((300, 3)), 1)  # many equal coordinates and equal rows
    reference = np.full(3, 1.05)
    assert hypervolume(points, reference) == pytest.approx(float(moocore.hypervolume(points, ref=reference)),
                                                           rel=1e-9)


def test_hypervolume_refuses_points_that_do_not_match_the_reference() -> None:
    # The points were reshaped to the reference's length: two 2-d points and a 1-d reference gave 2.0.
    with pytest.raises(ConfigError, match=r"points \(\(2, 2\)\) do not match the reference's 1 objectives"):
        hypervolume([[1.0, 2.0], [2.0, 1.0]], [3.0])
    with pytest.raises(ConfigError, match=r"points \(rows of different lengths\) do not match the reference's 3"):
        hypervolume([[1.0, 2.0, 0.5], [2.0, 1.0]], [3.0, 3.0, 3.0])  # ragged rows
    with pytest.raises(ConfigError, match="one number per objective"):
        hypervolume([[1.0, 2.0]], [[3.0, 3.0]])
    assert hypervolume([1.0, 2.0], [3.0, 3.0]) == 2.0  # one point
    # A string said "rows of different lengths" (or raised numpy's ValueError in the reference), a NaN or
    # None point counted as nothing without a word, a single number raised numpy's "cannot reshape".
    with pytest.raises(ConfigError, match=r"points must be numbers, one loss per objective, got \[\['a', 1\]\]"):
        hypervolume([["a", 1]], [3.0, 3.0])
    with pytest.raises(ConfigError, match=r"reference must be one number per objective, got \['fast', 3.0\]"):
        hypervolume([[1.0, 2.0]], ["fast", 3.0])
    for bad in ([[1.0, 2.0], [math.nan, 0.0]], [[1.0, 2.0], [None, 0.0]]):
        with pytest.raises(ConfigError, match=r"point\(s\) \[1\] hold NaN"):
            hypervolume(bad, [3.0, 3.0])
    with pytest.raises(ConfigError, match=r"points \(\(\)\) do not match the reference's 2 objectives"):
        hypervolume(1.0, [3.0, 3.0])  # type: ignore[arg-type]
    assert hypervolume([], [3.0, 3.0]) == 0.0


def test_hypervolume_of_points_beyond_the_reference_is_zero_and_duplicates_count_once() -> None:
    assert hypervolume(np.array([[2.0, 0.5]]), [1.0, 1.0]) == 0.0
    assert hypervolume(np.empty((0, 3)), [1.0, 1.0, 1.0]) == 0.0
    once = hypervolume(np.array([[0.5, 0.5, 0.5]]), [1.0, 1.0, 1.0])
    assert hypervolume(np.array([[0.5, 0.5, 0.5]] * 3), [1.0, 1.0, 1.0]) == once == 0.125


def test_pareto_mask_and_fronts_agree_with_the_reference() -> None:
    rng = np.random.default_rng(3)
    for m in (2, 3):
        points = np.round(rng.random((80, m)), 1)  # ties and duplicates included
        assert pareto_mask(points).tolist() == moocore.is_nondominated(points, keep_weakly=True).tolist()
        fronts = non_dominated_sort(points)
        assert sorted(np.concatenate(fronts).tolist()) == list(range(80))
        ranks = np.asarray(moocore.pareto_rank(points))
        for r, front in enumerate(fronts):
            assert (ranks[front] == r).all()


def test_crowding_distance_gives_the_boundary_points_infinity() -> None:
    points = np.array([[0.0, 1.0], [0.2, 0.5], [0.5, 0.3], [1.0, 0.0]])
    d = crowding_distance(points)
    assert math.isinf(d[0]) and math.isinf(d[3])
    assert d[1] == pytest.approx(0.5 / 1.0 + 0.7 / 1.0)
    assert d[2] == pytest.approx(0.8 / 1.0 + 0.5 / 1.0)


# -- studies ---------------------------------------------------------------------------------------


def test_a_study_with_two_named_objectives() -> None:
    study = tunelab.create_study(
        directions=["maximize", "minimize"], objective_names=["val_acc", "latency_ms"], seed=0,
        sampler=tunelab.RandomSampler(),
    )
    assert study.is_multi_objective and study.directions == ("maximize", "minimize")
    assert study.objective_names == ("val_acc", "latency_ms")

    def objective(trial: tunelab.Trial) -> dict[str, float]:
        width = trial.suggest_int("width", 1, 100)
        return {"latency_ms": float(width), "val_acc": 1.0 - 1.0 / width}

    study.optimize(objective, n_trials=20)
    trials = study.trials
    assert all(t.values == (1.0 - 1.0 / t.params["width"], float(t.params["width"])) for t in trials)
    assert all(t.value == t.values[0] for t in trials)  # type: ignore[index]
    assert_non_dominated(study.best_trials, ["maximize", "minimize"])
    # every trial is on this front (more width: better accuracy, worse latency); equal ones all stay
    assert len(study.best_trials) == len(trials) > len({t.params["width"] for t in trials})
    frame = study.pareto_front()
    assert {"number", "values_val_acc", "values_latency_ms", "params_width"} <= set(frame.columns)
    assert "value" not in study.trials_dataframe().columns
    assert "tunelab.Study" not in repr(study) and "directions=['maximize', 'minimize']" in repr(study)


def test_an_empty_front_still_has_its_columns() -> None:
    study = tunelab.create_study(directions=["maximize", "minimize"], objective_names=["acc", "ms"])
    assert list(study.pareto_front()["values_acc"]) == []
    assert {"number", "state", "values_acc", "values_ms"} <= set(study.trials_dataframe().columns)
    study.tell(study.ask(), state="PRUNED")  # trials, but none on the front
    assert list(study.pareto_front().sort_values("values_ms")["number"]) == []
    assert "value" in tunelab.create_study().trials_dataframe().columns


def test_one_objective_is_unchanged() -> None:
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler())
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=5)
    assert not study.is_multi_objective and study.directions == ("minimize",)
    assert all(t.values == (t.value,) for t in study.trials)
    assert study.best_trials == [study.best_trial]
    assert "value" in study.trials_dataframe().columns


def test_tell_takes_values_a_tuple_or_a_mapping() -> None:
    study = tunelab.create_study(directions=["minimize", "maximize"], objective_names=["a", "b"], seed=0)
    assert study.tell(study.ask(), values=[1.0, 2.0]).values == (1.0, 2.0)
    assert study.tell(study.ask(), (3, np.float64(4.0))).values == (3.0, 4.0)
    assert study.tell(study.ask(), {"b": 6.0, "a": 5.0}).values == (5.0, 6.0)
    assert study.tell(study.ask(), values=np.array([7.0, 8.0])).values == (7.0, 8.0)
    assert [t.values for t in study.trials] == [(1.0, 2.0), (3.0, 4.0), (5.0, 6.0), (7.0, 8.0)]
    assert study.tell(study.ask(), state="PRUNED").values is None
    with pytest.raises(ConfigError, match="not both"):
        study.tell(study.ask(), 1.0, values=[1.0, 2.0])


def test_a_pandas_series_is_read_by_its_labels_not_in_its_order() -> None:
    # df.mean() of a frame with columns (latency, acc) was read in that order: acc=2.0, latency=0.85.
    import pandas as pd
    study = tunelab.create_study(directions=["maximize", "minimize"], objective_names=["acc", "latency"], seed=0,
                                 sampler=tunelab.RandomSampler())
    frame = pd.DataFrame({"latency": [1.0, 3.0], "acc": [0.8, 0.9]})
    assert study.tell(study.ask(), frame.mean()).values == pytest.approx((0.85, 2.0))
    assert study.tell(study.ask(), pd.Series([0.7, 4.0])).values == (0.7, 4.0)  # unlabelled: in order
    wrong = study.tell(study.ask(), frame.mean().rename({"latency": "ms"}))
    assert wrong.state == TrialState.FAIL and "no value for 'latency'; unknown objective(s) 'ms'" in (wrong.error or "")


def test_a_mapping_keyed_by_numbers_shows_the_keys_as_typed_not_as_the_names() -> None:
    # Keys were shown as strings: "no value for '1'; unknown objective(s) '1'" for a name the key looked like.
    study = tunelab.create_study(directions=["minimize", "minimize"], objective_names=["1", "2"], seed=0,
                                 sampler=tunelab.RandomSampler())
    study.optimize(lambda t: {1: 0.5, "2": 0.3}, n_trials=1)
    assert "no value for '1'; unknown objective(s) 1;" in (study.trials[0].error or "")


@pytest.mark.parametrize(
    ("returned", "error"),
    [
        ((1.0, 2.0, 3.0), "returned 3 values ((1.0, 2.0, 3.0)) but the study has 2 objectives (acc, latency)"),
        ((1.0,), "returned 1 value"),
        ([1.0, math.nan], "returned NaN for objective 'latency' (value 1)"),
        ((math.inf, 1.0), "returned inf for objective 'acc' (value 0)"),
        ((1.0, "fast"), "returned 'fast' (str) for objective 'latency'"),
        (0.5, "the study has several objectives: return 2 values (acc, latency)"),
        ({"acc": 1.0}, "no value for 'latency'"),
        ({"acc": 1.0, "latency": 2.0, "loss": 3.0}, "unknown objective(s) 'loss'"),
        (None, "return 2 numbers (acc, latency)"),
    ],
)
def test_bad_return_values_fail_the_trial_naming_the_objective(returned: object, error: str) -> None:
    study = tunelab.create_study(directions=["maximize", "minimize"], objective_names=["acc", "latency"], seed=0,
                                 sampler=tunelab.RandomSampler())
    study.optimize(lambda t: returned, n_trials=1)
    (trial,) = study.trials
    assert trial.state == TrialState.FAIL and trial.values is None
    assert error in (trial.error or "")


def test_a_sequence_returned_to_a_single_objective_study_says_how_to_declare_several() -> None:
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler())
    study.optimize(lambda t: (1.0, 2.0), n_trials=1)
    assert "create_study(directions=[...])" in (study.trials[0].error or "")


def test_one_value_in_a_container_or_by_its_name_is_the_value_of_a_single_objective_study() -> None:
    # As with several objectives (and as tell(values=[v]) takes it): generic code returning one value per
    # objective, or a mapping by name, works for one. A container of the wrong length or another name fails.
    study = tunelab.create_study(directions=["maximize"], objective_names=["acc"], seed=0,
                                 sampler=tunelab.RandomSampler())
    for returned in ({"acc": 0.5}, (0.5,), [0.5], np.array([0.5])):
        study.optimize(lambda t, r=returned: r, n_trials=1)
        assert (study.trials[-1].state, study.trials[-1].value) == (tunelab.TrialState.COMPLETE, 0.5)
    for returned in ({"loss": 0.5}, ()):
        study.optimize(lambda t, r=returned: r, n_trials=1)
        error = study.trials[-1].error or ""
        assert "one objective named 'acc': return the number itself, or {'acc': number}" in error, error
        assert "directions" not in error, error
    study.optimize(lambda t: {"acc": 0.5, "loss": 0.1}, n_trials=1)  # two values: a study with two objectives?
    assert "create_study(directions=[...])" in (study.trials[-1].error or "")


def test_an_empty_container_told_to_a_single_objective_study_does_not_suggest_several_objectives() -> None:
    # values=[] advised create_study(directions=[...]), as if the study needed more objectives.
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler())
    for empty in ([], (), np.array([])):
        error = study.tell(study.ask(), values=empty).error or ""
        assert "one objective named 'value': return the number itself" in error and "directions" not in error, error


def test_configuration_errors() -> None:
    with pytest.raises(ConfigError, match="not both"):
        tunelab.create_study(direction="minimize", directions=["minimize", "maximize"])
    with pytest.raises(ConfigError, match="2 names but directions has 3"):
        tunelab.create_study(directions=["minimize"] * 3, objective_names=["a", "b"])
    with pytest.raises(ConfigError, match=r"objective_names=\.\.\. goes with directions"):
        tunelab.create_study(objective_names=["a"])
    with pytest.raises(ConfigError, match="'minimize' or 'maximize'"):
        tunelab.create_study(directions=["minimize", "up"])
    with pytest.raises(ConfigError, match="distinct"):
        tunelab.create_study(directions=["minimize", "minimize"], objective_names=["a", "a"])
    with pytest.raises(ConfigError, match="ParetoSuccessiveHalvingPruner"):
        tunelab.create_study(directions=["minimize", "minimize"], pruner=tunelab.MedianPruner())
    with pytest.raises(ConfigError, match=r"OneObjectiveSampler optimises one objective.*GPSampler.*NSGAIISampler"):
        tunelab.create_study(directions=["minimize", "minimize"], sampler=OneObjectiveSampler())
    with pytest.raises(ConfigError, match="deterministic"):
        tunelab.create_study(directions=["minimize"] * 3, deterministic=True)  # AutoSampler runs NSGA-II
    study = tunelab.create_study(directions=["minimize", "minimize"], objective_names=["loss", "ms"])
    for what in ("best_trial", "best_value", "best_params"):
        with pytest.raises(ConfigError, match=f"no single {what}: use study.best_trials"):
            getattr(study, what)
    with pytest.raises(ConfigError, match="multi-objective ASHA"):
        study.pruner = tunelab.SuccessiveHalvingPruner(metric="loss")
    with pytest.raises(ConfigError, match="OneObjectiveSampler optimises one objective"):
        study.sampler = OneObjectiveSampler()
    study.sampler = tunelab.GPSampler()  # log expected hypervolume improvement: several objectives are fine


# -- constraints -------------------------------------------------------------------------------------


def test_set_constraint_errors() -> None:
    study = tunelab.create_study(seed=0)
    trial = study.ask()
    with pytest.raises(ConfigError, match="needs a bound"):
        trial.set_constraint("mem", 1.0)
    with pytest.raises(ConfigError, match="upper='8' must be a finite number"):
        trial.set_constraint("mem", 1.0, upper="8")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="lower=nan must be a finite number"):
        trial.set_constraint("mem", 1.0, lower=math.nan)
    with pytest.raises(ConfigError, match="lower=2 is above upper=1"):
        trial.set_constraint("mem", 1.0, lower=2, upper=1)
    with pytest.raises(ConfigError, match="non-empty strings"):
        trial.set_constraint("", 1.0, upper=1)
    with pytest.raises(AttributeValueError, match="measured value is nan"):
        trial.set_constraint("mem", math.nan, upper=8.0)
    trial.set_constraint("mem", 9.0, upper=8.0)
    trial.set_constraint("mem", 7.5, upper=8.0)  # a name set again replaces it
    trial.set_constraint("acc", 0.5, lower=0.6, upper=1.0)
    frozen = study.tell(trial, 1.0)
    assert frozen.constraints["mem"].satisfied and not frozen.constraints["acc"].satisfied
    assert frozen.violation == pytest.approx(0.1) and not frozen.feasible


def test_an_infeasible_trial_is_never_the_best_of_one_objective() -> None:
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler())

    def objective(trial: tunelab.Trial) -> float:
        x = trial.suggest_float("x", -2.0, 2.0)
        trial.set_constraint("x", x, lower=1.0)  # minimise x^2 with x >= 1: best at x = 1
        return x * x

    study.optimize(objective, n_trials=60)
    assert any(not t.feasible for t in study.trials) and study.best_trial.params["x"] >= 1.0
    assert study.best_trial.feasible and study.best_trials == [study.best_trial]
    feasible = [t for t in study.trials if t.feasible]
    assert study.best_value == min(t.value for t in feasible)  # type: ignore[type-var]

    none_ok = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler())
    none_ok.optimize(lambda t: (t.set_constraint("c", 1.0, upper=0.0), 1.0)[1], n_trials=3)
    with pytest.raises(TrialNotFoundError, match="no feasible COMPLETE trial"):
        _ = none_ok.best_trial
    assert none_ok.best_trials == []


def test_an_infeasible_trial_is_never_on_the_front() -> None:
    study = tunelab.create_study(directions=["minimize", "minimize"], seed=1,
                                 sampler=tunelab.NSGAIISampler(population_size=10))
    study.optimize(zdt1_constrained, n_trials=60)
    front = study.best_trials
    assert front and all(t.feasible and t.params["x0"] <= 0.8 for t in front)
    assert any(not t.feasible for t in study.trials)
    assert_non_dominated(front, ["minimize", "minimize"])
    assert set(study.trials_dataframe().columns) >= {"feasible", "constraints_x0"}


# -- samplers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("problem", "directions"), [(zdt1, 2), (zdt2, 2), (dtlz2, 3)])
def test_nsga2_returns_a_non_dominated_feasible_front(problem: object, directions: int) -> None:
    study = tunelab.create_study(directions=["minimize"] * directions, seed=0,
                                 sampler=tunelab.NSGAIISampler(population_size=20))
    study.optimize(problem, n_trials=100)  # type: ignore[arg-type]
    front = study.best_trials
    assert len(front) >= 5
    assert_non_dominated(front, ["minimize"] * directions)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert front == pareto_front_trials(complete, ["minimize"] * directions)
    on_front = {t.number for t in front}
    points = losses([t.values for t in front], ["minimize"] * directions)  # type: ignore[misc]
    for t in complete:  # every other trial is dominated by a front trial
        if t.number not in on_front:
            assert any(dominates(p, np.array(t.values)) for p in points)
    children = [t for t in study.trials if t.number >= 20]
    assert all(len(t.system_attrs["nsga2"]["parents"]) == 2 for t in children)


def test_nsga2_beats_random_search_on_zdt1() -> None:
    def median_hv(sampler: tunelab.Sampler) -> float:
        hvs = []
        for seed in range(3):
            study = tunelab.create_study(directions=["minimize", "minimize"], seed=seed, sampler=sampler)
            study.optimize(zdt1, n_trials=200)
            hvs.append(front_hypervolume(study, [1.1, 11.0]))
        return statistics.median(hvs)

    assert median_hv(tunelab.NSGAIISampler(population_size=20)) > median_hv(tunelab.RandomSampler()) + 0.3


def test_nsga2_is_reproducible_and_parallel_children_differ() -> None:
    def run() -> list[dict[str, object]]:
        study = tunelab.create_study(directions=["minimize", "minimize"], seed=7,
                                     sampler=tunelab.NSGAIISampler(population_size=8))
        study.optimize(zdt1, n_trials=30)
        return [dict(t.params) for t in study.trials]

    assert run() == run()
    study = tunelab.create_study(directions=["minimize", "minimize"], seed=7,
                                 sampler=tunelab.NSGAIISampler(population_size=8))
    study.optimize(zdt1, n_trials=16)
    together = [study.ask() for _ in range(4)]  # four workers asking at once: four children
    planned = [tuple(sorted(t.system_attrs.get("nsga2", {}).get("parents", []))) for t in together]
    assert all(planned)
    xs = [zdt1(t) for t in together]
    assert len(set(xs)) == 4


def test_nsga2_handles_categorical_and_define_by_run_parameters() -> None:
    def objective(trial: tunelab.Trial) -> tuple[float, float]:
        kind = trial.suggest_categorical("kind", ["a", "b", "c"])
        x = trial.suggest_float("x", 1e-3, 1.0, log=True)
        n = trial.suggest_int("n", 1, 10)
        extra = trial.suggest_float("extra", 0.0, 1.0) if kind == "c" else 0.0
        return x + extra, n / 10 + (kind == "a")

    study = tunelab.create_study(directions=["minimize", "minimize"], seed=0,
                                 sampler=tunelab.NSGAIISampler(population_size=6, mutation_prob=0.5))
    study.optimize(objective, n_trials=30)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert {t.params["kind"] for t in study.trials} <= {"a", "b", "c"}
    assert all(1 <= t.params["n"] <= 10 and isinstance(t.params["n"], int) for t in study.trials)


def test_nsga2_settings_are_checked_and_described() -> None:
    with pytest.raises(ConfigError, match="population_size"):
        tunelab.NSGAIISampler(population_size=1)
    with pytest.raises(ConfigError, match="mutation_prob"):
        tunelab.NSGAIISampler(mutation_prob=1.5)
    with pytest.raises(ConfigError, match="crossover_prob"):
        tunelab.NSGAIISampler(crossover_prob=-0.1)
    sampler = tunelab.NSGAIISampler(population_size=12, mutation_prob=0.2)
    rebuilt = tunelab.samplers.sampler_from_description(sampler.describe())
    assert isinstance(rebuilt, tunelab.NSGAIISampler) and rebuilt.describe() == sampler.describe()


@pytest.mark.parametrize("sampler", [
    tunelab.RandomSampler(), tunelab.GridSampler({"x": [0.0, 0.5, 1.0], "y": [0.0, 1.0]}),
    tunelab.CoarseToFineSampler(n_stages=2, trials_per_stage=8), tunelab.AutoSampler(), None,
])
def test_other_samplers_serve_a_study_with_several_objectives(sampler: tunelab.Sampler | None) -> None:
    study = tunelab.create_study(directions=["minimize", "maximize"], seed=0, sampler=sampler)

    def objective(trial: tunelab.Trial) -> tuple[float, float]:
        x, y = trial.suggest_float("x", 0.0, 1.0), trial.suggest_float("y", 0.0, 1.0)
        return x + y, x - y

    study.optimize(objective, n_trials=12)
    assert len([t for t in study.trials if t.state == TrialState.COMPLETE]) >= 6
    assert study.best_trials
    if sampler is None:
        assert type(study.sampler).__name__ == "AutoSampler"


def test_history_top_ranks_the_first_front_first_and_infeasible_last() -> None:
    study = tunelab.create_study(directions=["minimize", "minimize"], seed=0)
    for values, ok in [((1.0, 4.0), True), ((2.0, 2.0), True), ((4.0, 1.0), True), ((3.0, 3.0), True),
                       ((0.0, 0.0), False)]:
        trial = study.ask()
        trial.set_constraint("c", 0.0 if ok else 1.0, upper=0.5)
        study.tell(trial, values=values)
    history = History(study.storage, study.storage.get_study(study.name))
    assert history.directions == ("minimize", "minimize") and history.is_multi_objective
    top = [t.number for t in history.top(5)]
    assert set(top[:3]) == {0, 1, 2} and top[3:] == [3, 4]


def test_history_top_of_one_objective_ranks_the_infeasible_trials_by_violation() -> None:
    # They were ranked by value, so the coarse-to-fine stages and the grid's edge shift zoomed in on the
    # infeasible trials with the best values (minimise x with x >= 0.85: the ones furthest from feasible),
    # where several objectives (and the model-based samplers) rank them by violation, as Deb's rule does.
    study = tunelab.create_study(seed=0)
    for value, measured in [(0.9, 0.9), (0.1, 0.1), (0.8, 0.8), (0.95, 0.95)]:
        trial = study.ask()
        trial.set_constraint("x_at_least", measured, lower=0.85)
        study.tell(trial, value)
    history = History(study.storage, study.storage.get_study(study.name))
    assert [t.number for t in history.top(4)] == [0, 3, 2, 1]  # feasible by value, then nearest to feasible


# -- storage -------------------------------------------------------------------------------------------


def test_sqlite_round_trip_of_values_constraints_and_settings(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mo.db'}"
    study = tunelab.create_study(
        name="mo", storage=url, directions=["maximize", "minimize"], objective_names=["acc", "ms"], seed=3,
        sampler=tunelab.NSGAIISampler(population_size=4),
    )
    study.optimize(zdt1_constrained, n_trials=10)
    again = tunelab.load_study("mo", url)
    assert again.directions == ("maximize", "minimize") and again.objective_names == ("acc", "ms")
    assert again.sampler.describe() == study.sampler.describe()
    assert [t.values for t in again.trials] == [t.values for t in study.trials]
    assert [t.constraints for t in again.trials] == [t.constraints for t in study.trials]
    assert [t.number for t in again.best_trials] == [t.number for t in study.best_trials]
    again.optimize(zdt1_constrained, n_trials=2)
    assert len(again.trials) == 12
    with pytest.raises(ConfigError, match="exists with directions"):
        tunelab.create_study(name="mo", storage=url, directions=["minimize", "minimize"], load_if_exists=True)
    same = tunelab.create_study(name="mo", storage=url, directions=["maximize", "minimize"], load_if_exists=True)
    assert same.objective_names == ("acc", "ms")


def test_reopening_with_load_if_exists_checks_only_what_is_given(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mo.db'}"
    tunelab.create_study(name="mo", storage=url, directions=["maximize", "minimize"], objective_names=["acc", "ms"])
    # Nothing given: the stored directions, as for a study with one objective (it said "not ['minimize']").
    again = tunelab.create_study(name="mo", storage=url, load_if_exists=True)
    assert again.directions == ("maximize", "minimize") and again.objective_names == ("acc", "ms")
    # Other names were ignored, and a mapping by the new names then failed every trial.
    with pytest.raises(ConfigError, match=r"exists with objective_names \['acc', 'ms'\], not \['a', 'b'\]"):
        tunelab.create_study(name="mo", storage=url, directions=["maximize", "minimize"], objective_names=["a", "b"],
                             load_if_exists=True)
    with pytest.raises(ConfigError, match="exists with directions"):
        tunelab.create_study(name="mo", storage=url, direction="maximize", load_if_exists=True)


def test_two_worker_processes_on_a_multi_objective_study(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'workers.db'}"
    study = tunelab.create_study(name="w", storage=url, directions=["minimize", "minimize"], seed=0,
                                 sampler=tunelab.NSGAIISampler(population_size=6))
    study.optimize(zdt1_constrained, n_trials=16, n_workers=2)
    trials = study.trials
    assert len(trials) == 16 and all(t.state == TrialState.COMPLETE for t in trials)
    assert all(t.values is not None and len(t.values) == 2 for t in trials)
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 16
    assert study.best_trials and all(t.feasible for t in study.best_trials)


def test_set_constraint_with_an_integer_too_large_for_a_float_names_the_constraint() -> None:
    # float(10**400) raised a bare OverflowError ("int too large to convert to float") from set_constraint.
    study = tunelab.create_study(seed=0)
    trial = study.ask()
    with pytest.raises(ConfigError, match=r"constraint 'mem': upper=1000\d* must be a finite number"):
        trial.set_constraint("mem", 1.0, upper=10**400)
    with pytest.raises(ConfigError, match=r"lower=-1000\d* must be a finite number"):
        trial.set_constraint("mem", 1.0, lower=-(10**400))
    with pytest.raises(AttributeValueError, match="constraint 'mem': the measured value is inf"):
        trial.set_constraint("mem", 10**400, upper=8.0)
    trial.set_constraint("mem", 10**300, upper=10**301)  # large but finite: kept
    assert study.tell(trial, 1.0).constraints["mem"].satisfied


def test_pareto_mask_with_infinities_and_nan_rows_against_the_pairwise_rule() -> None:
    # a lone row with an infinite loss was called dominated (by the 'nothing before it' marker, +inf)
    assert pareto_mask(np.array([[1.0, np.inf]])).tolist() == [True]
    assert pareto_mask(np.array([[0.0, np.inf], [1.0, np.inf]])).tolist() == [True, False]
    rng = np.random.default_rng(5)
    for _ in range(300):
        n, m = int(rng.integers(1, 25)), int(rng.integers(2, 5))
        p = np.round(rng.random((n, m)) * 3)
        p[rng.integers(0, n), rng.integers(0, m)] = rng.choice([np.inf, -np.inf, np.nan])
        usable = [j for j in range(n) if not np.isnan(p[j]).any()]  # a NaN row neither dominates nor is dominated
        expected = [not any(dominates(p[j], p[i]) for j in usable if j != i) for i in range(n)]
        assert pareto_mask(p).tolist() == expected, p


HUGE = np.finfo(float).max
# A front spread over the whole float range: differences of its values (1e308 - -1e308) overflow.
HUGE_FRONT = np.array([[-HUGE, HUGE], [-1e200, 1e200], [0.0, 0.0], [1e200, -1e200], [HUGE, -HUGE]])


@pytest.mark.filterwarnings("error")  # an overflow warning fails the test
def test_losses_near_the_float_maximum_rank_without_overflow_or_nan() -> None:
    """Crowding distances, TPE's Pareto scores, hypervolumes and NSGA-III's normalisation took differences
    and products of losses of 1e200 and more: overflow warnings, inf - inf = NaN, a wrong ranking."""
    from tunelab.samplers._ranking import pareto_scores
    from tunelab.samplers.nsga3 import normalize

    points = np.vstack([HUGE_FRONT, [1e250, 1e250]])
    assert [f.tolist() for f in non_dominated_sort(points)] == [[0, 1, 2, 3, 4], [5]]
    crowd = crowding_distance(HUGE_FRONT)
    assert crowd[[0, 4]].tolist() == [math.inf, math.inf] and np.all(crowd[1:4] > 0)
    assert crowd[1] == crowd[3] == pytest.approx(1.0)  # each a whole half of both spans
    scores = pareto_scores(points)
    assert np.all(np.isfinite(scores)) and np.all(scores[:5] < 1.0) and scores[5] >= 1.0
    assert np.all(np.isfinite(normalize(HUGE_FRONT)))
    # 1e200 x 1e200 is past the float maximum: inf, without a warning; scaled volumes stay exact.
    assert hypervolume(HUGE_FRONT[1:4], [2e200, 2e200]) == math.inf
    assert hypervolume([[1e200, 1e100], [-1e200, 2e100]], [2e200, 3e100]) == pytest.approx(4e300)
    assert hypervolume_improvement(np.array([-1e200, 2e100]), np.array([[1e200, 1e100]]), np.array([2e200, 3e100])) \
        == pytest.approx(2e300)


@pytest.mark.filterwarnings("error")
def test_multi_objective_tpe_study_with_values_near_the_float_maximum_finds_the_front() -> None:
    study = tunelab.create_study(directions=["minimize", "maximize"], sampler=tunelab.TPESampler(), seed=0)
    for values in [(-HUGE, -HUGE), (1e250, -1e250), (-1e200, -1e200), (0.0, 0.0), (1e200, 1e200), (HUGE, HUGE)]:
        study.enqueue({"x": 0.5})
        study.optimize(lambda t, v=values: (t.suggest_float("x", 0, 1), v)[1], n_trials=1)
    study.optimize(lambda t: (t.suggest_float("x", 0, 1) * 1e200, -1e300), n_trials=3)  # TPE ranks the six
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 9
    assert [t.number for t in study.best_trials] == [0, 2, 3, 4, 5]
