"""Behaviour every model-based sampler (TPE, GP) must have, run on each of them."""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import objectives
import tunelab
from tunelab import Categorical, Conditional, Float, Int
from tunelab.errors import ConfigError
from tunelab.history import History
from tunelab.samplers import ModelBasedSampler, SamplingContext, sampler_from_description
from tunelab.samplers.model_based import EncodedSpace, collect_observations

SAMPLERS: dict[str, Callable[..., ModelBasedSampler]] = {
    "tpe": tunelab.TPESampler,
    "tpe-univariate": lambda **kw: tunelab.TPESampler(multivariate=False, **kw),
    "gp": tunelab.GPSampler,
    "auto-tpe-phase": lambda **kw: tunelab.AutoSampler(switch_at=0, **kw),
}

SPACE = {"x": Float(-5, 5), "lr": Float(1e-5, 1e-1, log=True)}


def bowl(trial: tunelab.Trial) -> float:
    """Minimum 0 at x=1, lr=1e-3 (the quadratic of tests/objectives.py, from the declared space)."""
    return (trial.params["x"] - 1) ** 2 + (math.log10(trial.params["lr"]) + 3) ** 2


@pytest.fixture(params=sorted(SAMPLERS))
def make(request: pytest.FixtureRequest) -> Callable[..., ModelBasedSampler]:
    return SAMPLERS[request.param]


def test_same_seed_same_trials(make: Callable[..., ModelBasedSampler]) -> None:
    runs = []
    for _ in range(2):
        study = tunelab.create_study(sampler=make(), seed=3, space=SPACE)
        study.optimize(bowl, n_trials=16)
        runs.append([t.params for t in study.trials])
    assert runs[0] == runs[1]


def mixed(trial: tunelab.Trial) -> float:
    """Define-by-run: a float, a categorical with a conditional child, a log integer."""
    x = trial.suggest_float("x", -2, 2)
    if trial.suggest_categorical("opt", ["sgd", "adam", None, 3]) == "sgd":
        x += trial.suggest_float("momentum", 0.0, 0.9)
    return (x - 0.3) ** 2 + 0.01 * trial.suggest_int("n", 1, 64, log=True)


def reused_and_new_sampler_trials(new: Callable[[], ModelBasedSampler]) -> tuple[list[dict], list[dict]]:
    """The trials of a study run by a sampler object that ran another study before, and by a new one."""
    fresh = tunelab.create_study(sampler=new(), seed=3)
    fresh.optimize(mixed, n_trials=8)
    reused = new()
    tunelab.create_study(sampler=reused, seed=5).optimize(mixed, n_trials=8)
    again = tunelab.create_study(sampler=reused, seed=3)
    again.optimize(mixed, n_trials=8)
    return [t.params for t in again.trials], [t.params for t in fresh.trials]


def test_a_sampler_object_used_for_another_study_before_gives_what_a_new_one_gives(
    make: Callable[..., ModelBasedSampler],
) -> None:
    # The rows of finished trials were cached by trial number and the GP warm-started from its last fit,
    # whatever the study: a second study with the same sampler object modelled the first one's trials
    # (trial 4 on differed from a new sampler's, same seed).
    again, fresh = reused_and_new_sampler_trials(lambda: make(n_startup_trials=4))
    assert again == fresh


def test_a_copy_of_a_new_sampler_used_alongside_it_gives_what_a_new_one_gives() -> None:
    original = tunelab.TPESampler(n_startup_trials=4)
    twin = copy.copy(original)  # shares the original's (still empty) caches
    tunelab.create_study(sampler=original, seed=5, space=SPACE).optimize(bowl, n_trials=8)
    with_twin = tunelab.create_study(sampler=twin, seed=3, space=SPACE)
    with_twin.optimize(bowl, n_trials=8)
    fresh = tunelab.create_study(sampler=tunelab.TPESampler(n_startup_trials=4), seed=3, space=SPACE)
    fresh.optimize(bowl, n_trials=8)
    assert [t.params for t in with_twin.trials] == [t.params for t in fresh.trials]


def test_an_auto_sampler_used_for_another_study_before_gives_what_a_new_one_gives() -> None:
    again, fresh = reused_and_new_sampler_trials(lambda: tunelab.AutoSampler(n_startup_trials=4))  # its GP phase
    assert again == fresh


def test_beats_random_search_on_a_bowl(make: Callable[..., ModelBasedSampler]) -> None:
    def regret(sampler: tunelab.Sampler, seed: int) -> float:
        study = tunelab.create_study(sampler=sampler, seed=seed, space=SPACE)
        study.optimize(bowl, n_trials=40)
        return study.best_value

    seeds = range(9)  # a median over fewer seeds is mostly noise
    model = [regret(make(), seed) for seed in seeds]
    rand = [regret(tunelab.RandomSampler(), seed) for seed in seeds]
    assert np.median(model) < np.median(rand) / 2


def test_maximize_goes_up(make: Callable[..., ModelBasedSampler]) -> None:
    study = tunelab.create_study(direction="maximize", sampler=make(), seed=0, space=SPACE)
    study.optimize(lambda t: -bowl(t), n_trials=30)
    late = [t.value for t in study.trials[15:] if t.value is not None]
    early = [t.value for t in study.trials[:10] if t.value is not None]
    assert np.median(late) > np.median(early)
    assert study.best_value > -0.5


def test_the_model_starts_after_n_startup_trials(make: Callable[..., ModelBasedSampler]) -> None:
    calls: list[int] = []
    sampler = make(n_startup_trials=5)
    propose = sampler.propose

    def spy(space, obs, rng):  # type: ignore[no-untyped-def]
        calls.append(len(obs.y))
        return propose(space, obs, rng)

    sampler.propose = spy  # type: ignore[method-assign]
    study = tunelab.create_study(sampler=sampler, seed=0, space=SPACE)
    study.optimize(bowl, n_trials=8)
    if getattr(sampler, "multivariate", True):
        assert calls == [5, 6, 7]


def test_warm_starts_from_trials_of_another_sampler(tmp_path: Path, make: Callable[..., ModelBasedSampler]) -> None:
    url = f"sqlite:///{tmp_path / 'warm.db'}"
    coarse = tunelab.create_study(name="s", storage=url, sampler=tunelab.RandomSampler(), seed=0, space=SPACE)
    coarse.optimize(bowl, n_trials=20)
    fine = tunelab.load_study("s", storage=url, sampler=make(n_startup_trials=10))
    fine.optimize(bowl, n_trials=10)
    new = fine.trials[20:]
    assert "planned" in new[0].system_attrs or not getattr(fine.sampler, "multivariate", True)
    # The model already knows where the bowl is: its first 10 trials beat random's first 10.
    assert np.median([t.value for t in new]) < np.median([t.value for t in coarse.trials[:10]])


def test_conditional_parameters_follow_their_condition(make: Callable[..., ModelBasedSampler]) -> None:
    space = {
        "optimizer": Categorical(["sgd", "adam"]),
        "momentum": Conditional(Float(0.0, 0.99), when={"optimizer": "sgd"}),
        "lr": Float(1e-4, 1e-1, log=True),
    }

    def objective(trial: tunelab.Trial) -> float:
        p = trial.params
        penalty = 0.0 if p["optimizer"] == "sgd" else 1.0
        return penalty + (p.get("momentum", 0.9) - 0.9) ** 2 + (math.log10(p["lr"]) + 2) ** 2

    study = tunelab.create_study(sampler=make(), seed=0, space=space)
    study.optimize(objective, n_trials=40)
    for t in study.trials:
        assert ("momentum" in t.params) == (t.params["optimizer"] == "sgd")
    assert study.best_params["optimizer"] == "sgd" and study.best_value < 0.3


def test_define_by_run_objectives_are_modelled_too(make: Callable[..., ModelBasedSampler]) -> None:
    study = tunelab.create_study(sampler=make(), seed=1)
    study.optimize(objectives.quadratic, n_trials=40)
    rand = tunelab.create_study(sampler=tunelab.RandomSampler(), seed=1)
    rand.optimize(objectives.quadratic, n_trials=40)
    assert study.best_value < rand.best_value


def test_failed_trials_steer_the_search_away(make: Callable[..., ModelBasedSampler]) -> None:
    """lr above 1e-2 'diverges' (FAIL) and the best lr lies just below. Imputed as bad
    (the default), the failures keep the model out of that region; ignored, they do not."""

    def objective(trial: tunelab.Trial) -> float:
        lr = trial.params["lr"]
        if lr > 1e-2:
            return math.nan
        return (math.log10(lr) + 2.3) ** 2

    def failures(sampler: ModelBasedSampler, seed: int) -> tuple[int, float]:
        study = tunelab.create_study(sampler=sampler, seed=seed, space={"lr": Float(1e-6, 1.0, log=True)})
        study.optimize(objective, n_trials=40)
        return sum(t.state == tunelab.TrialState.FAIL for t in study.trials[10:]), study.best_value

    imputed = [failures(make(), seed) for seed in range(3)]
    ignored = [failures(make(failed="ignore"), seed) for seed in range(3)]
    assert sum(f for f, _ in imputed) < sum(f for f, _ in ignored) / 2
    assert max(best for _, best in imputed) < 0.05


def test_integers_and_steps_get_values_they_can_take(make: Callable[..., ModelBasedSampler]) -> None:
    space = {"n": Int(1, 9), "w": Int(8, 1024, log=True), "p": Float(0.0, 0.5, step=0.05)}
    study = tunelab.create_study(sampler=make(), seed=0, space=space)
    study.optimize(lambda t: (t.params["n"] - 3) ** 2 + abs(math.log2(t.params["w"]) - 6) + t.params["p"],
                   n_trials=30)
    for t in study.trials:
        for name, dist in space.items():
            assert dist.contains(t.params[name])
    assert study.best_params["n"] == 3


def _configurations(study: tunelab.Study) -> list[tuple[tuple[str, object], ...]]:
    return [tuple(sorted(t.params.items())) for t in study.trials]


def test_the_gp_does_not_run_a_configuration_twice_on_integers() -> None:
    # Integers snap every candidate near the incumbent onto it: the GP used to propose the best trial again
    # (13-14 of 30 trials repeated one on this bowl). Each repeat is a trial spent learning nothing.
    space = {"a": Int(-10, 10), "b": Int(1, 512, log=True)}
    study = tunelab.create_study(sampler=tunelab.GPSampler(), seed=0, space=space)
    study.optimize(lambda t: (t.params["a"] - 3) ** 2 + (math.log2(t.params["b"]) - 5) ** 2, n_trials=30)
    configurations = _configurations(study)
    assert len(set(configurations)) == len(configurations)
    assert study.best_params == {"a": 3, "b": 32}


@pytest.mark.parametrize("sampler", [tunelab.GPSampler, tunelab.TPESampler])
def test_a_configuration_is_repeated_only_once_the_space_is_exhausted(
    sampler: Callable[..., ModelBasedSampler],
) -> None:
    space = {"a": Int(0, 2), "flag": Categorical([True, False])}  # 6 configurations
    study = tunelab.create_study(sampler=sampler(n_startup_trials=1), seed=0, space=space)
    with pytest.warns(UserWarning, match="every configuration it scored has been tried") as caught:
        study.optimize(lambda t: t.params["a"] + 0.5 * t.params["flag"], n_trials=9)
    assert sum("every configuration" in str(w.message) for w in caught) == 1  # once, not at every trial
    configurations = _configurations(study)
    assert len(set(configurations[:6])) == 6  # every configuration before any repeat
    assert len(configurations) == 9 and all(t.state == tunelab.TrialState.COMPLETE for t in study.trials)


def test_tried_points_tell_the_same_configuration_whatever_an_inactive_coordinate_holds() -> None:
    from tunelab.samplers.model_based import TriedPoints

    space = EncodedSpace({
        "opt": Categorical(["adam", "sgd"]),
        "momentum": Conditional(Float(0.0, 0.99, step=0.01), when={"opt": "sgd"}),
        "width": Int(8, 64),
    })
    tried = TriedPoints(space, np.array([space.encode({"opt": "adam", "width": 16}),
                                         space.encode({"opt": "sgd", "momentum": 0.9, "width": 16})]))
    adam_16, sgd_16 = space.encode({"opt": "adam", "width": 16}), space.encode({"opt": "sgd", "momentum": 0.9,
                                                                              "width": 16})
    candidates = np.array([
        np.where(np.isnan(adam_16), 0.37, adam_16),  # adam, momentum's coordinate filled: still adam at 16
        sgd_16 + np.array([0.0, 0.0, 0.001]),  # width's cell unchanged by a small move: the same trial
        np.where(np.isnan(adam_16), 0.37, space.encode({"opt": "adam", "width": 17})),
        sgd_16 + np.array([0.0, 0.05, 0.0]),  # another momentum
    ])
    assert tried.novel(candidates).tolist() == [False, False, True, True]
    # With a continuous parameter a repeat is a point chosen exactly (on a bound): nothing is refused.
    continuous = EncodedSpace({"x": Float(0.0, 1.0), "n": Int(1, 3)})
    row = continuous.encode({"x": 0.0, "n": 2})
    assert TriedPoints(continuous, row[None, :]).novel(row[None, :]).tolist() == [True]


def test_pending_trials_make_parallel_asks_differ(make: Callable[..., ModelBasedSampler]) -> None:
    study = tunelab.create_study(sampler=make(n_startup_trials=5), seed=0, space=SPACE)
    study.optimize(bowl, n_trials=10)
    asked = [study.ask() for _ in range(4)]  # four workers asking before any tells
    rows = [EncodedSpace(SPACE).encode(t.params) for t in asked]
    assert min(float(np.max(np.abs(a - b))) for a, b in itertools.combinations(rows, 2)) > 1e-3


CUBE = {n: Float(-1, 1) for n in "xyz"}


def test_workers_planning_at_the_same_moment_propose_distinct_points(make: Callable[..., ModelBasedSampler]) -> None:
    # Four workers start trials at once and read the history before any of them has recorded its
    # plan: each must count the points the others are about to take (issue 16, item 13).
    sampler = make(n_startup_trials=8)
    study = tunelab.create_study(sampler=sampler, seed=0, space=CUBE)
    study.optimize(lambda t: objectives.styblinski_tang(t.params), n_trials=10)
    encoded = EncodedSpace(CUBE)
    for _ in range(2):
        reserved = [study.reserve_trial() for _ in range(4)]
        history = History(study.storage, study.storage.get_study(study.name), CUBE)  # one view: nobody planned yet
        plans = [sampler.plan(history, SamplingContext(t.number, study.seed)) for t in reserved]
        rows = [encoded.encode(p) for p in plans]
        gaps = [float(np.max(np.abs(a - b))) for a, b in itertools.combinations(rows, 2)]
        assert min(gaps) > 1e-3, gaps
        for t, p in zip(reserved, plans, strict=True):
            study.storage.finish_trial(t.trial_id, tunelab.TrialState.COMPLETE, value=objectives.styblinski_tang(p),
                                       params=p, distributions=CUBE)


def test_a_plan_made_ahead_by_another_worker_is_the_plan_the_trial_makes(
    make: Callable[..., ModelBasedSampler],
) -> None:
    # Worker B plans trial a's point ahead (a is still planning) and must get exactly a's own plan,
    # though the two processes saw the trials finish in different orders and A fitted other data
    # before (a GP warm-started from it, or from the finishing order, proposed a different point:
    # two workers then took the same corner of the cube, in CI).
    study = tunelab.create_study(sampler=make(n_startup_trials=8), seed=0, space=CUBE)
    study.optimize(lambda t: objectives.styblinski_tang(t.params), n_trials=14)
    running = study.ask()  # a third worker's trial, planned and recorded: pending for both
    a, b = study.reserve_trial(), study.reserve_trial()
    history = History(study.storage, study.storage.get_study(study.name), CUBE)
    encoded = EncodedSpace(CUBE)
    worker_a, worker_b = make(n_startup_trials=8), make(n_startup_trials=8)
    finished = history.trials((tunelab.TrialState.COMPLETE,))
    worker_a._bind(history)  # A serves this study
    worker_a._cache.arrays(encoded, finished[::-1])  # A saw them finish in the reverse order
    earlier = History(study.storage, study.storage.get_study(study.name), CUBE)
    worker_a.plan(earlier, SamplingContext(running.number, study.seed))  # and fitted once before
    obs = collect_observations(history, encoded, exclude=b.number, failed=worker_b.failed, cache=worker_b._cache)
    ahead = worker_b._plan_ahead(history, encoded, obs, SamplingContext(b.number, study.seed))
    own = worker_a.plan(history, SamplingContext(a.number, study.seed))
    assert [n for n, _ in ahead] == [a.number]
    assert encoded.decode(ahead[0][1]) == own


def test_load_study_rebuilds_the_same_sampler(tmp_path: Path, make: Callable[..., ModelBasedSampler]) -> None:
    url = f"sqlite:///{tmp_path / 'desc.db'}"
    sampler = make(n_startup_trials=7)
    tunelab.create_study(name="d", storage=url, sampler=sampler, seed=0)
    loaded = tunelab.load_study("d", storage=url)
    assert type(loaded.sampler) is type(sampler) and loaded.sampler.describe() == sampler.describe()
    assert sampler_from_description(sampler.describe()).describe() == sampler.describe()


def test_parallel_workers_on_sqlite(tmp_path: Path, make: Callable[..., ModelBasedSampler]) -> None:
    url = f"sqlite:///{tmp_path / 'par.db'}"
    study = tunelab.create_study(name="p", storage=url, sampler=make(n_startup_trials=6), seed=0)
    study.optimize(objectives.quadratic, n_trials=24, n_workers=2)
    trials = study.trials
    assert len(trials) == 24 and all(t.state == tunelab.TrialState.COMPLETE for t in trials)
    assert study.best_value < 2.0


@pytest.mark.parametrize("bad", [{"n_startup_trials": 0}, {"n_startup_trials": 2.5}, {"failed": "drop"}])
def test_bad_settings_are_refused_with_the_parameter_named(
    make: Callable[..., ModelBasedSampler], bad: dict[str, object]
) -> None:
    with pytest.raises(ConfigError, match=next(iter(bad))):
        make(**bad)
