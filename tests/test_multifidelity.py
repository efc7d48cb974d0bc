"""Model-based samplers under a pruner fit on the highest rung with enough points (BOHB's rule)."""

from __future__ import annotations

import numpy as np
import pytest

import tunelab
from objectives import staircase
from tunelab import Float, SuccessiveHalvingPruner, TrialState
from tunelab.history import History
from tunelab.samplers.model_based import FIDELITY_KEY, EncodedSpace, collect_rung_observations


def asha(metric: str | None = "val_loss") -> SuccessiveHalvingPruner:
    return SuccessiveHalvingPruner(min_resource=1, reduction_factor=3, max_resource=27, metric=metric)


def test_rung_observations_take_the_highest_step_with_enough_points() -> None:
    study = tunelab.create_study(sampler=tunelab.RandomSampler(), seed=0, pruner=asha())
    qualities = [5.0, 3.0, 8.0, 1.0, 7.0, 2.0, 9.0, 4.0, 6.0]
    for q in qualities:
        study.enqueue({"q": q})
    study.optimize(staircase, n_trials=len(qualities))
    history = History(study.storage, study.storage.get_study(study.name), None)
    space = EncodedSpace({"q": Float(0.0, 10.0)})
    reached = {s: sum(1 for p in study.storage.get_metric_at(study._study_id, "val_loss", [s])) for s in (1, 3, 9, 27)}
    obs, step = collect_rung_observations(history, space, "val_loss", "minimize", min_points=3)  # type: ignore[misc]
    assert step == max(s for s, n in reached.items() if n >= 3)
    measured = obs.y[~obs.imputed]
    assert len(measured) == reached[step]
    qs = np.array([t.params["q"] for t in study.trials])[obs.numbers]
    assert np.allclose(measured, (qs + 1.0 / step)[~obs.imputed])  # the metric at that step
    assert np.all(obs.y[obs.imputed] == measured.max())  # stopped earlier: as bad as the worst there
    assert collect_rung_observations(history, space, "val_loss", "minimize", min_points=100) is None


@pytest.mark.parametrize("make", [tunelab.TPESampler, tunelab.GPSampler])
def test_model_starts_from_rungs_before_enough_trials_complete(make: type[tunelab.Sampler]) -> None:
    sampler = make(n_startup_trials=5)  # type: ignore[call-arg]
    study = tunelab.create_study(sampler=sampler, seed=0, pruner=asha())
    study.optimize(staircase, n_trials=30)
    trials = study.trials
    completed = sum(t.state == TrialState.COMPLETE for t in trials)
    with_rungs = [t for t in trials if FIDELITY_KEY in t.system_attrs]
    assert with_rungs, "the model never used the rungs"
    first = with_rungs[0]
    done_before = sum(t.state == TrialState.COMPLETE for t in trials[: first.number])
    assert done_before < 5  # started before n_startup_trials had completed
    assert first.system_attrs[FIDELITY_KEY]["metric"] == "val_loss"
    assert first.system_attrs[FIDELITY_KEY]["step"] in (1, 3, 9)
    # And it learns: late trials are better than the quasi-random first ones.
    early = np.median([t.params["q"] for t in trials[:5]])
    late = np.median([t.params["q"] for t in trials[-10:]])
    assert late < early and completed >= 1


def test_an_unnamed_metric_is_learned_from_the_pruners_decisions() -> None:
    study = tunelab.create_study(sampler=tunelab.TPESampler(n_startup_trials=5), seed=0, pruner=asha(metric=None))
    study.optimize(staircase, n_trials=15)
    used = [t.system_attrs[FIDELITY_KEY] for t in study.trials if FIDELITY_KEY in t.system_attrs]
    assert used and all(u["metric"] == "val_loss" for u in used)
