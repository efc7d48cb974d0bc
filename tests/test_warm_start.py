"""Warm starts (issue 21, part 1): a study learns from earlier studies' trials, rescales a related
one, silences an unrelated one, and never counts their trials as its own."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import tunelab
from tunelab import Float
from tunelab.errors import ConfigError
from tunelab.samplers.transfer import check_warm_start, rank_agreement, source_weights, tpe_source_weight

SPACE = {"x": Float(-5.0, 5.0), "lr": Float(1e-5, 1e-1, log=True)}


def bowl(shift: float, scale: float) -> Callable[[tunelab.Trial], float]:
    def objective(trial: tunelab.Trial) -> float:
        x, lr = trial.params["x"], trial.params["lr"]
        return scale * ((x - 1 - shift) ** 2 + (math.log10(lr) + 3 + shift) ** 2) + 10 * scale

    return objective


def wavy(trial: tunelab.Trial) -> float:
    x, lr = trial.params["x"], trial.params["lr"]
    return math.sin(3 * x) + math.cos(2 * math.log10(lr)) + 0.1 * x


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('warm') / 'w.db'}"
    source = tunelab.create_study(name="old", storage=url, sampler=tunelab.RandomSampler(), seed=99, space=SPACE)
    source.optimize(bowl(0.0, 1.0), n_trials=60)
    return url


def best_after(study: tunelab.Study, k: int) -> float:
    return min(t.value for t in study.trials[:k] if t.value is not None)


@pytest.mark.parametrize("make", [tunelab.GPSampler, tunelab.TPESampler], ids=["gp", "tpe"])
def test_a_related_study_finds_the_optimum_sooner_and_counts_only_its_own_trials(url: str, make: type) -> None:
    target = bowl(0.3, 5.0)  # the optimum moved and the scale changed
    cold, warm = [], []
    for seed in range(3):
        for sources, out in ((None, cold), (["old"], warm)):
            study = tunelab.create_study(storage=url, sampler=make(), seed=seed, space=SPACE, warm_start=sources)
            study.optimize(target, n_trials=6)
            assert len(study.trials) == 6  # the source's 60 trials are not this study's
            out.append(best_after(study, 3))
    assert np.median(warm) < np.median(cold), (warm, cold)
    assert np.median(warm) < 50.0 + 5.0 * 1.0  # within one unit of the new optimum's value (50)


def test_the_first_warm_trial_goes_where_the_source_was_best(url: str) -> None:
    study = tunelab.create_study(storage=url, sampler=tunelab.GPSampler(), seed=0, space=SPACE, warm_start=["old"])
    study.optimize(bowl(0.0, 1.0), n_trials=1)
    first = study.trials[0].params
    assert abs(first["x"] - 1.0) < 1.0 and abs(math.log10(first["lr"]) + 3) < 1.0, first


def test_an_unrelated_source_costs_little(url: str) -> None:
    cold, warm = [], []
    for seed in range(3):
        for sources, out in ((None, cold), (["old"], warm)):
            study = tunelab.create_study(storage=url, sampler=tunelab.GPSampler(), seed=seed, space=SPACE,
                                         warm_start=sources)
            study.optimize(wavy, n_trials=14)
            out.append(best_after(study, 14))
    spread = np.percentile(cold, 75) - np.percentile(cold, 25)
    assert np.median(warm) <= np.median(cold) + max(spread, 0.25), (warm, cold)


def test_weights_rescale_a_related_source_and_silence_an_unrelated_one() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=12)
    related, unrelated = 0.5 * y, -y + 0.1 * rng.normal(size=12)
    w = source_weights(np.vstack([related, unrelated]), y)
    assert w[0] == pytest.approx(2.0, rel=0.05) and w[1] == 0.0
    assert list(source_weights(np.vstack([related, unrelated])[:, :2], y[:2])) == [0.5, 0.5]  # too few to tell
    assert rank_agreement(y, related) == pytest.approx(1.0) and rank_agreement(y, unrelated) < 0
    assert tpe_source_weight(-0.5, 10, 100) == 0.0 < tpe_source_weight(0.9, 10, 100) < tpe_source_weight(0.9, 0, 100)


def test_sources_are_stored_rebuilt_and_may_live_in_another_storage(url: str, tmp_path: Path) -> None:
    other = f"sqlite:///{tmp_path / 'other.db'}"
    study = tunelab.create_study(name="new", storage=other, sampler=tunelab.TPESampler(), seed=0, space=SPACE,
                                 warm_start=[("old", url)])
    assert study.system_attrs["warm_start"] == [["old", url]]
    loaded = tunelab.load_study("new", other)
    loaded.optimize(bowl(0.0, 1.0), n_trials=3, n_workers=2)  # workers load the source too
    assert len(loaded.trials) == 3 and best_after(loaded, 3) < 14.0


@pytest.mark.parametrize(
    ("value", "match"),
    [(["missing"], r"no study 'missing'; the storage holds \['old'"), ([42], "neither a study name"),
     ({"old": 1}, "must be a list"), ([("old", "")], "neither")],
)
def test_bad_sources_are_refused_before_the_study_exists(url: str, value: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        tunelab.create_study(storage=url, space=SPACE, warm_start=value)  # type: ignore[arg-type]


def test_a_source_sharing_no_parameter_or_the_study_itself_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="shares no parameter"):
        tunelab.create_study(storage=url, space={"width": tunelab.Int(8, 64)}, warm_start=["old"])
    with pytest.raises(ConfigError, match="from itself"):
        tunelab.create_study(name="self", storage=url, space=SPACE, warm_start=["self"])
    assert check_warm_start("old") == [("old", None)]


def test_a_deterministic_warm_study_replays(url: str, tmp_path: Path) -> None:
    runs = []
    for workers in (1, 2):
        study = tunelab.create_study(name=f"d{workers}", storage=url, sampler=tunelab.GPSampler(), seed=0,
                                     space=SPACE, warm_start=["old"], deterministic=2)
        study.optimize(bowl(0.3, 5.0), n_trials=6, n_workers=workers)
        runs.append([t.params for t in study.trials])
    assert runs[0] == runs[1]


def _branin_like(X: np.ndarray) -> np.ndarray:
    """A smooth 2-d surface on the unit square with its minimum at (0.35, 0.6)."""
    return (X[:, 0] - 0.35) ** 2 * 4 + (X[:, 1] - 0.6) ** 2 * 3 + 0.3 * np.sin(6 * X[:, 0])


def _source_gp() -> object:
    from tunelab.samplers._gp import fit_gp

    rng = np.random.default_rng(0)
    X = rng.random((80, 2))
    return fit_gp(X, _branin_like(X), np.zeros(2, dtype=np.int64), rng=rng, warp=False)


def test_fit_shift_recovers_how_far_the_optimum_moved() -> None:
    from tunelab.samplers.transfer import fit_shift

    g = _source_gp()
    rng = np.random.default_rng(1)
    X = np.clip(np.array([0.45, 0.5]) + 0.15 * rng.standard_normal((8, 2)), 0, 1)
    y = 3.0 * _branin_like(X - np.array([0.1, -0.1])) + 5.0  # moved by (0.1, -0.1), rescaled
    fit = fit_shift(g, g.X, g.y, X, (y - y.mean()) / y.std())  # type: ignore[arg-type]
    np.testing.assert_allclose(fit.shift, [0.1, -0.1], atol=0.03)
    assert fit.unexplained < 0.01
    still = fit_shift(g, g.X, g.y, X, (y - y.mean()) / y.std())  # type: ignore[arg-type]
    np.testing.assert_array_equal(fit.shift, still.shift)  # a function of the trials only


def test_fit_shift_keeps_an_unmoved_source_in_place_and_needs_a_few_trials() -> None:
    from tunelab.samplers.transfer import SHIFT_FIT_AT, fit_shift

    g = _source_gp()
    X = np.random.default_rng(2).random((10, 2))
    y = _branin_like(X)
    assert not fit_shift(g, g.X, g.y, X, y - y.mean()).shift.any()  # type: ignore[arg-type]
    few = X[: SHIFT_FIT_AT - 1] + 0.1
    assert not fit_shift(g, g.X, g.y, few, _branin_like(few - 0.1)).shift.any()  # type: ignore[arg-type]


def test_a_shifted_source_is_its_gp_read_at_the_moved_point() -> None:
    from tunelab.samplers._gp import ShiftedGP

    g = _source_gp()
    moved = ShiftedGP(g, np.array([0.1, -0.05]))  # type: ignore[arg-type]
    Xq = np.array([[0.4, 0.5], [0.7, 0.2]])
    np.testing.assert_allclose(moved.predict(Xq)[0], g.predict(Xq - [0.1, -0.05])[0])  # type: ignore[attr-defined]
    _, _, dm, _ = moved._predict_with_grad(Xq)
    eps = 1e-6
    for j in range(2):
        step = np.zeros(2)
        step[j] = eps
        numeric = (moved.predict(Xq + step)[0] - moved.predict(Xq - step)[0]) / (2 * eps)
        np.testing.assert_allclose(dm[:, j], numeric, rtol=1e-4, atol=1e-6)


def test_a_warm_study_on_a_moved_and_rescaled_problem_ends_near_the_new_optimum(tmp_path: Path) -> None:
    """The target is the source moved by 1.5 in x (15% of the range), its values x 40 + 7: the shift
    and the link in the objective's own units take the search to the moved optimum."""
    url = f"sqlite:///{tmp_path / 'moved.db'}"
    space = {"x": Float(-5.0, 5.0), "y": Float(-5.0, 5.0)}

    def surface(dx: float, scale: float, offset: float) -> Callable[[tunelab.Trial], float]:
        def f(trial: tunelab.Trial) -> float:
            x, y = trial.params["x"] - dx, trial.params["y"]
            return scale * ((x - 1) ** 2 + 2 * (y + 1) ** 2 + 3 * math.sin(x) ** 2) + offset

        return f

    source = tunelab.create_study(name="src", storage=url, sampler=tunelab.RandomSampler(), seed=5, space=space)
    source.optimize(surface(0.0, 1.0, 0.0), n_trials=80)
    warm = tunelab.create_study(storage=url, sampler=tunelab.GPSampler(), seed=0, space=space, warm_start=["src"])
    target = surface(1.5, 40.0, 7.0)
    warm.optimize(target, n_trials=12)
    grid = np.linspace(-5, 5, 100_001)
    x_opt = 1.5 + grid[np.argmin((grid - 1) ** 2 + 3 * np.sin(grid) ** 2)]  # about 1.76
    best = warm.best_trial
    assert abs(best.params["x"] - x_opt) < 0.25 and abs(best.params["y"] + 1) < 0.25, best.params
