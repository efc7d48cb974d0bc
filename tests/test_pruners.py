"""Pruners on deterministic synthetic learning curves: median rule, ASHA (1 and 4 workers), Hyperband."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import tunelab
from objectives import staircase, staircase_two_metrics, train_loss_and_val_acc
from tunelab import HyperbandPruner, MedianPruner, SuccessiveHalvingPruner, TrialState
from tunelab.errors import ConfigError
from tunelab.pruners import NO_DECISION, ParetoPruner, Pruner, pruner_from_description
from tunelab.pruners.asha import rung_judged, rung_steps
from tunelab.pruners.base import Curve

QUALITIES = [5.0, 3.0, 8.0, 1.0, 7.0, 2.0, 9.0, 4.0, 6.0, 0.5, 8.5, 2.5]


def run_enqueued(study: tunelab.Study, qualities: list[float], **optimize: object) -> None:
    for q in qualities:
        study.enqueue({"q": q})
    study.optimize(staircase, n_trials=len(qualities), **optimize)  # type: ignore[arg-type]


def pruned_step(trial: tunelab.FrozenTrial) -> int | None:
    return trial.system_attrs["pruned"]["step"] if trial.state == TrialState.PRUNED else None


def asha_oracle(qualities: list[float], rungs: list[int], eta: int) -> list[int | None]:
    """Sequential ASHA written out plainly: where each trial stops (None: runs to the end)."""
    at_rung: dict[int, list[float]] = {r: [] for r in rungs}
    stops: list[int | None] = []
    for q in qualities:
        stop = None
        for r in rungs:
            value = q + 1.0 / r
            values = sorted([*at_rung[r], value])
            at_rung[r].append(value)
            if value > values[max(1, len(values) // eta) - 1]:
                stop = r
                break
        stops.append(stop)
    return stops


def test_rungs_are_powers_of_eta_below_the_full_budget() -> None:
    assert rung_steps(1, 3, 27, 0, up_to=100) == [1, 3, 9]
    assert rung_steps(1, 3, None, 0, up_to=30) == [1, 3, 9, 27]
    assert rung_steps(2, 2, 32, 1, up_to=100) == [4, 8, 16]


def test_asha_with_one_worker_stops_each_trial_at_the_right_rung() -> None:
    study = tunelab.create_study(sampler=tunelab.RandomSampler(), seed=0,
                                 pruner=SuccessiveHalvingPruner(min_resource=1, reduction_factor=3, max_resource=27))
    run_enqueued(study, QUALITIES)
    trials = study.trials
    assert [pruned_step(t) for t in trials] == asha_oracle(QUALITIES, [1, 3, 9], 3)
    best = min(range(len(QUALITIES)), key=QUALITIES.__getitem__)
    assert trials[best].state == TrialState.COMPLETE and trials[best].value == pytest.approx(0.5 + 1 / 27)
    assert sum(t.state == TrialState.PRUNED for t in trials) >= len(QUALITIES) // 2
    for t in trials:  # a pruned trial keeps its curve up to the step where it stopped
        steps, _ = study.get_curves(t.number)["val_loss"]
        assert steps[-1] == (pruned_step(t) or 27)
        if t.state == TrialState.PRUNED:
            assert t.system_attrs["pruned"]["metric"] == "val_loss"
            assert "asha rung" in t.system_attrs["pruned"]["rule"]


def test_asha_with_four_workers_keeps_the_best_and_stops_only_at_rungs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'asha.db'}"
    pruner = SuccessiveHalvingPruner(min_resource=1, reduction_factor=3, max_resource=27)
    study = tunelab.create_study(name="asha", storage=url, sampler=tunelab.RandomSampler(), seed=0, pruner=pruner)
    qualities = QUALITIES * 2
    run_enqueued(study, qualities, n_workers=4)
    trials = study.trials
    assert len(trials) == len(qualities)
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    for t in trials:
        if t.params["q"] == min(qualities):
            assert t.state == TrialState.COMPLETE  # never worse than anyone: always kept
        if t.state == TrialState.PRUNED:
            step = pruned_step(t)
            assert step in (1, 3, 9)
            # Decided from stored data: at least one value at that rung beat it.
            rivals = [p.value for p in study.storage.get_metric_at(study._study_id, "val_loss", [step])
                      if p.number != t.number]
            assert any(v < t.params["q"] + 1 / step for v in rivals)
    completed = sum(t.state == TrialState.COMPLETE for t in trials)
    assert completed <= len(qualities) // 2


def test_median_rule_stops_trials_worse_than_the_median_after_warm_up() -> None:
    pruner = MedianPruner(n_startup_trials=3, n_warmup_steps=2)
    study = tunelab.create_study(sampler=tunelab.RandomSampler(), seed=0, pruner=pruner)
    run_enqueued(study, [1.0, 2.0, 3.0, 2.5, 1.5, 9.0])
    trials = study.trials
    assert [t.state for t in trials[:3]] == [TrialState.COMPLETE] * 3  # start-up trials
    assert trials[3].state == TrialState.PRUNED and pruned_step(trials[3]) == 2  # 2.5 + 1/2 > median 2 + 1/2
    assert trials[4].state == TrialState.COMPLETE  # better than the median
    assert trials[5].state == TrialState.PRUNED and pruned_step(trials[5]) == 2  # not before the warm-up
    assert "median" in trials[5].system_attrs["pruned"]["rule"]


def test_maximize_direction_is_respected() -> None:
    pruner = MedianPruner(n_startup_trials=2, metric="acc", direction="maximize")
    study = tunelab.create_study(sampler=tunelab.RandomSampler(), seed=0, pruner=pruner)

    def objective(trial: tunelab.Trial) -> float:
        q = trial.suggest_float("q", 0, 1)
        for step in range(5):
            trial.report(step, acc=q, loss=1 - q)
            if trial.should_prune():
                raise tunelab.TrialPruned()
        return q

    for q in (0.5, 0.7, 0.9, 0.2):
        study.enqueue({"q": q})
    study.optimize(objective, n_trials=4)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3 + [TrialState.PRUNED]


def test_hyperband_brackets_get_hyperbands_budget_split_and_later_first_rungs() -> None:
    pruner = HyperbandPruner(min_resource=1, max_resource=81, reduction_factor=3)
    assert pruner.n_brackets == 5
    assert pruner.bracket_weights == [81, 34, 15, 8, 5]  # Li et al. 2018, R = 81, eta = 3
    assert [b.rungs(up_to=81) for b in pruner.brackets] == [[1, 3, 9, 27], [3, 9, 27], [9, 27], [27], []]
    counts = [0] * 5
    for n in range(14_300):
        counts[pruner.bracket_of(n)] += 1
    for count, weight in zip(counts, pruner.bracket_weights, strict=True):
        assert count / 14_300 == pytest.approx(weight / 143, abs=0.02)


@pytest.mark.parametrize(("max_resource", "rungs"), [
    (27, [[1, 3, 9], [3, 9], [9], []]),
    (28, [[1, 3, 9], [3, 9], [9], []]),  # not [[1, 3, 9, 27], ..., [27]]: a rung 1 epoch before the end
    (30, [[1, 3, 9], [3, 9], [9], []]),
    (20, [[1, 3], [3], []]),  # not [[1, 3, 9], [3, 9], [9]]: no bracket trained its trials to the end
    (100, [[1, 3, 9, 27], [3, 9, 27], [9, 27], [27], []]),
])
def test_hyperband_brackets_make_the_halvings_their_weights_count_on(max_resource: int, rungs: list[list[int]]) -> None:
    # Li et al. 2018: bracket s (s_max - b here) makes s halvings; s = 0 is plain random search.
    pruner = HyperbandPruner(min_resource=1, max_resource=max_resource, reduction_factor=3)
    assert [b.rungs(up_to=max_resource) for b in pruner.brackets] == rungs
    assert pruner.n_brackets == len(pruner.bracket_weights) == len(rungs)
    for b, bracket in enumerate(pruner.brackets):
        steps = bracket.rungs(up_to=max_resource)
        assert len(steps) == pruner.n_brackets - 1 - b
        assert all(3 * r <= max_resource for r in steps)  # a stop saves at least 2/3 of a training


def test_hyperband_bracket_shares_hold_for_every_number_of_trials() -> None:
    # A trial's bracket is a fixed function of its number; any stretch of trials follows the weights
    # (the crc32 draw it replaced gave 6 of the first 110 trials to the last bracket, not 9, in every study).
    for max_resource, eta in ((27, 3), (81, 3), (32, 2), (20, 3)):
        pruner = HyperbandPruner(min_resource=1, max_resource=max_resource, reduction_factor=eta)
        weights = pruner.bracket_weights
        total = sum(weights)
        brackets = [pruner.bracket_of(n) for n in range(2_000)]
        for start in (0, 517):
            counts = [0] * pruner.n_brackets
            for n, b in enumerate(brackets[start:], start=1):
                counts[b] += 1
                for count, weight in zip(counts, weights, strict=True):
                    assert abs(count - n * weight / total) <= 3, (max_resource, eta, start, n, counts)


def test_hyperband_with_a_max_resource_off_the_powers_of_eta() -> None:
    pruner = HyperbandPruner(min_resource=1, max_resource=28, reduction_factor=3, metric="val_loss")
    study = tunelab.create_study(sampler=tunelab.RandomSampler(), seed=0, pruner=pruner)

    def objective(trial: tunelab.Trial) -> float:
        q = trial.suggest_float("q", 0.0, 10.0)
        for step in range(1, 29):
            trial.report(step, val_loss=q + 1.0 / step)
            if trial.should_prune():
                raise tunelab.TrialPruned()
        return q + 1.0 / 28

    study.optimize(objective, n_trials=60)
    last = pruner.n_brackets - 1
    for t in study.trials:
        if pruner.bracket_of(t.number) == last:
            assert t.state == TrialState.COMPLETE  # the hedge: trained to the end, as random search would
        if t.state == TrialState.PRUNED:
            assert pruned_step(t) in (1, 3, 9)  # never at 27 of 28 epochs
    assert sum(pruner.bracket_of(t.number) == last for t in study.trials) >= 3
    assert sum(t.state == TrialState.PRUNED for t in study.trials) >= 20


def test_hyperband_trials_compete_only_within_their_bracket() -> None:
    pruner = HyperbandPruner(min_resource=1, max_resource=27, reduction_factor=3)
    study = tunelab.create_study(sampler=tunelab.RandomSampler(), seed=0, pruner=pruner)
    qualities = QUALITIES * 2
    run_enqueued(study, qualities)
    by_bracket: dict[int, list[float]] = {}
    for t in study.trials:
        b = pruner.bracket_of(t.number)
        by_bracket.setdefault(b, []).append(t.params["q"])
        step = pruned_step(t)
        if step is not None:
            assert step in pruner.brackets[b].rungs(up_to=27)
            assert f"bracket {b}" in t.system_attrs["pruned"]["rule"]
    for b, qs in by_bracket.items():  # the best of each bracket survives
        best = min(qs)
        winners = [t for t in study.trials if pruner.bracket_of(t.number) == b and t.params["q"] == best]
        assert all(t.state == TrialState.COMPLETE for t in winners)


def test_pruner_is_stored_and_rebuilt_by_load_study(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    pruner = SuccessiveHalvingPruner(min_resource=2, reduction_factor=4, max_resource=64, metric="val_loss")
    tunelab.create_study(name="p", storage=url, seed=0, pruner=pruner)
    loaded = tunelab.load_study("p", storage=url)
    assert loaded.pruner is not None and loaded.pruner.describe() == pruner.describe()
    for p in (MedianPruner(percentile=25.0), HyperbandPruner(max_resource=27)):
        assert pruner_from_description(p.describe()).describe() == p.describe()


def test_a_named_metric_must_be_reported() -> None:
    named = tunelab.create_study(seed=0, pruner=MedianPruner(metric="val_acc"))
    other = named.ask()
    other.report(0, val_loss=1.0)
    with pytest.raises(ConfigError, match="val_acc"):
        other.should_prune()


def test_a_named_validation_metric_reported_less_often_than_the_training_loss() -> None:
    # train_loss every epoch, val_loss every 2: metric='val_loss' was a ConfigError at the first train_loss report
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler(),
                                 pruner=MedianPruner(n_startup_trials=1, metric="val_loss"))

    def objective(trial: tunelab.Trial) -> float:
        level = trial.suggest_float("level", 0.0, 1.0)
        for epoch in range(1, 11):
            trial.report(epoch, train_loss=level + 1.0 / epoch)
            if epoch % 2 == 0:
                trial.report(epoch, val_loss=level + 1.0 / epoch)
            if trial.should_prune():
                raise tunelab.TrialPruned()
        return level

    study.enqueue({"level": 0.0})
    study.enqueue({"level": 0.5})
    study.optimize(objective, n_trials=2, show_progress=False)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.PRUNED]
    assert study.trials[1].system_attrs["pruned"]["metric"] == "val_loss"
    assert study.trials[1].system_attrs["pruned"]["step"] == 2  # judged at its first validation
    typo = tunelab.create_study(seed=0, pruner=MedianPruner(metric="val_los"))
    trial = typo.ask()
    trial.report(1, train_loss=1.0)
    assert not trial.should_prune()  # validation may come later
    trial.report(2, val_loss=1.0)
    with pytest.raises(ConfigError, match="val_los"):  # a validation report without it: a typo
        trial.should_prune()


@pytest.mark.parametrize("make", [
    lambda: MedianPruner(n_startup_trials=1, metric="val_acc"),
    lambda: SuccessiveHalvingPruner(metric="val_acc"),
    lambda: HyperbandPruner(max_resource=9, metric="val_acc"),
    lambda: tunelab.LearningCurvePruner(max_resource=9, metric="val_acc"),
])
def test_a_named_metric_whose_name_says_the_other_direction_is_refused_at_the_first_report(make) -> None:  # type: ignore[no-untyped-def]
    # metric='val_acc' in a study that minimizes: the pruner minimized the accuracy and stopped the best trials
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler(), pruner=make())
    trial = study.ask()
    trial.report(1, val_loss=0.5, val_acc=0.5)
    with pytest.raises(ConfigError, match=r"metric='val_acc', direction='maximize'"):
        trial.should_prune()
    fixed = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler(),
                                 pruner=MedianPruner(n_startup_trials=1, metric="val_acc", direction="maximize"))
    trial = fixed.ask()
    trial.report(1, val_loss=0.5, val_acc=0.5)
    assert not trial.should_prune()


def test_median_interval_steps_judges_the_first_report_past_each_pruning_step() -> None:
    # reports at odd steps with interval_steps=2: (step - warm-up) % 2 was never 0, so nothing was ever pruned
    pruner = MedianPruner(n_startup_trials=0, interval_steps=2, n_warmup_steps=0, metric="val_loss")
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler(), pruner=pruner)

    def objective(trial: tunelab.Trial) -> float:
        level = trial.suggest_float("level", 0.0, 1.0)
        for step in range(1, 20, 2):
            trial.report(step, val_loss=level + 1.0 / step)
            if trial.should_prune():
                raise tunelab.TrialPruned()
        return level

    study.enqueue({"level": 0.0})
    study.enqueue({"level": 1.0})
    study.optimize(objective, n_trials=2, show_progress=False)
    assert study.trials[1].state == TrialState.PRUNED
    assert study.trials[1].system_attrs["pruned"]["step"] == 1  # the first report at or past pruning step 0


def test_median_pruner_without_a_metric_on_the_readmes_loop() -> None:
    # trial.report(epoch, train_loss=..., val_loss=...) with MedianPruner(): it prunes on val_loss
    # (issue 16, item 11; it used to fail at the first report).
    study = tunelab.create_study(sampler=tunelab.RandomSampler(), seed=0, pruner=MedianPruner(n_startup_trials=3))
    for q in [1.0, 2.0, 3.0, 9.0, 0.5]:
        study.enqueue({"q": q})
    study.optimize(staircase_two_metrics, n_trials=5)
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3 + [TrialState.PRUNED, TrialState.COMPLETE]
    assert trials[3].system_attrs["pruned"]["metric"] == "val_loss"


def test_median_pruner_without_a_metric_in_worker_processes(tmp_path: Path) -> None:
    study = tunelab.create_study(name="m", storage=f"sqlite:///{tmp_path / 'm.db'}", sampler=tunelab.RandomSampler(),
                                 seed=0, pruner=MedianPruner(n_startup_trials=3))
    for q in QUALITIES:
        study.enqueue({"q": q})
    study.optimize(staircase_two_metrics, n_trials=len(QUALITIES), n_workers=2)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned and all(t.system_attrs["pruned"]["metric"] == "val_loss" for t in pruned)
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)


@pytest.mark.parametrize(("reported", "direction", "chosen"), [
    (["val_loss"], "maximize", "val_loss"),  # the only metric, whatever its name
    (["train_loss", "val_loss"], "minimize", "val_loss"),
    (["train_loss", "val_loss", "val_acc"], "minimize", "val_loss"),
    (["train_loss", "val_loss", "val_acc"], "maximize", "val_acc"),
    (["train_acc", "valid_f1_score", "valid_loss"], "maximize", "valid_f1_score"),
    (["loss", "acc"], "minimize", "loss"),  # no validation metric: those not named train_*
    (["train_loss", "val_bpb"], "minimize", "val_bpb"),  # one validation metric whose name says nothing
])
def test_a_pruner_without_a_metric_picks_the_validation_metric_of_its_direction(
    reported: list[str], direction: str, chosen: str
) -> None:
    assert MedianPruner().metric_of(dict.fromkeys(reported, 1.0), direction) == chosen
    assert MedianPruner(direction=direction).metric_of(dict.fromkeys(reported, 1.0), "minimize") == chosen


@pytest.mark.parametrize(("reported", "direction", "why"), [
    (["train_loss", "val_acc"], "minimize", "look like metrics to maximize"),  # never val_acc for a minimize study
    (["val_loss", "val_mse"], "minimize", "all look like metrics to minimize"),
    (["train_loss", "train_acc"], "minimize", "all training metrics"),
    (["val_a", "val_b"], "maximize", "says by its name"),
])
def test_a_pruner_without_a_metric_refuses_to_guess(reported: list[str], direction: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why) as raised:
        MedianPruner().metric_of(dict.fromkeys(reported, 1.0), direction)
    message = str(raised.value)
    assert str(sorted(reported)) in message and "MedianPruner(metric=" in message


@pytest.mark.parametrize(("reported", "direction", "chosen"), [
    (["train/loss", "val/loss"], "minimize", "val/loss"),  # Lightning's and TensorBoard's names
    (["train/loss", "val/loss", "val/acc"], "maximize", "val/acc"),
    (["train/loss", "eval/loss"], "minimize", "eval/loss"),  # Hugging Face's
])
def test_validation_and_training_metrics_named_with_a_slash(reported: list[str], direction: str, chosen: str) -> None:
    # 'val/loss' was no validation metric: a ConfigError that suggested metric='train/loss'
    assert MedianPruner().metric_of(dict.fromkeys(reported, 1.0), direction) == chosen


def test_diagnosis_pairs_curves_named_with_a_slash() -> None:
    from tunelab.analysis.diagnosis import diagnose_curves
    steps = list(range(1, 41))
    train = [1.0 / s for s in steps]
    val = [1.0 / s + 0.01 * s for s in steps]  # the gap grows: overfitting, read from the pair only
    found = diagnose_curves({"train/loss": (steps, train), "val/loss": (steps, val)})
    assert [(f.condition, f.metric) for f in found] == [("overfitting", "train/loss/val/loss")]


def test_an_ambiguous_report_stops_the_study_at_the_first_report_with_the_fix(tmp_path: Path) -> None:
    study = tunelab.create_study(seed=0, pruner=MedianPruner())
    trial = study.ask()
    trial.report(0, train_loss=1.0, val_acc=0.5)  # a study that minimizes: val_acc cannot be it
    with pytest.raises(ConfigError, match=r"MedianPruner\(metric='val_acc', direction='maximize'\)"):
        trial.should_prune()
    parallel = tunelab.create_study(name="a", storage=f"sqlite:///{tmp_path / 'a.db'}", seed=0,
                                    sampler=tunelab.RandomSampler(), pruner=MedianPruner())
    with pytest.raises(ConfigError, match="cannot tell which of the metrics"):
        parallel.optimize(train_loss_and_val_acc, n_trials=4, n_workers=2)


def test_without_a_pruner_or_a_report_nothing_is_pruned() -> None:
    study = tunelab.create_study(seed=0)
    trial = study.ask()
    assert not trial.should_prune()
    trial.report(0, loss=math.nan)
    assert not trial.should_prune()


@pytest.mark.parametrize("pruner", [SuccessiveHalvingPruner(min_resource=1, reduction_factor=2),
                                    MedianPruner(n_startup_trials=1)])
def test_a_trial_pruned_on_a_nan_value_ends_pruned(pruner: tunelab.Pruner) -> None:
    def objective(trial: tunelab.Trial) -> float:
        diverged = trial.suggest_bool("diverged")
        for epoch in range(1, 4):
            trial.report(epoch, loss=math.nan if diverged else 1.0 / epoch)
            if trial.should_prune():
                raise tunelab.TrialPruned()
        return 1.0 / 3

    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler(), pruner=pruner)
    study.enqueue({"diverged": False})
    study.enqueue({"diverged": True})
    study.optimize(objective, n_trials=2)
    diverged = study.trials[1]
    assert diverged.state == TrialState.PRUNED, diverged.error  # was FAIL: a NaN in the record could not be stored
    pruned = diverged.system_attrs["pruned"]
    assert (pruned["step"], pruned["metric"], pruned["value"]) == (1, "loss", None)
    assert "nan" in pruned["detail"].lower()


@pytest.mark.parametrize("make", [
    lambda: SuccessiveHalvingPruner(reduction_factor=1),
    lambda: SuccessiveHalvingPruner(min_resource=0),
    lambda: SuccessiveHalvingPruner(min_resource=4, max_resource=2),
    lambda: HyperbandPruner(max_resource=0),
    lambda: MedianPruner(percentile=150),
    lambda: MedianPruner(n_warmup_steps=-1),
    lambda: MedianPruner(direction="up"),
])
def test_bad_settings_are_refused(make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError):
        make()


@pytest.mark.parametrize(("make", "match"), [
    (lambda: SuccessiveHalvingPruner(min_resource=10, max_resource=10), "min_resource"),
    (lambda: SuccessiveHalvingPruner(min_resource=1, reduction_factor=3, max_resource=9, min_early_stopping_rate=2),
     "min_early_stopping_rate"),
    (lambda: HyperbandPruner(min_resource=5, max_resource=5), "max_resource"),
    (lambda: HyperbandPruner(min_resource=1, max_resource=2, reduction_factor=3), "max_resource"),
])
def test_settings_with_no_rung_below_max_resource_are_refused(make, match: str) -> None:  # type: ignore[no-untyped-def]
    # they were accepted, and the study then pruned nothing without a word
    with pytest.raises(ConfigError, match=match):
        make()
    assert SuccessiveHalvingPruner(min_resource=1, max_resource=2).rungs(2) == [1]
    assert [b.rungs(3) for b in HyperbandPruner(min_resource=1, max_resource=3).brackets] == [[1], []]


def test_a_report_past_a_rung_is_the_one_judged_there() -> None:
    curve = Curve()
    for step in (2, 4):
        curve[step] = 1.0
    assert rung_judged([1, 3], curve, 4) == 3  # the first report past rung 3
    curve[6] = 1.0
    assert rung_judged([1, 3], curve, 6) is None  # judged at 4 already
    curve[9] = 1.0
    assert rung_judged([1, 3, 9], curve, 9) == 9  # on the rung
    assert rung_judged([1, 3], {2: 1.0, 4: 1.0}, 4) == 3 and rung_judged([], {1: 1.0}, 1) is None  # plain mapping


@pytest.mark.parametrize("pruner", [
    tunelab.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3, max_resource=27),
    tunelab.HyperbandPruner(min_resource=1, max_resource=27, reduction_factor=3),
], ids=["asha", "hyperband"])
def test_reports_that_step_past_the_rungs_are_judged_at_the_first_report_past_each(pruner: Pruner) -> None:
    """Validation every 2 epochs against rungs at 1, 3, 9: judged at steps 2, 4 and 10 (before, never)."""
    study = tunelab.create_study(sampler=tunelab.RandomSampler(), pruner=pruner, seed=0)

    def objective(trial: tunelab.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        for epoch in range(2, 14, 2):
            trial.report(epoch, val_loss=x + 1.0 / epoch)
            if trial.should_prune():
                raise tunelab.TrialPruned()
        return x

    study.optimize(objective, n_trials=30)
    pruned = study.get_trials([TrialState.PRUNED])
    assert len(pruned) >= 10
    for t in pruned:
        record = t.system_attrs["pruned"]
        rung = {2: 1, 4: 3, 10: 9}[record["step"]]  # only the first report past a rung
        assert f"rung at step {rung}" in record["rule"] and "first report past the rung" in record["detail"]
        done = [c for c in study.get_trials([TrialState.COMPLETE]) if c.number < t.number]
        assert t.params["x"] > min((c.params["x"] for c in done), default=-1.0)  # never the best so far
    assert study.best_trial.params["x"] == min(t.params["x"] for t in study.trials)


STEPS = 30


def _judged_steps(pruner: Pruner, directions: list[str], number_of_good: int) -> tuple[set[int], set[int]]:
    """(steps where a hopeless trial reporting every step is stopped, steps ``next_pruning_step`` names):
    ``number_of_good`` trials complete with good values at every step first; then, for each step s, a fresh
    trial reports steps 0..s with a value worse than all and asks the pruner at s only."""
    study = tunelab.create_study(sampler=tunelab.RandomSampler(), seed=0, pruner=pruner, directions=directions)
    names = [f"objective_{i}" for i in range(len(directions))] if len(directions) > 1 else ["val_loss"]
    for _ in range(number_of_good):
        trial = study.ask()
        for step in range(STEPS):
            trial.report(step, **{n: 0.1 for n in names})
        study.tell(trial, values=[0.1] * len(directions))
    stopped, named = set(), set()
    for s in range(STEPS):
        trial = study.ask()
        for step in range(s + 1):
            trial.report(step, **{n: 5.0 for n in names})
        if trial.next_pruning_step(s - 1) == s:
            named.add(s)
        if trial.should_prune():
            stopped.add(s)
        study.tell(trial, state=TrialState.PRUNED)
    return stopped, named


@pytest.mark.parametrize("make", [
    lambda: SuccessiveHalvingPruner(min_resource=1, reduction_factor=3, max_resource=27),
    lambda: SuccessiveHalvingPruner(min_resource=2, reduction_factor=2, min_early_stopping_rate=1),
    lambda: HyperbandPruner(min_resource=1, max_resource=27, reduction_factor=3),
    lambda: MedianPruner(n_startup_trials=2, n_warmup_steps=4, interval_steps=3),
    lambda: tunelab.ParetoSuccessiveHalvingPruner(min_resource=1, reduction_factor=3, max_resource=27),
    lambda: tunelab.ParetoMedianPruner(n_startup_trials=2, n_warmup_steps=4, interval_steps=3),
], ids=["asha", "asha-no-cap", "hyperband", "median", "pareto-asha", "pareto-median"])
def test_next_pruning_step_names_exactly_the_steps_the_pruner_can_stop_at(make) -> None:  # type: ignore[no-untyped-def]
    pruner = make()
    directions = ["minimize", "minimize"] if isinstance(pruner, ParetoPruner) else ["minimize"]
    stopped, named = _judged_steps(pruner, directions, number_of_good=3)
    assert stopped == named
    assert len(stopped) >= 2  # the test has teeth: rungs, or the median rule's steps past its warm-up
    assert len(stopped) < STEPS or isinstance(pruner, MedianPruner)


@pytest.mark.parametrize("make", [
    lambda: MedianPruner(n_startup_trials=5),
    lambda: tunelab.ParetoMedianPruner(n_startup_trials=5),
], ids=["median", "pareto-median"])
def test_no_pruning_step_before_enough_trials_complete(make) -> None:  # type: ignore[no-untyped-def]
    pruner = make()
    directions = ["minimize", "minimize"] if isinstance(pruner, ParetoPruner) else ["minimize"]
    stopped, named = _judged_steps(pruner, directions, number_of_good=2)
    assert stopped == named == set()
    study = tunelab.create_study(sampler=tunelab.RandomSampler(), seed=0, pruner=make(), directions=directions)
    assert study.ask().next_pruning_step(3) == NO_DECISION


def test_without_a_pruner_no_step_is_a_pruning_step_and_a_custom_pruner_decides_at_every_step() -> None:
    assert tunelab.create_study(seed=0).ask().next_pruning_step(7) == NO_DECISION

    class Always(Pruner):
        def decide(self, history, number, metric, curve):  # type: ignore[no-untyped-def]
            return None

    assert tunelab.create_study(seed=0, pruner=Always()).ask().next_pruning_step(7) == 8


def test_the_median_rules_percentile_is_numpys_to_the_last_bit() -> None:
    import random

    import numpy as np

    from tunelab.pruners.median import percentile

    rng = random.Random(0)
    for _ in range(20_000):
        values = [rng.choice([rng.random(), rng.gauss(0.0, 1e3), float(rng.randint(0, 4))])
                  for _ in range(rng.randint(1, 25))]
        q = rng.choice([50.0, 0.0, 100.0, 25.0, 75.0, rng.uniform(0.0, 100.0)])
        assert percentile(values, q) == float(np.percentile(values, q)), (values, q)
