"""Priors from the user (issue 21, part 2): the beliefs, their checks and JSON, random and start-up draws
that follow them, piBO's fading weight in the model-based samplers, resuming, and the sweep file's key."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import tunelab
from tunelab import Bool, Categorical, Float, Int
from tunelab.distributions import distribution_from_json
from tunelab.errors import ConfigError, DistributionConflictError, InvalidDistributionError, SweepConfigError
from tunelab.priors import LogNormal, Normal, UnitGaussian, prior_from_json
from tunelab.samplers import sampler_from_description
from tunelab.samplers._prior import CATEGORICAL_UNIFORM_SHARE as MIX
from tunelab.samplers._prior import STARTUP_PRIOR_SHARE as SHARE
from tunelab.samplers._prior import SpacePrior, prior_agreement, prior_term, startup_trials
from tunelab.samplers.base import SamplingContext
from tunelab.samplers.model_based import EncodedSpace, Observations
from tunelab.space import Conditional, space_from_json, space_to_json
from tunelab.sweep.config import config_from_text

LR = Float(1e-5, 1e-1, log=True, prior=LogNormal(center=3e-4, spread=1.0))


# -- the checks -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("build", "words"), [
    (lambda: Float(0.0, 1.0, prior=Normal(center=2.0, spread=0.1)), ["prior", "center=2.0", "outside [0.0, 1.0]",
                                                                     "move the centre"]),
    (lambda: Float(1e-5, 1e-1, log=True, prior=LogNormal(center=1.0, spread=1.0)), ["center=1.0", "outside"]),
    (lambda: Int(1, 8, prior=Normal(center=0, spread=1.0)), ["center=0.0", "outside [1, 8]"]),
    (lambda: Int(16, 1024, log=True, prior=LogNormal(center=2048, spread=1.0)), ["center=2048.0", "outside"]),
    (lambda: Normal(center=0.5, spread=0.0), ["Normal(spread=...)", "positive", "e.g. spread=1.0"]),
    (lambda: Normal(center=0.5, spread=-1.0), ["spread", "positive"]),
    (lambda: LogNormal(center=1e-3, spread=float("nan")), ["LogNormal(spread=...)", "decades"]),
    (lambda: LogNormal(center=0.0, spread=1.0), ["LogNormal(center=...)", "positive"]),
    (lambda: Normal(center=float("inf"), spread=1.0), ["Normal(center=...)", "finite"]),
    (lambda: Float(1e-5, 1e-1, log=True, prior=Normal(center=1e-3, spread=1.0)),
     ["log-scaled", "LogNormal(center=0.001, spread=...)", "or log=False"]),
    (lambda: Float(0.0, 1.0, prior=LogNormal(center=0.5, spread=1.0)),
     ["LogNormal is for log parameters", "Normal(center=0.5, spread=...)", "or log=True"]),
    (lambda: Int(16, 1024, log=True, prior=Normal(center=64, spread=8.0)), ["log-scaled", "LogNormal"]),
    (lambda: Float(0.0, 1.0, prior=0.5), ["tunelab.priors.Normal(center=..., spread=...)"]),
    (lambda: Categorical(["adam", "sgd"], prior=[1.0]), ["1 probabilities for 2 choices", "one per choice"]),
    (lambda: Categorical(["adam", "sgd"], prior=[0.8, 0.1]), ["sum to 0.9, not 1", "divide each by 0.9"]),
    (lambda: Categorical(["adam", "sgd"], prior=[1.0, 0.0]), ["0.0 is not a positive probability",
                                                              "remove it from the choices"]),
    (lambda: Categorical(["adam", "sgd"], prior="ab"), ["list of probabilities"]),
])
def test_each_bad_prior_is_refused_with_the_argument_and_the_fix(build, words: list[str]) -> None:
    with pytest.raises(InvalidDistributionError) as info:
        build()
    assert isinstance(info.value, ConfigError)
    for w in words:
        assert w in str(info.value), str(info.value)


def test_suggest_names_the_parameter_of_a_bad_prior() -> None:
    study = tunelab.create_study(sampler=tunelab.RandomSampler(), seed=0)
    trial = study.ask()
    with pytest.raises(InvalidDistributionError, match=r"parameter 'lr': prior: center=1\.0 is outside"):
        trial.suggest_float("lr", 1e-5, 1e-1, log=True, prior=LogNormal(center=1.0, spread=1.0))


def test_the_prior_counts_in_equality_and_repr_but_not_in_the_kind() -> None:
    plain = Float(1e-5, 1e-1, log=True)
    assert repr(plain) == "Float(low=1e-05, high=0.1, log=True, step=None)"  # as before priors
    assert "prior=LogNormal(center=0.0003, spread=1.0)" in repr(LR)
    assert LR != plain and LR == Float(1e-5, 1e-1, log=True, prior=LogNormal(3e-4, 1.0))
    assert hash(LR) == hash(Float(1e-5, 1e-1, log=True, prior=LogNormal(3e-4, 1.0)))
    assert LR.compatible_with(plain) and plain.compatible_with(LR)
    assert Categorical(["a", "b"], prior=[0.5, 0.5]).compatible_with(Categorical(["a", "b"]))
    assert plain.unit_prior() is None and Bool().unit_prior() is None and Categorical(["a"]).unit_prior() is None


# -- JSON ---------------------------------------------------------------------------------------------
SPACE = {
    "lr": LR,
    "width": Int(16, 1024, log=True, prior=LogNormal(center=128, spread=0.5)),
    "layers": Int(1, 8, prior=Normal(center=3, spread=1.0)),
    "dropout": Float(0.0, 0.5, step=0.1, prior=Normal(center=0.1, spread=0.1)),
    "optimizer": Categorical(["adam", "sgd"], prior=[0.8, 0.2]),
    "momentum": Conditional(Float(0.0, 0.99, prior=Normal(center=0.9, spread=0.05)), when={"optimizer": "sgd"}),
    "augment": Bool(p=0.7),
}


def test_json_round_trip_of_priors_and_of_a_space() -> None:
    for prior in (Normal(0.1, 0.2), LogNormal(3e-4, 1.0)):
        assert prior_from_json(prior.to_json()) == prior
    assert LR.to_json() == {"type": "float", "low": 1e-5, "high": 0.1, "log": True, "step": None,
                            "prior": {"type": "lognormal", "center": 3e-4, "spread": 1.0}}
    assert "prior" not in Float(0.0, 1.0).to_json()  # a plain distribution's JSON is unchanged
    for entry in SPACE.values():
        dist = entry.distribution if isinstance(entry, Conditional) else entry
        assert distribution_from_json(dist.to_json()) == dist
    assert space_from_json(space_to_json(SPACE)) == SPACE
    with pytest.raises(InvalidDistributionError, match="takes center and spread"):
        prior_from_json({"type": "normal", "centre": 1.0, "spread": 1.0})


def test_priors_survive_a_stored_study_and_load_study(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    study = tunelab.create_study(name="p", storage=url, sampler=tunelab.RandomSampler(), seed=0, space=SPACE)
    study.optimize(lambda t: float(np.log10(t.params["lr"]) ** 2), n_trials=4)
    again = tunelab.load_study("p", url)
    assert again.space == SPACE
    assert again.space["lr"].prior == LogNormal(3e-4, 1.0)  # type: ignore[union-attr]
    assert again.trials[0].distributions["optimizer"].prior == (0.8, 0.2)  # type: ignore[attr-defined]
    # workers rebuild the same draws from the stored space
    again.optimize(lambda t: 0.0, n_trials=2)
    assert len(tunelab.load_study("p", url).trials) == 6


def test_resuming_with_a_changed_prior_is_not_a_conflict(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"

    def objective(center: float):
        def f(trial: tunelab.Trial) -> float:
            lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True, prior=LogNormal(center=center, spread=0.5))
            opt = trial.suggest_categorical("opt", ["adam", "sgd"], prior=[0.9, 0.1] if center < 1e-3 else None)
            return math.log10(lr) ** 2 + (opt == "sgd")
        return f

    study = tunelab.create_study(name="r", storage=url, sampler=tunelab.TPESampler(n_startup_trials=3), seed=0)
    study.optimize(objective(1e-4), n_trials=4)
    again = tunelab.load_study("r", url)
    again.optimize(objective(1e-2), n_trials=4)  # another belief: the same kind of parameter
    trials = tunelab.load_study("r", url).trials
    assert [t.distributions["lr"].prior.center for t in trials] == [1e-4] * 4 + [1e-2] * 4  # type: ignore[attr-defined]
    again.enqueue({"lr": 1e-3, "opt": "adam"})
    again.optimize(objective(1e-3), n_trials=1)


def test_create_study_with_load_if_exists_uses_and_stores_a_declared_space_with_another_prior(tmp_path: Path) -> None:
    # The space given was ignored: the study went on drawing from the stored belief, silently.
    url = f"sqlite:///{tmp_path / 'd.db'}"
    old = {"lr": Float(1e-5, 1e-1, log=True, prior=LogNormal(center=1e-4, spread=0.1))}
    new = {"lr": Float(1e-5, 1e-1, log=True, prior=LogNormal(center=1e-2, spread=0.1))}
    tunelab.create_study(name="d", storage=url, space=old, sampler=tunelab.RandomSampler(), seed=0).optimize(
        lambda t: 0.0, n_trials=2)
    again = tunelab.create_study(name="d", storage=url, space=new, load_if_exists=True)
    assert again.space == new and tunelab.load_study("d", url).space == new  # workers see it too
    again.optimize(lambda t: 0.0, n_trials=3)
    assert [round(math.log10(t.params["lr"])) for t in again.trials] == [-4, -4, -2, -2, -2]
    with pytest.raises(DistributionConflictError, match="parameter 'lr' is Float"):
        tunelab.create_study(name="d", storage=url, space={"lr": Float(1e-5, 1e-1)}, load_if_exists=True)
    assert tunelab.load_study("d", url).space == new


# -- random draws and the start-up design follow the prior ------------------------------------------------
def test_random_search_draws_from_the_prior_reproducibly() -> None:
    lr = Float(1e-8, 1.0, log=True, prior=LogNormal(center=1e-4, spread=0.5))  # 16 sigma wide: no truncation
    sampler = tunelab.RandomSampler()
    draws = [sampler.sample(None, SamplingContext(n, 3), "lr", lr) for n in range(2000)]  # type: ignore[arg-type]
    logs = np.log10(draws)
    assert abs(np.median(logs) - (-4.0)) < 0.05
    assert abs(np.std(logs) - 0.5) < 0.05
    assert draws == [sampler.sample(None, SamplingContext(n, 3), "lr", lr) for n in range(2000)]  # type: ignore[arg-type]
    width = Int(1, 100, prior=Normal(center=40, spread=5.0))
    ints = np.array([width.sample(np.random.default_rng(n)) for n in range(2000)])
    assert abs(np.median(ints) - 40) <= 1 and abs(np.std(ints) - 5.0) < 0.5
    opt = Categorical(["adam", "sgd", "rmsprop"], prior=[0.6, 0.3, 0.1])
    shares = np.bincount([opt.index(opt.sample(np.random.default_rng(n))) for n in range(3000)]) / 3000
    assert np.allclose(shares, [0.6, 0.3, 0.1], atol=0.03)


def test_a_truncated_prior_keeps_draws_in_range() -> None:
    lr = Float(1e-3, 1e-1, log=True, prior=LogNormal(center=1e-3, spread=2.0))  # centred on the edge
    rng = np.random.default_rng(0)
    draws = np.array([lr.sample(rng) for _ in range(2000)])
    assert draws.min() >= 1e-3 and draws.max() <= 1e-1
    assert np.median(draws) < 1e-2  # most of the mass near the edge it believes in


def test_a_log_prior_on_a_range_wider_than_a_float_ratio_draws_around_its_centre() -> None:
    # 1e200 / 1e-200 overflows: the prior's width in decades was inf, its sigma 0 and every draw
    # (random search, or a sampler's start-up) a ZeroDivisionError.
    scale = Float(1e-200, 1e200, log=True, prior=LogNormal(center=1e-3, spread=1.0))
    tiny = Float(5e-324, 1.0, log=True, prior=LogNormal(center=1.0, spread=10.0))
    rng = np.random.default_rng(0)
    logs = np.log10([scale.sample(rng) for _ in range(500)])
    assert abs(np.median(logs) + 3.0) < 0.2 and abs(np.std(logs) - 1.0) < 0.15
    assert all(tiny.contains(tiny.sample(rng)) for _ in range(100))
    study = tunelab.create_study(sampler=tunelab.RandomSampler(), seed=0, space={"scale": scale})
    study.optimize(lambda t: abs(math.log10(t.params["scale"])), n_trials=5)
    assert [t.state.value for t in study.trials] == ["COMPLETE"] * 5


def test_most_of_the_startup_design_follows_the_prior_and_all_of_it_stays_low_discrepancy() -> None:
    space = EncodedSpace({"lr": Float(1e-8, 1.0, log=True, prior=LogNormal(center=1e-4, spread=0.5)),
                          "opt": Categorical(["adam", "sgd"], prior=[0.75, 0.25]),
                          "x": Float(0.0, 1.0)})
    rows = np.array([space.startup_point(n, seed=5) for n in range(256)])
    values = [space.decode(r) for r in rows]
    logs = np.log10([v["lr"] for v in values])
    # a share SHARE of the points through the prior (16 sigma wide: no truncation), the rest uniform over 8 decades
    assert 0.3 <= SHARE <= 0.8 and 0.1 <= MIX <= 0.6
    near = np.abs(logs + 4.0) < 1.5  # the prior's +-3 sigma
    assert abs(near.mean() - (SHARE + (1 - SHARE) * 3.0 / 8.0)) < 0.03  # all (0.997) before: a wrong prior owned it
    # low discrepancy: the empirical CDF of the mixture's CDF values is nearly uniform (Kolmogorov-Smirnov
    # distance far below the ~0.085 that 256 independent draws reach one time in twenty)
    gauss = space.distributions[0].unit_prior()
    assert isinstance(gauss, UnitGaussian)
    from statistics import NormalDist
    q = np.sort([SHARE * NormalDist(gauss.mu, gauss.sigma).cdf(r[0]) + (1 - SHARE) * r[0] for r in rows])
    assert np.max(np.abs(q - (np.arange(256) + 0.5) / 256)) < 0.02
    # the categorical prior is mixed with uniform (0.75 -> 0.75 - MIX / 4), and used for a share SHARE of the points
    adam = sum(v["opt"] == "adam" for v in values)
    assert abs(adam - 256 * (SHARE * ((1 - MIX) * 0.75 + MIX / 2) + (1 - SHARE) * 0.5)) <= 4, adam  # 192 before
    assert np.array_equal(rows, np.array([space.startup_point(n, seed=5) for n in range(256)]))
    plain = EncodedSpace({"x": Float(0.0, 1.0)})  # no prior: the design is the plain Sobol one, unchanged
    assert abs(np.mean([plain.startup_point(n, seed=5)[0] for n in range(64)]) - 0.5) < 0.02


def test_a_misleading_categorical_prior_cannot_own_the_startup() -> None:
    # the benchmark's failure before: 7 of 10 start-up trials on a wrong favourite, which TPE never left
    space = EncodedSpace({"opt": Categorical(["adam", "sgd", "rmsprop"], prior=[0.05, 0.05, 0.9]),
                          "lr": Float(1e-6, 1.0, log=True, prior=LogNormal(center=1e-5, spread=1.0))})
    expected = 10 * (SHARE * ((1 - MIX) * 0.9 + MIX / 3) + (1 - SHARE) / 3)  # 5.3 here; 9 before
    for seed in range(5):
        picks = [space.decode(space.startup_point(n, seed=seed))["opt"] for n in range(10)]
        assert picks.count("rmsprop") <= min(expected + 1.5, 7), picks
        assert picks.count("adam") >= 1, picks


def test_bool_p_is_its_prior_in_the_startup_design() -> None:
    space = EncodedSpace({"augment": Bool(p=0.9)})
    share = np.mean([space.decode(space.startup_point(n, seed=1))["augment"] for n in range(200)])
    assert abs(share - (SHARE * ((1 - MIX) * 0.9 + MIX / 2) + (1 - SHARE) * 0.5)) < 0.03  # 0.9 before


# -- piBO ---------------------------------------------------------------------------------------------
def test_the_prior_term_fades_as_beta_over_n_and_ignores_parameters_without_a_prior() -> None:
    space = EncodedSpace({"x": Float(0.0, 1.0, prior=Normal(center=0.2, spread=0.1)), "y": Float(0.0, 1.0)})
    assert prior_term(space.distributions, space.cat_sizes, 10.0, 5).weight == 2.0  # type: ignore[union-attr]
    assert prior_term(space.distributions, space.cat_sizes, 10.0, 100).weight == 0.1  # type: ignore[union-attr]
    # TPE's: piBO's beta / n through the start-up, then beta * 10 / n**2
    fast = {n: prior_term(space.distributions, space.cat_sizes, 10.0, n, fade_after=10).weight  # type: ignore[union-attr]
            for n in (0, 5, 10, 20, 50, 100)}
    assert fast == {0: 10.0, 5: 2.0, 10: 1.0, 20: 0.25, 50: pytest.approx(0.04), 100: pytest.approx(0.01)}
    assert prior_term(space.distributions, space.cat_sizes, 0.0, 5) is None
    none = EncodedSpace({"y": Float(0.0, 1.0)})
    assert prior_term(none.distributions, none.cat_sizes, 10.0, 5) is None
    prior = SpacePrior(space.distributions)
    X = np.array([[0.2, 0.0], [0.2, 0.9], [0.5, 0.3], [np.nan, 0.3]])
    d = prior.log_density(X)
    assert d[0] == d[1] > d[2] and d[3] == 0.0  # y adds nothing; an absent x adds nothing
    term = prior_term(space.distributions, space.cat_sizes, 10.0, 10)
    assert term is not None
    h = 1e-6
    numeric = (term(np.array([[0.3 + h, 0.5]])) - term(np.array([[0.3 - h, 0.5]]))) / (2 * h)
    assert term.gradient(np.array([[0.3, 0.5]]))[0] == pytest.approx([numeric[0], 0.0], rel=1e-5)


def _obs(xs: np.ndarray, f) -> Observations:
    X = xs.reshape(-1, 1)
    return Observations(X=X, y=np.array([f(x) for x in xs]), imputed=np.zeros(len(xs), dtype=bool),
                        numbers=np.arange(len(xs)), pending=np.empty((0, 1)))


@pytest.mark.parametrize("make", [
    lambda w: tunelab.GPSampler(n_startup_trials=5, prior_weight=w, n_candidates=256),
    lambda w: tunelab.TPESampler(n_startup_trials=5, prior_weight=w),
], ids=["gp", "tpe"])
def test_a_wrong_prior_pulls_early_proposals_and_is_ignored_with_much_evidence(make) -> None:
    space = EncodedSpace({"x": Float(0.0, 1.0, prior=Normal(center=0.9, spread=0.1))})

    def f(x: float) -> float:
        return (x - 0.2) ** 2

    def proposals(weight: float, n: int) -> np.ndarray:
        xs = np.random.default_rng(0).random(n)
        return np.array([make(weight).propose(space, _obs(xs, f), np.random.default_rng(s))[0] for s in range(6)])

    early_with, early_without = proposals(10.0, 6), proposals(0.0, 6)
    assert np.median(early_with) > np.median(early_without) + 0.1  # pulled towards the belief at 0.9
    late = proposals(10.0, 300 if isinstance(make(1.0), tunelab.TPESampler) else 60)
    assert np.median(np.abs(late - 0.2)) < 0.1  # the evidence wins: near the optimum at 0.2
    # a pure function of the observations: the same inputs, the same proposal (deterministic studies)
    xs = np.random.default_rng(1).random(12)
    one = make(10.0).propose(space, _obs(xs, f), np.random.default_rng(3))
    assert np.array_equal(one, make(10.0).propose(space, _obs(xs, f), np.random.default_rng(3)))


def test_tpe_lets_a_wrong_prior_go_once_30_trials_disagree() -> None:
    # TPE's prior weight falls as beta * 10 / n**2 after 10 trials (0.11 at 30): with beta / n (0.33 at 30) a
    # belief at 0.9 still chose its proposals there, a flat TPE score being no match for it
    space = EncodedSpace({"x": Float(0.0, 1.0, prior=Normal(center=0.9, spread=0.1))})

    def f(x: float) -> float:
        return (x - 0.2) ** 2

    sets = [_obs(np.random.default_rng(100 + r).random(30), f) for r in range(3)]
    proposals = [tunelab.TPESampler(n_startup_trials=5).propose(space, obs, np.random.default_rng(s))[0]
                 for obs in sets for s in range(12)]
    assert np.median(np.abs(np.array(proposals) - 0.2)) < 0.15  # 0.6 with beta / n: next to the belief


def test_a_deterministic_study_with_priors_replays() -> None:
    space = {"lr": LR, "opt": Categorical(["adam", "sgd"], prior=[0.7, 0.3])}

    def objective(trial: tunelab.Trial) -> float:
        return (math.log10(trial.params["lr"]) + 2.0) ** 2 + (trial.params["opt"] == "sgd")

    def params() -> list[dict[str, object]]:
        study = tunelab.create_study(sampler=tunelab.GPSampler(n_startup_trials=4, n_candidates=256), seed=2,
                                     space=space, deterministic=2)
        study.optimize(objective, n_trials=9)
        return [t.params for t in study.trials]

    assert params() == params()


def test_prior_weight_is_checked_described_and_rebuilt() -> None:
    for cls in (tunelab.GPSampler, tunelab.TPESampler, tunelab.AutoSampler):
        for bad in (-1.0, float("nan"), "10", True):
            with pytest.raises(ConfigError, match=r"prior_weight=\.\.\.\) must be a number >= 0"):
                cls(prior_weight=bad)
        sampler = cls(prior_weight=4.0)
        assert sampler.describe()["prior_weight"] == 4.0
        assert sampler_from_description(sampler.describe()).prior_weight == 4.0  # type: ignore[attr-defined]
    assert tunelab.AutoSampler(prior_weight=3.0)._gp.prior_weight == 3.0


def test_a_good_prior_finds_a_narrow_optimum_sooner() -> None:
    """A fast check of the benchmark's claim (benchmarks/priors.py measures it properly)."""
    def objective(trial: tunelab.Trial) -> float:
        return (math.log10(trial.params["lr"]) - math.log10(2e-4)) ** 2

    def best_after(prior: LogNormal | None, seed: int) -> float:
        space = {"lr": Float(1e-7, 1.0, log=True, prior=prior)}
        study = tunelab.create_study(sampler=tunelab.TPESampler(n_startup_trials=5), seed=seed, space=space)
        # 10 trials (was 8): TPE's belief kernel, weighted by how well the prior ranks the trials, draws the
        # first model proposals from the belief rather than around the one best point (1.9x at 8 trials, 2.4x
        # at 10; benchmarks/priors.py: 2.8-3.1x at the 50-trial regret on two problems of three)
        study.optimize(objective, n_trials=10)
        return study.best_value

    # 20 seeds (was 5): the median of 5 moved between 1.7x and 2.4x with small changes to TPE's belief kernel;
    # over 20 seeds the gain at 10 trials is 4.8x (6.5x before the kernel was also given to g)
    good = np.median([best_after(LogNormal(center=3e-4, spread=0.5), s) for s in range(20)])
    none = np.median([best_after(None, s) for s in range(20)])
    assert good < none / 2


_OPTIMIZERS = {"adam": (0.0, -3.3), "sgd": (0.15, -1.3), "rmsprop": (0.3, -3.8)}  # floor, best log10(lr)


def _optimizer_lr(trial: tunelab.Trial) -> float:
    floor, best = _OPTIMIZERS[trial.params["optimizer"]]
    return floor + 0.5 * (math.log10(trial.params["lr"]) - best) ** 2


def test_tpe_honours_a_categorical_prior_next_to_a_log_float_once_the_trials_bear_it_out() -> None:
    # TPE's belief kernel carries the categorical prior too (it was uniform on categorical coordinates, so a
    # fifth of the model's first proposals went to optimizers the belief and the trials both ruled out).
    # A misleading belief earns no agreement, so no kernel: benchmarks/priors.py checks that side.
    believed = "adam"
    space = {"optimizer": Categorical(list(_OPTIMIZERS), prior=[0.6, 0.2, 0.2]),
             "lr": Float(1e-6, 1.0, log=True, prior=LogNormal(center=1e-3, spread=1.0))}  # 0.3 decades off
    on_belief, near_best = [], []
    for seed in range(6):
        study = tunelab.create_study(sampler=tunelab.TPESampler(), seed=seed, space=space)
        study.optimize(_optimizer_lr, n_trials=20)
        early = sorted(study.trials, key=lambda t: t.number)[10:]  # the model's first 10 proposals
        on_belief.append(np.mean([t.params["optimizer"] == believed for t in early]))
        near_best.append(np.mean([t.params["optimizer"] == "adam"
                                  and abs(math.log10(t.params["lr"]) - _OPTIMIZERS["adam"][1]) < 0.5 for t in early]))
    # before: 0.8 of them on adam (at most 0.9 in any seed), about half on adam near its best learning rate
    assert np.mean(on_belief) > 0.95, on_belief
    assert np.mean(near_best) > 0.65, near_best


# -- the sweep file ------------------------------------------------------------------------------------
SWEEP = """\
command: python train.py --lr {lr} --width {width} --optimizer {optimizer}
parameters:
  lr:
    type: float
    low: 1.0e-5
    high: 1.0e-1
    log: true
    prior: {type: lognormal, center: 3.0e-4, spread: 1.0}
  width: {type: int, low: 1, high: 9, prior: {type: normal, center: 4, spread: 2}}
  optimizer: {type: categorical, choices: [adam, sgd], prior: [0.8, 0.2]}
metric: val_loss
"""


def test_the_sweep_file_takes_a_prior_key(tmp_path: Path) -> None:
    c = config_from_text(SWEEP, tmp_path)
    assert c.space["lr"] == LR
    assert c.space["width"] == Int(1, 9, prior=Normal(center=4, spread=2))
    assert c.space["optimizer"] == Categorical(["adam", "sgd"], prior=[0.8, 0.2])


@pytest.mark.parametrize(("replace", "by", "key", "line", "fix"), [
    ("center: 3.0e-4", "center: 3.0", "parameters.lr.prior.center", 8, "outside [1e-05, 0.1]"),
    ("spread: 1.0}", "spread: 0}", "parameters.lr.prior.spread", 8, "e.g. spread: 1.0"),
    ("spread: 1.0}", "spread: -2}", "parameters.lr.prior.spread", 8, "positive number (in decades)"),
    ("type: lognormal", "type: normal", "parameters.lr.prior.type", 8, "{type: lognormal, center: ..., spread: ...}"),
    ("prior: {type: normal, center: 4", "prior: {type: lognormal, center: 4", "parameters.width.prior.type", 9,
     "{type: normal"),
    ("type: lognormal", "type: gaussian", "parameters.lr.prior.type", 8, "'normal' or 'lognormal'"),
    ("center: 3.0e-4", "centre: 3.0e-4", "parameters.lr.prior.centre", 8, "did you mean 'center'"),
    ("center: 4, spread: 2", "center: 4", "parameters.width.prior.spread", 9, "add spread:"),
    ("prior: [0.8, 0.2]", "prior: [0.8, 0.3]", "parameters.optimizer.prior", 10, "not 1"),
    ("prior: [0.8, 0.2]", "prior: [1.0]", "parameters.optimizer.prior", 10, "1 probabilities for 2 choices"),
])
def test_each_sweep_prior_mistake_names_its_key_and_line(tmp_path: Path, replace: str, by: str, key: str, line: int,
                                                         fix: str) -> None:
    assert replace in SWEEP
    with pytest.raises(SweepConfigError) as info:
        config_from_text(SWEEP.replace(replace, by, 1), tmp_path)
    e = info.value
    assert (e.key, e.line) == (key, line), str(e)
    assert f"sweep.yaml:{line}: {key}" in str(e) and fix in str(e)


def test_univariate_tpe_draws_most_of_a_parameter_it_cannot_model_yet_from_its_prior() -> None:
    # lr is active in 2 trials only, too few for univariate TPE to model it: it is drawn, a share SHARE of the
    # time from the prior (centre 1e-2, 0.3 decades), else uniformly over the 8 decades
    space = EncodedSpace({"x": Float(0.0, 1.0),
                          "lr": Float(1e-8, 1.0, log=True, prior=LogNormal(center=1e-2, spread=0.3))})
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.random(20), np.where(np.arange(20) < 2, 0.75, np.nan)])
    obs = Observations(X=X, y=X[:, 0].copy(), imputed=np.zeros(20, dtype=bool), numbers=np.arange(20),
                       pending=np.empty((0, 2)))
    sampler = tunelab.TPESampler(n_startup_trials=5, multivariate=False)
    rows = np.array([sampler.propose(space, obs, np.random.default_rng(s)) for s in range(400)])
    logs = np.log10([space.decode(r)["lr"] for r in rows])
    near = np.abs(logs + 2.0) < 0.9  # the prior's +-3 sigma
    assert abs(near.mean() - (SHARE + (1 - SHARE) * 1.8 / 8.0)) < 0.07, near.mean()  # all of them before
    assert np.median(rows[:, 0]) < 0.3  # x is modelled: near its optimum at 0


def test_pibo_counts_a_categorical_prior_mixed_with_uniform() -> None:
    space = EncodedSpace({"opt": Categorical(["adam", "sgd", "rmsprop"], prior=[0.15, 0.15, 0.7])})
    d = SpacePrior(space.distributions).log_density(np.array([[0.0], [1.0], [2.0]]))
    assert d[0] == d[1]
    # with MIX 0.5, 0.7 against 0.15 counts as 0.52 against 0.24: a wrong favourite's pull is log 2.1, not log 4.7
    assert d[2] - d[0] == pytest.approx(math.log(((1 - MIX) * 0.7 + MIX / 3) / ((1 - MIX) * 0.15 + MIX / 3)))
    assert d[2] - d[0] < math.log(0.7 / 0.15) - 0.3


# -- a belief the evidence bears out keeps its weight (issue 21 follow-up) --------------------------------
def test_prior_agreement_is_the_rank_correlation_of_belief_and_loss_clipped_at_zero() -> None:
    prior = SpacePrior([Float(0.0, 1.0, prior=Normal(center=0.3, spread=0.1)), Float(0.0, 1.0)])
    X = np.array([[0.3, 0.9], [0.4, 0.1], [0.6, 0.5], [0.9, 0.2], [0.05, 0.7]])
    assert prior_agreement(prior, X, (X[:, 0] - 0.3) ** 2) == pytest.approx(1.0)  # the belief ranks them right
    assert prior_agreement(prior, X, -((X[:, 0] - 0.3) ** 2)) == 0.0  # the wrong way round: no credit
    assert prior_agreement(prior, X[:2], np.array([0.0, 1.0])) == 0.0  # too few trials to tell
    assert 0.0 < prior_agreement(prior, X, (X[:, 0] - 0.35) ** 2 + 0.1 * X[:, 1]) < 1.0


def test_the_prior_term_gains_beta_times_share_times_agreement() -> None:
    space = EncodedSpace({"x": Float(0.0, 1.0, prior=Normal(center=0.2, spread=0.1))})
    base = prior_term(space.distributions, space.cat_sizes, 10.0, 40)
    more = prior_term(space.distributions, space.cat_sizes, 10.0, 40, agreement=0.5, agreement_share=1.0)
    assert base is not None and more is not None
    assert more.weight == pytest.approx(base.weight + 5.0)
    negative = prior_term(space.distributions, space.cat_sizes, 10.0, 40, agreement=-0.5, agreement_share=1.0)
    assert negative is not None and negative.weight == base.weight
    assert prior_term(space.distributions, space.cat_sizes, 0.0, 40, agreement=1.0, agreement_share=1.0) is None


@pytest.mark.parametrize("make", [
    lambda: tunelab.GPSampler(n_startup_trials=5, n_candidates=256),
    lambda: tunelab.TPESampler(n_startup_trials=5),
], ids=["gp", "tpe"])
def test_a_prior_the_trials_bear_out_keeps_late_proposals_inside_it(make, monkeypatch: pytest.MonkeyPatch) -> None:
    # 40 trials, the best near the belief's centre and the worst far from it: piBO alone (weight 10/40 for
    # the GP, 10*10/1600 for TPE) lets the model look far away; with the agreement the belief keeps it near
    space = EncodedSpace({"x": Float(0.0, 1.0, prior=Normal(center=0.3, spread=0.1)),
                          "y": Float(0.0, 1.0, prior=Normal(center=0.5, spread=0.15))})

    def f(row: np.ndarray) -> float:
        return float((row[0] - 0.32) ** 2 + (row[1] - 0.5) ** 2)

    rng = np.random.default_rng(0)
    # the trials so far cover the belief's half of the space only: the other half is where a model explores
    X = np.vstack([rng.random((12, 2)) * [0.5, 1.0], np.column_stack([rng.normal(0.32, 0.05, 8),
                                                                     rng.normal(0.5, 0.05, 8)])])
    X = np.clip(X, 0.0, 1.0)
    obs = Observations(X=X, y=np.array([f(r) for r in X]), imputed=np.zeros(len(X), dtype=bool),
                       numbers=np.arange(len(X)), pending=np.empty((0, 2)))
    assert prior_agreement(SpacePrior(space.distributions), obs.X, obs.y) > 0.5

    def distance() -> float:
        rows = np.array([make().propose(space, obs, np.random.default_rng(s)) for s in range(8)])
        return float(np.mean(np.hypot(rows[:, 0] - 0.32, rows[:, 1] - 0.5)))

    with_agreement = distance()
    import tunelab.samplers.gp as gp_module
    import tunelab.samplers.tpe as tpe_module

    for module, name in ((gp_module, "GP_AGREEMENT_SHARE"), (tpe_module, "TPE_AGREEMENT_SHARE"),
                         (tpe_module, "TPE_PRIOR_KERNEL_SHARE")):
        monkeypatch.setattr(module, name, 0.0)  # piBO's fading weight alone
    without = distance()
    assert with_agreement < without, (with_agreement, without)


def test_a_misleading_prior_earns_no_agreement_so_the_evidence_wins() -> None:
    # the belief at 0.9, the losses lowest at 0.2: the agreement is 0, TPE's late proposals go to the optimum
    space = EncodedSpace({"x": Float(0.0, 1.0, prior=Normal(center=0.9, spread=0.1))})
    xs = np.random.default_rng(5).random(30)
    obs = _obs(xs, lambda x: (x - 0.2) ** 2)
    assert prior_agreement(SpacePrior(space.distributions), obs.X, obs.y) == 0.0
    for make in (lambda: tunelab.GPSampler(n_startup_trials=5, n_candidates=256),
                 lambda: tunelab.TPESampler(n_startup_trials=5)):
        late = np.array([make().propose(space, obs, np.random.default_rng(s))[0] for s in range(8)])
        assert np.median(np.abs(late - 0.2)) < 0.15


def test_with_a_prior_on_every_parameter_the_gp_models_after_half_the_startup() -> None:
    believed = {"x": Float(0.0, 1.0, prior=Normal(center=0.3, spread=0.1)),
                "y": Float(0.0, 1.0, prior=Normal(center=0.6, spread=0.1))}
    partly = {**believed, "z": Float(0.0, 1.0)}
    assert startup_trials(10, list(believed.values()), 0.5) == 5
    assert startup_trials(10, list(partly.values()), 0.5) == 10  # a parameter without a belief: all of it
    assert startup_trials(3, list(believed.values()), 0.5) == 2
    assert startup_trials(10, list(believed.values()), 1.0) == 10
    assert tunelab.GPSampler.startup_with_priors == 0.5 == tunelab.AutoSampler.startup_with_priors
    assert tunelab.TPESampler.startup_with_priors == 1.0

    def first_model_trial(space: dict[str, Float], cls: type[tunelab.GPSampler] | type[tunelab.TPESampler]) -> int:
        proposed: list[int] = []

        class Recording(cls):  # type: ignore[misc, valid-type]
            def propose(self, space, observations, rng):  # type: ignore[no-untyped-def]
                proposed.append(observations.n_measured)
                return super().propose(space, observations, rng)

        study = tunelab.create_study(sampler=Recording(), seed=0, space=space)
        study.optimize(lambda t: sum((v - 0.4) ** 2 for v in t.params.values()), n_trials=12)
        return min(proposed)

    assert first_model_trial(believed, tunelab.GPSampler) == 5
    assert first_model_trial(partly, tunelab.GPSampler) == 10
    assert first_model_trial(believed, tunelab.TPESampler) == 10


def test_tpe_good_density_gains_the_belief_as_a_kernel_weighted_by_agreement() -> None:
    from tunelab.samplers.tpe import ParzenEstimator

    space = EncodedSpace({"x": Float(0.0, 1.0, prior=Normal(center=0.3, spread=0.05)),
                          "c": Categorical(["a", "b"])})
    X = np.array([[0.8, 0.0], [0.9, 1.0]])
    min_sigma = np.full(2, 1e-3)
    belief = SpacePrior(space.distributions)
    plain = ParzenEstimator(X, space.cat_sizes, min_sigma)
    kernel = ParzenEstimator(X, space.cat_sizes, min_sigma, belief=belief, belief_weight=3.0)
    off = ParzenEstimator(X, space.cat_sizes, min_sigma, belief=belief, belief_weight=0.0)
    at_centre = np.array([[0.3, 0.0]])
    assert kernel.log_pdf(at_centre)[0] > plain.log_pdf(at_centre)[0] + 1.0
    assert off.log_pdf(at_centre)[0] == pytest.approx(plain.log_pdf(at_centre)[0])
    draws = kernel.sample(np.random.default_rng(0), 4000)
    near = np.mean(np.abs(draws[:, 0] - 0.3) < 0.1)
    assert near > 0.4  # the belief kernel weighs 3 of 1 + 1 + 1 + 3
    assert np.mean(np.abs(plain.sample(np.random.default_rng(0), 4000)[:, 0] - 0.3) < 0.1) < 0.25
    assert abs(np.mean(draws[:, 1] == 1.0) - 0.5) < 0.05  # the belief kernel is uniform over the choices


@pytest.mark.parametrize(("dist", "wide"), [
    (Float(0.0, 1e10, prior=Normal(center=0.5, spread=1e-320)), False),  # its unit spread underflows to 0
    (Float(0.0, 1.0, prior=Normal(center=0.5, spread=1e300)), True),      # cdf(-mu/sigma) == cdf((1-mu)/sigma)
])
def test_a_prior_far_narrower_or_wider_than_its_range_draws_as_it_says(dist: Float, wide: bool) -> None:
    """A legal spread is never a ZeroDivisionError at the first draw, and a belief wider than the range is
    uniform on it, not a point at its centre (every draw was 0.5)."""
    draws = [dist.sample(np.random.default_rng(i)) for i in range(200)]
    if wide:
        assert min(draws) < 0.1 and max(draws) > 0.9
    else:
        assert all(d == pytest.approx(0.5, abs=1e-3) for d in draws)
    study = tunelab.create_study(sampler=tunelab.TPESampler(n_startup_trials=2), seed=0, space={"x": dist})
    with np.errstate(over="raise", divide="raise"):  # nor an overflow in the model's log density
        study.optimize(lambda t: abs(t.params["x"] - 0.3), n_trials=4)
    assert all(t.state == tunelab.TrialState.COMPLETE for t in study.trials)
