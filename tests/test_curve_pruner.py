"""The learning-curve model (tunelab.pruners.curves) and LearningCurvePruner on synthetic curves with known ends."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import tunelab
from tunelab import Float, LearningCurvePruner, MedianPruner, SuccessiveHalvingPruner, TrialState
from tunelab.errors import ConfigError
from tunelab.history import History
from tunelab.pruners import pruner_from_description
from tunelab.pruners.curves import FAMILIES, FAMILY_NAMES, CurveModel, fit_curve
from tunelab.pruners.extrapolation import _fit, refit_schedule
from tunelab.records import predicted_final
from tunelab.samplers.model_based import EncodedSpace, Observations, collect_predicted_observations

R = 27


# -- the curve model -------------------------------------------------------------------------------
OWN_CURVES = {  # each family's own curve (goodness, rising), as a loss: 1 - goodness
    "pow3": lambda x: 0.9 - 0.8 * x**-0.7,
    "log_power": lambda x: 0.1 + 0.8 / (1 + (x / 4.0) ** -1.3),
    "exp3": lambda x: 0.9 - np.exp(-0.15 * x - 0.3),
    "janoschek": lambda x: 0.9 - 0.8 * np.exp(-0.2 * x**0.9),
    "mmf": lambda x: 0.9 - 0.8 / (1 + (0.25 * x) ** 1.4),
    "weibull": lambda x: 0.9 - 0.8 * np.exp(-((0.12 * x) ** 0.8)),
}


def test_the_ensemble_holds_the_six_families_of_domhan_et_al() -> None:
    assert set(FAMILY_NAMES) == set(OWN_CURVES)
    assert all(len(f.lower) == len(f.upper) == f.n_params for f in FAMILIES)


@pytest.mark.parametrize("family", sorted(OWN_CURVES))
def test_each_family_fits_its_own_noiseless_curve_closely(family: str) -> None:
    x = np.arange(1, 13, dtype=float)
    good = OWN_CURVES[family]
    loss = 1.0 - good(x)
    model = fit_curve(x, loss, direction="minimize", horizon=R, families=[family])
    assert model.ok
    fitted = np.asarray([model.predict(s).mean for s in x])
    assert np.max(np.abs(fitted - loss)) < 0.01 * np.ptp(loss)
    end = model.predict(R)
    truth = 1.0 - float(good(np.asarray([float(R)]))[0])
    assert end.mean == pytest.approx(truth, abs=0.02 * np.ptp(loss))
    assert end.low <= truth <= end.high
    # maximising the same curve as an accuracy gives the mirror image
    acc = fit_curve(x, good(x), direction="maximize", horizon=R, families=[family]).predict(R)
    assert acc.mean == pytest.approx(1.0 - end.mean, abs=1e-6)


def _synthetic(rng: np.random.Generator, kind: str) -> tuple[np.ndarray, np.ndarray, int, int]:
    """A noisy loss curve of ``kind`` over ``horizon`` epochs and how many of its points are seen."""
    horizon = int(rng.integers(20, 60))
    x = np.arange(1, horizon + 1, dtype=float)
    low = rng.uniform(0.05, 0.5)
    top = low + rng.uniform(0.5, 2.0)
    if kind == "pow3":
        f = low + (top - low) * x ** -rng.uniform(0.3, 1.5)
    elif kind == "exp":
        f = low + (top - low) * np.exp(-x / rng.uniform(2, horizon / 2))
    elif kind == "mmf":
        f = low + (top - low) / (1 + (rng.uniform(0.05, 0.5) * x) ** rng.uniform(0.7, 2.5))
    elif kind == "weibull":
        f = low + (top - low) * np.exp(-((rng.uniform(0.03, 0.3) * x) ** rng.uniform(0.5, 2.0)))
    elif kind == "inverse_log":  # not a family of the ensemble
        f = low + (top - low) / np.log(x + np.e - 1) ** rng.uniform(0.8, 2)
    else:  # "two_phase", not in the ensemble either: a fast and a slow exponential
        f = low + (top - low) * (0.6 * np.exp(-x / rng.uniform(1, 3)) + 0.4 * np.exp(-x / rng.uniform(8, 30)))
    if rng.random() < 0.3:
        y = f * np.exp(rng.normal(0, rng.uniform(0.01, 0.08), horizon))
    else:
        y = f + rng.normal(0, rng.uniform(0.002, 0.05) * (top - low), horizon)
    seen = int(rng.integers(5, max(6, horizon // 2)))
    return x, y, seen, horizon


def test_the_90_percent_interval_covers_the_final_value_at_least_at_its_nominal_rate() -> None:
    """120 noisy curves (4 families of the ensemble, 2 shapes outside it), seen up to 5 to half their
    epochs; the truth is the value observed at the last epoch. Measured: about 0.92 (0.90 on the
    shapes outside the ensemble)."""
    def cold_fit(x: np.ndarray, y: np.ndarray, seen: int, horizon: int) -> CurveModel:
        return fit_curve(x[:seen], y[:seen], direction="minimize", horizon=horizon)

    _assert_calibrated(cold_fit, "cold fit")


def _assert_calibrated(model_of: Callable[[np.ndarray, np.ndarray, int, int], CurveModel | None], label: str) -> None:
    """The 90% interval of ``model_of(x, y, seen, horizon)`` at the horizon holds the last value of
    120 synthetic curves (4 families of the ensemble, 2 shapes outside it) at least 85% of the time
    overall and 70% per kind."""
    rng = np.random.default_rng(2015)
    kinds = ("pow3", "exp", "mmf", "weibull", "inverse_log", "two_phase")
    hits: dict[str, list[bool]] = {k: [] for k in kinds}
    for i in range(120):
        kind = kinds[i % len(kinds)]
        x, y, seen, horizon = _synthetic(rng, kind)
        model = model_of(x, y, seen, horizon)
        assert model is not None
        p = model.predict(horizon, 0.9)
        hits[kind].append(p.low <= y[-1] <= p.high)
    every = [h for v in hits.values() for h in v]
    coverage = float(np.mean(every))
    print(f"coverage of the 90% interval ({label}): {coverage:.3f} on {len(every)} curves; "
          + ", ".join(f"{k} {np.mean(v):.2f}" for k, v in hits.items()))
    assert coverage >= 0.85
    assert min(np.mean(v) for v in hits.values()) >= 0.7


def test_the_pruners_cheaper_refits_keep_the_interval_calibrated() -> None:
    """The same 120 curves through the pruner's model: fitted on the last point of the refit
    schedule reached, each refit started from the previous one."""
    def through_the_pruner(x: np.ndarray, y: np.ndarray, seen: int, horizon: int) -> CurveModel | None:
        pruner = LearningCurvePruner(max_resource=horizon, min_points=5)
        model = None
        for n in range(5, seen + 1):  # judged at every point, as in a study: the warm starts chain
            model = pruner.model({int(s): float(v) for s, v in zip(x[:n], y[:n], strict=True)}, "minimize")
        return model

    _assert_calibrated(through_the_pruner, "refit schedule")


def test_a_long_curve_is_refitted_a_logarithmic_number_of_times() -> None:
    assert refit_schedule(5, 1.25, 27) == [5, 6, 8, 10, 12, 15, 19, 24]
    assert refit_schedule(5, 1.0, 9) == [5, 6, 7, 8, 9]
    x = np.arange(1, 201, dtype=float)
    y = 0.2 + 1.5 * x**-0.6
    pruner = LearningCurvePruner(max_resource=400, min_points=5)
    _fit.cache_clear()
    for n in range(1, 201):
        pruner.model({int(s): float(v) for s, v in zip(x[:n], y[:n], strict=True)}, "minimize")
    fits = _fit.cache_info().misses
    assert fits == len(refit_schedule(5, 1.25, 200)) <= 20  # against 196 fits at every point
    every = LearningCurvePruner(max_resource=400, min_points=5, refit_growth=1)
    _fit.cache_clear()
    for n in range(1, 41):
        every.model({int(s): float(v) for s, v in zip(x[:n], y[:n], strict=True)}, "minimize")
    assert _fit.cache_info().misses == 36


def test_with_sparse_refits_it_still_stops_a_hopeless_trial_and_keeps_the_slow_starter() -> None:
    lc = run(LearningCurvePruner(max_resource=R, metric="val_loss", min_points=5, refit_growth=2.0),
             [FAST, WORSE, SLOW])
    assert [t.state for t in lc] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE]
    assert lc[1].system_attrs["pruned"]["step"] == 5
    # the slow starter's last decision reused the fit of its first 20 points (schedule 5, 10, 20)
    evidence = lc[2].system_attrs["prediction"]["evidence"]
    assert evidence["step"] == R - 1 and evidence["fitted_to"] == 20
    assert evidence["low"] <= lc[2].value <= evidence["high"]


def test_a_curve_too_short_or_flat_is_handled() -> None:
    assert not fit_curve([1, 2, 3], [1.0, 0.9, 0.8]).ok
    with pytest.raises(ValueError):
        fit_curve([1, 2, 3], [1.0, 0.9, 0.8]).predict(10)
    flat = fit_curve(range(1, 9), [0.5] * 8, horizon=27).predict(27)
    assert flat.low <= 0.5 <= flat.high and flat.high - flat.low < 0.01
    with pytest.raises(ConfigError, match="direction"):
        fit_curve([1, 2, 3, 4], [1, 2, 3, 4], direction="up")
    with pytest.raises(ConfigError, match="families"):
        fit_curve([1, 2, 3, 4], [1, 2, 3, 4], families=["cubic"])


# -- the pruner ------------------------------------------------------------------------------------
def exp_curve(trial: tunelab.Trial) -> float:
    """loss = floor + amp * exp(-epoch / tau), epochs 1..R: a noiseless curve with a known end."""
    floor = trial.suggest_float("floor", 0.0, 10.0)
    amp = trial.suggest_float("amp", 0.0, 2.0)
    tau = trial.suggest_float("tau", 0.5, 20.0)
    loss = math.nan
    for epoch in range(1, R + 1):
        loss = floor + amp * math.exp(-epoch / tau)
        trial.report(epoch, val_loss=loss)
        if trial.should_prune():
            raise tunelab.TrialPruned()
    return loss


FAST = {"floor": 0.30, "amp": 0.8, "tau": 1.5}       # ends at 0.30, flat from epoch 6
FAST_2 = {"floor": 0.32, "amp": 0.8, "tau": 1.5}
FAST_3 = {"floor": 0.35, "amp": 0.8, "tau": 1.5}
WORSE = {"floor": 0.60, "amp": 0.5, "tau": 2.0}      # clearly worse, from the start
SLOW = {"floor": 0.15, "amp": 1.2, "tau": 8.0}       # worse than FAST up to epoch 13, ends best (0.19)


def run(pruner: tunelab.Pruner, configs: list[dict[str, float]], **kw: object) -> list[tunelab.FrozenTrial]:
    study = tunelab.create_study(sampler=tunelab.RandomSampler(), seed=0, pruner=pruner, **kw)  # type: ignore[arg-type]
    for c in configs:
        study.enqueue(c)
    study.optimize(exp_curve, n_trials=len(configs))
    return study.trials


def test_it_stops_a_clearly_worse_trial_and_keeps_a_slow_starter_that_asha_and_median_stop() -> None:
    configs = [FAST, WORSE, SLOW]
    lc = run(LearningCurvePruner(max_resource=R, metric="val_loss", min_points=5), configs)
    assert [t.state for t in lc] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE]
    worse, slow = lc[1], lc[2]
    assert worse.system_attrs["pruned"]["step"] == 5  # as soon as it has min_points points
    assert worse.system_attrs["pruned"]["evidence"]["p_better"] < 0.05
    assert slow.value == pytest.approx(0.15 + 1.2 * math.exp(-R / 8.0))
    assert slow.value < lc[0].value
    # its last prediction (before the last epoch) put it below the incumbent 0.30, and the interval held the end
    evidence = slow.system_attrs["prediction"]["evidence"]
    assert evidence["incumbent"] == pytest.approx(0.30, abs=1e-3) and evidence["mean"] < 0.30
    assert evidence["low"] <= slow.value <= evidence["high"]
    # ASHA and the median rule stop the slow starter: it is worse than the fast trials at their rungs / steps
    asha = run(SuccessiveHalvingPruner(min_resource=1, reduction_factor=3, max_resource=R), configs)
    assert asha[2].state == TrialState.PRUNED
    median = run(MedianPruner(n_startup_trials=1, n_warmup_steps=4), configs)
    assert median[2].state == TrialState.PRUNED


def test_with_asha_rungs_rank_by_the_value_predicted_at_the_next_rung() -> None:
    configs = [FAST, FAST_2, FAST_3, SLOW]
    rungs = SuccessiveHalvingPruner(min_resource=9, reduction_factor=3, max_resource=R)
    assert rungs.rungs(R) == [9]
    plain = run(rungs, configs)
    assert plain[3].state == TrialState.PRUNED and plain[3].system_attrs["pruned"]["step"] == 9
    both = run(LearningCurvePruner(max_resource=R, metric="val_loss", min_points=5, rung_pruner=rungs), configs)
    assert both[3].state == TrialState.COMPLETE  # predicted at step 27 from 9 epochs: below 0.30
    # at a rung where a trial has fewer than min_points points, ASHA's own rule decides
    early = SuccessiveHalvingPruner(min_resource=3, reduction_factor=3, max_resource=R)
    trials = run(LearningCurvePruner(max_resource=R, min_points=5, rung_pruner=early), [FAST, FAST_2, FAST_3, WORSE])
    assert trials[3].system_attrs["pruned"]["rule"] == "asha rung at step 3"


def test_with_asha_a_rung_counts_the_trials_the_curve_rule_stopped_before_it() -> None:
    # FAST ends at 0.30; the four WORSE trials are stopped by the curve rule at step 5, before the rung at 9;
    # LATE is predicted from 9 points at about 0.31, a little worse than FAST's prediction, and may still
    # beat 0.30 (it ends at 0.305)
    late = {"floor": 0.20, "amp": 1.0, "tau": 12.0}
    configs = [FAST, WORSE, WORSE, WORSE, WORSE, late]
    rungs = SuccessiveHalvingPruner(min_resource=9, reduction_factor=3, max_resource=R)

    def trials(pool: str) -> list[tunelab.FrozenTrial]:
        out = run(LearningCurvePruner(max_resource=R, metric="val_loss", min_points=5, rung_pruner=rungs,
                                      rung_pool=pool), configs)
        assert all(t.system_attrs["pruned"]["rule"] == "curve prediction at step 5" for t in out[1:5])
        return out

    # the default ranks LATE among the 6 trials that passed the (absent) previous rung: 2 of 6 go on, as ASHA's quota
    assert LearningCurvePruner(max_resource=R).rung_pool == "passed"
    passed = trials("passed")
    assert passed[5].state == TrialState.COMPLETE and passed[5].value == pytest.approx(0.20 + math.exp(-R / 12.0))
    # "reached" (the behaviour before): only FAST and LATE reached the rung, 1 of 2 goes on
    reached = trials("reached")
    stop = reached[5].system_attrs["pruned"]
    assert stop["rule"] == "asha rung at step 9 (predicted at step 27)"
    assert stop["evidence"]["n_competing"] == 2 and stop["evidence"]["n_stopped_before"] == 0


FLAT = {"floor": 0.50, "amp": 0.8, "tau": 0.7}     # 0.511 at epoch 3, already flat: ends at 0.50
FLAT_2 = {"floor": 0.52, "amp": 0.8, "tau": 0.7}
STEEP = {"floor": 0.10, "amp": 2.0, "tau": 3.0}    # 0.836 at epoch 3, still falling fast: ends at 0.10


def test_with_short_curves_log_slope_a_rung_before_min_points_ranks_by_the_last_two_points_extended() -> None:
    rungs = SuccessiveHalvingPruner(min_resource=3, reduction_factor=3, max_resource=R)
    assert rungs.rungs(R) == [3, 9]

    def trials(short: str) -> list[tunelab.FrozenTrial]:
        return run(LearningCurvePruner(max_resource=R, metric="val_loss", min_points=5, rung_pruner=rungs,
                                       short_curves=short), [FLAT, FLAT_2, STEEP])

    assert LearningCurvePruner(max_resource=R).short_curves == "value"
    # "value" (ASHA's rule at a rung where no curve has min_points points): STEEP is the worst of 3 at epoch 3
    plain = trials("value")
    assert plain[2].state == TrialState.PRUNED and plain[2].system_attrs["pruned"]["rule"] == "asha rung at step 3"
    # "log_slope": STEEP's epochs 2 and 3 extended to epoch 9 put it first of 3; it goes on and ends best
    sloped = trials("log_slope")
    assert sloped[2].state == TrialState.COMPLETE
    assert sloped[2].value == pytest.approx(0.10 + 2.0 * math.exp(-R / 3.0)) and sloped[2].value < sloped[0].value
    # FLAT_2 is stopped at the rung, with the extrapolation and its two points as evidence (no predicted final)
    stop = sloped[1].system_attrs["pruned"]
    assert stop["rule"] == "asha rung at step 3 (extrapolated to step 9)"
    ev = stop["evidence"]
    v2, v3 = (0.52 + 0.8 * math.exp(-e / 0.7) for e in (2, 3))
    assert ev["points"] == [[2, pytest.approx(v2)], [3, pytest.approx(v3)]]
    assert ev["extrapolated"] == pytest.approx(v3 + (v3 - v2) / math.log(1.5) * math.log(3.0))
    assert ev["extrapolated"] > ev["cut"] and ev["n_competing"] == 2 and "predicted_final" not in ev
    assert predicted_final(sloped[1], "val_loss") is None


def test_with_short_curves_log_slope_a_curve_of_one_point_is_ranked_on_its_value() -> None:
    rungs = SuccessiveHalvingPruner(min_resource=1, reduction_factor=3, max_resource=R)
    pruner = LearningCurvePruner(max_resource=R, min_points=5, rung_pruner=rungs, short_curves="log_slope")
    assert pruner.short_extrapolation({1: 0.5}, 1, 3) is None
    assert pruner.short_extrapolation({1: 0.5, 2: 0.4, 3: math.nan}, 3, 9) is None  # NaN at the rung: ASHA's rule
    line = pruner.short_extrapolation({1: 0.5, 2: 0.4, 4: 0.3}, 4, 9)
    assert line is not None and line[0] == pytest.approx(0.3 - 0.1 / math.log(2.0) * math.log(9 / 4))
    trials = run(pruner, [FLAT, FLAT_2, STEEP])
    assert trials[1].system_attrs["pruned"]["rule"] == "asha rung at step 1"


def test_a_predicted_rung_decision_carries_its_prediction() -> None:
    rungs = SuccessiveHalvingPruner(min_resource=9, reduction_factor=3, max_resource=R)
    trials = run(LearningCurvePruner(max_resource=R, min_points=5, confidence=0.999, rung_pruner=rungs),
                 [FAST, FAST_2, FAST_3, {"floor": 0.5, "amp": 1.0, "tau": 6.0}])
    stopped = trials[3].system_attrs["pruned"]
    assert stopped["rule"] == "asha rung at step 9 (predicted at step 27)"
    assert stopped["evidence"]["mean"] > stopped["evidence"]["cut"]


def test_it_never_stops_before_min_points() -> None:
    hopeless = {"floor": 5.0, "amp": 1.0, "tau": 2.0}
    trials = run(LearningCurvePruner(max_resource=R, metric="val_loss", min_points=8), [FAST, hopeless])
    assert trials[1].state == TrialState.PRUNED and trials[1].system_attrs["pruned"]["step"] == 8
    with pytest.raises(ConfigError, match="min_points"):
        LearningCurvePruner(max_resource=R, min_points=3)


def test_min_points_that_no_curve_can_reach_before_max_resource_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"min_points=5\) must be below max_resource=5"):
        LearningCurvePruner(max_resource=5)  # at most 4 points (steps 1 to 4) before max_resource
    with pytest.raises(ConfigError, match="min_points=30"):
        LearningCurvePruner(max_resource=R, min_points=30)
    assert LearningCurvePruner(max_resource=6).min_points == 5  # steps 1 to 5: judged at step 5


def test_nothing_is_stopped_until_a_trial_reached_max_resource_and_top_k_compares_with_the_kth_best() -> None:
    trials = run(LearningCurvePruner(max_resource=R, min_points=5, top_k=2), [FAST, WORSE, FAST_2, WORSE])
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3 + [TrialState.PRUNED]
    first = trials[1].system_attrs["prediction"]
    assert first["evidence"]["incumbent"] is None and "no 2nd best value" in first["detail"]
    assert trials[3].system_attrs["pruned"]["evidence"]["incumbent"] == pytest.approx(0.32, abs=1e-3)


def test_a_curve_that_turns_nan_is_stopped_once_there_is_an_incumbent() -> None:
    def diverging(trial: tunelab.Trial) -> float:  # FAST's curve, NaN from epoch `nan_from` on
        nan_from = trial.suggest_int("nan_from", 3, R + 1)
        loss = math.nan
        for epoch in range(1, R + 1):
            loss = math.nan if epoch >= nan_from else 0.30 + 0.8 * math.exp(-epoch / 1.5)
            trial.report(epoch, val_loss=loss)
            if trial.should_prune():
                raise tunelab.TrialPruned()
        return loss

    for rungs in (None, SuccessiveHalvingPruner(min_resource=1, reduction_factor=3, max_resource=R)):
        study = tunelab.create_study(sampler=tunelab.RandomSampler(), seed=0, pruner=LearningCurvePruner(
            max_resource=R, metric="val_loss", min_points=5, rung_pruner=rungs))
        for nan_from in (R + 1, 3, 12, 9):  # never; before min_points; after; at a rung (9)
            study.enqueue({"nan_from": nan_from})
        study.optimize(diverging, n_trials=4)
        first, *diverged = study.trials
        assert first.state == TrialState.COMPLETE
        for trial in diverged:  # not run to max_resource on its earlier points: stopped at its first NaN
            assert trial.state == TrialState.PRUNED, (rungs, trial.params, trial.state)
            pruned = trial.system_attrs["pruned"]
            assert pruned["step"] == trial.params["nan_from"]
            assert "nan" in pruned["detail"]


def test_the_evidence_of_a_decision_is_stored_with_the_trial() -> None:
    trials = run(LearningCurvePruner(max_resource=R, min_points=5, interval=0.8), [FAST, WORSE])
    pruned = trials[1].system_attrs["pruned"]
    assert pruned["metric"] == "val_loss" and pruned["rule"] == "curve prediction at step 5"
    ev = pruned["evidence"]
    assert ev["predicted_at"] == R and ev["interval"] == 0.8 and ev["low"] <= ev["mean"] <= ev["high"]
    assert set(ev["families"]) <= set(FAMILY_NAMES) and sum(ev["families"].values()) == pytest.approx(1, abs=1e-3)
    cont = ev["continuation"]
    assert cont["steps"][-1] == R and cont["steps"] == sorted(cont["steps"]) and cont["steps"][0] > 5
    assert all(lo <= m <= hi for lo, m, hi in zip(cont["low"], cont["mean"], cont["high"], strict=True))
    assert "probability of beating the best value" in pruned["detail"]


def test_the_evidence_interval_stays_within_the_metrics_natural_range(tmp_path: Path) -> None:
    """The interval a curve pruner stored (and its continuation) went past the metric's range (an accuracy's high
    end above 1, a loss's low end below 0) while the diagnosis clipped its own: now the model clips both alike."""
    noise = np.random.default_rng(0).normal(0.0, 0.02, 12)
    curves = {  # noisy curves near their bound: the unclipped 90% interval crosses it
        ("val_acc", "maximize"): np.clip(1 - 0.5 * np.exp(-np.arange(1, 13) / 4) + noise, 0, 1),
        ("val_loss", "minimize"): np.clip(0.5 * np.exp(-np.arange(1, 13) / 4) + noise, 1e-3, None),
    }
    url = f"sqlite:///{tmp_path / 'lc.db'}"
    for (metric, direction), curve in curves.items():
        pruner = LearningCurvePruner(max_resource=100, metric=metric, direction=direction, min_points=5)
        study = tunelab.create_study(name=metric, storage=url, direction=direction, pruner=pruner)
        trial = study.ask()
        for step, value in enumerate(curve, start=1):
            trial.report(step, **{metric: float(value)})
            trial.should_prune()
        study.tell(trial, float(curve[-1]))
        ev = study.trials[0].system_attrs["prediction"]["evidence"]
        cont = ev["continuation"]
        ends = [ev["low"], ev["mean"], ev["high"], *cont["low"], *cont["mean"], *cont["high"]]
        if direction == "maximize":
            assert all(0.0 <= v <= 1.0 for v in ends) and ev["high"] == 1.0
        else:
            assert all(v >= 0.0 for v in ends) and ev["low"] == 0.0
        assert ev["low"] <= ev["mean"] <= ev["high"]
        model = fit_curve(np.arange(1, 13), curve, direction=direction, horizon=100)
        assert model.natural_range() == ((0.0, 1.0) if direction == "maximize" else (0.0, math.inf))


def test_it_is_described_and_rebuilt(tmp_path: Path) -> None:
    rungs = SuccessiveHalvingPruner(min_resource=3, reduction_factor=3, max_resource=R)
    pruner = LearningCurvePruner(max_resource=R, metric="val_loss", direction="minimize", min_points=6,
                                 confidence=0.9, top_k=3, interval=0.8, rung_pruner=rungs, rung_pool="reached",
                                 short_curves="log_slope")
    rebuilt = pruner_from_description(pruner.describe())
    assert isinstance(rebuilt, LearningCurvePruner) and rebuilt.describe() == pruner.describe()
    assert isinstance(rebuilt.rung_pruner, SuccessiveHalvingPruner) and rebuilt.rung_pruner.min_resource == 3
    url = f"sqlite:///{tmp_path / 'lc.db'}"
    tunelab.create_study(name="lc", storage=url, pruner=pruner)
    loaded = tunelab.load_study("lc", url)
    assert loaded.pruner is not None and loaded.pruner.describe() == pruner.describe()
    assert "LearningCurvePruner(" in repr(pruner)


def test_the_rungs_rank_in_the_curve_pruners_direction_not_the_studys() -> None:
    """A study that maximizes val_acc, pruned on val_loss: the rungs of short curves (ASHA's own decisions)
    read the study's 'maximize' when the rung pruner had no direction, and kept the worst trials."""
    pruner = LearningCurvePruner(max_resource=R, metric="val_loss", direction="minimize",
                                 rung_pruner=SuccessiveHalvingPruner(min_resource=1, reduction_factor=3))
    assert pruner.rung_pruner is not None and pruner.rung_pruner.direction == "minimize"
    study = tunelab.create_study(direction="maximize", sampler=tunelab.RandomSampler(), seed=0, pruner=pruner)
    qualities = [0.2, 0.9, 0.1, 0.3]
    for q in qualities:
        trial = study.ask()
        loss = 1.0 - q / 2
        trial.report(1, val_loss=loss, val_acc=1.0 - loss)
        if trial.should_prune():
            study.tell(trial, state="PRUNED")
        else:
            study.tell(trial, 1.0 - loss)
    kept = [q for q, t in zip(qualities, study.trials, strict=True) if t.state == TrialState.COMPLETE]
    assert kept == [0.2, 0.9]  # the first, then the best: the weaker ones are stopped at rung 1
    only_inner = LearningCurvePruner(max_resource=R, rung_pruner=SuccessiveHalvingPruner(direction="maximize"))
    assert only_inner.direction == "maximize"
    with pytest.raises(ConfigError, match="give one direction"):
        LearningCurvePruner(max_resource=R, direction="minimize",
                            rung_pruner=SuccessiveHalvingPruner(direction="maximize"))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"max_resource": 0}, "max_resource"),
    ({"max_resource": "27"}, "max_resource"),
    ({"max_resource": R, "min_points": 2}, "min_points"),
    ({"max_resource": R, "confidence": 1.0}, "confidence"),
    ({"max_resource": R, "confidence": 0.3}, "confidence"),
    ({"max_resource": R, "interval": 0}, "interval"),
    ({"max_resource": R, "top_k": 0}, "top_k"),
    ({"max_resource": R, "rung_pruner": MedianPruner()}, "rung_pruner"),
    ({"max_resource": R, "rung_pruner": SuccessiveHalvingPruner(max_resource=81)}, "max_resource"),
    ({"max_resource": R, "refit_growth": 0.5}, "refit_growth"),
    ({"max_resource": R, "rung_pool": "all"}, "rung_pool"),
    ({"max_resource": R, "short_curves": "slope"}, "short_curves"),
    ({"max_resource": R, "metric": ""}, "metric"),
])
def test_bad_settings_are_refused_with_the_argument_and_the_fix(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        LearningCurvePruner(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        LearningCurvePruner()  # type: ignore[call-arg]


def test_rung_pruner_settings_the_curve_pruner_would_ignore_are_refused() -> None:
    # a dict with an unknown key was a TypeError; a first rung at or past max_resource gave no rung at all;
    # the rung pruner's own metric was ignored (the rungs ranked the curve rule's metric)
    with pytest.raises(ConfigError, match=r"unknown setting.*'min_resources'"):
        LearningCurvePruner(max_resource=R, rung_pruner={"min_resources": 3})
    with pytest.raises(ConfigError, match="min_resource"):
        LearningCurvePruner(max_resource=R, rung_pruner=SuccessiveHalvingPruner(min_resource=R))
    with pytest.raises(ConfigError, match="give one metric"):
        LearningCurvePruner(max_resource=R, metric="val_loss", rung_pruner=SuccessiveHalvingPruner(metric="val_err"))
    adopted = LearningCurvePruner(max_resource=R, rung_pruner={"name": "SuccessiveHalvingPruner", "metric": "val_err"})
    assert adopted.metric == "val_err"
    assert pruner_from_description(adopted.describe()).describe() == adopted.describe()


def test_trials_that_never_report_at_max_resource_are_warned_about() -> None:
    """Epochs 0 to 26 against max_resource=27: no trial ever reports at step 27, so there is never an
    incumbent and the curve rule stops nothing, without a word."""
    def objective(trial: tunelab.Trial) -> float:
        lr = trial.suggest_float("lr", 0.01, 0.5, log=True)
        loss = 0.0
        for epoch in range(R):
            loss = 0.1 + 2.0 * (1.0 + lr * epoch) ** -1.5
            trial.report(epoch, val_loss=loss)
            if trial.should_prune():
                raise tunelab.TrialPruned()
        return loss

    study = tunelab.create_study(sampler=tunelab.RandomSampler(), seed=0,
                                 pruner=LearningCurvePruner(max_resource=R, min_points=5))
    with pytest.warns(UserWarning, match=rf"max_resource={R}\) cannot stop any trial yet: no COMPLETE trial "
                                         rf"\(1 so far\) reported val_loss at step {R}.*e\.g\. 26 for epochs 0 to 26"):
        study.optimize(objective, n_trials=3, show_progress=False)
    detail = study.trials[-1].system_attrs["prediction"]["detail"]
    assert f"no COMPLETE trial (2 so far) reported val_loss at step {R}" in detail


def test_tunelab_show_trial_and_the_dashboard_show_the_prediction(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from tunelab.cli.main import app
    from tunelab.dashboard import create_app

    url = f"sqlite:///{tmp_path / 'lc.db'}"
    study = tunelab.create_study(name="lc", storage=url, sampler=tunelab.RandomSampler(), seed=0,
                                 pruner=LearningCurvePruner(max_resource=R, min_points=5))
    for c in (FAST, WORSE):
        study.enqueue(c)
    study.optimize(exp_curve, n_trials=2)
    shown = CliRunner().invoke(app, ["show", "lc", "--storage", url], env={"COLUMNS": "250"})
    assert shown.exit_code == 0 and "predicted" in shown.output and "vs best 0.3" in shown.output
    trial = CliRunner().invoke(app, ["trial", "lc", "1", "--storage", url], env={"COLUMNS": "250"})
    assert "stopped on step 5" in trial.output and "predicted continuation" in trial.output
    with TestClient(create_app(url), base_url="http://127.0.0.1:8000") as client:
        pruned = client.get("/api/studies/lc/trials/1").json()["prediction"]
        assert pruned["metric"] == "val_loss" and pruned["step"] == 5 and pruned["steps"][-1] == R
        assert len(pruned["mean"]) == len(pruned["low"]) == len(pruned["high"]) == len(pruned["steps"])
        complete = client.get("/api/studies/lc/trials/0").json()["prediction"]
        assert complete["rule"] == "curve prediction" and complete["step"] == R - 1


# -- with the model-based samplers: they fit on the predicted final values ---------------------------
MIDDLE = {"floor": 0.45, "amp": 0.5, "tau": 2.0}     # stopped too, but predicted to end better than WORSE


def _observations(study: tunelab.Study, metric: str = "val_loss") -> tuple[Observations, int] | None:
    history = History(study.storage, study.storage.get_study(study.name), None)
    space = EncodedSpace({"floor": Float(0.0, 10.0), "amp": Float(0.0, 2.0), "tau": Float(0.5, 20.0)})
    return collect_predicted_observations(history, space, metric, "minimize")


def _study(pruner: tunelab.Pruner, configs: list[dict[str, float]]) -> tunelab.Study:
    study = tunelab.create_study(sampler=tunelab.RandomSampler(), seed=0, pruner=pruner)
    for c in configs:
        study.enqueue(c)
    study.optimize(exp_curve, n_trials=len(configs))
    return study


def test_a_stopped_trial_counts_at_its_predicted_final_value_not_as_the_worst() -> None:
    study = _study(LearningCurvePruner(max_resource=R, metric="val_loss", min_points=5), [FAST, WORSE, MIDDLE])
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.PRUNED]
    found = _observations(study)
    assert found is not None
    obs, n_predicted = found
    assert n_predicted == 2 and list(obs.numbers) == [0, 1, 2] and not obs.imputed.any()
    y = obs.y
    assert y[0] == pytest.approx(trials[0].value)  # the complete trial: its final value
    for i in (1, 2):  # the stopped ones: the final value their pruner predicted (and stored)
        evidence = trials[i].system_attrs["pruned"]["evidence"]
        assert y[i] == evidence["predicted_final"] == evidence["mean"]
        assert predicted_final(trials[i], "val_loss") == y[i]
        assert predicted_final(trials[i], "val_acc") is None
    # close to where they would have ended (imputed as the worst, both would count as 0.30, FAST's value)
    assert y[1] == pytest.approx(0.60 + 0.5 * math.exp(-R / 2.0), abs=0.03)
    assert y[2] == pytest.approx(0.45 + 0.5 * math.exp(-R / 2.0), abs=0.03)
    assert y[0] < y[2] < y[1]


def test_with_asha_a_trial_stopped_before_min_points_counts_as_the_worst_and_a_rung_stop_at_its_prediction() -> None:
    early = SuccessiveHalvingPruner(min_resource=3, reduction_factor=3, max_resource=R)
    study = _study(LearningCurvePruner(max_resource=R, min_points=5, confidence=0.999, rung_pruner=early),
                   [FAST, FAST_2, FAST_3, WORSE, {"floor": 0.38, "amp": 0.02, "tau": 1.0}])
    trials = study.trials
    assert trials[3].system_attrs["pruned"]["rule"] == "asha rung at step 3"  # 3 points: no prediction
    found = _observations(study)
    assert found is not None
    obs, _ = found
    y, imputed = dict(zip(obs.numbers, obs.y, strict=True)), dict(zip(obs.numbers, obs.imputed, strict=True))
    assert imputed[3] and y[3] == max(y[n] for n in y if not imputed[n])  # the worst value measured or predicted
    # a rung stop from a curve model (at step 9, ranked by the value predicted at step 27) stores its prediction
    rungs = SuccessiveHalvingPruner(min_resource=9, reduction_factor=3, max_resource=R)
    study = _study(LearningCurvePruner(max_resource=R, min_points=5, confidence=0.999, rung_pruner=rungs),
                   [FAST, FAST_2, FAST_3, {"floor": 0.5, "amp": 1.0, "tau": 6.0}])
    rung_stop = study.trials[3].system_attrs["pruned"]
    assert rung_stop["rule"] == "asha rung at step 9 (predicted at step 27)"
    found = _observations(study)
    assert found is not None
    obs, n_predicted = found
    assert n_predicted == sum(t.state == TrialState.PRUNED for t in study.trials) and not obs.imputed.any()
    assert obs.y[3] == rung_stop["evidence"]["predicted_final"]
    assert obs.y[3] == pytest.approx(0.5 + math.exp(-R / 6.0), abs=0.05)


def test_a_running_trial_with_a_prediction_is_a_row_and_a_pruner_that_does_not_predict_gives_none() -> None:
    study = tunelab.create_study(sampler=tunelab.RandomSampler(), seed=0,
                                 pruner=LearningCurvePruner(max_resource=R, metric="val_loss", min_points=5))
    study.enqueue(SLOW)
    trial = study.ask()
    assert {k: trial.suggest_float(k, 0.0, 20.0) for k in SLOW} == SLOW
    for epoch in range(1, 8):
        loss = SLOW["floor"] + SLOW["amp"] * math.exp(-epoch / SLOW["tau"])
        trial.report(epoch, val_loss=loss)
        assert not trial.should_prune()
    trial.flush()
    found = _observations(study)
    assert found is not None
    obs, n_predicted = found
    assert n_predicted == 1 and list(obs.numbers) == [trial.number] and len(obs.pending) == 0
    assert obs.y[0] == pytest.approx(0.15 + 1.2 * math.exp(-R / 8.0), abs=0.1)
    plain = _study(SuccessiveHalvingPruner(min_resource=1, reduction_factor=3, max_resource=R), [FAST, WORSE, FAST_2])
    assert _observations(plain) is None  # ASHA predicts nothing: the rung rule applies


@pytest.mark.parametrize("make", [tunelab.TPESampler, tunelab.GPSampler])
def test_the_model_based_samplers_fit_on_the_predicted_final_values(make: type[tunelab.Sampler]) -> None:
    from tunelab.samplers.model_based import FIDELITY_KEY

    def objective(trial: tunelab.Trial) -> float:  # ends at about q; every curve falls alike from q + 2
        q = trial.suggest_float("q", 0.0, 10.0)
        loss = math.nan
        for epoch in range(1, R + 1):
            loss = q + 2.0 * math.exp(-epoch / 3.0)
            trial.report(epoch, val_loss=loss)
            if trial.should_prune():
                raise tunelab.TrialPruned()
        return loss

    study = tunelab.create_study(sampler=make(n_startup_trials=5), seed=0,  # type: ignore[call-arg]
                                 pruner=LearningCurvePruner(max_resource=R, metric="val_loss", min_points=5))
    study.optimize(objective, n_trials=24)
    trials = study.trials
    fits = [t.system_attrs[FIDELITY_KEY] for t in trials if FIDELITY_KEY in t.system_attrs]
    assert fits and all(f["step"] is None and f["metric"] == "val_loss" for f in fits)
    assert max(f["predicted"] for f in fits) >= 3  # stopped trials counted at their predictions
    assert sum(t.state == TrialState.PRUNED for t in trials) >= 3
    early = np.median([t.params["q"] for t in trials[:5]])
    late = np.median([t.params["q"] for t in trials[-8:]])
    assert late < early / 2


def test_refitting_at_every_point_of_a_long_curve_needs_no_deep_recursion() -> None:
    """``refit_growth=1`` chains one fit per point: a curve longer than the stack allows must fit."""
    import sys

    from tunelab.pruners.extrapolation import _fit

    _fit.cache_clear()
    pruner = tunelab.LearningCurvePruner(max_resource=1000, min_points=5, refit_growth=1.0)
    curve = {s: 0.2 + 2.0 * s**-0.5 for s in range(1, 401)}
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(250)  # 400 chained fits would need more
    try:
        for up_to in (10, 400):
            model = pruner.model(curve, "minimize", up_to=up_to)
            assert model is not None and int(model.steps[-1]) == up_to
    finally:
        sys.setrecursionlimit(limit)
