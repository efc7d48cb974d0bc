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
