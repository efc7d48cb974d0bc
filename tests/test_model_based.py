"""The machinery model-based samplers share: encoding, start-up design, observations, pending trials."""

from __future__ import annotations

import math

import numpy as np
import pytest

import tunelab
from tunelab import Bool, Categorical, Conditional, Float, Int
from tunelab.history import History
from tunelab.records import TrialState
from tunelab.samplers.model_based import PLANNED_KEY, EncodedSpace, collect_observations, infer_space

SPACE = {
    "lr": Float(1e-5, 1e-1, log=True),
    "dropout": Float(0.0, 0.5),
    "width": Int(16, 512, log=True),
    "layers": Int(1, 4),
    "wd": Float(0.0, 1e-3, step=1e-4),
    "optimizer": Categorical(["sgd", "adam", "rmsprop"]),
    "nesterov": Conditional(Bool(), when={"optimizer": "sgd"}),
}


def test_encode_then_decode_gives_the_values_back() -> None:
    space = EncodedSpace(SPACE)
    params = {"lr": 3e-4, "dropout": 0.25, "width": 100, "layers": 3, "wd": 3e-4, "optimizer": "sgd",
              "nesterov": True}
    row = space.encode(params)
    assert row[space.index["optimizer"]] == 0.0 and row[space.index["nesterov"]] == 1.0
    back = space.decode(row)
    assert back["lr"] == pytest.approx(3e-4) and back["dropout"] == pytest.approx(0.25)
    assert back["width"] == 100 and back["layers"] == 3 and back["wd"] == pytest.approx(3e-4)
    assert back["optimizer"] == "sgd" and back["nesterov"] is True


def test_decode_leaves_out_inactive_parameters_and_encode_marks_absent_ones_nan() -> None:
    space = EncodedSpace(SPACE)
    row = space.encode({"lr": 1e-3, "optimizer": "adam"})
    assert math.isnan(row[space.index["nesterov"]]) and math.isnan(row[space.index["dropout"]])
    row[np.isnan(row)] = 0.7
    assert "nesterov" not in space.decode(row)


@pytest.mark.parametrize("name", ["width", "layers", "wd", "optimizer", "nesterov"])
def test_snap_moves_rows_onto_values_the_parameter_can_take(name: str) -> None:
    space = EncodedSpace(SPACE)
    i = space.index[name]
    dist = SPACE[name].distribution if isinstance(SPACE[name], Conditional) else SPACE[name]
    u = np.linspace(0, 1, 101) if space.cat_sizes[i] == 0 else np.linspace(0, space.cat_sizes[i] - 1, 101)
    X = np.full((len(u), len(space)), 0.5)
    X[:, i] = u
    snapped = space.snap(X)[:, i]
    assert np.array_equal(space.snap(space.snap(X))[:, i], snapped)  # idempotent
    for v in snapped:
        row = np.full(len(space), 0.5)
        row[space.index["optimizer"]] = 0.0
        row[i] = v
        value = space.decode(row)[name]
        assert dist.contains(value)
        assert space.encode({name: value})[i] == pytest.approx(v)


def test_startup_points_are_distinct_reproducible_and_spread() -> None:
    space = EncodedSpace({"x": Float(0, 1), "y": Float(0, 1)})
    points = np.array([space.startup_point(n, seed=7) for n in range(16)])
    assert np.array_equal(points, np.array([space.startup_point(n, seed=7) for n in range(16)]))
    assert len({tuple(p) for p in points}) == 16
    # A Sobol design puts one point in each of the 4x4 cells of the first 16.
    cells = {(int(x * 4), int(y * 4)) for x, y in points}
    assert len(cells) == 16
    assert not np.array_equal(points, np.array([space.startup_point(n, seed=8) for n in range(16)]))


def _history(study: tunelab.Study) -> History:
    return History(study.storage, study.storage.get_study(study.name), study.space)


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_observations_are_losses_and_failed_trials_are_imputed_as_the_worst(direction: str) -> None:
    study = tunelab.create_study(direction=direction, space={"x": Float(0, 1)}, seed=0)
    for value in [1.0, 3.0, None]:
        trial = study.ask()
        trial._plan = {}
        study.tell(trial, value) if value is not None else study.tell(trial, state="FAIL")
    space = EncodedSpace({"x": Float(0, 1)})
    obs = collect_observations(_history(study), space)
    sign = 1 if direction == "minimize" else -1
    assert list(obs.y[:2]) == [sign * 1.0, sign * 3.0]
    assert obs.y[2] == max(sign * 1.0, sign * 3.0) and list(obs.imputed) == [False, False, True]
    assert obs.n_measured == 2
    ignored = collect_observations(_history(study), space, failed="ignore")
    assert len(ignored.y) == 2


def test_running_trials_are_pending_rows_from_their_planned_values() -> None:
    study = tunelab.create_study(space={"x": Float(0, 1)}, sampler=tunelab.TPESampler(), seed=0)
    first = study.ask()
    assert first.system_attrs[PLANNED_KEY] == first.params  # written at once, visible to other workers
    stored = study.storage.get_trial(first._trial_id)
    assert stored.system_attrs[PLANNED_KEY] == first.params and stored.state == TrialState.RUNNING
    second = study.ask()
    space = EncodedSpace({"x": Float(0, 1)})
    obs = collect_observations(_history(study), space, exclude=second.number)
    assert obs.pending.shape == (1, 1) and obs.pending[0, 0] == pytest.approx(first.params["x"])


def test_the_inferred_space_of_a_define_by_run_study_is_every_parameter_used() -> None:
    study = tunelab.create_study(seed=0)

    def objective(trial: tunelab.Trial) -> float:
        opt = trial.suggest_categorical("optimizer", ["sgd", "adam"])
        if opt == "sgd":
            trial.suggest_float("momentum", 0.0, 0.99)
        return trial.suggest_float("lr", 1e-4, 1e-1, log=True)

    study.optimize(objective, n_trials=12)
    space = infer_space(_history(study))
    assert space is not None and set(space) == {"optimizer", "momentum", "lr"}
    assert infer_space(_history(tunelab.create_study(seed=0))) is None


@pytest.mark.parametrize("sampler", [
    tunelab.TPESampler(n_startup_trials=3), tunelab.TPESampler(n_startup_trials=3, multivariate=False),
    tunelab.GPSampler(n_startup_trials=3),
], ids=["tpe", "tpe-univariate", "gp"])
def test_a_range_narrowed_between_trials_is_kept_by_the_next_plan(sampler: tunelab.samplers.Sampler) -> None:
    # The plan is made over the earlier trials' ranges ([0, 10]); a value past the narrowed range ([0, 1])
    # was taken anyway and the trial's range silently widened (TPE planned x=1.93 for suggest_float(x, 0, 1)).
    study = tunelab.create_study(sampler=sampler, seed=0)
    study.optimize(lambda t: (t.suggest_float("x", 0, 10) - 0.5) ** 2 + t.suggest_int("k", 0, 20, step=2), n_trials=8)
    study.optimize(lambda t: (t.suggest_float("x", 0, 1) - 0.5) ** 2 + t.suggest_int("k", 0, 3), n_trials=8)
    for t in study.trials[8:]:
        assert 0 <= t.params["x"] <= 1 and t.distributions["x"] == Float(0, 1)
        assert 0 <= t.params["k"] <= 3 and t.distributions["k"] == Int(0, 3)


def test_a_grid_that_shifts_its_edges_still_widens_the_range() -> None:
    sampler = tunelab.GridSampler({"x": Float(0.0, 1.0)}, n_points=3, shift_edges=True, max_shifts=1)
    study = tunelab.create_study(sampler=sampler, seed=0, direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=10)
    assert study.best_params == {"x": 1.5} and study.best_trial.distributions["x"] == Float(0.0, 1.5)
