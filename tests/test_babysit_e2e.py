"""Babysitting end to end: a real PyTorch run trains in its own process while `tunelab set`,
`tunelab rollback` and `tunelab tree` run as separate commands against the same SQLite file."""

from __future__ import annotations

import math
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import tunelab
from babysit_objectives import STEPS_PER_EPOCH, train_run_main
from tunelab import TrialState, live
from tunelab.babysit import create_run
from tunelab.checkpoints import CheckpointPolicy

EPOCHS = 20
PACE = 0.06  # seconds of sleep per training step: about 0.7 s an epoch, 14 s a run: commands land mid-run


def _tunelab(*args: str) -> str:
    """Run the `tunelab` command in its own process, as a person in another shell would."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "tunelab.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _wait(condition: Callable[[], bool], what: str, child: multiprocessing.process.BaseProcess,
          timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert child.is_alive() or condition(), f"the training process ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_set_rollback_and_tree_on_a_run_training_in_its_own_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'run.db'}"
    study = create_run("e2e", {"lr": 0.01, "dropout": 0.2}, storage=url, direction="maximize",
                       artifact_dir=tmp_path / "artifacts",
                       checkpoint_policy=CheckpointPolicy(keep_last=EPOCHS, keep_finished=True))
    child = multiprocessing.get_context("spawn").Process(
        target=train_run_main, args=(url, "e2e", EPOCHS, 1, PACE, False), daemon=True)  # trains every branch that comes
    child.start()
    try:
        _wait(lambda: 2 in study.get_curves(0).get("val_acc", ([], []))[0], "epoch 2", child)

        # 1. Change the learning rate from another shell: it applies at the next optimizer step.
        out = _tunelab("set", "e2e", "lr=0.003", "--note", "slower", "--storage", url)
        assert "lr" in out
        _wait(lambda: bool(live.schedule(study.get_trial(0))), "the change to apply", child)
        entry = live.schedule(study.get_trial(0))[0]
        assert entry["params"] == {"lr": 0.003} and entry["sources"] == ["cli"]
        applied_at = entry["optimizer_step"]
        assert entry["step"] == pytest.approx(applied_at / STEPS_PER_EPOCH)  # placed on the epoch axis
        # The optimizer's lr, reported at every evaluation, follows the new base from that step on
        # (the cosine schedule continues: lr = base * (1 + cos(pi * s / total)) / 2).
        next_epoch = applied_at // STEPS_PER_EPOCH + 1
        _wait(lambda: next_epoch in study.get_curves(0)["lr"][0], "the evaluation after the change", child)
        steps, lrs = study.get_curves(0)["lr"]
        total = EPOCHS * STEPS_PER_EPOCH
        for epoch, lr in zip(steps, lrs, strict=True):
            s = epoch * STEPS_PER_EPOCH
            base = 0.003 if s > applied_at else 0.01  # an evaluation after step s comes before the next sync
            assert lr == pytest.approx(base * 0.5 * (1 + math.cos(math.pi * s / total)), rel=1e-9), epoch

        # 2. Roll back to the first checkpoint written after the change, from another shell.
        def checkpoint_after_change() -> int | None:
            kept = [c.step for c in study.checkpoints(0) if c.step * STEPS_PER_EPOCH > applied_at]
            return kept[0] if kept else None

        def reported_after(step: int | None) -> bool:  # the original's evaluation after that checkpoint
            return step is not None and step + 1 in study.get_curves(0).get("val_acc", ([], []))[0]

        # Roll back only once the original has also reported the step after the checkpoint: the branch's
        # first step is compared with it below, and a stop request ends the original at once (mid-epoch),
        # so a roll-back issued earlier could stop the original before that step.
        _wait(lambda: reported_after(checkpoint_after_change()), "a checkpoint after the change and the "
              "evaluation after it", child)
        to = checkpoint_after_change()
        assert to is not None
        _tunelab("rollback", "e2e", "--to", str(to), "--trial", "0", "--note", "again", "--storage", url)
        _wait(lambda: len(study.trials) == 2 and study.trials[1].state.is_finished, "the branch to finish", child)
    finally:
        child.kill()
        child.join()

    original, branch = study.trials
    assert original.state == TrialState.PRUNED  # stopped for the roll-back, at its next evaluation
    assert branch.state == TrialState.COMPLETE
    record = branch.system_attrs["branch"]
    assert (record["parent"], record["step"], record["kind"], record["note"]) == (0, to, "rollback", "again")
    assert branch.params["lr"] == 0.003  # the lr in effect at the checkpoint, not the run's start
    # The branch's first step reproduces the checkpoint's state: the same values as the original
    # run at that step, bit for bit (CPU, fixed seeds), and its curve starts right after it.
    first = to + 1
    assert study.get_curves(1)["val_loss"][0][0] == first
    original_curves, branch_curves = study.get_curves(0), study.get_curves(1)
    for metric in ("train_loss", "val_loss", "val_acc", "lr"):
        steps, values = original_curves[metric]
        assert first in steps, f"the original stopped before step {first}"
        assert branch_curves[metric][1][0] == values[steps.index(first)], metric
    assert study.get_curves(1)["val_loss"][0][-1] == EPOCHS

    # 3. The tree shows both branches, the change and where the branch forked.
    tree = _tunelab("tree", "e2e", "--storage", url)
    assert "trial 0" in tree and "trial 1" in tree
    assert "lr 0.01 -> 0.003 (cli)" in tree
    assert f"from step {to}" in tree
    assert tunelab.load_study("e2e", url).system_attrs["run"]["params"] == {"lr": 0.01, "dropout": 0.2}


def test_tunelab_train_creates_a_run_trains_it_and_then_its_branches(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tunelab.cli import app

    url = f"sqlite:///{tmp_path / 'train.db'}"
    runner = CliRunner()
    first = runner.invoke(app, ["train", "digits-run", "--epochs", "2", "--set", "lr=0.003", "--storage", url])
    assert first.exit_code == 0, first.output
    assert "branch 0: COMPLETE" in first.output
    study = tunelab.load_study("digits-run", url)
    assert study.direction == "maximize"  # the digits trainer monitors val_acc
    assert study.get_trial(0).params["lr"] == 0.003 and "width" in study.get_trial(0).params  # with its defaults
    again = runner.invoke(app, ["train", "digits-run", "--set", "lr=0.1", "--storage", url])
    assert again.exit_code == 1 and "--set starts a new run only" in again.output
    idle = runner.invoke(app, ["train", "digits-run", "--epochs", "2", "--storage", url])
    assert idle.exit_code == 0 and "no branch waiting" in idle.output
    back = runner.invoke(app, ["rollback", "digits-run", "--to", "1", "--set", "lr=0.001", "--storage", url])
    assert back.exit_code == 0, back.output
    branch = runner.invoke(app, ["train", "digits-run", "--epochs", "2", "--storage", url])
    assert branch.exit_code == 0 and "branch 1: COMPLETE" in branch.output
    curves = study.get_curves(1)
    assert curves["val_acc"][0] == [2]  # from the checkpoint of epoch 1 to the end
    assert study.get_trial(1).params["lr"] == 0.001
