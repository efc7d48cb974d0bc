"""Babysitting one run: live changes, roll-backs, the run's tree, suggestions, automatic rules and
their commands, on real SQLite files with the torch-free loop of ``tests/babysit_loops.py``."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

import babysit_loops as loops
import tunelab
from tunelab.babysit import ReduceOnPlateau, accept, format_tree, rollback, run_tree, set_live, suggest, watch
from tunelab.cli import app
from tunelab.errors import ConfigError, TrialStateError
from tunelab.live import branch_of, params_at, pending_requests, schedule
from tunelab.records import TrialState
from tunelab.samplers import RandomSampler

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'run.db'}"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"TUNELAB_STORAGE": None, "COLUMNS": None, "NO_COLOR": "1"})


def new_run(url: str, name: str = "run", keep_last: int = 2, **params: float) -> tunelab.Study:
    study = tunelab.create_study(name=name, storage=url, sampler=RandomSampler(), seed=0,
                                 checkpoint_policy=tunelab.CheckpointPolicy(keep_last=keep_last))
    study.enqueue({"lr": 0.1, "weight_decay": 0.01, **params})
    return study


def started(study: tunelab.Study) -> tuple[tunelab.Trial, dict]:
    trial = study.ask()
    return trial, loops.start(trial)


def train(trial: tunelab.Trial, state: dict, until: int) -> None:
    for s in range(state["step"] + 1, until + 1):
        loops.step(trial, state, s)


def frozen(study: tunelab.Study, number: int) -> tunelab.FrozenTrial:
    return next(t for t in study.trials if t.number == number)


def invoke(runner: CliRunner, *args: str) -> Result:
    return runner.invoke(app, list(args))


def assert_error(result: Result, *needles: str) -> None:
    assert result.exit_code == 1, result.output
    line = result.stderr.strip()
    assert line.startswith("error: ") and "\n" not in line and "Traceback" not in result.output, result.stderr
    for needle in needles:
        assert needle in line, line


# -- live changes and roll-backs ------------------------------------------------------------------
def test_a_change_applies_at_the_next_step_and_is_in_the_schedule(url: str) -> None:
    study = new_run(url)
    trial, state = started(study)
    train(trial, state, 3)
    other = tunelab.load_study("run", url)  # e.g. `tunelab set` in another shell
    assert set_live(other, 0, {"lr": 0.05}, source="cli", note="too slow") == 0
    assert [r["params"] for r in pending_requests(frozen(other, 0))] == [{"lr": 0.05}]
    train(trial, state, 5)
    t = frozen(other, 0)
    assert pending_requests(t) == []
    [entry] = schedule(t)
    assert entry["step"] == 4 and entry["params"] == {"lr": 0.05} and entry["sources"] == ["cli"]
    assert params_at(t, 3)["lr"] == 0.1 and params_at(t, 4)["lr"] == 0.05
    assert other.get_curves(0)["lr"][1] == [0.1, 0.1, 0.1, 0.05, 0.05]


def test_rollback_branches_from_the_checkpoint_and_stops_the_running_parent(url: str) -> None:
    study = new_run(url)
    trial, state = started(study)
    train(trial, state, 3)
    set_live(study, 0, {"lr": 0.05}, source="cli")
    train(trial, state, 15)  # keeps the checkpoints of steps 10 and 15
    loss_at_10 = study.get_curves(0)["train_loss"][1][9]
    with pytest.raises(ConfigError, match="keeps no checkpoint at step 5; it keeps 10, 15"):
        rollback(study, to=5)
    number = rollback(study, to=10, values={"lr": 0.02}, note="back to 10")
    assert number == 1
    child = frozen(study, 1)
    assert child.state == TrialState.WAITING and child.params["lr"] == 0.02
    assert child.params["weight_decay"] == 0.01  # the checkpoint's other values
    b = branch_of(child.system_attrs)
    assert b is not None and (b.parent, b.step, b.changed, b.kind) == (0, 10, {"lr": 0.02}, "rollback")
    assert trial.should_prune()  # the parent was asked to stop: the training process moves on
    study.tell(trial, state="PRUNED")
    branch, bstate = started(study)  # claims the WAITING branch, resumes from its checkpoint
    assert branch.number == 1 and bstate["step"] == 10 and bstate["loss"] == pytest.approx(loss_at_10)
    train(branch, bstate, 12)
    assert study.get_curves(1)["lr"] == ([11, 12], [0.02, 0.02])


def test_rollback_picks_the_trial_and_says_when_it_cannot(url: str) -> None:
    study = new_run(url)
    study.enqueue({"lr": 0.3, "weight_decay": 0.01})
    a, sa = started(study)
    b, sb = started(study)
    train(a, sa, 10)
    train(b, sb, 5)
    with pytest.raises(ConfigError, match=r"trials 0 and 1 .* are running.*--trial"):
        rollback(study, to=5)  # both keep step 5
    assert rollback(study, to=10) == 2  # only trial 0 keeps step 10
    assert branch_of(frozen(study, 2).system_attrs).parent == 0  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="no live hyperparameter 'momentum'"):
        rollback(study, to=5, trial=1, values={"momentum": 0.9})


# -- the tree -------------------------------------------------------------------------------------
def test_the_tree_shows_branches_changes_pending_requests_and_checkpoints(url: str) -> None:
    study = new_run(url)
    trial, state = started(study)
    train(trial, state, 3)
    set_live(study, 0, {"lr": 0.05}, source="cli")
    train(trial, state, 15)
    rollback(study, to=10, values={"lr": 0.02})
    study.tell(trial, state="PRUNED")
    branch, bstate = started(study)
    train(branch, bstate, 12)
    set_live(study, 1, {"lr": 0.01}, source="cli")  # not applied yet

    [root] = run_tree(study)
    assert root.number == 0 and root.state == TrialState.PRUNED and root.checkpoints == ()
    [child] = root.children
    assert (child.number, child.parent, child.step, child.kind) == (1, 0, 10, "rollback")
    assert child.start_from["lr"] == 0.05 and child.set == {"lr": 0.02}
    assert (child.first_step, child.last_reported, child.checkpoints) == (11, 12, ())
    assert [p["params"] for p in child.pending] == [{"lr": 0.01}]
    assert root.changes[0].before == {"lr": 0.1} and root.changes[0].sources == ("cli",)

    text = format_tree(study)
    lines = text.splitlines()
    assert lines[0] == "run 'run' (val_loss, minimize): 2 branches"
    assert lines[1].startswith("trial 0  PRUNED  steps 1-15  val_loss best ")
    assert lines[2] == "  step 4: lr 0.1 -> 0.05 (cli)"
    assert lines[3].startswith("  `-- from step 10: trial 1  RUNNING  rollback, lr 0.05 -> 0.02  steps 11-12")
    assert lines[4].strip().startswith("pending: lr=0.01 (cli, asked ")
    assert lines[5].strip() == "checkpoints: none yet"
    assert lines[6] == "  checkpoints: none kept"  # a stopped (PRUNED) trial loses its checkpoints
    train(branch, bstate, 15)
    assert "step 13: lr 0.02 -> 0.01 (cli)" in format_tree(study)
    assert "checkpoints: 15" in format_tree(study)
    set_live(study, 1, {"lr": 0.005}, source="cli")  # too late: the branch ends before it applies it
    study.tell(branch, 0.3)
    assert "not applied: lr=0.005 (cli, asked " in format_tree(study)
    assert "never applied: the trial ended first" in format_tree(study)


# -- suggestions ----------------------------------------------------------------------------------
def wiggle(s: int) -> float:
    return 0.002 * math.sin(1.7 * s)


def reported(study: tunelab.Study, curves: dict[str, list[float]], checkpoints: tuple[int, ...] = ()) -> tunelab.Trial:
    """A running trial (lr 0.1, weight_decay 0.01 unless the run says otherwise) that reported ``curves``."""
    trial = study.ask()
    trial.suggest_float("lr", 1e-4, 1.0, log=True)
    for name in study.trials[trial.number].params:
        if name == "weight_decay":
            trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True)
    n = len(next(iter(curves.values())))
    for s in range(1, n + 1):
        trial.report(s, **{m: v[s - 1] for m, v in curves.items()})
        if s in checkpoints:
            with trial.checkpoint(s) as folder:
                (folder / "state.json").write_text("{}")
    return trial


STEPS = range(1, 41)
PLATEAU = [0.3 + 0.7 * math.exp(-s / 3) + wiggle(s) for s in STEPS]
DIVERGE = [(0.3 + 0.7 * math.exp(-s / 4) if s <= 20 else 0.305 + 0.1 * (s - 20)) + wiggle(s) for s in STEPS]
TRAIN = [0.1 + 0.9 * math.exp(-s / 8) + wiggle(s) for s in STEPS]
OVERFIT = [0.3 + 0.7 * math.exp(-s / 8) + (0.01 * (s - 20) if s > 20 else 0) + wiggle(s) for s in STEPS]
IMPROVING = [1 / (1 + 0.05 * s) + wiggle(s) for s in STEPS]


def test_a_plateau_suggests_halving_the_rate_once(url: str) -> None:
    study = new_run(url)
    trial = reported(study, {"val_loss": PLATEAU})
    [s] = suggest(study, 0)
    assert (s.kind, s.condition, s.values, s.rollback_to) == ("halve_lr", "plateau", {"lr": 0.05}, None)
    assert s.message.startswith("val_loss flat for ") and "since step " in s.message and "to 0.05?" in s.message
    assert accept(study, 0, s) == 0
    [request] = pending_requests(frozen(study, 0))
    assert request["params"] == {"lr": 0.05} and request["source"] == "suggestion" and request["note"] == s.message
    assert trial.sync_live(41) == {"lr": 0.05}
    trial.report(41, val_loss=PLATEAU[-1])
    assert suggest(study, 0) == []  # the plateau the change answered is not suggested again
    no_lr = tunelab.create_study(name="no-lr", storage=url, sampler=RandomSampler(), seed=0)
    no_lr_trial = no_lr.ask()
    no_lr_trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True)
    for s_ in STEPS:
        no_lr_trial.report(s_, val_loss=PLATEAU[s_ - 1])
    assert suggest(no_lr, 0) == []  # nothing that applies to this run's hyperparameters


def test_divergence_suggests_rolling_back_with_a_tenth_of_the_rate(url: str) -> None:
    study = new_run(url, keep_last=10)
    reported(study, {"val_loss": DIVERGE}, checkpoints=(10, 20, 30, 40))
    [s] = suggest(study, 0)
    assert (s.kind, s.condition, s.rollback_to, s.values) == ("rollback_lower_lr", "divergence", 20, {"lr": 0.01})
    assert "roll back to the checkpoint of step 20" in s.message
    number = accept(study, 0, s)
    child = frozen(study, number)
    assert child.state == TrialState.WAITING and child.params["lr"] == 0.01
    assert branch_of(child.system_attrs).step == 20  # type: ignore[union-attr]
    assert "stop_requested" in frozen(study, 0).system_attrs


def test_overfitting_suggests_more_weight_decay_from_the_best_step(url: str) -> None:
    study = new_run(url, keep_last=10)
    reported(study, {"train_loss": TRAIN, "val_loss": OVERFIT}, checkpoints=(10, 18, 30))
    [s] = suggest(study, 0)
    assert (s.kind, s.condition, s.rollback_to) == ("rollback_more_weight_decay", "overfitting", 18)
    assert s.values == {"weight_decay": 0.03} and s.evidence["best_step"] == 20


FLAT = [2.302585 + wiggle(s) for s in STEPS]  # a 10-class loss at ln 10 the whole run: it never learned


def test_a_curve_that_never_learned_suggests_a_10x_rate_or_checking_the_training(url: str) -> None:
    # suggest() had no handler for not_learning: `tunelab suggest` proposed nothing for a dead run
    study = new_run(url, lr=1e-4)
    reported(study, {"val_loss": FLAT})
    [s] = suggest(study, 0)
    assert (s.kind, s.condition, s.rollback_to) == ("raise_lr_tenfold", "not_learning", None)
    assert s.values == {"lr": 1e-3} and s.evidence["factor"] == 10
    assert "val_loss never learned (flat at about 2.3" in s.message and "raise it 10x to 0.001?" in s.message
    assert "gradient flow" in s.message and "data pipeline" in s.message
    assert accept(study, 0, s) == 0 and pending_requests(frozen(study, 0))[0]["params"] == {"lr": 1e-3}
    high = new_run(url, name="high")  # lr 0.1: not a rate too low; no change to propose, a bug to look for
    reported(high, {"val_loss": FLAT})
    [s] = suggest(high, 0)
    assert (s.kind, s.condition, s.values) == ("check_training", "not_learning", {})
    assert "the learning rate 0.1 is not far too low" in s.message and "gradient flow" in s.message
    with pytest.raises(ConfigError, match="changes nothing"):
        accept(high, 0, s)


def test_still_improving_means_keep_going(url: str) -> None:
    study = new_run(url)
    reported(study, {"val_loss": IMPROVING})
    [s] = suggest(study, 0)
    assert (s.kind, s.values) == ("keep_going", {}) and "keep going" in s.message
    with pytest.raises(ConfigError, match="changes nothing"):
        accept(study, 0, s)


# -- automatic rules ------------------------------------------------------------------------------
def test_rules_check_their_settings() -> None:
    for bad in ({"patience": 0}, {"patience": True}, {"factor": 1.0}, {"factor": 0}, {"min_lr": -1},
                {"cooldown": -1}, {"metric": ""}, {"mode": "up"}):
        with pytest.raises(ConfigError, match="ReduceOnPlateau"):
            ReduceOnPlateau(**bad)  # type: ignore[arg-type]
    assert str(ReduceOnPlateau()) == "reduce_on_plateau(val_loss, patience=3, factor=0.5, min_lr=1e-06, cooldown=0)"


def flat_run(url: str, **rule: float) -> tuple[tunelab.Study, tunelab.Trial, ReduceOnPlateau]:
    study = new_run(url)
    trial = study.ask()
    trial.suggest_float("lr", 1e-4, 1.0, log=True)
    trial.live_poll_seconds = 0
    for s in range(1, 11):
        trial.report(s, val_loss=1.0 / s)
    return study, trial, ReduceOnPlateau(**rule)  # type: ignore[arg-type]


def once(study: tunelab.Study, rule: ReduceOnPlateau) -> list:
    """One pass of a freshly started watcher (as after a restart)."""
    return watch(tunelab.load_study(study.name, study.storage.url), rules=[rule], max_seconds=0)


def test_reduce_on_plateau_fires_once_per_plateau_and_survives_restarts(url: str) -> None:
    study, trial, rule = flat_run(url)  # val_loss 1/step until step 10: always improving
    for s in (11, 12, 13):
        trial.report(s, val_loss=0.09)
    assert once(study, rule) == []  # 2 flat evaluations (12, 13) < patience 3
    trial.report(14, val_loss=0.09)
    [change] = once(study, rule)
    assert change.values == {"lr": 0.05} and change.before == {"lr": 0.1} and change.step == 14
    assert "for 3 evaluations (steps 12-14)" in change.reason
    assert once(study, rule) == [] and once(study, rule) == []  # restarted watchers: pending, not again
    [request] = pending_requests(frozen(study, 0))
    assert request["source"] == f"auto: {rule}" and request["note"] == change.reason
    trial.sync_live(14)  # as the Trainer does: evaluated at 14, then the change applies from 14 on
    for s in (15, 16):
        trial.report(s, val_loss=0.09)
    assert once(study, rule) == []  # since the change: 2 evaluations
    trial.report(17, val_loss=0.05)  # the lower rate helped
    trial.report(18, val_loss=0.05)
    trial.report(19, val_loss=0.05)
    assert once(study, rule) == []
    trial.report(20, val_loss=0.05)
    [again] = once(study, rule)  # a new plateau, after the change
    assert again.values == {"lr": 0.025} and again.step == 20
    assert [r["params"]["lr"] for r in frozen(study, 0).system_attrs["live_requests"]] == [0.05, 0.025]


def test_reduce_on_plateau_respects_min_lr_and_cooldown(url: str) -> None:
    study, trial, rule = flat_run(url, min_lr=0.08, cooldown=2)
    for s in range(11, 14):
        trial.report(s, val_loss=0.1)
    [change] = once(study, rule)
    assert change.values == {"lr": 0.08}  # not below min_lr
    trial.sync_live(14)
    for s in range(14, 18):
        trial.report(s, val_loss=0.1)
    assert once(study, rule) == []  # already at min_lr
    study2, trial2, rule2 = flat_run(url.replace("run.db", "cool.db"), cooldown=2)
    for s in range(11, 14):
        trial2.report(s, val_loss=0.1)
    assert len(once(study2, rule2)) == 1
    trial2.sync_live(13)  # evaluated at 13, then changed
    for s in range(14, 18):  # 14 and 15 are the cooldown: 16, 17 count
        trial2.report(s, val_loss=0.1)
    assert once(study2, rule2) == []
    trial2.report(18, val_loss=0.1)
    [second] = once(study2, rule2)
    assert second.step == 18 and second.values == {"lr": 0.025}


def test_reduce_on_plateau_does_not_count_the_evaluation_at_the_change_step(url: str) -> None:
    study, trial, rule = flat_run(url)
    for s in (11, 12, 13):
        trial.report(s, val_loss=0.09)
    trial.report(14, val_loss=0.09)
    assert len(once(study, rule)) == 1
    trial.sync_live(14)  # the Trainer's order: the evaluation at 14, then the change at 14
    for s in (15, 16):
        trial.report(s, val_loss=0.09)
    assert once(study, rule) == []  # 2 evaluations under the new rate, not 3 (14 came before it)
    trial.report(17, val_loss=0.09)
    [again] = once(study, rule)
    assert again.step == 17 and "(steps 15-17)" in again.reason


def test_watch_follows_the_run_until_it_ends(url: str) -> None:
    study = new_run(url, lr=0.5)  # converges in about 15 steps, to a level a lower rate improves
    study.set_user_attr("loop", {"n_steps": 60, "delay": 0.01, "every": 10})
    worker = threading.Thread(target=study.optimize, args=(loops.objective,),
                              kwargs={"n_trials": 1, "show_progress": False})
    worker.start()
    seen: list = []
    changes = watch(tunelab.load_study("run", url), rules=[ReduceOnPlateau(patience=3)], poll_seconds=0.02,
                    max_seconds=30, on_change=seen.append)
    worker.join(30)
    assert not worker.is_alive() and changes == seen and changes
    t = frozen(study, 0)
    assert t.state == TrialState.COMPLETE
    applied = [e for e in schedule(t) if e["sources"][0].startswith("auto: reduce_on_plateau")]
    assert len(applied) + len(pending_requests(t)) == len(changes)  # the last may come after the last step
    assert [e["params"] for e in applied] == [c.values for c in changes][: len(applied)]
    lrs = study.get_curves(0)["lr"][1]
    assert lrs[0] == 0.5 and lrs[-1] == 0.5 * 0.5 ** len(applied)


# -- the commands ---------------------------------------------------------------------------------
def test_set_command_and_its_errors(url: str, runner: CliRunner) -> None:
    study = new_run(url)
    trial, state = started(study)
    train(trial, state, 2)
    result = invoke(runner, "set", "run", "lr=0.05", "--storage", url)
    assert result.exit_code == 0, result.output
    assert "requested lr=0.05 for trial 0 of run 'run' (request 0); it applies at the trial's next step" \
        in result.output
    assert_error(invoke(runner, "set", "run", "momentum=0.9", "--storage", url), "no live hyperparameter 'momentum'")
    assert_error(invoke(runner, "set", "run", "lr=fast", "--storage", url), "lr must be a finite number")
    assert_error(invoke(runner, "set", "run", "lr", "--storage", url), "is not NAME=VALUE")
    assert_error(invoke(runner, "set", "run", "lr=0.1", "--trial", "7", "--storage", url), "no trial number 7")
    study.enqueue({"lr": 0.3, "weight_decay": 0.01})
    other, _ = started(study)
    assert_error(invoke(runner, "set", "run", "lr=0.1", "--storage", url),
                 "several branches of run 'run' are running (0, 1)", "--trial N")
    study.tell(trial, 0.5)
    assert_error(invoke(runner, "set", "run", "lr=0.1", "--trial", "0", "--storage", url),
                 "trial 0 is COMPLETE", "tunelab rollback run --trial 0 --to STEP --set")
    study.tell(other, 0.5)
    assert_error(invoke(runner, "set", "run", "lr=0.1", "--storage", url), "no branch of run 'run' is running")


def test_train_with_a_bad_problem_gives_the_train_command_as_the_example(url: str, runner: CliRunner) -> None:
    # was "write e.g. `tunelab recipe model:trainer`", the other command's
    assert_error(invoke(runner, "train", "fresh", "digitz", "--storage", url),
                 "is neither 'digits' nor MODULE:ATTR", "`tunelab train RUN model:trainer`")


def test_train_refuses_a_new_run_without_a_learning_rate_before_creating_it(url: str, runner: CliRunner) -> None:
    # the digits trainer's space has no lr: without --set lr=... the run's start could not train, and a run
    # left behind would be stuck (--set starts a new run only, and it has no checkpoint to roll back to)
    for extra in ([], ["--set", "lr=-0.1"], ["--set", "lr=fast"]):
        assert_error(invoke(runner, "train", "fresh", "--epochs", "1", *extra, "--storage", url),
                     "a new run needs a positive learning rate", "tunelab train fresh --set lr=0.003")
    with pytest.raises(tunelab.errors.StudyNotFoundError):
        tunelab.load_study("fresh", url)


def test_train_checks_its_options_before_the_runs_start(url: str, runner: CliRunner) -> None:
    # a bad --direction was shown only after `--set lr=...` fixed the missing learning rate; a bad
    # problem was reported first too
    for extra in ([], ["--set", "lr=0.01"], ["digitz"]):
        refused = invoke(runner, "train", "fresh", *extra, "--direction", "max", "--epochs", "1", "--storage", url)
        assert refused.exit_code == 2, refused.output
        assert "Invalid value for '--direction'" in refused.output and "'minimize' or 'maximize'" in refused.output
        assert "learning rate" not in refused.output and "digitz" not in refused.output
    with pytest.raises(tunelab.errors.StudyNotFoundError):
        tunelab.load_study("fresh", url)


def test_train_refuses_a_direction_that_contradicts_the_existing_runs(url: str, runner: CliRunner) -> None:
    # was ignored: the run went on maximizing while the user asked for minimize
    tunelab.babysit.create_run("run", {"lr": 0.003}, storage=url, direction="maximize", metric="val_acc")
    refused = invoke(runner, "train", "run", "--direction", "minimize", "--epochs", "1", "--storage", url)
    assert refused.exit_code == 2, refused.output
    assert "Invalid value for '--direction'" in refused.output, refused.output
    for needle in ("run 'run' maximizes its value", "leave --direction out", "a new run"):
        assert needle in " ".join(refused.output.split()), refused.output
    study = tunelab.load_study("run", url)
    assert study.direction == "maximize"
    assert [t.state for t in study.trials] == [tunelab.TrialState.WAITING]  # nothing trained


def test_rollback_tree_suggest_and_watch_commands(url: str, runner: CliRunner) -> None:
    study = new_run(url)
    trial, state = started(study)
    train(trial, state, 15)
    assert_error(invoke(runner, "rollback", "run", "--to", "7", "--storage", url),
                 "keeps no checkpoint at step 7; it keeps 10, 15")
    assert_error(invoke(runner, "rollback", "run", "--to", "10", "--set", "lr=-1", "--storage", url), "log scale")
    result = invoke(runner, "rollback", "run", "--to", "10", "--set", "lr=0.02", "--note", "slower", "--storage", url)
    assert result.exit_code == 0, result.output
    assert "trial 1 branches from trial 0 at step 10 with lr=0.02" in result.output
    assert "asked trial 0 to stop: the run's training process moves on to trial 1" in result.output
    result = invoke(runner, "tree", "run", "--storage", url)
    assert result.exit_code == 0, result.output
    assert "`-- from step 10: trial 1  WAITING  rollback, lr 0.1 -> 0.02  no steps yet  note: slower" in result.output
    assert "checkpoints: 10, 15" in result.output
    assert_error(invoke(runner, "tree", "run", "--metric", "val_acc", "--storage", url),  # it showed 'no steps yet'
                 "no branch of run 'run' reported the metric 'val_acc' (--metric)",
                 "the newest reported lr, train_loss, val_loss")
    result = invoke(runner, "tree", "run", "--metric", "train_loss", "--storage", url)
    assert result.exit_code == 0 and "train_loss best" in result.output

    flat = new_run(url, name="flat")
    reported(flat, {"val_loss": PLATEAU})
    result = invoke(runner, "suggest", "flat", "--storage", url)
    assert result.exit_code == 0, result.output
    assert "1. [plateau] val_loss flat for" in result.output and "--accept K" in result.output
    assert_error(invoke(runner, "suggest", "flat", "--accept", "3", "--storage", url), "only 1 suggestions")
    result = invoke(runner, "suggest", "flat", "--accept", "1", "--storage", url)
    assert result.exit_code == 0, result.output
    assert "requested lr=0.05 for trial 0 (request 0)" in result.output

    plateau = new_run(url, name="watched")
    reported(plateau, {"val_loss": PLATEAU})
    for option, bad in [("--patience", "0"), ("--factor", "1.5"), ("--factor", "0"), ("--poll-seconds", "0"),
                        ("--cooldown", "-1"), ("--min-lr", "-1"), ("--max-seconds", "-1"),
                        ("--metric", ""), ("--param", "")]:  # the two names: was ReduceOnPlateau(metric=...)'s error
        refused = invoke(runner, "watch", "watched", "--auto", "reduce_on_plateau", option, bad, "--storage", url)
        assert refused.exit_code == 2 and f"Invalid value for '{option}'" in refused.output, refused.output
        assert "watching" not in refused.output  # refused before the watch begins, named as the option
    result = invoke(runner, "watch", "watched", "--auto", "reduce_on_plateau", "--max-seconds", "0",
                    "--storage", url)
    assert result.exit_code == 0, result.output
    assert "trial 0, step 40: lr 0.1 -> 0.05 (reduce_on_plateau(val_loss" in result.output
    assert "done: 1 change" in result.output


# -- two shells at once ---------------------------------------------------------------------------
def test_concurrent_set_from_two_shells_keeps_every_request_in_order(url: str) -> None:
    study = new_run(url)
    trial, state = started(study)
    stop = threading.Event()

    def training() -> None:  # the trial runs (and applies requests) while the shells write
        s = 0
        while not stop.is_set():
            s += 1
            loops.step(trial, state, s, every=0)
            time.sleep(0.01)

    thread = threading.Thread(target=training)
    thread.start()
    n = 4
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "TUNELAB_STORAGE": url}
    shells = {
        shell: subprocess.Popen(
            ["bash", "-c", " && ".join(
                f"{sys.executable} -m tunelab.cli set run lr={value(shell, i)}" for i in range(n))],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for shell in ("a", "b")
    }
    for p in shells.values():
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert out.count("it applies at the trial's next step") == n
    deadline = time.monotonic() + 30  # the training loop applies the last requests at its next steps
    while pending_requests(frozen(study, 0)) and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    thread.join(10)
    t = frozen(study, 0)
    requested = [r["params"]["lr"] for r in t.system_attrs["live_requests"]]
    assert sorted(requested) == sorted(value(s, i) for s in "ab" for i in range(n))  # none lost
    for shell in "ab":
        assert [v for v in requested if v in {value(shell, i) for i in range(n)}] == [value(shell, i) for i in range(n)]
    applied = [v for e in schedule(t) for v in [e["params"]["lr"]]]
    assert applied[-1] == requested[-1] and pending_requests(t) == []
    assert sum(len(e["requests"]) for e in schedule(t)) == 2 * n


def value(shell: str, i: int) -> float:
    return (0.001 if shell == "a" else 0.1) * (i + 1)


def test_a_finished_trial_cannot_change_but_can_be_rolled_back(url: str) -> None:
    study = new_run(url)
    trial, state = started(study)
    train(trial, state, 10)
    study.tell(trial, 0.3)  # COMPLETE keeps its newest checkpoint
    with pytest.raises(TrialStateError, match="roll back"):
        set_live(study, 0, {"lr": 0.05})
    assert rollback(study, to=10, values={"lr": 0.05}) == 1  # nothing runs: the trial keeping step 10


# -- a log-spaced history to roll back to; the tree's steps and objective (issue 16 item 16) ------------
def test_a_run_keeps_a_log_spaced_history_so_one_can_roll_back_far(url: str, runner: CliRunner) -> None:
    from tunelab.babysit import create_run
    from tunelab.babysit.run import DEFAULT_RUN_POLICY

    study = create_run("long", {"lr": 0.1, "weight_decay": 0.01}, storage=url)
    assert study.checkpoint_policy == DEFAULT_RUN_POLICY and DEFAULT_RUN_POLICY.keep_log_spaced
    trial, state = started(study)
    for s in range(1, 81):  # 80 epochs, a checkpoint each
        loops.step(trial, state, s, every=1)
    assert [c.step for c in study.checkpoints(0)] == [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 78, 79, 80]
    result = invoke(runner, "rollback", "long", "--to", "4", "--set", "lr=0.01", "--storage", url)
    assert result.exit_code == 0, result.output
    assert "trial 1 branches from trial 0 at step 4 with lr=0.01" in result.output
    assert_error(invoke(runner, "rollback", "long", "--to", "5", "--trial", "0", "--storage", url),
                 "keeps no checkpoint at step 5; it keeps 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 78, 79, 80")


def _reports(trial: tunelab.Trial, epochs: int, acc0: float = 0.5) -> None:
    for e in range(1, epochs + 1):
        trial.report(e, val_loss=1.0 / e, val_acc=min(0.99, acc0 + 0.04 * e), lr=0.1)


def test_the_tree_says_epoch_and_optimizer_step_and_the_run_s_objective(url: str) -> None:
    from tunelab.babysit import create_run

    study = create_run("cnn", {"lr": 0.1, "weight_decay": 0.01}, storage=url, direction="maximize", metric="val_acc")
    trial = study.ask()
    trial.suggest_float("lr", 1e-4, 1.0, log=True)
    _reports(trial, 3)
    set_live(study, 0, {"lr": 0.05}, source="cli")
    assert trial.sync_live(241 / 11, force=True, optimizer_step=241) == {"lr": 0.05}  # the Trainer's epoch mode
    set_live(study, 0, {"lr": 0.02}, source="cli")
    assert trial.sync_live(300, force=True, optimizer_step=300) == {"lr": 0.02}  # its eval_every mode
    set_live(study, 0, {"lr": 0.01}, source="cli")
    assert trial.sync_live(7.25, force=True) == {"lr": 0.01}  # a loop that records no optimizer step
    _reports(trial, 6)
    lines = format_tree(study).splitlines()
    assert lines[0] == "run 'cnn' (val_acc, maximize): 1 branch"
    assert "val_acc best 0.74 (step 6), last 0.74 (step 6)" in lines[1]  # maximize: the best is the highest
    assert "  epoch 21.9 (optimizer step 241): lr 0.1 -> 0.05 (cli)" in lines
    assert "  optimizer step 300: lr 0.05 -> 0.02 (cli)" in lines
    assert "  step 7.25: lr 0.02 -> 0.01 (cli)" in lines
    assert not any("21.90909" in line for line in lines)
    assert format_tree(study, metric="val_loss").splitlines()[0] == (
        "run 'cnn' (val_acc, maximize; curves: val_loss (minimize)): 1 branch")


def test_the_tree_reads_the_objective_from_a_complete_branch_or_says_it_does_not_know(url: str) -> None:
    study = tunelab.create_study(name="old", storage=url, direction="maximize", sampler=RandomSampler(), seed=0)
    trial = study.ask()
    _reports(trial, 4)
    assert format_tree(study).splitlines()[0] == "run 'old' (maximize its value; curves: val_loss): 1 branch"
    study.tell(trial, 0.66)  # the best val_acc: a Trainer's value
    assert format_tree(study).splitlines()[0] == "run 'old' (val_acc, maximize): 1 branch"
    assert run_tree(study)[0].metric == "val_acc"
