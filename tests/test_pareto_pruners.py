"""Early stopping for several objectives: Pareto ASHA and the Pareto median rule."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

import tunelab
from tunelab.errors import ConfigError
from tunelab.pruners.pareto import pareto_order

MO = {"directions": ["maximize", "minimize"], "objective_names": ["val_acc", "latency_ms"]}


def _study(pruner: tunelab.Pruner, **kwargs: object) -> tunelab.Study:
    return tunelab.create_study(seed=0, sampler=tunelab.RandomSampler(), pruner=pruner, **{**MO, **kwargs})


def _run(study: tunelab.Study, acc: float, latency: float, steps: int = 9) -> tunelab.FrozenTrial:
    """One trial whose accuracy climbs to ``acc`` and whose latency is ``latency`` at every step."""
    trial = study.ask()
    for step in range(1, steps + 1):
        trial.report(step, val_acc=acc * step / steps, latency_ms=latency)
        if trial.should_prune():
            return study.tell(trial, state="PRUNED")
    return study.tell(trial, (acc, latency))


def test_pareto_order_gives_fronts_and_crowding() -> None:
    # losses: three on the first front (two boundary points, one in the middle), one dominated, one NaN
    points = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0], [0.6, 0.6], [np.nan, 0.0]])
    front, crowd = pareto_order(points)
    assert list(front) == [0, 0, 0, 1, -1]
    assert np.isinf(crowd[0]) and np.isinf(crowd[2]) and crowd[1] == pytest.approx(2.0)


def test_asha_keeps_the_non_dominated_and_stops_a_dominated_trial_at_the_first_rung() -> None:
    study = _study(tunelab.ParetoSuccessiveHalvingPruner(min_resource=1, reduction_factor=3, max_resource=9))
    # two fast and accurate trade-offs, then a trial dominated by both at every step
    assert _run(study, 0.9, 10.0).state.value == "COMPLETE"
    assert _run(study, 0.95, 20.0).state.value == "COMPLETE"
    slow_and_bad = _run(study, 0.5, 30.0)
    assert slow_and_bad.state.value == "PRUNED"
    pruned = slow_and_bad.system_attrs["pruned"]
    assert pruned["step"] == 1 and pruned["rule"] == "pareto asha rung at step 1"
    assert pruned["evidence"]["front"] == 2 and pruned["evidence"]["rank"] == 3
    assert pruned["evidence"]["values"] == {"val_acc": pytest.approx(0.5 / 9), "latency_ms": 30.0}
    # a trade-off no one dominates (slower but the most accurate) is kept although it is worse in latency
    assert _run(study, 0.99, 40.0).state.value == "COMPLETE"


def test_asha_breaks_ties_in_a_front_by_crowding() -> None:
    study = _study(tunelab.ParetoSuccessiveHalvingPruner(min_resource=1, reduction_factor=2, max_resource=4))
    for acc, lat in [(0.5, 1.0), (0.9, 9.0)]:  # the two ends of the front
        assert _run(study, acc, lat, steps=4).state.value == "COMPLETE"
    # a third point on the same front, between the ends: the rung keeps max(1, 3 // 2) = 1 trial, and
    # the ends rank first (infinite crowding distance, end_crowding="inf"), so the middle one stops
    middle = _run(study, 0.7, 5.0, steps=4)
    assert middle.state.value == "PRUNED"
    assert middle.system_attrs["pruned"]["evidence"]["front"] == 1


def test_pareto_order_with_gap_crowding_gives_the_ends_finite_distances() -> None:
    points = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0], [0.6, 0.6], [np.nan, 0.0]])
    front, crowd = pareto_order(points, "gap")
    assert list(front) == [0, 0, 0, 1, -1]
    # every gap is half of each objective's range: an end counts its one gap twice, the middle its two
    assert crowd[:3] == pytest.approx([2.0, 2.0, 2.0]) and crowd[3] == pytest.approx(1.0)
    # an end close to its neighbour is the most crowded row of its front
    _, crowd = pareto_order(np.array([[-0.9, 9.0], [-0.5, 1.0], [-0.49, 0.5]]), "gap")
    assert crowd[2] < crowd[1] < crowd[0] and np.all(np.isfinite(crowd))


@pytest.mark.parametrize("end_crowding, state", [("gap", "PRUNED"), ("inf", "COMPLETE")])
def test_asha_does_not_promote_a_front_end_for_being_extreme_alone(end_crowding: str, state: str) -> None:
    pruner = tunelab.ParetoSuccessiveHalvingPruner(min_resource=1, reduction_factor=2, max_resource=4,
                                                   end_crowding=end_crowding)
    assert pruner.end_crowding == end_crowding
    study = _study(pruner)
    for acc, lat in [(0.9, 9.0), (0.5, 1.0)]:  # a two-trial front: both ends, equally distinct, both go on
        assert _run(study, acc, lat, steps=4).state.value == "COMPLETE"
    # the fastest trial so far, by a hair, and a hair less accurate than the next fastest: a new end of
    # the front, with nothing distinct about it but its extreme latency. The rung keeps 3 // 2 = 1
    # trial: the accurate end (0.9, 9.0). "gap" ranks the new end last in its front (its gaps to its
    # neighbour are 2% and 6% of the rung's ranges) and stops it; "inf" ranks it first, tied with the
    # accurate end, and keeps it.
    extreme = _run(study, 0.49, 0.5, steps=4)
    assert extreme.state.value == state
    if state == "PRUNED":
        evidence = extreme.system_attrs["pruned"]["evidence"]
        assert evidence["front"] == 1 and evidence["rank"] == 3 and evidence["kept"] == 1


def test_the_default_ranks_front_ends_first() -> None:
    assert tunelab.ParetoSuccessiveHalvingPruner().end_crowding == "inf"
    with pytest.raises(ConfigError, match=r"end_crowding=\.\.\.\) must be 'gap'"):
        tunelab.ParetoSuccessiveHalvingPruner(end_crowding="zero")


def test_median_stops_only_a_trial_worse_than_the_median_in_every_objective() -> None:
    study = _study(tunelab.ParetoMedianPruner(n_startup_trials=3, n_warmup_steps=2))
    for acc, lat in [(0.9, 10.0), (0.8, 12.0), (0.85, 11.0)]:
        assert _run(study, acc, lat).state.value == "COMPLETE"
    worse_everywhere = _run(study, 0.5, 20.0)
    assert worse_everywhere.state.value == "PRUNED"
    assert worse_everywhere.system_attrs["pruned"]["step"] == 2
    assert worse_everywhere.system_attrs["pruned"]["evidence"]["median"]["latency_ms"] == 11.0
    # worse in accuracy but faster than the median: a trade-off, it goes on
    assert _run(study, 0.5, 5.0).state.value == "COMPLETE"


def test_the_pruner_is_stored_with_the_study_and_rebuilt_by_a_worker(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    pruner = tunelab.ParetoSuccessiveHalvingPruner(min_resource=2, reduction_factor=4, max_resource=32,
                                                   end_crowding="gap", metrics=["val_acc", "latency_ms"],
                                                   directions=["maximize", "minimize"])
    tunelab.create_study(name="s", storage=url, pruner=pruner, **MO)
    loaded = tunelab.load_study("s", url)
    assert repr(loaded.pruner) == repr(pruner) and "end_crowding='gap'" in repr(pruner)


def test_several_workers_share_the_rungs(tmp_path: Path) -> None:
    study = tunelab.create_study(
        name="mo", storage=f"sqlite:///{tmp_path / 'mo.db'}", seed=1, sampler=tunelab.RandomSampler(),
        pruner=tunelab.ParetoSuccessiveHalvingPruner(min_resource=1, reduction_factor=3, max_resource=27), **MO,
    )
    study.optimize(_mo_objective, n_trials=16, n_workers=2)
    states = [t.state.value for t in study.trials]
    assert states.count("PRUNED") >= 4 and states.count("COMPLETE") >= 2 and "FAIL" not in states
    assert all(t.system_attrs["pruned"]["rule"].startswith("pareto asha") for t in study.trials
               if t.state.value == "PRUNED")


def _mo_objective(trial: tunelab.Trial) -> tuple[float, float]:
    width = trial.suggest_int("width", 1, 64, log=True)
    lr = trial.suggest_float("lr", 1e-4, 1.0, log=True)
    acc = 0.0
    for epoch in range(1, 28):
        acc += (1.0 - acc) * min(lr, 0.5) * width / 64
        trial.report(epoch, val_acc=acc, latency_ms=float(width))
        if trial.should_prune():
            raise tunelab.TrialPruned()
    return acc, float(width)


def test_bad_input_names_the_fix() -> None:
    with pytest.raises(ConfigError, match="ParetoSuccessiveHalvingPruner"):
        _study(tunelab.SuccessiveHalvingPruner())  # one metric on a study with two objectives
    with pytest.raises(ConfigError, match=r"metrics=\[\.\.\.\] and directions"):
        tunelab.create_study(pruner=tunelab.ParetoMedianPruner())  # one objective, nothing to compare
    with pytest.raises(ConfigError, match="two or more"):
        tunelab.ParetoMedianPruner(metrics=["val_acc"])
    with pytest.raises(ConfigError, match="two or more"):  # was TypeError: 'int' object is not iterable
        tunelab.ParetoMedianPruner(metrics=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"directions=\.\.\.\) must be a list"):  # the same TypeError
        tunelab.ParetoSuccessiveHalvingPruner(metrics=["a", "b"], directions=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="same length"):
        tunelab.ParetoMedianPruner(metrics=["a", "b"], directions=["minimize"])
    with pytest.raises(ConfigError, match="must be 'minimize' or 'maximize'"):
        tunelab.ParetoMedianPruner(metrics=["a", "b"], directions=["up", "down"])
    study = _study(tunelab.ParetoSuccessiveHalvingPruner())
    trial = study.ask()
    trial.report(1, val_acc=0.5)  # latency_ms missing from the report
    with pytest.raises(ConfigError, match=r"trial.report\(step, val_acc=\.\.\., latency_ms=\.\.\.\)"):
        trial.should_prune()


def test_named_metrics_without_directions_must_match_the_objectives_before_any_trial(tmp_path: Path) -> None:
    # Three metrics taking the directions of a study with two objectives: refused at create_study (it
    # was refused at the first trial's first should_prune, after compute, and stopped the study).
    three = tunelab.ParetoSuccessiveHalvingPruner(metrics=["val_acc", "latency_ms", "params"])
    with pytest.raises(ConfigError, match=r"3 metrics .* 2 objective\(s\): give directions"):
        _study(three)
    with pytest.raises(ConfigError, match=r"2 metrics .* 1 objective\(s\): give directions"):
        tunelab.create_study(pruner=tunelab.ParetoMedianPruner(metrics=["val_acc", "latency_ms"]))
    url = f"sqlite:///{tmp_path / 'p.db'}"
    tunelab.create_study(name="s", storage=url, **MO)
    with pytest.raises(ConfigError, match="give directions"):
        tunelab.load_study(name="s", storage=url, pruner=three)
    assert _study(tunelab.ParetoMedianPruner(metrics=["latency_ms", "val_acc"])).pruner is not None


def test_a_single_objective_study_may_prune_on_several_named_metrics() -> None:
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler(), pruner=tunelab.ParetoMedianPruner(
        n_startup_trials=1, metrics=["val_acc", "latency_ms"], directions=["maximize", "minimize"]))
    trial = study.ask()
    for step in range(3):
        trial.report(step, val_acc=0.9, latency_ms=1.0)
    study.tell(trial, 0.9)
    bad = study.ask()
    bad.report(0, val_acc=0.1, latency_ms=5.0)
    assert bad.should_prune()


def test_reports_that_step_past_the_rungs_are_judged_at_the_first_report_past_each() -> None:
    """Rungs at 1, 3, 9 and reports every 2 steps: judged at steps 2, 4 and 10 (before, never)."""
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler(), **MO,
                                 pruner=tunelab.ParetoSuccessiveHalvingPruner(min_resource=1, max_resource=27))

    def objective(trial: tunelab.Trial) -> tuple[float, float]:
        x = trial.suggest_float("x", 0.0, 1.0)
        y = trial.suggest_float("y", 0.0, 1.0)
        for step in range(2, 14, 2):
            trial.report(step, val_acc=x * y, latency_ms=1.0 + y)  # dominated unless x is high
            if trial.should_prune():
                raise tunelab.TrialPruned()
        return x * y, 1.0 + y

    study.optimize(objective, n_trials=24)
    pruned = study.get_trials([tunelab.TrialState.PRUNED])
    assert pruned and {t.system_attrs["pruned"]["step"] for t in pruned} <= {2, 4, 10}


def test_pareto_asha_records_the_stop_of_a_trial_that_reported_nan(tmp_path: Path) -> None:
    # Its evidence held the NaN, which no stored attribute can: the trial ended FAIL ("the trial ended PRUNED,
    # but that could not be recorded: ... Out of range float values are not JSON compliant").
    study = tunelab.create_study(storage=f"sqlite:///{tmp_path / 'nan.db'}", directions=["maximize", "minimize"],
                                 objective_names=["acc", "lat"], sampler=tunelab.RandomSampler(), seed=0,
                                 pruner=tunelab.ParetoSuccessiveHalvingPruner(min_resource=1, reduction_factor=2))

    def objective(trial: tunelab.Trial) -> tuple[float, float]:
        x = trial.suggest_float("x", 0.0, 1.0)
        for step in range(3):
            trial.report(step, acc=math.nan if trial.number >= 2 else x, lat=math.inf if trial.number == 3 else 1 - x)
            if trial.should_prune():
                raise tunelab.TrialPruned()
        return x, 1 - x

    study.optimize(objective, n_trials=4)
    assert [t.state for t in study.trials] == [tunelab.TrialState.COMPLETE] * 2 + [tunelab.TrialState.PRUNED] * 2
    assert study.trials[3].system_attrs["pruned"]["evidence"]["values"] == {"acc": None, "lat": None}


def test_median_interval_steps_judges_the_first_report_past_each_pruning_step() -> None:
    # reports at odd steps with interval_steps=2: (step - warm-up) % 2 was never 0, so nothing was ever pruned
    study = _study(tunelab.ParetoMedianPruner(n_startup_trials=1, interval_steps=2))
    for acc, latency in ((0.9, 1.0), (0.5, 5.0)):  # the second is dominated at every step
        trial = study.ask()
        for step in range(1, 10, 2):
            trial.report(step, val_acc=acc, latency_ms=latency)
            if trial.should_prune():
                study.tell(trial, state="PRUNED")
                break
        else:
            study.tell(trial, (acc, latency))
    assert [t.state for t in study.trials] == [tunelab.TrialState.COMPLETE, tunelab.TrialState.PRUNED]


def test_the_fix_a_pareto_pruner_suggests_is_python_for_names_that_are_not_identifiers() -> None:
    # 'trial.report(step, validation-logloss=...)' is no Python: such names go in **{...}
    study = tunelab.create_study(directions=["minimize", "minimize"], objective_names=["validation-logloss", "size"],
                                 seed=0, sampler=tunelab.RandomSampler(), pruner=tunelab.ParetoMedianPruner())
    trial = study.ask()
    trial.report(0, **{"validation-logloss": 0.5})
    with pytest.raises(ConfigError, match=re.escape("trial.report(step, **{'validation-logloss': ..., 'size': ...})")):
        trial.should_prune()


@pytest.mark.filterwarnings("error")  # an overflow warning fails the test
@pytest.mark.parametrize("end_crowding", ["inf", "gap"])
def test_pareto_order_of_losses_near_the_float_maximum_has_no_overflow(end_crowding: str) -> None:
    huge = np.finfo(float).max
    points = np.array([[-huge, huge], [-1e200, 1e200], [0.0, 0.0], [1e200, -1e200], [huge, -huge], [1e250, 1e250]])
    front, crowd = pareto_order(points, end_crowding)
    assert front.tolist() == [0, 0, 0, 0, 0, 1]
    assert not np.isnan(crowd).any() and crowd[1] == crowd[3] > crowd[2] > 0
