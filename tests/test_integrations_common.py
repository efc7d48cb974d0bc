"""What every framework callback builds on: Trial.mark_pruned and the shared helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tunelab
from tunelab.errors import ConfigError
from tunelab.integrations._common import as_number, check_trial, numeric_metrics, prune_now, require
from tunelab.pruners.base import PruneDecision


class AboveOne(tunelab.Pruner):
    """Stops any trial whose loss is above 1.0."""

    def decide(self, history, number, metric, curve):  # type: ignore[no-untyped-def]
        value = curve[max(curve)]
        return PruneDecision("above one", f"loss {value} > 1") if value > 1.0 else None


def _pruning_study() -> tunelab.Study:
    return tunelab.create_study(seed=0, sampler=tunelab.RandomSampler(), pruner=AboveOne(metric="loss"))


@pytest.mark.parametrize("returned", [0.25, None, float("nan")])
def test_a_trial_marked_pruned_ends_pruned_whatever_the_objective_returns(returned: float | None) -> None:
    study = _pruning_study()

    def objective(trial: tunelab.Trial) -> float | None:
        trial.suggest_float("x", 0.0, 1.0)
        for step in range(5):
            trial.report(step, loss=5.0 - step * 0.1)
            if prune_now(trial):
                break  # a framework stops its loop; the objective then returns
        return returned

    study.optimize(objective, n_trials=2)
    assert [t.state.value for t in study.trials] == ["PRUNED", "PRUNED"]
    first = study.trials[0]
    assert first.value is None
    assert first.system_attrs["pruned"]["step"] == 0
    assert study.get_curves(0)["loss"] == ([0], [5.0])


def test_a_trial_not_marked_completes_and_tell_honours_the_mark() -> None:
    study = _pruning_study()
    trial = study.ask()
    trial.report(0, loss=0.5)
    assert not prune_now(trial) and not trial.marked_pruned
    assert study.tell(trial, 0.5).state.value == "COMPLETE"
    marked = study.ask()
    marked.report(0, loss=3.0)
    assert prune_now(marked) and marked.marked_pruned
    assert study.tell(marked, 3.0).state.value == "PRUNED"
    failed = study.ask()
    failed.report(0, loss=3.0)
    prune_now(failed)
    assert study.tell(failed, state="FAIL", error="boom").state.value == "FAIL"  # a failure stays a failure


def test_numbers_are_read_from_framework_values() -> None:
    logs = {"loss": torch.tensor(0.5), "acc": np.float32(0.75), "n": 3, "flag": True, "name": "x",
            "vec": torch.ones(3), "one": np.array([2.0]), "nan": float("nan")}
    got = numeric_metrics(logs)
    assert got["loss"] == 0.5 and got["acc"] == 0.75 and got["n"] == 3.0 and got["one"] == 2.0
    assert set(got) == {"loss", "acc", "n", "one", "nan"}
    assert as_number(torch.ones(2)) is None


def test_bad_input_names_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"tunelab\.Trial"):
        check_trial(object(), "TunelabCallback")
    with pytest.raises(ConfigError, match=r"pip install 'tunelab\[nope\]'"):
        require("no_such_framework_xyz", "nope", "the nope integration")


def test_held_rounds_are_reported_before_the_trials_end_and_a_failing_hook_does_not_lose_it(
        caplog: pytest.LogCaptureFixture) -> None:
    from tunelab.integrations._held import HeldReports

    class AboveOneFromStep10(AboveOne):
        def next_decision(self, history, number, previous):  # type: ignore[no-untyped-def]
            return max(previous + 1, 10)

    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler(), pruner=AboveOneFromStep10(metric="loss"))
    trial = study.ask()
    rounds: HeldReports[float] = HeldReports(trial, "loss", "test", "test", lambda v: {"loss": v}, max_delay=60.0)
    for step in range(5):
        assert not rounds.add(step, 0.9 if step == 0 else 2.0)  # held back: the pruner cannot stop before step 10
    assert study.get_curves(trial.number) == {"loss": ([0], [0.9])}  # but the first is reported at once
    study.tell(trial, 0.5)  # the trial's end reports them
    assert study.get_curves(trial.number)["loss"] == ([0, 1, 2, 3, 4], [0.9, 2.0, 2.0, 2.0, 2.0])

    every_step = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler(), pruner=AboveOne(metric="loss"))
    trial = every_step.ask()
    rounds = HeldReports(trial, "loss", "test", "test", lambda v: {"loss": v}, max_delay=60.0)
    assert rounds.add(0, 2.0)  # a pruner that decides at every step: the first round is judged at once
    assert every_step.get_curves(trial.number)["loss"] == ([0], [2.0])
    trial = study.ask()
    rounds = HeldReports(trial, "loss", "test", "test", lambda v: {"loss": v}, max_delay=60.0)
    stops = [rounds.add(step, 0.5 if step < 10 else 2.0) for step in range(11)]
    assert stops == [False] * 10 + [True]  # judged again at step 10, with steps 1-9 reported before it
    assert study.get_curves(trial.number)["loss"][0] == list(range(11))

    trial = study.ask()

    def broken() -> None:
        raise RuntimeError("a callback's held reports failed")

    trial.before_end(broken)
    with caplog.at_level("ERROR"):
        finished = study.tell(trial, 0.25)
    assert finished.state == tunelab.TrialState.COMPLETE and finished.value == 0.25
    assert "held back failed" in caplog.text
    with pytest.raises(ConfigError, match="function"):
        trial.before_end("not callable")  # type: ignore[arg-type]


def test_held_reports_of_a_slow_loop_are_reported_and_judged_as_they_come() -> None:
    # Evaluations further apart than the hold (a real epoch): each is reported and the pruner asked at once
    import time

    from tunelab.integrations._held import HeldReports, as_logged

    class NoRungBefore10(AboveOne):
        def next_decision(self, history, number, previous):  # type: ignore[no-untyped-def]
            return max(previous + 1, 10)

    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler(), pruner=NoRungBefore10(metric="loss"))
    trial = study.ask()
    held = HeldReports(trial, "loss", "test", "test", as_logged, max_delay=0.01)
    assert not held.add(1, {"loss": 0.5, "acc": 0.1})
    assert study.get_curves(trial.number) == {"loss": ([1], [0.5]), "acc": ([1], [0.1])}
    time.sleep(0.02)
    assert held.add(2, {"loss": 2.0, "acc": 0.2})  # judged though no rung is due: the stop comes at once
    assert study.get_curves(trial.number)["loss"] == ([1, 2], [0.5, 2.0])

