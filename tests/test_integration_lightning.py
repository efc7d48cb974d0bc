"""tunelab.integrations.lightning against real PyTorch Lightning training on the CPU: curves, pruning
under ASHA, checkpoints and resuming, live changes of the lr, two workers, DDP on two processes."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch

import tunelab
from integration_lightning_objectives import BATCHES_PER_EPOCH, Net, StopAt, loaders, objective, trainer
from objectives import WatchingRungs
from tunelab.babysit import rollback, set_live
from tunelab.checkpoints import CheckpointPolicy
from tunelab.errors import ConfigError
from tunelab.integrations.lightning import CHECKPOINT_FILE, TunelabCallback

torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "examples" / "integrations" / "tune_lightning.py"
PAGE = ROOT / "docs" / "integrations" / "lightning.md"


def sqlite_study(tmp_path: Path, **kwargs: Any) -> tunelab.Study:
    return tunelab.create_study(name="lightning", storage=f"sqlite:///{tmp_path / 'study.db'}", seed=0,
                                sampler=tunelab.RandomSampler(), artifact_dir=tmp_path / "artifacts", **kwargs)


def fit(trial: tunelab.Trial | None, model: Net, epochs: int, *callbacks: pl.Callback, **kwargs: Any) -> pl.Trainer:
    run = trainer(max_epochs=epochs, callbacks=list(callbacks))
    train, val = loaders()
    run.fit(model, train, val, **kwargs)
    return run


# -- curves, checkpoints, resuming ------------------------------------------------------------
def test_curves_are_what_lightning_logged_and_checkpoints_resume_with_ckpt_path(tmp_path: Path) -> None:
    study = sqlite_study(tmp_path, checkpoint_policy=CheckpointPolicy(keep_last=5))
    study.enqueue({"lr": 0.01})
    trial = study.ask()
    model = Net(trial.suggest_float("lr", 1e-3, 0.1, log=True))
    cb = TunelabCallback(trial, monitor="val_loss", checkpoint=True)
    run = fit(trial, model, 3, cb)

    curves = study.get_curves(trial.number)
    assert set(curves) == {"train_loss", "val_loss", "val_mae"}
    assert curves["val_loss"] == ([1, 2, 3], model.val_losses)  # the sanity check is not reported
    steps, train = curves["train_loss"]
    per_epoch = [model.train_losses[i:i + BATCHES_PER_EPOCH] for i in range(0, 12, BATCHES_PER_EPOCH)]
    assert steps == [1, 2, 3] and train == pytest.approx([sum(e) / len(e) for e in per_epoch], rel=1e-6)
    assert cb.metrics["val_loss"] == float(run.callback_metrics["val_loss"]) and not cb.pruned

    assert [c.step for c in trial.checkpoints()] == [1, 2, 3]
    latest = trial.latest_checkpoint()
    assert latest is not None and (latest.path / CHECKPOINT_FILE).is_file()
    resumed = Net(0.01)
    fit(trial, resumed, 4, TunelabCallback(trial, monitor="val_loss"), ckpt_path=latest.path / CHECKPOINT_FILE)
    assert len(resumed.lrs) == BATCHES_PER_EPOCH  # only the fourth epoch ran
    assert study.get_curves(trial.number)["val_loss"][0] == [1, 2, 3, 4]
    uninterrupted = Net(0.01)
    fit(None, uninterrupted, 4)
    assert uninterrupted.val_losses[:3] == pytest.approx(model.val_losses, rel=1e-6)
    assert resumed.val_losses == pytest.approx(uninterrupted.val_losses[3:], rel=1e-6)  # it went on exactly
    assert study.tell(trial, resumed.val_losses[-1]).state == tunelab.TrialState.COMPLETE


def test_a_rolled_back_branch_resumed_with_ckpt_path_trains_with_its_changed_lr(tmp_path: Path) -> None:
    # Lightning loads the optimizer's state from the parent's checkpoint, with the parent's lr: the branch
    # (lr 0.05 -> 0.001) trained on at 0.05 although its params said 0.001.
    study = sqlite_study(tmp_path, checkpoint_policy=CheckpointPolicy(keep_last=5, keep_finished=True))
    study.enqueue({"lr": 0.05})
    models: list[Net] = []

    def run(trial: tunelab.Trial) -> float:
        models.append(Net(trial.suggest_float("lr", 1e-3, 0.1, log=True)))
        start = trial.resume_from
        result = fit(trial, models[-1], 3, TunelabCallback(trial, checkpoint=True),
                     ckpt_path=None if start is None else start.path / CHECKPOINT_FILE)
        return float(result.callback_metrics["val_loss"])

    study.optimize(run, n_trials=1)
    number = rollback(study, to=1, trial=0, values={"lr": 0.001})
    study.optimize(run, n_trials=1)
    assert study.trials[number].params["lr"] == 0.001
    assert models[1].lrs == [0.001] * (2 * BATCHES_PER_EPOCH)  # epochs 2 and 3, at the branch's lr
    assert study.get_curves(number)["val_loss"][0] == [2, 3]


def test_only_the_fits_validations_are_reported_not_the_sanity_check_nor_a_validate_run() -> None:
    # Validation every second epoch, after a sanity check: epoch 1 ends without a validation, so nothing of
    # the sanity check's may be reported there; a trainer.validate() run before the fit reports nothing either.
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler())
    trial = study.ask()
    model = Net(trial.suggest_float("lr", 1e-3, 0.1, log=True))
    cb = TunelabCallback(trial, monitor="val_loss")
    train, val = loaders()
    trainer(max_epochs=1, callbacks=[cb]).validate(model, val, verbose=False)
    assert study.get_curves(trial.number) == {}
    run = trainer(max_epochs=4, callbacks=[cb], num_sanity_val_steps=1, check_val_every_n_epoch=2)
    run.fit(model, train, val)
    curves = study.get_curves(trial.number)
    assert curves["val_loss"] == ([2, 4], model.val_losses[-2:])
    assert curves["train_loss"][0] == [2, 4]


# -- pruning -------------------------------------------------------------------------------------
def test_a_hopeless_trial_is_pruned_at_the_first_asha_rung_whether_the_objective_returns_or_raises() -> None:
    # Rungs at epochs 1, 2 (reduction factor 2): trial 0 learns; trials 1 and 2 (lr 1e-5) barely move, and
    # at rung 1 each is not the best of the values there, so both stop after epoch 1.
    study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler(),
                                 pruner=tunelab.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2))
    for lr in (0.05, 1e-5, 1e-5):
        study.enqueue({"lr": lr})
    models: list[Net] = []

    def run(trial: tunelab.Trial) -> float:
        model = Net(trial.suggest_float("lr", 1e-5, 0.1, log=True))
        models.append(model)
        cb = TunelabCallback(trial, monitor="val_loss")
        result = fit(trial, model, 3, cb)
        if cb.pruned and trial.number == 2:
            raise tunelab.TrialPruned()
        return float(result.callback_metrics["val_loss"])  # trial 1 returns a value: it is PRUNED anyway

    study.optimize(run, n_trials=3)
    assert [t.state for t in study.trials] == [tunelab.TrialState.COMPLETE] + [tunelab.TrialState.PRUNED] * 2
    assert study.get_curves(0)["val_loss"][0] == [1, 2, 3]
    for number in (1, 2):
        assert study.get_curves(number)["val_loss"] == ([1], models[number].val_losses)
        assert study.trials[number].system_attrs["pruned"]["step"] == 1
        assert study.trials[number].system_attrs["pruned"]["rule"] == "asha rung at step 1"
        assert len(models[number].lrs) == BATCHES_PER_EPOCH  # the Trainer stopped after epoch 1
    assert study.trials[1].value is None


@pytest.mark.parametrize("rungs", [(1, 3), (2, 5)])
def test_validations_between_rungs_are_reported_together_and_the_pruner_is_asked_at_its_rungs(
        tmp_path: Path, rungs: tuple[int, int]) -> None:
    # Epochs of a few milliseconds: each validation is held (a list append) and the trial hears of them at the
    # pruner's rungs, at least every half second and when the fit ends; every epoch at its own step. An epoch
    # nothing is judged at (the first one too, with rungs 2 and 5) is read at the next epoch's start.
    pruner = WatchingRungs("val_loss", rungs)
    study = sqlite_study(tmp_path, pruner=pruner)
    trial = study.ask()
    model = Net(0.01)
    fit(trial, model, 12, TunelabCallback(trial, monitor="val_loss"))
    assert pruner.asked[:2] == list(rungs)
    assert len(pruner.asked) < 12  # not every epoch: later ones only when half a second has passed
    # the fit has returned: the whole curve is in the storage, read back by another connection
    stored = tunelab.load_study("lightning", storage=f"sqlite:///{tmp_path / 'study.db'}",
                                pruner=WatchingRungs("val_loss", rungs)).get_curves(trial.number)
    assert stored["val_loss"] == (list(range(1, 13)), model.val_losses)
    steps, train = stored["train_loss"]  # each epoch's training aggregate, read after Lightning computed it
    losses, n = model.train_losses, BATCHES_PER_EPOCH
    per_epoch = [losses[i:i + n] for i in range(0, len(losses), n)]
    assert steps == list(range(1, 13)) and train == pytest.approx([sum(e) / len(e) for e in per_epoch], rel=1e-6)


def test_a_pareto_pruner_reads_every_objective_of_one_report_and_prunes_a_dominated_trial() -> None:
    # Two objectives (val_loss, val_mae) under ParetoMedianPruner: each validation's metrics are one report,
    # so the pruner finds both at the step (they were reported apart, the monitor last, and the pruner
    # failed with a ConfigError that the last report had only val_loss). Trial 2 (lr 1e-5) is worse in both
    # than the median of trials 0 and 1 at epoch 1: it stops there.
    study = tunelab.create_study(directions=["minimize", "minimize"], objective_names=["val_loss", "val_mae"],
                                 sampler=tunelab.RandomSampler(), seed=0,
                                 pruner=tunelab.ParetoMedianPruner(n_startup_trials=2))
    for lr in (0.05, 0.02, 1e-5):
        study.enqueue({"lr": lr})

    def run(trial: tunelab.Trial) -> tuple[float, float]:
        cb = TunelabCallback(trial, monitor="val_loss")
        result = fit(trial, Net(trial.suggest_float("lr", 1e-5, 0.1, log=True)), 2, cb)
        trial.set_constraint("epochs", result.current_epoch, upper=2)
        return float(result.callback_metrics["val_loss"]), float(result.callback_metrics["val_mae"])

    study.optimize(run, n_trials=3)
    states = [t.state for t in study.trials]
    assert states == [tunelab.TrialState.COMPLETE] * 2 + [tunelab.TrialState.PRUNED]
    assert study.trials[2].system_attrs["pruned"]["step"] == 1
    assert set(study.get_curves(2)) == {"train_loss", "val_loss", "val_mae"}
    assert study.trials[0].feasible and study.trials[0].constraints["epochs"].value == 2


@pytest.mark.slow
def test_two_workers_share_one_sqlite_study(tmp_path: Path) -> None:
    study = sqlite_study(tmp_path)
    study.optimize(objective, n_trials=4, n_workers=2)
    trials = study.trials
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.state == tunelab.TrialState.COMPLETE for t in trials)
    for t in trials:
        steps, values = study.get_curves(t.number)["val_loss"]
        assert steps == [1, 2, 3] and t.value == pytest.approx(values[-1])
    assert len({t.params["lr"] for t in trials}) == 4


# -- live changes ----------------------------------------------------------------------------
class SetLrAt(pl.Callback):
    """What ``tunelab set RUN lr=...`` does, from another Study object, after ``at`` optimizer steps."""

    def __init__(self, study: tunelab.Study, number: int, at: int, values: dict[str, float]) -> None:
        self.other = tunelab.load_study(study.name, study.storage.url)
        self.number, self.at, self.values = number, at, values

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.at:
            set_live(self.other, self.number, self.values, source="cli")


def test_an_lr_set_from_outside_applies_at_the_next_optimizer_step(tmp_path: Path) -> None:
    study = sqlite_study(tmp_path)
    study.enqueue({"lr": 0.05})
    trial = study.ask()
    trial.live_poll_seconds = 0  # read the storage before every step
    model = Net(trial.suggest_float("lr", 1e-3, 0.1, log=True))
    cb = TunelabCallback(trial, monitor="val_loss", step="global_step")
    fit(trial, model, 2, SetLrAt(study, trial.number, 5, {"lr": 0.002, "momentum": 0.5}), cb)
    assert model.lrs == [0.05] * 5 + [0.002] * 3  # the sixth step ran with the new lr
    stored = tunelab.load_study(study.name, study.storage.url).trials[0].system_attrs
    assert stored["live_names"] == ["lr", "momentum", "weight_decay"]
    [entry] = stored["live_schedule"]
    assert entry["params"] == {"lr": 0.002, "momentum": 0.5} and entry["step"] == entry["optimizer_step"] == 5
    assert study.get_curves(trial.number)["val_loss"][0] == [4, 8]  # step="global_step"


class SetLrWhenWatched(SetLrAt):
    """Sets the lr after ``at`` steps, then lets training go on once the watcher thread has seen it."""

    def __init__(self, *args: Any, callback: TunelabCallback) -> None:
        super().__init__(*args)
        self.callback = callback
        self.hooks_before: int | None = None

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step != self.at:
            return
        optimizer = trainer.optimizers[0]
        self.hooks_before = len(optimizer._optimizer_step_pre_hooks)
        set_live(self.other, self.number, self.values, source="cli")
        deadline = time.monotonic() + 20
        pause = threading.Event()
        while not optimizer._optimizer_step_pre_hooks and time.monotonic() < deadline:
            pause.wait(0.01)


def test_in_one_process_a_watcher_thread_reads_live_changes_and_nothing_runs_per_step(tmp_path: Path) -> None:
    study = sqlite_study(tmp_path)
    study.enqueue({"lr": 0.05})
    trial = study.ask()
    trial.live_poll_seconds = 0.05
    model = Net(trial.suggest_float("lr", 1e-3, 0.1, log=True))
    cb = TunelabCallback(trial, monitor="val_loss", step="global_step")
    setter = SetLrWhenWatched(study, trial.number, 5, {"lr": 0.002}, callback=cb)
    fit(trial, model, 2, setter, cb)
    assert setter.hooks_before == 0  # five steps trained with no tunelab hook on the optimizer
    assert model.lrs == [0.05] * 5 + [0.002] * 3
    [entry] = tunelab.load_study(study.name, study.storage.url).trials[0].system_attrs["live_schedule"]
    assert entry["params"] == {"lr": 0.002} and entry["optimizer_step"] == 5


# -- DDP --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_under_ddp_rank_zero_alone_writes_and_every_rank_stops_at_the_same_step(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, str(ROOT / "tests" / "integration_lightning_ddp.py"), str(tmp_path)],
                         env=env, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    study = tunelab.load_study("ddp", f"sqlite:///{tmp_path / 'ddp.db'}", pruner=StopAt(metric="val_loss"))
    [trial] = study.trials  # no rank ran an objective of its own
    assert trial.state == tunelab.TrialState.PRUNED and trial.system_attrs["pruned"]["step"] == 2
    assert study.get_curves(0)["val_loss"][0] == [1, 2]
    with sqlite3.connect(tmp_path / "ddp.db") as conn:
        writes = conn.execute("SELECT metric, step, count(*) FROM writes GROUP BY metric, step").fetchall()
    assert {(m, s) for m, s, _ in writes} == {(m, s) for m in ("train_loss", "val_loss", "val_mae") for s in (1, 2)}
    assert all(n == 1 for _, _, n in writes)  # each point written once: one writer
    ranks = [json.loads((tmp_path / "trial-0" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1]  # the same stop, the same lr at every step
    assert ranks[0]["global_step"] == 2 * BATCHES_PER_EPOCH // 2  # two epochs of two batches on each rank
    assert ranks[0]["lrs"] == [0.05, 0.05, 0.05, 0.002]  # the lr set after step 3 applied at step 4 on both
    [entry] = trial.system_attrs["live_schedule"]
    assert entry["params"] == {"lr": 0.002} and entry["optimizer_step"] == 3
    assert json.loads((tmp_path / "trial-0" / "main.json").read_text())["pruned"] is True
    kept = sorted(p.name for p in (tmp_path / "artifacts").glob("*/trial-0/step-*") if (p / CHECKPOINT_FILE).is_file())
    assert kept == ["step-1", "step-2"]


@pytest.mark.slow
def test_under_torchrun_the_trial_lives_on_rank_zero_alone_and_every_rank_stops_at_the_same_step(
    tmp_path: Path,
) -> None:
    from integration_lightning_ddp import torchrun

    db = tmp_path / "torchrun.db"
    torchrun("integration_lightning_torchrun.py", tmp_path, "torchrun", db)
    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1]  # the same stop, the same lr at every step
    assert ranks[0]["global_step"] == 2 * BATCHES_PER_EPOCH // 2  # two epochs of two batches on each rank
    assert ranks[0]["lrs"] == [0.05, 0.05, 0.05, 0.002]  # the lr set after step 3 applied at step 4 on both
    study = tunelab.load_study("torchrun", f"sqlite:///{db}")
    [trial] = study.trials  # the other rank ran no trial of its own
    assert trial.state == tunelab.TrialState.PRUNED and trial.system_attrs["pruned"]["step"] == 2
    with sqlite3.connect(db) as conn:
        writes = conn.execute("SELECT metric, step, count(*) FROM writes GROUP BY metric, step").fetchall()
    assert {(m, s) for m, s, _ in writes} == {(m, s) for m in ("train_loss", "val_loss", "val_mae") for s in (1, 2)}
    assert all(n == 1 for _, _, n in writes)  # each point written once: one writer


# -- bad input ---------------------------------------------------------------------------------
def test_bad_arguments_are_config_errors_naming_the_fix() -> None:
    trial = tunelab.create_study(seed=0).ask()
    with pytest.raises(ConfigError, match=r"tunelab\.Trial"):
        TunelabCallback(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="monitor"):
        TunelabCallback(trial, monitor="")
    with pytest.raises(ConfigError, match="'epoch' or 'global_step'"):
        TunelabCallback(trial, step="batch")
    with pytest.raises(ConfigError, match="checkpoint"):
        TunelabCallback(trial, checkpoint="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="list of hyperparameter names"):
        TunelabCallback(trial, live="lr")


def test_a_metric_never_logged_and_a_missing_trial_fail_the_fit_naming_the_fix() -> None:
    study = tunelab.create_study(seed=0)
    trial = study.ask()
    with pytest.raises(ConfigError, match=re.escape("['train_loss', 'val_loss', 'val_mae']")):
        fit(trial, Net(0.01), 1, TunelabCallback(trial, monitor="val_acc"))
    with pytest.raises(ConfigError, match="global rank 0 needs the trial"):
        fit(None, Net(0.01), 1, TunelabCallback(None))


# -- the example and its page ----------------------------------------------------------------
@pytest.mark.slow
def test_the_example_runs_and_prunes(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, str(EXAMPLE)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "best val_loss" in out.stdout
    study = tunelab.load_study("lightning", f"sqlite:///{tmp_path / 'lightning.db'}")
    states = [t.state for t in study.trials]
    assert len(states) == 12 and tunelab.TrialState.PRUNED in states and tunelab.TrialState.COMPLETE in states
    assert set(study.get_curves(study.best_trial.number)) == {"train_loss", "val_loss", "val_acc"}
    assert (study.checkpoint_path(study.best_trial.number) / CHECKPOINT_FILE).is_file()


def test_the_page_shows_the_example_verbatim() -> None:
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
    assert EXAMPLE.read_text() in blocks
