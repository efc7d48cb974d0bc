"""CoarseToFineSampler: stages, recorded ranges, log-space shrinking, categorical shares, regret."""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import pytest

import tunelab
from tunelab import Bool, Categorical, CoarseToFineSampler, Conditional, Float, RandomSampler
from tunelab.errors import ConfigError
from tunelab.samplers import sampler_from_description

KEY = "coarse_to_fine"


def record(trial: tunelab.FrozenTrial | tunelab.Trial) -> dict[str, Any]:
    return dict(trial.system_attrs[KEY])


def lr_only(trial: tunelab.Trial) -> float:
    """Minimum at lr=1e-3."""
    return (math.log10(trial.suggest_float("lr", 1e-5, 1e-1, log=True)) + 3) ** 2


def narrow_log_optimum(trial: tunelab.Trial) -> float:
    """A narrow optimum in log10(lr) at -3.7; dropout matters little. Minimum 0."""
    lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    dropout = trial.suggest_float("dropout", 0.0, 0.5)
    return (math.log10(lr) + 3.7) ** 2 * 50 + (dropout - 0.2) ** 2


def study_with_known_top_trials(sampler: CoarseToFineSampler, lrs: list[float]) -> tunelab.Study:
    """A study whose first trials ran lr = ``lrs`` (the objective is ``lr_only``)."""
    study = tunelab.create_study(sampler=sampler, seed=0)
    for lr in lrs:
        study.enqueue({"lr": lr})
    study.optimize(lr_only, n_trials=len(lrs))
    return study


# -- stages and ranges -----------------------------------------------------------------------
def test_stage_follows_the_trial_number_and_the_last_stage_lasts() -> None:
    study = tunelab.create_study(sampler=CoarseToFineSampler(n_stages=3, trials_per_stage=4), seed=0)
    study.optimize(lr_only, n_trials=15)
    assert [record(t)["stage"] for t in study.trials] == [0] * 4 + [1] * 4 + [2] * 7


def test_a_range_the_objective_moved_off_the_recorded_one_is_searched_whole() -> None:
    # stage 1 recorded lr around 1e-3; the objective then asks for lr in [0.05, 0.1] (no overlap): every
    # draw was the edge, 0.05, for the rest of the stage
    study = tunelab.create_study(sampler=CoarseToFineSampler(trials_per_stage=6), seed=0)
    study.optimize(lr_only, n_trials=7)
    high = record(study.trials[6])["ranges"]["lr"][1]
    assert high < 0.05  # the stage's recorded range sits below the new one

    def moved(trial: tunelab.Trial) -> float:
        return trial.suggest_float("lr", 0.05, 0.1, log=True)

    study.optimize(moved, n_trials=4)
    drawn = {t.params["lr"] for t in study.trials[7:]}
    assert len(drawn) == 4 and all(0.05 <= v <= 0.1 for v in drawn)


def test_trials_of_a_stage_reuse_the_ranges_its_first_trial_recorded() -> None:
    study = tunelab.create_study(sampler=CoarseToFineSampler(trials_per_stage=10), seed=0)
    study.optimize(narrow_log_optimum, n_trials=30)
    for stage in (1, 2):
        trials = study.trials[10 * stage : 10 * stage + 10]
        ranges = [record(t)["ranges"] for t in trials]
        assert ranges[0] and all(r == ranges[0] for r in ranges)  # although the top trials changed
        for t in trials:
            for name, (low, high) in ranges[0].items():
                assert low <= t.params[name] <= high


def test_ranges_shrink_around_the_top_trials_in_log_space() -> None:
    sampler = CoarseToFineSampler(n_stages=2, trials_per_stage=5, top_k=3, shrink=0.5)
    study = study_with_known_top_trials(sampler, [1e-3, 2e-3, 5e-4, 1e-1, 1e-5])
    trial = study.ask()
    low, high = record(trial)["ranges"]["lr"]
    # Top-3 span 0.15 of the 4 decades in unit space: widened to 0.5 around the centre
    # (log10 = -3), plus 10% each side: [-4.2, -1.8] in log10, symmetric in log space.
    assert (math.log10(low), math.log10(high)) == pytest.approx((-4.2, -1.8), abs=1e-9)
    assert low <= trial.suggest_float("lr", 1e-5, 1e-1, log=True) <= high


def test_a_later_stage_keeps_at_least_shrink_to_the_stage_of_the_width() -> None:
    sampler = CoarseToFineSampler(n_stages=3, trials_per_stage=5, top_k=3, shrink=0.5)
    study = study_with_known_top_trials(sampler, [1e-3, 2e-3, 5e-4, 1e-1, 1e-5])
    study.optimize(lambda t: lr_only(t) + 10, n_trials=5)  # stage 1: all worse than the top 3
    low, high = record(study.ask())["ranges"]["lr"]
    assert (math.log10(low), math.log10(high)) == pytest.approx((-3.6, -2.4), abs=1e-9)  # 0.25 * 1.2


def test_categorical_probabilities_are_smoothed_shares_of_the_top_trials() -> None:
    study = tunelab.create_study(sampler=CoarseToFineSampler(trials_per_stage=5, top_k=4), seed=0)
    for opt, value in [("adam", 0), ("adam", 1), ("sgd", 2), ("adam", 3), ("sgd", 9)]:
        study.enqueue({"opt": opt})
        trial = study.ask()
        trial.suggest_categorical("opt", ["adam", "sgd", "rmsprop"])
        study.tell(trial, value)
    shares = record(study.ask())["ranges"]["opt"]
    # Top 4: adam x3, sgd x1, rmsprop x0, each + 0.5, over 4 + 1.5.
    assert shares == pytest.approx({"adam": 3.5 / 5.5, "sgd": 1.5 / 5.5, "rmsprop": 0.5 / 5.5})


def test_categorical_draws_follow_the_recorded_shares() -> None:
    study = tunelab.create_study(sampler=CoarseToFineSampler(n_stages=2, trials_per_stage=5, top_k=5), seed=0)
    for _ in range(5):
        study.enqueue({"bn": True})
    study.optimize(lambda t: float(t.suggest_bool("bn")), n_trials=205)
    later = [t.params["bn"] for t in study.trials[5:]]
    assert record(study.trials[5])["ranges"]["bn"] == pytest.approx({"False": 0.5 / 6, "True": 5.5 / 6})
    assert 0.8 < sum(later) / len(later) < 0.99


def test_define_by_run_parameter_first_seen_mid_stage_is_recorded_and_reused() -> None:
    study = tunelab.create_study(sampler=CoarseToFineSampler(n_stages=2, trials_per_stage=10), seed=0)

    def objective(trial: tunelab.Trial) -> float:
        value = lr_only(trial)
        if trial.number >= 13:
            value += trial.suggest_int("layers", 1, 8)
        return value

    study.optimize(objective, n_trials=20)
    assert "layers" not in record(study.trials[12])["ranges"]
    first = record(study.trials[13])["ranges"]["layers"]
    assert first == [1, 8]  # no top trial had it: the full range
    assert all(record(t)["ranges"]["layers"] == first for t in study.trials[14:])


def test_conditional_parameter_inactive_in_the_top_trials_keeps_its_full_range() -> None:
    space = {
        "optimizer": Categorical(["sgd", "adam"]),
        "momentum": Conditional(Float(0.0, 0.99), when={"optimizer": "sgd"}),
        "lr": Float(1e-5, 1e-1, log=True),
    }
    sampler = CoarseToFineSampler(n_stages=2, trials_per_stage=10, top_k=3)
    study = tunelab.create_study(sampler=sampler, space=space, seed=0)
    study.optimize(lambda t: (t.params["optimizer"] == "sgd") * 10 + lr_only(t), n_trials=11)
    ranges = record(study.trials[10])["ranges"]
    assert ranges["momentum"] == [0.0, 0.99]
    assert ranges["optimizer"]["adam"] > 0.8
    assert math.log10(ranges["lr"][1] / ranges["lr"][0]) < 4  # while lr's range did shrink


def test_before_any_complete_trial_a_later_stage_samples_the_whole_space() -> None:
    study = tunelab.create_study(sampler=CoarseToFineSampler(n_stages=2, trials_per_stage=2), seed=0)
    trials = [study.ask() for _ in range(4)]  # none told
    assert [record(t) for t in trials[2:]] == [{"stage": 1, "ranges": {}}] * 2
    assert 0.0 <= trials[3].suggest_float("x", 0.0, 1.0) <= 1.0


def test_integer_and_lattice_parameters_stay_valid_inside_their_ranges() -> None:
    study = tunelab.create_study(sampler=CoarseToFineSampler(trials_per_stage=10), seed=0)

    def objective(trial: tunelab.Trial) -> float:
        width = trial.suggest_int("width", 16, 1024, log=True)
        units = trial.suggest_int("units", 8, 64, step=8)
        drop = trial.suggest_float("drop", 0.0, 0.5, step=0.1)
        return abs(math.log2(width) - 7) + abs(units - 32) + drop

    study.optimize(objective, n_trials=30)
    for t in study.trials[10:]:
        ranges, p = record(t)["ranges"], t.params
        assert isinstance(p["width"], int) and ranges["width"][0] <= p["width"] <= ranges["width"][1]
        assert p["units"] % 8 == 0 and ranges["units"][0] <= p["units"] <= ranges["units"][1]
        assert round(t.params["drop"] * 10, 9).is_integer()


# -- the first stage on a grid ---------------------------------------------------------------
def test_first_stage_grid_runs_distinct_cells_of_at_most_trials_per_stage() -> None:
    space = {"lr": Float(1e-5, 1e-1, log=True), "dropout": Float(0.0, 0.5), "bn": Bool()}
    sampler = CoarseToFineSampler(trials_per_stage=20, first_stage="grid")
    study = tunelab.create_study(sampler=sampler, space=space, seed=0)
    study.optimize(lambda t: 0.0, n_trials=20)
    cells = [tuple(sorted(t.params.items())) for t in study.trials]
    # 3 x 3 x 2 = 18 <= 20 < 4 x 4 x 2: 18 distinct grid cells, then 2 random trials.
    assert len(set(cells[:18])) == 18
    assert sorted({t.params["lr"] for t in study.trials[:18]}) == pytest.approx([1e-5, 1e-3, 1e-1])


def test_first_stage_grid_without_a_declared_space_samples_at_random() -> None:
    sampler = CoarseToFineSampler(trials_per_stage=10, first_stage="grid")
    study = tunelab.create_study(sampler=sampler, seed=0)
    study.optimize(lr_only, n_trials=10)
    assert len({t.params["lr"] for t in study.trials}) == 10


# -- search quality --------------------------------------------------------------------------
SEEDS = range(10)
BUDGET = 60


@cache
def mean_regret(sampler_factory: str) -> float:
    """Mean over SEEDS of the best value after BUDGET trials (the optimum is 0)."""
    factories = {
        "random": RandomSampler,
        "coarse_to_fine": CoarseToFineSampler,
        "coarse_to_fine_shrink_0.25": lambda: CoarseToFineSampler(shrink=0.25),
    }
    regrets = []
    for seed in SEEDS:
        study = tunelab.create_study(sampler=factories[sampler_factory](), seed=seed)
        study.optimize(narrow_log_optimum, n_trials=BUDGET)
        regrets.append(study.best_value)
    return sum(regrets) / len(regrets)


def test_regret_is_lower_than_random_search_on_a_narrow_log_optimum() -> None:
    c2f, random = mean_regret("coarse_to_fine"), mean_regret("random")
    print(f"\nmean regret over 10 seeds, {BUDGET} trials: coarse-to-fine {c2f:.4f}, random {random:.4f}")
    assert c2f < random


def test_a_stronger_shrink_cuts_the_regret_of_random_search_several_times() -> None:
    c2f, random = mean_regret("coarse_to_fine_shrink_0.25"), mean_regret("random")
    print(f"\nmean regret over 10 seeds, {BUDGET} trials: coarse-to-fine(shrink=0.25) {c2f:.4f}, "
          f"random {random:.4f}")
    assert c2f * 3 < random


def test_same_seed_gives_the_same_trials() -> None:
    def params(seed: int) -> list[dict[str, Any]]:
        study = tunelab.create_study(sampler=CoarseToFineSampler(trials_per_stage=5), seed=seed)
        study.optimize(narrow_log_optimum, n_trials=15)
        return [dict(t.params) for t in study.trials]

    assert params(1) == params(1)


# -- errors and description ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_stages": 0}, "n_stages"),
        ({"trials_per_stage": 2.5}, "trials_per_stage"),
        ({"top_k": True}, "top_k"),
        ({"shrink": 0.0}, "shrink"),
        ({"shrink": 1.5}, "shrink"),
        ({"first_stage": "sobol"}, "first_stage.*'random' or 'grid'"),
    ],
)
def test_constructor_rejects_bad_arguments_naming_them(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        CoarseToFineSampler(**kwargs)


def test_describe_rebuilds_the_same_sampler() -> None:
    sampler = CoarseToFineSampler(n_stages=4, trials_per_stage=7, top_k=2, shrink=0.3, first_stage="grid")
    rebuilt = sampler_from_description(sampler.describe())
    assert isinstance(rebuilt, CoarseToFineSampler) and rebuilt.describe() == sampler.describe()


def test_int_parameter_ranges_are_recorded_in_its_own_units() -> None:
    sampler = CoarseToFineSampler(n_stages=2, trials_per_stage=5, top_k=2)
    study = tunelab.create_study(sampler=sampler, seed=0)
    for n in (10, 11, 50, 90, 99):
        study.enqueue({"n": n})
    study.optimize(lambda t: abs(t.suggest_int("n", 1, 100) - 10), n_trials=5)
    low, high = record(study.ask())["ranges"]["n"]
    assert isinstance(low, int) and isinstance(high, int) and low < 10 < 11 < high < 50
