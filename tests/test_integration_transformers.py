"""tunelab.integrations.transformers against the real Hugging Face Trainer: a tiny BERT built from a
config, trained on the CPU on a synthetic task (is token 7 in the sequence?)."""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState

import tunelab
from integration_transformers_objectives import TRAIN, make_trainer, tiny_model, tiny_trainer, training_args
from objectives import WatchingRungs
from tunelab.babysit import set_live
from tunelab.errors import ConfigError
from tunelab.integrations.transformers import LIVE_NAMES, BestRun, TunelabCallback, search

torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")
transformers.logging.set_verbosity_error()

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "integrations" / "tune_transformers.py"
PAGE = ROOT / "docs" / "integrations" / "transformers.md"
SPACE = {"learning_rate": tunelab.Float(1e-4, 10.0, log=True)}
GOOD, HOPELESS = 1e-3, 10.0  # a huge rate: eval_loss ~18 after 4 steps where the good one is ~0.69


def random_study(**kw: Any) -> tunelab.Study:
    return tunelab.create_study(seed=0, sampler=tunelab.RandomSampler(), **kw)


def eval_rows(trainer: Trainer) -> list[dict[str, float]]:
    return [row for row in trainer.state.log_history if "eval_loss" in row]


# -- curves -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("step", "strategy", "expected_steps"), [
    ("global_step", "steps", [4, 8, 12, 16]),
    ("epoch", "epoch", [1, 2]),
])
def test_the_reported_curves_are_what_the_trainer_logged(
    tmp_path: Path, step: str, strategy: str, expected_steps: list[int]
) -> None:
    study = random_study()
    trial = study.ask()
    trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True)
    callback = TunelabCallback(trial, step=step)
    trainer = tiny_trainer(str(tmp_path), callbacks=[callback], eval_strategy=strategy, learning_rate=1e-3)
    trainer.train()
    study.tell(trial, callback.last_metrics["eval_loss"])
    rows = eval_rows(trainer)
    curves = study.get_curves(trial.number)
    assert set(curves) == {k for k in rows[0] if k not in ("epoch", "step")} >= {"eval_loss", "eval_runtime"}
    for name, (steps, values) in curves.items():
        assert steps == expected_steps
        assert values == pytest.approx([row[name] for row in rows], rel=1e-12)
    assert callback.last_step == 16 and callback.last_metrics["eval_loss"] == rows[-1]["eval_loss"]


def test_evaluations_between_rungs_are_reported_together_and_every_one_is_stored_when_train_returns(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'held.db'}"
    pruner = WatchingRungs("eval_loss", (4, 12))  # rungs: global steps 4 and 12
    study = tunelab.create_study(name="held", storage=url, seed=0, sampler=tunelab.RandomSampler(), pruner=pruner)
    trial = study.ask()
    trainer = tiny_trainer(str(tmp_path), callbacks=[TunelabCallback(trial)], eval_steps=2, learning_rate=1e-3)
    trainer.train()
    assert pruner.asked[:2] == [4, 12]  # the rungs (the first evaluation, step 2, reported but not judged)
    assert len(pruner.asked) < 8  # not every evaluation: later ones only when half a second has passed
    stored = tunelab.load_study("held", storage=url, pruner=WatchingRungs("eval_loss", (4, 12))).get_curves(
        trial.number)
    rows = eval_rows(trainer)
    assert stored["eval_loss"] == (list(range(2, 17, 2)), [row["eval_loss"] for row in rows])


def test_an_evaluation_after_training_is_reported_but_never_prunes(tmp_path: Path) -> None:
    study = random_study(pruner=tunelab.SuccessiveHalvingPruner(min_resource=4, reduction_factor=2))
    study.enqueue({"learning_rate": GOOD})
    study.optimize(_objective_with_callback(tmp_path, "return"), n_trials=1)
    late = study.ask()
    callback = TunelabCallback(late)
    trainer = tiny_trainer(str(tmp_path / "late"), callbacks=[callback], learning_rate=HOPELESS,
                           eval_strategy="no", max_steps=4)
    trainer.train()
    trainer.evaluate()  # at step 4, a rung where it is far worse than trial 0: reported, not pruned
    assert study.get_curves(late.number)["eval_loss"][0] == [4]
    assert not late.marked_pruned
    assert study.tell(late, callback.last_metrics["eval_loss"]).state.value == "COMPLETE"


# -- pruning -----------------------------------------------------------------------------------------
def _objective_with_callback(tmp_path: Path, ending: str) -> Any:
    def objective(trial: tunelab.Trial) -> float:
        lr = trial.suggest_float("learning_rate", 1e-4, 10.0, log=True)
        callback = TunelabCallback(trial)
        trainer = tiny_trainer(str(tmp_path / f"t{trial.number}"), callbacks=[callback], learning_rate=lr)
        trainer.train()
        trial.set_user_attr("steps_trained", trainer.state.global_step)
        if ending == "raise" and trial.should_prune():
            raise tunelab.TrialPruned()
        return callback.last_metrics["eval_loss"]
    return objective


@pytest.mark.parametrize("ending", ["return", "raise"])
def test_a_hopeless_trial_is_pruned_at_the_first_rung_and_training_stops_there(tmp_path: Path, ending: str) -> None:
    # ASHA with rungs at steps 4, 8, 16 and eta 2: at step 4 the hopeless trial is compared with the good
    # one, and only the best 1 of 2 goes on.
    pruner = tunelab.SuccessiveHalvingPruner(min_resource=4, reduction_factor=2)
    study = random_study(pruner=pruner)
    study.enqueue({"learning_rate": GOOD})
    study.enqueue({"learning_rate": HOPELESS})
    study.optimize(_objective_with_callback(tmp_path, ending), n_trials=2)
    good, hopeless = study.trials
    assert good.state.value == "COMPLETE" and good.user_attrs["steps_trained"] == 16
    assert hopeless.state.value == "PRUNED" and hopeless.value is None
    assert hopeless.system_attrs["pruned"]["step"] == 4
    assert hopeless.system_attrs["pruned"]["rule"] == "asha rung at step 4"
    assert hopeless.user_attrs["steps_trained"] == 4  # the Trainer stopped at the pruned step
    steps, values = study.get_curves(hopeless.number)["eval_loss"]
    assert steps == [4] and values[0] > 2 * study.get_curves(good.number)["eval_loss"][1][0]


def test_search_prunes_through_the_callback_and_the_pruned_trial_raises(tmp_path: Path) -> None:
    study = random_study(pruner=tunelab.SuccessiveHalvingPruner(min_resource=4, reduction_factor=2),
                         artifact_dir=tmp_path)
    study.enqueue({"learning_rate": GOOD})
    study.enqueue({"learning_rate": HOPELESS})
    best = search(make_trainer, SPACE, n_trials=2, study=study)
    assert [t.state.value for t in study.trials] == ["COMPLETE", "PRUNED"]
    assert study.trials[1].system_attrs["pruned"]["step"] == 4
    assert best.number == 0 and best.hyperparameters == {"learning_rate": GOOD}


def test_only_the_main_process_talks_to_the_study() -> None:
    study = random_study(pruner=tunelab.SuccessiveHalvingPruner(min_resource=1))
    trial = study.ask()
    callback = TunelabCallback(trial)
    args = training_args("unused")
    other_rank = TrainerState(is_world_process_zero=False, global_step=3)
    control = TrainerControl()
    callback.on_train_begin(args, other_rank, control)
    callback.on_step_begin(args, other_rank, control, optimizer=None)
    callback.on_evaluate(args, other_rank, control, metrics={"eval_loss": 1.0})
    frozen = study.trials[0]
    assert study.get_curves(0) == {} and "live_names" not in frozen.system_attrs
    assert not control.should_training_stop and callback.last_metrics == {}
    main = TrainerState(is_world_process_zero=True, global_step=3)
    callback.on_evaluate(args, main, control, metrics={"eval_loss": 1.0, "epoch": 0.5})
    assert study.get_curves(0) == {"eval_loss": ([3], [1.0])}
    without = TunelabCallback(None)  # the other ranks need no trial...
    without.on_train_begin(args, other_rank, control)
    without.on_evaluate(args, other_rank, control, metrics={"eval_loss": 1.0})
    with pytest.raises(ConfigError, match=r"TunelabCallback\(None\) in the main process"):
        without.on_train_begin(args, main, control)  # ...the main one does


# -- live hyperparameters ----------------------------------------------------------------------------
class Recorder(TrainerCallback):  # type: ignore[misc]
    """After TunelabCallback at each step's start: records the optimizer's groups, runs actions."""

    def __init__(self, actions: dict[int, Any]) -> None:
        self.actions = actions
        self.groups: list[list[tuple[float, float]]] = []

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.groups.append([(g["lr"], g["weight_decay"]) for g in kwargs["optimizer"].param_groups])
        action = self.actions.get(state.global_step)
        if action is not None:
            action()


def test_a_live_change_reaches_the_optimizer_at_the_next_step_and_the_linear_schedule_goes_on(tmp_path: Path) -> None:
    study = random_study(name="live", storage=f"sqlite:///{tmp_path / 'live.db'}")
    trial = study.ask()
    trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True)
    trial.live_poll_seconds = 0  # read the storage at every step
    other = tunelab.load_study("live", f"sqlite:///{tmp_path / 'live.db'}")  # as `tunelab set` would

    def change_lr() -> None:
        set_live(other, trial.number, {"learning_rate": 0.002}, source="cli")

    def change_wd() -> None:
        set_live(other, trial.number, {"weight_decay": 0.05})

    recorder = Recorder({5: change_lr, 9: change_wd})
    trainer = tiny_trainer(str(tmp_path), callbacks=[TunelabCallback(trial), recorder], learning_rate=0.01)
    trainer.train()
    total = trainer.state.max_steps
    assert total == 16 and type(trainer.lr_scheduler).__name__ == "LambdaLR"  # HF's default: linear decay
    lrs = [groups[0][0] for groups in recorder.groups]
    expected = [(0.01 if k <= 5 else 0.002) * (total - k) / total for k in range(total)]
    assert lrs == pytest.approx(expected, rel=1e-12)  # the change shows at step 6, on the same schedule
    assert all(len({g[0] for g in groups}) == 1 for groups in recorder.groups)  # every group has it
    decay, no_decay = zip(*[(groups[0][1], groups[1][1]) for groups in recorder.groups], strict=True)
    assert decay == (0.0,) * 10 + (0.05,) * 6 and set(no_decay) == {0.0}  # biases and norms do not decay
    frozen = other.trials[0]
    assert frozen.system_attrs["live_names"] == sorted(LIVE_NAMES)
    first, second = frozen.system_attrs["live_schedule"]  # applied just before the optimizer step of the
    # iteration in which it was asked (global_step 5: the sixth update), so the next step starts with it
    assert (first["step"], first["params"], first["sources"]) == (5, {"learning_rate": 0.002}, ["cli"])
    assert (second["step"], second["params"]) == (9, {"weight_decay": 0.05})
    assert trial.live_params["learning_rate"] == 0.002


# -- several processes ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_on_two_processes_the_main_one_alone_writes_and_every_process_stops_and_changes_lr_together(
    tmp_path: Path,
) -> None:
    from integration_lightning_ddp import torchrun

    db = tmp_path / "hf.db"
    torchrun("integration_hf_ddp.py", tmp_path, "hf-ddp", db)
    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world_size"] == 2 and ranks[0] == ranks[1]  # the same stop, the same lr at every step
    assert ranks[0]["global_step"] == 8  # pruned at the second evaluation (of 32 planned steps)
    assert ranks[0]["lrs"] == [0.01] * 3 + [0.002] * 5  # asked after step 3: the fourth step has it, on both
    study = tunelab.load_study("hf-ddp", f"sqlite:///{db}")
    [trial] = study.trials  # the other process ran no trial of its own
    assert trial.state == tunelab.TrialState.PRUNED and trial.system_attrs["pruned"]["step"] == 8
    [entry] = trial.system_attrs["live_schedule"]
    assert entry["params"] == {"learning_rate": 0.002} and entry["step"] == 3
    with sqlite3.connect(db) as conn:
        writes = conn.execute("SELECT metric, step, count(*) FROM writes GROUP BY metric, step").fetchall()
    assert {(m, s) for m, s, _ in writes if m == "eval_loss"} == {("eval_loss", 4), ("eval_loss", 8)}
    assert all(n == 1 for _, _, n in writes)  # each point written once: one writer


# -- search --------------------------------------------------------------------------------------------
def test_search_returns_the_best_run_of_the_study(tmp_path: Path) -> None:
    best = search(make_trainer, {"learning_rate": tunelab.Float(1e-4, 3e-2, log=True)}, n_trials=3, seed=0,
                  sampler=tunelab.RandomSampler())
    assert isinstance(best, BestRun)
    study = best.study
    assert len(study.trials) == 3 and all(t.state.value == "COMPLETE" for t in study.trials)
    top = study.best_trial
    assert (best.number, best.run_id, best.objective, best.hyperparameters) == (
        top.number, str(top.number), top.value, top.params)
    assert best.objective == min(t.value for t in study.trials if t.value is not None)
    for t in study.trials:  # each trial's value is its last evaluation, at the end of training
        steps, values = study.get_curves(t.number)["eval_loss"]
        assert steps == [4, 8, 12, 16] and values[-1] == t.value


@pytest.mark.slow
def test_two_workers_share_one_sqlite_study(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hf.db'}"
    best = search(make_trainer, SPACE, n_trials=4, storage=url, study_name="shared", seed=1, n_workers=2,
                  sampler=tunelab.RandomSampler())
    study = tunelab.load_study("shared", url)
    assert len(study.trials) == 4 and {t.state.value for t in study.trials} == {"COMPLETE"}
    assert len({t.params["learning_rate"] for t in study.trials}) == 4
    assert best.number == study.best_trial.number and best.objective == study.best_value
    for t in study.trials:
        assert study.get_curves(t.number)["eval_loss"][0] == [4, 8, 12, 16]
        assert math.isfinite(t.value or math.nan)


# -- bad input -------------------------------------------------------------------------------------------
def test_bad_input_is_refused_before_training(tmp_path: Path) -> None:
    study = random_study()
    trial = study.ask()
    with pytest.raises(ConfigError, match=r"tunelab\.Trial"):
        TunelabCallback(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="monitor"):
        TunelabCallback(trial, monitor="")
    with pytest.raises(ConfigError, match="'global_step' or 'epoch'"):
        TunelabCallback(trial, step="batch")
    with pytest.raises(ConfigError, match="space"):
        search(make_trainer, {}, n_trials=1)
    with pytest.raises(ConfigError, match="learning_rate"):
        search(make_trainer, {"learning_rate": (1e-4, 1e-2)}, n_trials=1)  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="n_trials"):
        search(make_trainer, SPACE, n_trials=0)
    with pytest.raises(ConfigError, match="monitor"):
        search(make_trainer, SPACE, n_trials=1, monitor=None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="trainer_factory"):
        search("trainer", SPACE, n_trials=1)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="do not also give seed, storage"):
        search(make_trainer, SPACE, n_trials=1, study=study, storage="sqlite:///x.db", seed=1)
    assert len(study.trials) == 1  # nothing ran


def test_search_walks_a_grid_sampler_over_its_space_and_refuses_a_study_of_several_objectives() -> None:
    # GridSampler() failed the first trial: "GridSampler has no search space ... create_study(space=...)" (the
    # space given to search was not declared); a study with two objectives ran its first trial to FAIL, then
    # search failed in study.best_trial.
    grid = [1e-3, 1e-2]
    best = search(make_trainer, {"learning_rate": tunelab.Categorical(grid)}, n_trials=2,
                  sampler=tunelab.GridSampler(), seed=0)
    assert sorted(t.params["learning_rate"] for t in best.study.trials) == grid
    two = tunelab.create_study(directions=["minimize", "maximize"], objective_names=["eval_loss", "acc"])
    with pytest.raises(ConfigError, match=r"search\(study=\.\.\.\) optimizes one metric .* has 2 objectives "
                                          r"\(eval_loss, acc\)"):
        search(make_trainer, SPACE, n_trials=1, study=two)
    assert two.trials == []


def test_a_monitor_never_logged_names_the_logged_metrics(tmp_path: Path) -> None:
    study = random_study()
    trial = study.ask()
    trainer = tiny_trainer(str(tmp_path), callbacks=[TunelabCallback(trial, monitor="eval_accuracy")])
    with pytest.raises(ConfigError, match=r"eval_accuracy.*\['eval_loss', 'eval_runtime'"):
        trainer.train()
    assert trainer.state.global_step == 4  # at the first evaluation
    epoch_steps = tiny_trainer(str(tmp_path), callbacks=[TunelabCallback(study.ask(), step="epoch")])
    with pytest.raises(ConfigError, match=r"epoch 0\.5.*eval_strategy='epoch'"):
        epoch_steps.train()


def test_several_eval_datasets_report_each_and_the_monitored_one_is_the_value(tmp_path: Path) -> None:
    # eval_dataset={"val": ..., "train": ...}: the Trainer calls on_evaluate once per dataset, each with
    # its own metrics. The callback raised ConfigError at the dataset without the monitor (eval_train_loss
    # lacks eval_val_loss), failing every trial at its first evaluation.
    def factory(trial: tunelab.Trial) -> Trainer:
        trainer = make_trainer(trial)
        trainer.eval_dataset = {"val": trainer.eval_dataset, "train": TRAIN}
        return trainer

    best = search(factory, {"learning_rate": tunelab.Float(1e-4, 3e-2, log=True)}, n_trials=2, seed=0,
                  monitor="eval_val_loss", sampler=tunelab.RandomSampler(),
                  pruner=tunelab.MedianPruner(n_startup_trials=5))
    study = best.study
    assert all(t.state.value == "COMPLETE" for t in study.trials)
    for t in study.trials:
        curves = study.get_curves(t.number)
        assert curves["eval_val_loss"][0] == curves["eval_train_loss"][0] == [4, 8, 12, 16]
        assert t.value == curves["eval_val_loss"][1][-1]
    study = random_study()
    typo = TunelabCallback(study.ask(), monitor="eval_vall_loss")
    trainer = tiny_trainer(str(tmp_path), callbacks=[typo])
    trainer.eval_dataset = {"val": trainer.eval_dataset, "train": TRAIN}
    with pytest.raises(ConfigError, match=r"eval_vall_loss.*'eval_train_loss'.*'eval_val_loss'"):
        trainer.train()
    assert trainer.state.global_step == 8  # at the next evaluation: the first one logged no eval_vall_loss


def test_a_pareto_pruner_over_two_eval_datasets_is_asked_once_both_are_reported(tmp_path: Path) -> None:
    # Objectives eval_val_loss and eval_train_loss come from two datasets, in two on_evaluate calls: the pruner
    # was asked after one of them and failed the trial with "the trial's last report has only
    # ['eval_val_loss', ...]", whichever dataset was monitored.
    study = tunelab.create_study(directions=["minimize", "minimize"], sampler=tunelab.RandomSampler(), seed=0,
                                 objective_names=["eval_val_loss", "eval_train_loss"],
                                 pruner=tunelab.ParetoMedianPruner(n_startup_trials=1))
    for lr in (GOOD, HOPELESS):
        study.enqueue({"learning_rate": lr})

    def objective(trial: tunelab.Trial) -> tuple[float, float]:
        cb = TunelabCallback(trial, monitor="eval_val_loss")
        trainer = tiny_trainer(str(tmp_path / str(trial.number)), callbacks=[cb], max_steps=8,
                               learning_rate=trial.suggest_float("learning_rate", 1e-4, 10.0, log=True))
        trainer.eval_dataset = {"val": trainer.eval_dataset, "train": TRAIN}
        trainer.train()
        return cb.last_metrics["eval_val_loss"], cb.last_metrics["eval_train_loss"]

    study.optimize(objective, n_trials=2)
    assert [t.state.value for t in study.trials] == ["COMPLETE", "PRUNED"]
    assert study.trials[1].system_attrs["pruned"]["step"] == 4
    assert study.get_curves(1)["eval_train_loss"][0] == [4]  # both datasets reported at the pruned step
    typo = tunelab.create_study(directions=["minimize", "minimize"], pruner=tunelab.ParetoMedianPruner(),
                                objective_names=["eval_val_loss", "eval_tran_loss"])
    trainer = tiny_trainer(str(tmp_path / "typo"), callbacks=[TunelabCallback(typo.ask(), monitor="eval_val_loss")])
    trainer.eval_dataset = {"val": trainer.eval_dataset, "train": TRAIN}
    with pytest.raises(ConfigError, match=r"ParetoMedianPruner compares .* logged no \['eval_tran_loss'\]"):
        trainer.train()


def test_step_epoch_with_an_evaluation_inside_an_epoch_is_refused_before_training(tmp_path: Path) -> None:
    # The ConfigError came at that evaluation, after training up to it: with eval_strategy='epoch' and
    # max_steps=12 (8 steps per epoch) at epoch 1.5, once the whole run was trained.
    study = random_study()
    cut = tiny_trainer(str(tmp_path), callbacks=[TunelabCallback(study.ask(), step="epoch")],
                       eval_strategy="epoch", max_steps=12)
    with pytest.raises(ConfigError, match=r"training ends inside an epoch: 12 steps of 8 per epoch.*epoch 1\.5"):
        cut.train()
    assert cut.state.global_step == 0
    inside = tiny_trainer(str(tmp_path), callbacks=[TunelabCallback(study.ask(), step="epoch")], eval_steps=4)
    with pytest.raises(ConfigError, match=r"epoch 0\.5 \(eval_steps=4, 8 steps per epoch\).*eval_strategy='epoch'"):
        inside.train()
    assert inside.state.global_step == 0
    whole = TunelabCallback(study.ask(), step="epoch")  # every 8 steps is every epoch: allowed
    tiny_trainer(str(tmp_path), callbacks=[whole], eval_steps=8).train()
    assert study.get_curves(whole.trial.number)["eval_loss"][0] == [1, 2]  # type: ignore[union-attr]


def test_search_refuses_a_factory_that_ignores_the_params_or_returns_no_trainer(tmp_path: Path) -> None:
    def ignores(trial: tunelab.Trial) -> Trainer:
        return tiny_trainer(str(tmp_path))  # the default learning_rate, not the trial's

    with pytest.raises(ConfigError, match=r"learning_rate=.*did not reach the Trainer"):
        search(ignores, SPACE, n_trials=1)

    def no_trainer(trial: tunelab.Trial) -> Any:
        return tiny_model()

    with pytest.raises(ConfigError, match=r"must return a transformers\.Trainer"):
        search(no_trainer, SPACE, n_trials=1)


# -- the example and its page ------------------------------------------------------------------------
@pytest.mark.slow
def test_the_example_runs_and_finds_a_rate_that_learns() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, env=env, timeout=300,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    found = re.search(r"best trial (\d+): eval_loss ([\d.]+) with learning_rate ([\d.e-]+)", done.stdout)
    assert found, done.stdout
    assert float(found.group(2)) < 0.3  # the task is learned
    assert re.search(r"pruned: [1-9]", done.stdout), done.stdout


def test_the_page_shows_the_example_verbatim() -> None:
    page = PAGE.read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.DOTALL)
    assert blocks and blocks[0] == EXAMPLE.read_text()
