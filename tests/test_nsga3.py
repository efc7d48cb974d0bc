"""NSGA-III: reference directions, normalisation, niching, and the sampler on three objectives."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import tunelab
from tunelab.errors import ConfigError
from tunelab.samplers.nsga3 import associate, das_dennis, default_divisions, niche_select, normalize


def test_the_lattice_is_every_simplex_point_of_the_divisions() -> None:
    points = das_dennis(3, 4)
    assert points.shape == (math.comb(6, 4), 3) == (15, 3)
    assert np.allclose(points.sum(axis=1), 1.0) and np.all(points >= 0)
    assert len({tuple(p) for p in points}) == 15
    assert default_divisions(3, 50) == 8 and math.comb(10, 8) <= 50 < math.comb(11, 9)
    assert default_divisions(2, 50) == 49


def test_nsga3_on_a_study_with_one_objective_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    # default_divisions(1, ...) looped for ever (the lattice of one objective has one point for any
    # number of divisions), so the first generation of such a study never started.
    calls = []

    def comb(n: int, k: int) -> int:
        calls.append((n, k))
        if len(calls) > 1000:
            raise AssertionError("default_divisions does not end")
        return math.comb(n, k)

    monkeypatch.setattr("tunelab.samplers.nsga3.math.comb", comb)
    assert default_divisions(1, 50) == 1
    study = tunelab.create_study(sampler=tunelab.NSGAIIISampler(population_size=4), seed=0)
    study.optimize(lambda t: (t.suggest_float("x", 0.0, 1.0) - 0.3) ** 2, n_trials=10)
    assert [t.state for t in study.trials] == [tunelab.TrialState.COMPLETE] * 10


def test_normalisation_puts_the_extreme_points_on_the_unit_axes() -> None:
    points = np.array([[10.0, 0.0, 0.0], [0.0, 20.0, 0.0], [0.0, 0.0, 40.0], [5.0, 10.0, 20.0]]) + 3.0
    normalized = normalize(points)
    assert np.allclose(normalized[:3], np.eye(3))
    nearest, distance = associate(normalized, das_dennis(3, 2))
    assert list(nearest[:3]) == [5, 2, 0] and np.allclose(distance[:3], 0.0)  # the lattice's corners


def test_niching_spreads_the_survivors_over_the_front() -> None:
    # a front clumped at one end: 20 points near (1, 0) and 3 spread out; keep 4
    rng = np.random.default_rng(0)
    clump = np.c_[1 - 0.01 * rng.random(20), 0.01 * rng.random(20)]
    clump[:, 1] = 1 - clump[:, 0]
    spread = np.array([[0.0, 1.0], [0.5, 0.5], [0.25, 0.75]])
    points = np.vstack([clump, spread])
    picked = niche_select(points, np.empty(0, dtype=int), np.arange(len(points)), 4, das_dennis(2, 4),
                          np.random.default_rng(1))
    assert len(set(picked.tolist())) == 4
    assert set(picked.tolist()) >= {20, 21, 22}  # every distinct trade-off before a second clumped one


def _dtlz2(trial: tunelab.Trial) -> tuple[float, float, float]:
    a, b = trial.suggest_float("a", 0.0, 1.0), trial.suggest_float("b", 0.0, 1.0)
    g = sum((trial.suggest_float(f"x{i}", 0.0, 1.0) - 0.5) ** 2 for i in range(3))
    h = math.pi / 2
    return ((1 + g) * math.cos(a * h) * math.cos(b * h), (1 + g) * math.cos(a * h) * math.sin(b * h),
            (1 + g) * math.sin(a * h))


def test_nsga3_improves_a_three_objective_front_over_its_random_first_generation() -> None:
    study = tunelab.create_study(directions=["minimize"] * 3, seed=0,
                                 sampler=tunelab.NSGAIIISampler(population_size=20))
    study.optimize(_dtlz2, n_trials=200)
    g = [sum(v * v for v in t.values) ** 0.5 - 1.0 for t in study.trials]  # 0 on the true front
    assert np.median(g[180:]) < 0.6 * np.median(g[:20])  # seeds 0-4: 0.14 to 0.52
    children = [t for t in study.trials if t.number >= 20]
    assert all(len(t.system_attrs["nsga2"]["parents"]) == 2 for t in children)


def test_nsga3_is_stored_and_rebuilt_and_respects_constraints(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'n3.db'}"
    sampler = tunelab.NSGAIIISampler(population_size=10, dividing_parameter=3)
    study = tunelab.create_study(name="n3", storage=url, directions=["minimize"] * 3, sampler=sampler, seed=1)

    def objective(trial: tunelab.Trial) -> tuple[float, float, float]:
        values = _dtlz2(trial)
        trial.set_constraint("first", values[0], upper=0.8)
        return values

    study.optimize(objective, n_trials=40)
    assert repr(tunelab.load_study("n3", url).sampler.describe()) == repr(sampler.describe())
    assert study.best_trials and all(t.feasible for t in study.best_trials)
    late = [t.feasible for t in study.trials[20:]]
    assert np.mean(late) > np.mean([t.feasible for t in study.trials[:10]])


def test_bad_input_names_the_fix() -> None:
    with pytest.raises(ConfigError, match="dividing_parameter"):
        tunelab.NSGAIIISampler(dividing_parameter=0)
    with pytest.raises(ConfigError, match="reference_points"):
        tunelab.NSGAIIISampler(reference_points=[[1.0, -1.0, 0.0]])
    sampler = tunelab.NSGAIIISampler(population_size=4, reference_points=[[1.0, 0.0], [0.0, 1.0]])
    # Refused before any trial (it was refused once the first generation, population_size trials, had run).
    with pytest.raises(ConfigError, match="2 coordinates per point, but the study has 3 objectives"):
        tunelab.create_study(directions=["minimize"] * 3, sampler=sampler, seed=0)
    study = tunelab.create_study(directions=["minimize"] * 3, seed=0)
    with pytest.raises(ConfigError, match="2 coordinates per point, but the study has 3 objectives"):
        study.sampler = sampler
    assert study.trials == []
