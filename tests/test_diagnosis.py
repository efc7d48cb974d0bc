"""tunelab.analysis.diagnosis: learning-curve diagnosis on labelled synthetic curves (the generator
of ``benchmarks/diagnosis.py``), edge cases, a real SQLite study, and real PyTorch runs on the
digits with planted conditions."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tunelab
from benchmark_modules import load_benchmark
from tunelab.analysis.diagnosis import ACTIONS, CONDITIONS, Finding, diagnose, diagnose_curves, metric_direction
from tunelab.errors import ConfigError

bench = load_benchmark("diagnosis")


def found(curves: dict[str, Any], **kwargs: Any) -> set[str]:
    return {f.condition for f in diagnose_curves(curves, **kwargs)}


def curve(values: Any, steps: Any = None) -> tuple[list[int], list[float]]:
    values = [float(v) for v in values]
    return (list(range(len(values))) if steps is None else [int(s) for s in steps]), values


T = np.linspace(0.0, 1.0, 60)


def healthy_loss(floor: float = 0.2, start: float = 2.3) -> np.ndarray:
    g = 0.2 * np.exp(-T / 0.05) + 0.8 * np.exp(-T / 0.25)
    return floor + (start - floor) * g


# -- every condition fires on its own curves, and healthy curves stay quiet -----------------------
@pytest.mark.parametrize("condition", CONDITIONS)
def test_each_condition_fires_on_its_generated_curves(condition: str) -> None:
    for seed in range(5):
        case = bench.make_case(condition, "low", seed)
        assert condition in case.run(), (seed, case.fmt)


def test_healthy_curves_give_no_findings() -> None:
    for noise in ("low", "medium"):
        for seed in range(10):
            case = bench.make_case("healthy", noise, seed)
            assert case.run() == set(), (noise, seed, case.fmt)


def test_precision_and_recall_across_seeds_and_noise() -> None:
    cases = bench.make_cases(per=6, noise_levels=("low", "medium"), seed=11)
    scores = bench.score(cases)
    for condition in CONDITIONS:
        assert scores[condition]["recall"] >= 0.8, (condition, scores[condition])
        assert scores[condition]["precision"] >= 0.8, (condition, scores[condition])
    assert scores["healthy"]["clean"] >= 0.9 * scores["healthy"]["cases"]


# -- hand-made curves, one rule at a time ---------------------------------------------------------
def test_overfitting_pair() -> None:
    train = healthy_loss(0.02)
    val = 0.5 + 1.8 * np.exp(-T / 0.08) + 0.4 * np.clip((T - 0.3) / 0.7, 0, 1)
    findings = diagnose_curves({"train_loss": curve(train), "val_loss": curve(val)})
    assert [f.condition for f in findings] == ["overfitting"]
    f = findings[0]
    assert f.metric == "train_loss/val_loss"
    assert "val_loss rose from" in f.message and "train_loss kept falling" in f.message
    assert f.action == ACTIONS["overfitting"]
    assert f.evidence["gap"][-1] > f.evidence["gap"][0] - 2  # gap series is there
    assert len(f.evidence["steps"]) == len(f.evidence["train"]) == len(f.evidence["val"])
    # the same validation curve with a training curve that rises too is not overfitting
    assert "overfitting" not in found({"train_loss": curve(val - 0.1), "val_loss": curve(val)})


def test_divergence_nan_and_blow_up() -> None:
    loss = list(healthy_loss())
    nan_end = loss[:40] + [math.nan] * 3
    findings = diagnose_curves({"loss": curve(nan_end)})
    assert findings[0].condition == "divergence"
    assert "nan at step 40" in findings[0].message
    blow_up = healthy_loss() + np.where(T > 0.5, 0.3 * (np.exp((T - 0.5) / 0.05) - 1), 0.0)
    assert "divergence" in found({"loss": curve(blow_up)})
    # with the expected initial loss: a net that blew up and died at chance level
    dead = [40.0, 3.1] + [2.31 + 0.01 * math.sin(i) for i in range(30)]
    assert "divergence" in found({"train_loss": curve(dead)}, expected_initial_loss=math.log(10))
    assert "divergence" not in found({"train_loss": curve(dead)})


def test_initial_loss() -> None:
    loss = healthy_loss(start=2.3)
    assert found({"train_loss": curve(loss)}, expected_initial_loss=2.3) == set()
    high = loss.copy()
    high[0] = 9.0
    findings = diagnose_curves({"train_loss": curve(high)}, expected_initial_loss=2.3)
    assert [f.condition for f in findings] == ["initial_loss"]
    assert "above the expected 2.3" in findings[0].message
    # below the expected value: a problem only when measured before training (step 0)
    low = healthy_loss(start=1.0, floor=0.1)
    assert "initial_loss" in found({"loss": curve(low)}, expected_initial_loss=2.3)
    assert "initial_loss" not in found({"loss": curve(low, range(1, 61))}, expected_initial_loss=2.3)


def test_bad_init_plateau_and_still_improving() -> None:
    flat_then_drop = np.where(T < 0.25, 2.3, 0.2 + 2.1 * (0.5 * np.exp(-(T - 0.25) / 0.02)
                                                        + 0.5 * np.exp(-(T - 0.25) / 0.25)))
    assert found({"loss": curve(flat_then_drop)}) == {"bad_init"}
    plateau = 0.6 + 1.7 * np.exp(-T / 0.06)
    assert found({"loss": curve(plateau)}) == {"plateau"}
    # the same plateau after the learning rate was cut 10x is not a plateau to fix by decaying it
    lr = np.where(T < 0.1, 1e-2, 1e-3)
    assert "plateau" not in found({"loss": curve(plateau), "lr": curve(lr)})
    improving = 0.1 + 2.2 * np.exp(-T / 1.0)
    assert found({"val_loss": curve(improving)}) == {"still_improving"}
    assert found({"loss": curve(healthy_loss())}) == set()


def test_a_curve_flat_from_the_start_is_not_learning() -> None:
    """A loss at ln C the whole run (an accuracy at chance): 'not_learning', with the gradient-flow
    action; before, such curves gave no finding at all (or 'noisy' for a quantised accuracy)."""
    rng = np.random.default_rng(0)
    ln10 = math.log(10)
    flat = ln10 + 0.02 * rng.standard_normal(T.size)
    findings = diagnose_curves({"train_loss": curve(flat), "val_loss": curve(flat[::-1] + 0.01)},
                               expected_initial_loss=ln10)
    assert [f.condition for f in findings] == ["not_learning"]
    assert findings[0].metric == "train_loss/val_loss" and "gradient flow" in findings[0].action
    assert "learning rate far too low" in findings[0].action and "expected initial loss" in findings[0].message
    assert findings[0].evidence["level"] == pytest.approx(ln10, abs=0.02)
    chance = 0.1 + 0.01 * rng.standard_normal(T.size)
    assert found({"train_acc": curve(chance), "val_acc": curve(chance[::-1])}) == {"not_learning"}
    drifting = ln10 * (1 - 0.01 * T) + 0.02 * rng.standard_normal(T.size)  # a 1% drift is no learning
    assert found({"loss": curve(drifting)}) == {"not_learning"}
    # distinct from a bad initialisation (flat, then a sudden drop) and a plateau (a drop, then flat)
    flat_then_drop = np.where(T < 0.25, ln10, 0.2 + 2.1 * (0.5 * np.exp(-(T - 0.25) / 0.02)
                                                           + 0.5 * np.exp(-(T - 0.25) / 0.25)))
    assert found({"loss": curve(flat_then_drop)}, expected_initial_loss=ln10) == {"bad_init"}
    assert found({"loss": curve(0.6 + 1.7 * np.exp(-T / 0.06))}, expected_initial_loss=ln10) == {"plateau"}
    # flat at a low loss (a run resumed after it learned) is not a model that does not learn
    assert "not_learning" not in found({"loss": curve(0.3 + 0.005 * rng.standard_normal(T.size))},
                                       expected_initial_loss=ln10)
    # a slow but clear descent is not flat
    assert "not_learning" not in found({"loss": curve(ln10 - 0.3 * T + 0.02 * rng.standard_normal(T.size))})
    assert ACTIONS["not_learning"] and "not_learning" in CONDITIONS


def test_decay_too_early_from_decay_steps_or_an_lr_curve() -> None:
    td = 0.2
    cum = np.where(T < td, T, td + 0.01 * (T - td))
    loss = 0.1 + 2.2 * np.exp(-cum / 0.3)
    i = int(np.searchsorted(T, td))
    assert found({"loss": curve(loss)}, decay_steps=[i]) == {"decay_too_early"}
    lr = np.where(np.arange(60) >= i, 1e-5, 1e-3)
    findings = diagnose_curves({"loss": curve(loss), "lr": curve(lr)})
    assert [f.condition for f in findings] == ["decay_too_early"]
    assert findings[0].evidence["decay_step"] == i
    # a decay after the curve had flattened is what a schedule should do
    assert "decay_too_early" not in found({"loss": curve(healthy_loss())}, decay_steps=[40])


def test_underfitting_and_noise() -> None:
    train = 1.6 + 0.7 * np.exp(-T / 0.1)
    assert found({"train_loss": curve(train), "val_loss": curve(train * 1.03)}) == {"underfitting"}
    rng = np.random.default_rng(0)
    noisy = healthy_loss() + rng.normal(0, 0.5, T.size)
    findings = diagnose_curves({"loss": curve(noisy)})
    assert [f.condition for f in findings] == ["noisy"]
    assert findings[0].evidence["noise"] > 0.3


def test_accuracy_pairs() -> None:
    acc = 0.95 - 0.85 * (0.2 * np.exp(-T / 0.05) + 0.8 * np.exp(-T / 0.25))
    assert found({"train_acc": curve(acc), "val_acc": curve(acc - 0.03 * (1 - np.exp(-T / 0.1)))}) == set()
    val = 0.85 - 0.75 * np.exp(-T / 0.08) - 0.15 * np.clip((T - 0.3) / 0.7, 0, 1)
    findings = diagnose_curves({"train_acc": curve(np.minimum(acc + 0.05, 1.0)), "val_acc": curve(val)})
    assert [f.condition for f in findings] == ["overfitting"]
    assert "val_acc fell from" in findings[0].message
    poor = 0.5 - 0.4 * np.exp(-T / 0.1)
    assert found({"train_acc": curve(poor), "val_acc": curve(poor - 0.01)}) == {"underfitting"}
    assert metric_direction("val_acc") == metric_direction("F1") == metric_direction("top1_accuracy") == "maximize"
    assert metric_direction("val_loss") == metric_direction("perplexity") == "minimize"


def test_directions_override() -> None:
    rising = 0.1 + 0.8 * (1 - np.exp(-T / 0.05))  # a maximised measure that plateaued at 0.9
    assert "divergence" in found({"quality": curve(rising)})  # its name says nothing: read as a loss, it blew up
    assert "divergence" not in found({"quality": curve(rising)}, directions={"quality": "maximize"})
    assert "divergence" not in found({"score": curve(rising)})  # a score is maximised, as the pruners read it
    with pytest.raises(ConfigError, match="minimize"):
        diagnose_curves({"quality": curve(rising)}, directions={"quality": "up"})
    with pytest.raises(ConfigError, match="expected_initial_loss"):
        diagnose_curves({"loss": curve(rising)}, expected_initial_loss=-1.0)


def test_maximised_metrics_named_as_the_pruners_read_them() -> None:
    # reward, BLEU, top-1 and f1_score rise as training goes well: read as losses, they "diverged"
    rising = 0.1 + 0.8 * (1 - np.exp(-T / 0.05))
    for name in ("reward", "val_bleu", "val_top1", "f1_score", "val_auroc", "episode_reward"):
        assert metric_direction(name) == "maximize", name
        assert "divergence" not in found({name: curve(rising)}), name
    assert "divergence" not in found({"train_top1": curve(rising), "val_top1": curve(rising - 0.05)})
    for name in ("val_loss", "mse", "val_error", "valacc", "score"):
        assert metric_direction(name) == ("maximize" if name in ("valacc", "score") else "minimize"), name


def test_diagnose_takes_the_direction_the_study_knows_for_a_metric() -> None:
    # MedianPruner(metric='val_score') in a study that maximizes: the rising val_score was a diverged loss
    study = tunelab.create_study(direction="maximize", sampler=tunelab.RandomSampler(),
                                 pruner=tunelab.MedianPruner(metric="val_score"))
    trial = study.ask()
    for step, value in enumerate(0.1 + 0.8 * (1 - np.exp(-T / 0.05))):
        trial.report(step, val_score=float(value), value=float(value))
    study.tell(trial, 0.9)
    assert "divergence" not in {f.condition for f in diagnose(study, 0)}
    named = tunelab.create_study(directions=["maximize"], objective_names=["score"], sampler=tunelab.RandomSampler())
    trial = named.ask()
    for step, value in enumerate(0.1 + 0.8 * (1 - np.exp(-T / 0.05))):
        trial.report(step, score=float(value))
    named.tell(trial, 0.9)
    assert "divergence" not in {f.condition for f in diagnose(named, 0)}


# -- edge cases -----------------------------------------------------------------------------------
def test_empty_short_and_constant_curves() -> None:
    assert diagnose_curves({}) == []
    assert diagnose_curves({"loss": ([], [])}) == []
    assert diagnose_curves({"loss": curve([2.3, 2.0, 1.5, 1.2])}) == []
    assert found({"loss": curve([2.3, 2.0, float("nan")])}) == {"divergence"}
    assert found({"loss": curve([9.0, 2.0, 1.5])}, expected_initial_loss=2.3) == {"initial_loss"}
    # curves that never moved: a model that does not learn (a constant loss is also what a detached loss gives)
    assert found({"loss": curve([1.0] * 40), "val_loss": curve([1.0] * 40)}) == {"not_learning"}
    assert found({"val_acc": curve([0.1] * 30)}) == {"not_learning"}
    quantised = [0.1, 0.1, 0.102, 0.1, 0.098, 0.1, 0.1, 0.1, 0.102, 0.1] * 3  # accuracy of a dead net
    assert found({"train_acc": curve(quantised), "val_acc": curve(quantised[::-1])}) == {"not_learning"}
    assert diagnose_curves({"val_acc": curve([0.97] * 30)}) == []  # flat at a good level: nothing to say
    assert diagnose_curves({"lr": curve([1e-3] * 30)}) == []  # a learning rate is not a learning curve


def test_nan_inside_none_and_infinite_values() -> None:
    loss: list[Any] = list(healthy_loss())
    loss[10], loss[20], loss[30] = math.nan, None, math.inf
    assert found({"loss": curve([v if v is not None else math.nan for v in loss])}) == set()
    assert found({"loss": (list(range(60)), loss)}) == set()
    inf_end = [*list(healthy_loss())[:50], math.inf]
    f = diagnose_curves({"loss": curve(inf_end)})[0]
    assert f.condition == "divergence" and "inf at step 50" in f.message
    data = f.to_json()
    json.dumps(data, allow_nan=False)
    assert None in data["evidence"]["values"]


def test_uneven_unsorted_steps_and_mismatched_lengths() -> None:
    rng = np.random.default_rng(3)
    steps = np.cumsum(rng.integers(1, 20, size=60))
    plateau = 0.6 + 1.7 * np.exp(-(steps - steps[0]) / (0.06 * (steps[-1] - steps[0])))
    assert found({"loss": curve(plateau, steps)}) == {"plateau"}
    order = rng.permutation(60)
    assert found({"loss": curve(plateau[order], steps[order])}) == {"plateau"}
    with pytest.raises(ConfigError, match="60 steps but 59 values"):
        diagnose_curves({"loss": (list(range(60)), list(plateau[:59]))})


def test_long_curves_are_fast_and_evidence_is_thinned() -> None:
    t = np.linspace(0, 1, 20_000)
    rng = np.random.default_rng(0)
    loss = 0.6 + 1.7 * np.exp(-t / 0.06) + rng.normal(0, 0.01, t.size)
    start = time.perf_counter()
    findings = diagnose_curves({"train_loss": curve(loss), "val_loss": curve(loss + 0.05), "lr": curve(0 * t + 1e-3)})
    assert time.perf_counter() - start < 2.0
    assert [f.condition for f in findings] == ["plateau"]
    assert len(findings[0].evidence["steps"]) <= 200
    assert findings[0].evidence["steps"][-1] == 19_999


def test_finding_json_round_trip() -> None:
    f = Finding("plateau", "loss", "flat", ACTIONS["plateau"], {"steps": [1, 2], "values": [float("nan"), 1.0]})
    data = f.to_json()
    assert data == {"condition": "plateau", "metric": "loss", "message": "flat", "action": ACTIONS["plateau"],
                    "evidence": {"steps": [1, 2], "values": [None, 1.0]}}
    for case in bench.make_cases(per=1, noise_levels=("medium",), seed=5):
        for finding in diagnose_curves(case.curves, **case.kwargs):
            assert finding.condition in CONDITIONS
            json.dumps(finding.to_json(), allow_nan=False)


# -- a stored study -------------------------------------------------------------------------------
def test_diagnose_a_trial_of_a_sqlite_study(tmp_path: Path) -> None:
    study = tunelab.create_study(storage=f"sqlite:///{tmp_path / 'd.db'}", sampler=tunelab.RandomSampler())
    train = healthy_loss(0.02, start=3.5)  # starts far above ln 10
    val = 0.5 + 3.0 * np.exp(-T / 0.08) + 0.4 * np.clip((T - 0.3) / 0.7, 0, 1)
    trial = study.ask()
    for step, (a, b) in enumerate(zip(train, val, strict=True)):
        trial.report(step, train_loss=float(a), val_loss=float(b), lr=1e-3)
    study.tell(trial, float(val.min()))
    assert {f.condition for f in diagnose(study, 0)} == {"overfitting"}
    study.set_system_attr("recipe", {"steps": [{"step": "initial_loss", "verdict": "pass", "message": "",
                                                "evidence": {"loss": 2.31, "expected": math.log(10)}}]})
    assert {f.condition for f in diagnose(study, 0)} == {"initial_loss", "overfitting"}

    def diverges(trial: tunelab.Trial) -> float:
        from tunelab.torch import Reporter  # the Reporter stores finite values, then raises

        reporter = Reporter(trial, prune=False)
        for step in range(8):
            reporter.report(step, val_loss=2.0 - 0.1 * step)
        reporter.report(8, val_loss=float("nan"))
        return 0.0

    study.optimize(diverges, n_trials=1, show_progress=False)
    assert study.trials[1].state == tunelab.TrialState.FAIL
    findings = diagnose(study, 1)
    assert findings[0].condition == "divergence"
    assert "NaN or infinite" in findings[0].message and "val_loss 1.3 at step 7" in findings[0].message


# -- a pruned trial (issue 16 item 15) ---------------------------------------------------------------
def _pruned_study(tmp_path: Path) -> tunelab.Study:
    """Two good trials, then one whose val_loss is still falling fast but is worse than theirs: the median
    rule stops it at step 9, after its warm-up."""
    from tunelab.pruners import MedianPruner

    study = tunelab.create_study(name="pruned", storage=f"sqlite:///{tmp_path / 'p.db'}",
                                 sampler=tunelab.RandomSampler(),
                                 pruner=MedianPruner(n_startup_trials=2, n_warmup_steps=9, metric="val_loss"))

    def objective(trial: tunelab.Trial) -> float:
        level = 0.2 if trial.number < 2 else 1.5
        loss = 0.0
        for step in range(30):
            loss = level + 2.0 * math.exp(-step / 25)  # still falling clearly at every step
            trial.report(step, val_loss=loss, train_loss=loss * 0.9)
            if trial.should_prune():
                raise tunelab.TrialPruned()
        return loss

    study.optimize(objective, n_trials=3, show_progress=False)
    assert [t.state for t in study.trials][2] == tunelab.TrialState.PRUNED
    return study


def test_a_pruned_trial_says_when_and_by_which_rule_it_was_stopped(tmp_path: Path) -> None:
    study = _pruned_study(tmp_path)
    record = study.trials[2].system_attrs["pruned"]
    assert record["step"] == 9 and record["rule"] == "median at step 9"
    findings = diagnose(study, 2)
    first = findings[0]
    assert first.condition == "pruned" and first.metric == "val_loss"
    assert first.message.startswith("the trial was pruned at step 9 by the rule median at step 9 (val_loss ")
    assert record["detail"] in first.message and "only the start of its training" in first.message
    assert first.evidence["step"] == 9 and first.evidence["rule"] == "median at step 9"
    json.dumps(first.to_json(), allow_nan=False)
    by = {f.condition: f for f in findings}
    assert "underfitting" not in by  # a cut curve never settled
    improving = by["still_improving"]  # read as cut short: not "train longer"
    assert improving.message.endswith(", when it was stopped") and "prune later" in improving.action
    assert "train longer" not in improving.action
    complete = diagnose(study, 1)  # the same curve shape, not pruned: no such finding
    assert all(f.condition != "pruned" for f in complete)


def test_a_trial_pruned_because_it_diverged_is_not_called_fine(tmp_path: Path) -> None:
    # the pruned finding said "nothing to fix in its configuration" above a divergence finding
    study = tunelab.create_study(name="nan", storage=f"sqlite:///{tmp_path / 'n.db'}", sampler=tunelab.RandomSampler(),
                                 pruner=tunelab.MedianPruner(n_startup_trials=1, metric="val_loss"))

    def objective(trial: tunelab.Trial) -> float:
        for step in range(1, 12):
            loss = 1.0 / step if trial.number == 0 or step < 8 else math.nan
            trial.report(step, val_loss=loss, train_loss=loss)
            if trial.should_prune():
                raise tunelab.TrialPruned()
        return loss

    study.optimize(objective, n_trials=2, show_progress=False)
    assert study.trials[1].state == tunelab.TrialState.PRUNED
    findings = diagnose(study, 1)
    assert [f.condition for f in findings][:2] == ["pruned", "divergence"]
    assert "nothing to fix" not in findings[0].action and "learning rate" in findings[0].action
    assert "after the run diverged" in findings[0].message


def test_diagnose_command_of_a_pruned_trial(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tunelab.cli import app

    _pruned_study(tmp_path)
    result = CliRunner(env={"TUNELAB_STORAGE": None, "NO_COLOR": "1"}).invoke(
        app, ["diagnose", "pruned", "2", "--storage", f"sqlite:///{tmp_path / 'p.db'}"])
    assert result.exit_code == 0, result.output
    assert "nothing to flag" not in result.stdout
    assert "pruned (val_loss): the trial was pruned at step 9 by the rule median at step 9" in result.stdout


def test_diagnose_command_says_when_there_was_nothing_to_read(tmp_path: Path) -> None:
    # a trial without curves, or with 2 points, was "nothing to flag in its curves", as a healthy one is
    from typer.testing import CliRunner

    from tunelab.cli import app

    url = f"sqlite:///{tmp_path / 'few.db'}"
    study = tunelab.create_study(name="few", storage=url, sampler=tunelab.RandomSampler())
    trial = study.ask()
    study.tell(trial, 1.0)
    trial = study.ask()
    trial.report(1, val_loss=1.0, lr=0.1)
    trial.report(2, val_loss=0.5, lr=0.1)
    study.tell(trial, 0.5)
    trial = study.ask()
    for step in range(1, 30):
        trial.report(step, val_loss=1.0 / step)  # a healthy curve
    study.tell(trial, 0.2)
    runner = CliRunner(env={"TUNELAB_STORAGE": None, "NO_COLOR": "1", "COLUMNS": "400"})
    out = [runner.invoke(app, ["diagnose", "few", str(n), "--storage", url]) for n in range(3)]
    assert all(r.exit_code == 0 for r in out), [r.output for r in out]
    assert "it reported no learning curve, so there is nothing to read" in out[0].stdout
    assert "its curves are too short to read (val_loss: 2 points; 5 finite points" in out[1].stdout
    assert "lr" not in out[1].stdout.split("(")[1].split(";")[0]
    assert diagnose(study, 2) == []
    assert "nothing to flag in its curves (val_loss: 29 points)" in out[2].stdout


def test_diagnose_command_without_a_best_trial_says_how_to_diagnose_the_running_one(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tunelab.cli import app

    url = f"sqlite:///{tmp_path / 'r.db'}"
    study = tunelab.create_study(name="run", storage=url, sampler=tunelab.RandomSampler())
    trial = study.ask()  # a run still training: no COMPLETE trial yet
    for step in range(1, 12):
        trial.report(step, val_loss=1.0 / step)
    runner = CliRunner(env={"TUNELAB_STORAGE": None, "NO_COLOR": "1", "COLUMNS": "400"})
    result = runner.invoke(app, ["diagnose", "run", "--storage", url])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "no COMPLETE trial yet (1 trial: 1 running)" in result.stderr
    assert "give its number, e.g. `tunelab diagnose run 0` (trial 0 is running)" in result.stderr
    assert runner.invoke(app, ["diagnose", "run", "0", "--storage", url]).exit_code == 0
    tunelab.create_study(name="empty", storage=url)
    empty = runner.invoke(app, ["diagnose", "empty", "--storage", url])
    assert empty.exit_code == 1 and "it has no trials yet" in empty.stderr and "give its number" not in empty.stderr


def test_a_trial_pruned_by_its_objective_or_stopped_on_request() -> None:
    study = tunelab.create_study(sampler=tunelab.RandomSampler())
    trial = study.ask()
    for step in range(4):
        trial.report(step, val_loss=1.0 - 0.1 * step, val_acc=0.5 + 0.1 * step, lr=0.01)
    study.tell(trial, state="PRUNED")  # no pruner decided: the objective stopped itself
    (finding,) = diagnose(study, 0)
    assert finding.condition == "pruned" and "at step 3 (by the objective itself" in finding.message
    assert finding.metric == "val_acc/val_loss"  # its curves, not the learning rate
    trial = study.ask()
    trial.report(0, val_loss=1.0)
    tunelab.babysit.request_stop(study, 1)
    assert trial.should_prune()
    study.tell(trial, state="PRUNED")
    finding = diagnose(study, 1)[0]
    assert finding.message.startswith("the trial was stopped on request at step 0")


# -- real PyTorch runs on the digits ----------------------------------------------------------------
@pytest.fixture(scope="module")
def digits() -> Any:
    import torch
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    from tunelab.recipe import digits as problem

    return problem.load()


def _mlp(width: int) -> Any:
    from torch import nn

    def build(params: Any) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))

    return build


def _fit(train: Any, val: Any, width: int, params: dict[str, Any], epochs: int, **kwargs: Any) -> list[Finding]:
    from tunelab.torch import Trainer

    result = Trainer(_mlp(width), train=train, val=val, **kwargs).fit(params, epochs=epochs, restore_best=False)
    curves: dict[str, tuple[list[int], list[float]]] = {}
    for row in result.history:
        for name, value in row.items():
            if name != "step":
                curves.setdefault(name, ([], []))
                curves[name][0].append(int(row["step"]))
                curves[name][1].append(value)
    return diagnose_curves(curves, expected_initial_loss=math.log(10))


@pytest.mark.slow
def test_real_healthy_run_is_quiet(digits: Any) -> None:
    findings = _fit(*digits, width=64, params={"lr": 1e-3}, epochs=30, optimizer="adam", schedule="cosine")
    assert findings == []


@pytest.mark.slow
def test_real_too_high_learning_rate_diverges(digits: Any, tmp_path: Path) -> None:
    from tunelab.torch import Trainer

    study = tunelab.create_study(storage=f"sqlite:///{tmp_path / 'd.db'}", direction="maximize",
                                 sampler=tunelab.RandomSampler())
    study.set_system_attr("recipe", {"steps": [{"step": "initial_loss", "evidence": {"expected": math.log(10)}}]})
    trainer = Trainer(_mlp(64), train=digits[0], val=digits[1], optimizer="sgd")
    study.optimize(lambda trial: trainer.fit({"lr": 10.0}, epochs=15, trial=trial, prune=False).value,
                   n_trials=1, show_progress=False)
    conditions = [f.condition for f in diagnose(study, 0)]
    assert conditions[0] == "divergence"
    assert "overfitting" not in conditions and "underfitting" not in conditions


@pytest.mark.slow
def test_real_tiny_training_set_overfits(digits: Any) -> None:
    (x, y), val = digits
    findings = _fit((x[:60], y[:60]), val, width=256, params={"lr": 1e-2}, epochs=60, batch_size=10,
                    optimizer="adam")
    assert [f.condition for f in findings] == ["overfitting"]
    assert findings[0].metric == "train_loss/val_loss"


@pytest.mark.slow
def test_real_too_small_model_underfits(digits: Any) -> None:
    findings = _fit(*digits, width=2, params={"lr": 1e-2}, epochs=20, optimizer="adam")
    assert [f.condition for f in findings] == ["underfitting"]


@pytest.mark.slow
def test_real_dead_network_and_far_too_low_learning_rate_are_not_learning(digits: Any) -> None:
    """Real runs: zero weights (no gradient reaches the hidden layer, the output only learns the class
    frequencies, even on digits) and SGD at lr=1e-6: both stay at ln 10."""
    from torch import nn

    from tunelab.torch import Trainer

    def dead(params: Any) -> nn.Module:
        model = _mlp(32)(params)
        for p in model.parameters():
            nn.init.zeros_(p)
        return model

    def run(build: Any, lr: float) -> list[Finding]:
        result = Trainer(build, train=digits[0], val=digits[1], optimizer="sgd", device="cpu").fit(
            {"lr": lr, "momentum": 0.0}, epochs=1, eval_every=2, restore_best=False)
        curves: dict[str, tuple[list[int], list[float]]] = {}
        for row in result.history:
            for name in ("train_loss", "val_loss"):
                curves.setdefault(name, ([], []))
                curves[name][0].append(int(row["step"]))
                curves[name][1].append(row[name])
        return diagnose_curves(curves, expected_initial_loss=math.log(10))

    for build, lr in ((dead, 0.1), (_mlp(32), 1e-6)):
        assert [f.condition for f in run(build, lr)] == ["not_learning"], lr


def _decay_loop(digits: Any, decay_epoch: int | None, epochs: int = 8) -> dict[str, tuple[list[int], list[float]]]:
    """SGD on an MLP, reporting every 5 steps (21 steps an epoch); lr x0.01 at ``decay_epoch``."""
    import torch
    from torch import nn

    (x, y), (xv, yv) = digits
    torch.manual_seed(0)
    model = _mlp(64)({})
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    curves: dict[str, tuple[list[int], list[float]]] = {"train_loss": ([], []), "val_loss": ([], []), "lr": ([], [])}
    step, losses = 0, []
    for epoch in range(epochs):
        if epoch == decay_epoch:
            for group in opt.param_groups:
                group["lr"] *= 0.01
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            losses.append(float(loss.detach()))
            if step % 5 == 0:
                with torch.no_grad():
                    val_loss = float(nn.functional.cross_entropy(model(xv), yv))
                for name, value in (("train_loss", sum(losses) / len(losses)), ("val_loss", val_loss),
                                    ("lr", opt.param_groups[0]["lr"])):
                    curves[name][0].append(step)
                    curves[name][1].append(value)
                losses = []
    return curves


@pytest.mark.slow
def test_real_learning_rate_decayed_after_the_first_epoch(digits: Any) -> None:
    findings = diagnose_curves(_decay_loop(digits, decay_epoch=1), expected_initial_loss=math.log(10))
    assert [f.condition for f in findings] == ["decay_too_early"]
    assert findings[0].evidence["decay_step"] == 25  # the first report at the lower rate
    without = {f.condition for f in diagnose_curves(_decay_loop(digits, decay_epoch=None))}
    assert "decay_too_early" not in without


# -- the curve model in the diagnosis (issue 20, item 3) -------------------------------------------
def test_a_curve_with_30_percent_multiplicative_noise_is_noisy() -> None:
    """Every value off by ~30% of itself: the scatter hides in the range of a curve that falls 8x (no finding
    before; a plateau, wrongly, on some seeds); now 'noisy' with its action."""
    x = np.arange(1, 51)
    for seed in range(5):
        rng = np.random.default_rng(seed)
        loss = (0.3 + 2.0 * np.exp(-x / 8)) * (1 + 0.3 * rng.standard_normal(x.size))
        findings = diagnose_curves({"val_loss": (x.tolist(), np.abs(loss).tolist())})
        assert [f.condition for f in findings] == ["noisy"], seed
        assert findings[0].action == "a smaller learning rate or a bigger batch"
        assert "of their value" in findings[0].message and findings[0].evidence["relative_noise"] > 0.12


def test_multiplicative_noise_on_a_curve_that_falls_fast_is_noisy() -> None:
    """30% multiplicative noise on a loss at its floor by a fifth of the run: its upper level has 5-7 points, and
    the split by level needed 8 at each (7 of these 20 were called noisy; the benchmark's table: 19/30 at tau
    0.05). Now 5 suffice: 16 of 20."""
    x = np.arange(1, 61)
    found = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        loss = (0.2 + 2.0 * np.exp(-x / 4)) * np.exp(0.3 * rng.standard_normal(x.size))
        found.append({f.condition for f in diagnose_curves({"val_loss": (x.tolist(), loss.tolist())})})
    assert sum("noisy" in f for f in found) >= 14
    assert all(f <= {"noisy", "plateau"} for f in found)  # at its floor early: a plateau is also a fair reading


def test_still_improving_and_plateau_give_the_curve_models_prediction() -> None:
    steps = list(range(1, 61))
    x = np.asarray(steps, dtype=float)
    improving = 0.1 + 2.2 * np.exp(-x / 60)  # still falling fast at step 60
    [f] = diagnose_curves({"val_loss": (steps, improving.tolist())})
    assert f.condition == "still_improving" and "predicted to reach" in f.message and "by step 119" in f.message
    p = f.evidence["prediction"]
    truth = 0.1 + 2.2 * np.exp(-119 / 60)
    assert p["step"] == 119 and p["low"] <= truth <= p["high"] and p["mean"] < improving[-1]
    flat = 0.6 + 1.7 * np.exp(-x / 4)  # flat from step ~20
    [g] = diagnose_curves({"loss": (steps, flat.tolist())})
    assert g.condition == "plateau" and "predicted to gain less than" in g.message
    assert 0 <= g.evidence["prediction"]["gain_at_most"] < 0.05


def test_a_blow_up_of_an_accuracy_says_it_fell() -> None:
    collapsed = [0.1 + 0.05 * i for i in range(15)] + [0.1] * 15  # 0.8 at step 14, then back at chance level
    [f] = diagnose_curves({"train_acc": curve(collapsed)})
    assert f.condition == "divergence" and "train_acc fell from 0.75 at step 13 to 0.1" in f.message
    assert "rose" not in f.message
    [g] = diagnose_curves({"train_loss": curve([2.3 * 0.9 ** i for i in range(15)] + [3.0 + i for i in range(15)])})
    assert g.condition == "divergence" and "train_loss rose from" in g.message


def test_predictions_stay_within_the_metrics_natural_range() -> None:
    # a linear extrapolation of these curves leaves [0, 1] for the accuracy and goes below 0 for the loss
    steps = list(range(1, 31))
    x = np.arange(30)
    [acc] = diagnose_curves({"val_acc": (steps, (0.99 - 0.89 * np.exp(-x / 20)).tolist())})
    [loss] = diagnose_curves({"val_loss": (steps, (0.05 + 2.25 * np.exp(-x / 20)).tolist())})
    assert acc.condition == loss.condition == "still_improving"
    a, lo = acc.evidence["prediction"], loss.evidence["prediction"]
    assert 0.9 < a["mean"] <= a["high"] <= 1.0 and a["low"] <= a["mean"]
    assert 0.0 <= lo["low"] <= lo["mean"] < 0.3 and lo["high"] >= lo["mean"]
    assert "to 1)" in acc.message and "-" not in loss.message.split("90% interval")[1]
    # a curve that may go below 0 (here a negated score) is left as the model predicts it
    [neg] = diagnose_curves({"val_loss": (steps, (-0.05 - 2.25 * (1 - np.exp(-x / 20))).tolist())})
    assert neg.evidence["prediction"]["low"] < neg.evidence["prediction"]["mean"]



def test_additive_noise_on_a_curve_flat_from_its_first_half_is_not_noisy() -> None:
    """The benchmark's high noise (6% of the drop, additive) on a loss that reaches its floor of 0.3 in the
    first half: the noise is ~40% of the low values in both time halves, which read as multiplicative noise
    ('noisy' on 5 of these 6 seeds, and on 17/90 healthy curves of the benchmark). Split by level, the
    upper values scatter by ~6% of their value only: no 'noisy'."""
    x = np.arange(1, 101)
    for seed in range(6):
        rng = np.random.default_rng(seed)
        loss = 0.3 + 2.0 * np.exp(-x / 12) + rng.normal(0, 0.06 * 2.0, x.size)
        found = [f.condition for f in diagnose_curves({"val_loss": (x.tolist(), loss.tolist())})]
        assert "noisy" not in found, (seed, found)
