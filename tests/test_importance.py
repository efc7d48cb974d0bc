"""Hyperparameter importance (tunelab.analysis.importance) on functions whose answer is known."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pytest

import tunelab
from tunelab.analysis.importance import METHODS, advice, importance
from tunelab.distributions import Bool, Categorical, Distribution, Float, Int, ParamValue
from tunelab.errors import ConfigError
from tunelab.records import FrozenTrial, TrialState
from tunelab.samplers import RandomSampler
from tunelab.space import Conditional, active_names, unwrap

SEEDS = (0, 1, 2, 3, 4)
IRRELEVANT = {"fanova": 0.05, "ped_anova": 0.1}
"""The largest share an irrelevant parameter may get. PED-ANOVA compares 30 top trials with the
rest: its estimate of an irrelevant parameter is unbiased but noisier than the forest's."""


def sample_trials(
    space: Mapping[str, Distribution | Conditional],
    f: Callable[[dict[str, ParamValue]], float],
    n: int,
    seed: int,
) -> list[FrozenTrial]:
    """``n`` COMPLETE trials drawn uniformly (log-uniformly for log parameters) from ``space``."""
    rng = np.random.default_rng(seed)
    trials = []
    for i in range(n):
        params: dict[str, ParamValue] = {}
        for name in space:
            if name in active_names(space, params):
                params[name] = unwrap(space[name]).sample(rng)
        dists = {name: unwrap(space[name]) for name in params}
        trials.append(FrozenTrial(number=i, state=TrialState.COMPLETE, value=f(params),
                                  params=params, distributions=dists))
    return trials


def check_shares(shares: dict[str, float]) -> None:
    assert math.isclose(sum(shares.values()), 1.0, abs_tol=1e-9)
    assert all(0.0 <= v <= 1.0 for v in shares.values())
    assert list(shares.values()) == sorted(shares.values(), reverse=True)


# -------------------------------------------------------------------------------------------
# Known truths


QUADRATIC = {"x1": Float(-1.0, 1.0), "x2": Float(-1.0, 1.0), "x3": Float(-1.0, 1.0)}


def quadratic(p: dict[str, ParamValue]) -> float:
    return 10.0 * float(p["x1"]) ** 2 + 1.0 * float(p["x2"]) ** 2 + 0.0 * float(p["x3"])  # type: ignore[arg-type]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", SEEDS)
def test_quadratic_ranking_is_right_on_every_seed(method: str, seed: int) -> None:
    shares = importance(sample_trials(QUADRATIC, quadratic, 300, seed), method=method, seed=seed)
    check_shares(shares)
    assert list(shares) == ["x1", "x2", "x3"], shares
    # fANOVA: the true shares are 0.990, 0.010, 0. PED-ANOVA is local (what sets the top 10%
    # apart): among the trials with x1 near 0, x2 orders them, so its share is larger.
    assert shares["x1"] > (0.9 if method == "fanova" else 0.6)
    assert shares["x3"] < IRRELEVANT[method], shares


def test_fanova_matches_the_exact_decomposition_of_an_additive_function() -> None:
    # f = 2 x1 + x2 on [-1, 1]^2: main-effect variances 4/3 and 1/3 -> shares 0.8 and 0.2.
    trials = sample_trials(QUADRATIC, lambda p: 2.0 * float(p["x1"]) + float(p["x2"]), 500, 0)  # type: ignore[arg-type]
    shares = importance(trials)
    assert shares["x1"] == pytest.approx(0.8, abs=0.04)
    assert shares["x2"] == pytest.approx(0.2, abs=0.04)
    assert shares["x3"] < 0.01


CATEGORICAL = {
    "opt": Categorical(["sgd", "adam", "lion", "rmsprop"]),
    "x": Float(-1.0, 1.0),
    "flag": Bool(),
}
OPT_COST = {"sgd": 6.0, "adam": 0.0, "lion": 3.0, "rmsprop": 9.0}
# One good choice of four: PED-ANOVA measures what sets the top 10% apart, and with three choices
# the x that ranks trials *within* the good choice sets them apart about as much (its true local
# importance); with four the optimizer is first under both definitions.


def categorical_f(p: dict[str, ParamValue]) -> float:
    return OPT_COST[str(p["opt"])] + float(p["x"]) ** 2  # type: ignore[arg-type]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", SEEDS)
def test_a_strong_categorical_ranks_first_on_every_seed(method: str, seed: int) -> None:
    shares = importance(sample_trials(CATEGORICAL, categorical_f, 300, seed), method=method, seed=seed)
    check_shares(shares)
    assert list(shares) == ["opt", "x", "flag"], shares
    assert shares["flag"] < IRRELEVANT[method], shares


LOG_SPACE = {
    "lr": Float(1e-5, 1e-1, log=True),
    "width": Int(16, 256, log=True),
    "layers": Int(1, 8),
}


def log_f(p: dict[str, ParamValue]) -> float:
    # Strong in log10(lr) (best at 1e-3), weak in log2(width), nothing in layers.
    lr, width = float(p["lr"]), float(p["width"])  # type: ignore[arg-type]
    return (math.log10(lr) + 3.0) ** 2 + 0.1 * (math.log2(width) - 6.0) ** 2


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", SEEDS)
def test_log_scaled_parameters_are_ranked_on_their_log_scale(method: str, seed: int) -> None:
    shares = importance(sample_trials(LOG_SPACE, log_f, 300, seed), method=method, seed=seed)
    check_shares(shares)
    assert list(shares) == ["lr", "width", "layers"], shares
    assert shares["layers"] < IRRELEVANT[method], shares


# -------------------------------------------------------------------------------------------
# Conditional parameters, categoricals in a real study


CONDITIONAL = {
    "optimizer": Categorical(["sgd", "adam"]),
    "momentum": Conditional(Float(0.0, 1.0), when={"optimizer": "sgd"}),
    "noise": Float(0.0, 1.0),
}


def conditional_f(p: dict[str, ParamValue]) -> float:
    if p["optimizer"] == "adam":
        return 1.5
    return 1.0 + 4.0 * (float(p["momentum"]) - 0.9) ** 2  # type: ignore[arg-type]  # sgd: momentum decides


@pytest.mark.parametrize("method", METHODS)
def test_conditional_parameters_are_ranked_with_inactive_as_a_value(method: str) -> None:
    trials = sample_trials(CONDITIONAL, conditional_f, 400, 0)
    assert any("momentum" not in t.params for t in trials)
    shares = importance(trials, method=method)
    check_shares(shares)
    assert set(shares) == {"optimizer", "momentum", "noise"}
    assert shares["momentum"] > 0.2, shares
    assert shares["noise"] < IRRELEVANT[method], shares
    assert shares["noise"] == min(shares.values())


def test_a_parameter_only_some_trials_have_is_kept() -> None:
    # define-by-run: 'extra' suggested in half of the trials only, and irrelevant.
    trials = sample_trials(QUADRATIC, quadratic, 200, 3)
    rng = np.random.default_rng(0)
    mixed = []
    for t in trials:
        if t.number % 2:
            params = {**t.params, "extra": float(rng.random())}
            dists = {**t.distributions, "extra": Float(0.0, 1.0)}
            t = FrozenTrial(t.number, t.state, t.value, params, dists)
        mixed.append(t)
    for method in METHODS:
        shares = importance(mixed, method=method)
        check_shares(shares)
        assert next(iter(shares)) == "x1"
        assert shares["extra"] < IRRELEVANT[method], (method, shares)


def test_a_real_sqlite_study_with_ask_and_tell(tmp_path: Path) -> None:
    study = tunelab.create_study(name="imp", storage=f"sqlite:///{tmp_path / 'imp.db'}",
                                 sampler=RandomSampler(), seed=7, direction="maximize")
    for _ in range(120):
        trial = study.ask()
        opt = trial.suggest_categorical("opt", list(OPT_COST))
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        batch = trial.suggest_int("batch", 16, 128)
        study.tell(trial, -OPT_COST[str(opt)] - 0.3 * (math.log10(lr) + 2.5) ** 2 + 0.0 * batch)
    failed = study.ask()  # FAIL and PRUNED trials are ignored
    failed.suggest_float("lr", 1e-4, 1e-1, log=True)
    study.tell(failed, state="FAIL")
    loaded = tunelab.load_study("imp", f"sqlite:///{tmp_path / 'imp.db'}")
    for method in METHODS:
        shares = importance(loaded, method=method)
        check_shares(shares)
        assert list(shares) == ["opt", "lr", "batch"], (method, shares)
        assert importance(loaded.trials, method=method, direction="maximize") == shares
    sentence = advice(importance(loaded))
    assert sentence.startswith("opt ")


def test_ped_anova_follows_the_direction() -> None:
    trials = sample_trials(QUADRATIC, quadratic, 200, 1)
    flipped = [FrozenTrial(t.number, t.state, -float(t.value or 0.0), t.params, t.distributions) for t in trials]
    assert importance(flipped, method="ped_anova", direction="maximize") == importance(trials, method="ped_anova")
    # maximizing the quadratic puts the top trials at the corners: x1 still leads
    assert next(iter(importance(trials, method="ped_anova", direction="maximize"))) == "x1"


# -------------------------------------------------------------------------------------------
# Options, determinism, degenerate input


def test_params_selects_and_renormalises() -> None:
    trials = sample_trials(QUADRATIC, quadratic, 200, 0)
    for method in METHODS:
        shares = importance(trials, method=method, params=["x3", "x2"])
        check_shares(shares)
        assert list(shares) == ["x2", "x3"]


def test_same_seed_same_shares() -> None:
    trials = sample_trials(CATEGORICAL, categorical_f, 150, 2)
    assert importance(trials, seed=3) == importance(trials, seed=3)
    assert importance(trials, method="ped_anova") == importance(trials, method="ped_anova", seed=9)
    a, b = importance(trials, seed=3), importance(trials, seed=4)
    assert list(a) == list(b)


def test_a_constant_objective_gives_equal_shares() -> None:
    trials = sample_trials(QUADRATIC, lambda p: 1.0, 50, 0)
    for method in METHODS:
        shares = importance(trials, method=method)
        assert shares == pytest.approx({"x1": 1 / 3, "x2": 1 / 3, "x3": 1 / 3})


def test_ped_anova_gives_equal_shares_for_a_constant_objective_of_a_study_with_several() -> None:
    # With every value equal, the "top" trials were the first ones by number: PED-ANOVA gave x 100% here
    # (and the report's advice said "x explains 100%") for an objective that never varied.
    study = tunelab.create_study(directions=["minimize", "minimize"], objective_names=["loss", "params"],
                                 sampler=RandomSampler(), seed=0)
    study.optimize(lambda t: (t.suggest_float("x", 0, 1) + 0.1 * t.suggest_float("y", 0, 1), 1.0), n_trials=20)
    assert importance(study, method="ped_anova", objective="params") == pytest.approx({"x": 0.5, "y": 0.5})
    assert importance(study, method="ped_anova", objective="loss")["x"] > 0.5


def test_two_trials_are_enough() -> None:
    trials = sample_trials(QUADRATIC, quadratic, 2, 0)
    for method in METHODS:
        check_shares(importance(trials, method=method))


def test_input_errors_are_clear() -> None:
    trials = sample_trials(QUADRATIC, quadratic, 20, 0)
    with pytest.raises(ConfigError, match="at least 2 COMPLETE"):
        importance(trials[:1])
    not_complete = [FrozenTrial(t.number, TrialState.FAIL, None, t.params, t.distributions) for t in trials]
    with pytest.raises(ConfigError, match="at least 2 COMPLETE trials with a finite value, got 1"):
        importance([*not_complete, trials[0]])
    with pytest.raises(ConfigError, match="at least 2 COMPLETE"):
        importance(tunelab.create_study())
    with pytest.raises(ConfigError, match=r"method=.*'fanova', 'ped_anova'.*'anova'"):
        importance(trials, method="anova")
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['lr'\]; the trials have \['x1', 'x2', 'x3'\]"):
        importance(trials, params=["x1", "lr"])
    with pytest.raises(ConfigError, match=r"params=.*empty"):
        importance(trials, params=[])
    with pytest.raises(ConfigError, match="list of parameter names"):
        importance(trials, params="x1")
    with pytest.raises(ConfigError, match="direction"):
        importance(trials, method="ped_anova", direction="down")
    with pytest.raises(ConfigError, match="seed"):
        importance(trials, seed=-1)
    with pytest.raises(ConfigError, match="Study or a sequence of FrozenTrial"):
        importance([{"x1": 1.0}, {"x1": 2.0}])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="Study or a sequence of FrozenTrial"):
        importance("study")  # type: ignore[arg-type]


def test_ped_anova_is_fast_on_a_large_study() -> None:
    import time

    trials = sample_trials(QUADRATIC, quadratic, 5000, 0)
    start = time.perf_counter()
    shares = importance(trials, method="ped_anova")
    assert time.perf_counter() - start < 2.0
    assert list(shares) == ["x1", "x2", "x3"]


# -------------------------------------------------------------------------------------------
# advice()


def test_advice_names_the_leaders_and_the_negligible() -> None:
    shares = {"lr": 0.6, "weight_decay": 0.25, "dropout": 0.14, "batch_size": 0.01}
    assert advice(shares) == (
        "lr and weight_decay explain 85% of the variance; batch_size under 2%: fix it and tune the rest"
    )


def test_advice_variants() -> None:
    assert advice({"lr": 0.97, "a": 0.015, "b": 0.015}) == (
        "lr explains 97% of the variance; a and b under 2%: fix them and tune the rest"
    )
    assert advice({"lr": 0.5, "wd": 0.3, "bs": 0.2}) == (
        "lr and wd explain 80% of the variance: focus the search on them"
    )
    assert advice({"a": 0.4, "b": 0.35, "c": 0.25}, top=0.9) == (
        "a, b and c explain 100% of the variance: every parameter matters, keep tuning them all"
    )
    assert advice({"lr": 0.9, "wd": 0.1}, small=0.2) == (
        "lr explains 90% of the variance; wd under 20%: fix it and tune the rest"
    )
    assert advice({"lr": 1.0}).startswith("only lr")
    with pytest.raises(ConfigError):
        advice({})
    with pytest.raises(ConfigError):
        advice({"a": 1.0}, top=0.0)


def test_advice_on_equal_shares_says_the_trials_tell_nothing_apart() -> None:
    flat = [FrozenTrial(number=i, state=TrialState.COMPLETE, value=1.0, params={"a": i / 10, "b": 1 - i / 10},
                        distributions={"a": Float(0.0, 1.0), "b": Float(0.0, 1.0)}) for i in range(6)]
    shares = importance(flat)
    assert shares == {"a": 0.5, "b": 0.5}  # the value never varied
    sentence = advice(shares)
    assert "a and b have equal shares" in sentence and "run more trials" in sentence
    assert "every parameter matters" not in sentence


def test_advice_on_real_shares_reads_well() -> None:
    sentence = advice(importance(sample_trials(QUADRATIC, quadratic, 200, 0)))
    assert sentence.startswith("x1 explains")
    assert "x3" in sentence and sentence.endswith("tune the rest")
