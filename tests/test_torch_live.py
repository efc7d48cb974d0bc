"""Babysitting with the Trainer: hyperparameters changed from outside while it trains, exact
resumption from its checkpoints, branches, and tunelab.babysit's run (real PyTorch on the CPU,
real SQLite studies, a real training process killed with SIGKILL)."""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import tunelab
from babysit_objectives import STEPS_PER_EPOCH, build, digits, set_dropout, train_run_main, trainer
from tunelab import TrialState, babysit
from tunelab.babysit import create_run, request_stop, set_live, train_run
from tunelab.checkpoints import Checkpoint, CheckpointPolicy
from tunelab.errors import ConfigError
from tunelab.torch import Trainer

torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


def new_study(tmp_path: Path, name: str = "live", keep_last: int = 20) -> tunelab.Study:
    return tunelab.create_study(name=name, storage=f"sqlite:///{tmp_path / 'live.db'}", seed=0,
                                sampler=tunelab.RandomSampler(), artifact_dir=tmp_path / "artifacts",
                                checkpoint_policy=CheckpointPolicy(keep_last=keep_last))


def outsider(study: tunelab.Study) -> tunelab.Study:
    """The same study as another process sees it (its own Study object and connection)."""
    storage = study.storage.url
    assert storage is not None
    return tunelab.load_study(study.name, storage)


class Steps:
    """An optimizer factory that records every step's param-group values and runs actions at steps."""

    def __init__(self, kind: str = "adam", actions: Mapping[int, Callable[[], None]] | None = None) -> None:
        self.kind = kind
        self.actions = dict(actions or {})
        self.groups: list[dict[str, Any]] = []  # group 0 at each optimizer step, before it runs
        self.params: list[list[torch.Tensor]] = []  # the weights before the first step

    def __call__(self, trainable: list[nn.Parameter], params: Mapping[str, Any]) -> torch.optim.Optimizer:
        lr, wd = float(params["lr"]), float(params.get("weight_decay", 0.0))
        optimizer: torch.optim.Optimizer
        if self.kind == "sgd":
            optimizer = torch.optim.SGD(trainable, lr=lr, momentum=float(params.get("momentum", 0.9)), weight_decay=wd)
        elif self.kind == "rmsprop":
            optimizer = torch.optim.RMSprop(trainable, lr=lr, momentum=0.9, weight_decay=wd)
        else:
            cls = torch.optim.AdamW if self.kind == "adamw" else torch.optim.Adam
            optimizer = cls(trainable, lr=lr, weight_decay=wd)
        optimizer.register_step_pre_hook(self._before_step)
        return optimizer

    def _before_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if not self.groups:
            self.params = [p.detach().clone() for p in optimizer.param_groups[0]["params"]]
        group = optimizer.param_groups[0]
        self.groups.append({k: group.get(k) for k in ("lr", "momentum", "betas", "weight_decay")})
        action = self.actions.get(len(self.groups))  # after this many steps began
        if action is not None:
            action()

    def first_step_with(self, key: str, value: Any) -> int:
        return next(i for i, g in enumerate(self.groups) if g[key] == value)


def fit_live(trial: tunelab.Trial, steps: Steps, params: Mapping[str, Any], **kw: Any) -> Any:
    trial.live_poll_seconds = 0  # read the storage at every step: changes apply at the very next one
    kw.setdefault("epochs", 3)
    return trainer(optimizer=steps, schedule=kw.pop("schedule", "constant")).fit(
        params, trial=trial, live=True, **kw)


# -- changes while it trains ------------------------------------------------------------------
def test_an_lr_set_from_outside_applies_at_the_next_optimizer_step_and_shows_in_the_lr_curve(tmp_path: Path) -> None:
    study = new_study(tmp_path)
    trial = study.ask()
    other = outsider(study)
    steps = Steps(actions={13: lambda: set_live(other, trial.number, {"lr": 0.002}, source="cli")})
    fit_live(trial, steps, {"lr": 0.01})
    [entry] = outsider(study).trials[0].system_attrs["live_schedule"]
    assert entry["params"] == {"lr": 0.002} and entry["sources"] == ["cli"]
    assert entry["optimizer_step"] == steps.first_step_with("lr", 0.002) == 13
    assert all(g["lr"] == 0.01 for g in steps.groups[:13]) and all(g["lr"] == 0.002 for g in steps.groups[13:])
    assert entry["step"] == pytest.approx(13 / STEPS_PER_EPOCH)  # on the epoch curve: during epoch 2
    assert study.get_curves(0)["lr"] == ([1, 2, 3], [0.01, 0.002, 0.002])
    assert trial.system_attrs["live_names"] == ["dropout", "lr", "momentum", "weight_decay"]


def test_with_eval_every_the_change_is_placed_at_the_optimizer_step(tmp_path: Path) -> None:
    study = new_study(tmp_path)
    trial = study.ask()
    other = outsider(study)
    steps = Steps(actions={8: lambda: set_live(other, trial.number, {"lr": 0.002})})
    fit_live(trial, steps, {"lr": 0.01}, epochs=2, eval_every=5)
    [entry] = outsider(study).trials[0].system_attrs["live_schedule"]
    assert entry["step"] == entry["optimizer_step"] == 8
    assert study.get_curves(0)["lr"] == ([5, 10, 15, 20], [0.01, 0.002, 0.002, 0.002])


@pytest.mark.parametrize("kind", ["sgd", "rmsprop", "adam", "adamw"])
def test_momentum_and_weight_decay_are_applied_to_every_kind_of_optimizer(tmp_path: Path, kind: str) -> None:
    study = new_study(tmp_path)
    trial = study.ask()
    other = outsider(study)
    steps = Steps(kind, actions={4: lambda: set_live(other, trial.number, {"momentum": 0.5, "weight_decay": 0.01})})
    fit_live(trial, steps, {"lr": 0.01}, epochs=1)
    after = steps.groups[4]
    if kind in ("adam", "adamw"):
        assert steps.groups[3]["betas"] == (0.9, 0.999) and after["betas"] == (0.5, 0.999)
    else:
        assert steps.groups[3]["momentum"] == 0.9 and after["momentum"] == 0.5
    assert steps.groups[3]["weight_decay"] == 0.0 and after["weight_decay"] == 0.01
    assert trial.live_params["momentum"] == 0.5


def test_a_cosine_schedule_goes_on_from_the_new_base(tmp_path: Path) -> None:
    study = new_study(tmp_path)
    trial = study.ask()
    other = outsider(study)
    steps = Steps(actions={7: lambda: set_live(other, trial.number, {"lr": 0.004})})
    fit_live(trial, steps, {"lr": 0.01}, epochs=2, schedule="cosine")
    total = 2 * STEPS_PER_EPOCH
    for i, group in enumerate(steps.groups):
        base = 0.01 if i < 7 else 0.004
        assert group["lr"] == pytest.approx(base * 0.5 * (1 + math.cos(math.pi * i / total)), rel=1e-12), i


def _schedule(kind: str, optimizer: torch.optim.Optimizer, total: int) -> Any:
    sched = torch.optim.lr_scheduler
    if kind == "onecycle":
        return sched.OneCycleLR(optimizer, max_lr=0.01, total_steps=total)
    if kind == "cosine_annealing":
        return sched.CosineAnnealingLR(optimizer, T_max=total)
    if kind == "lambda":
        return sched.LambdaLR(optimizer, lambda t: 1.0 - t / total)
    if kind == "step":
        return sched.StepLR(optimizer, step_size=5, gamma=0.5)
    if kind == "warmup_then_cosine":
        return sched.SequentialLR(optimizer, [sched.LinearLR(optimizer, 0.1, total_iters=5),
                                              sched.CosineAnnealingLR(optimizer, T_max=total - 5)], milestones=[5])
    return sched.CyclicLR(optimizer, base_lr=0.01, max_lr=0.05, step_size_up=4)


@pytest.mark.parametrize("kind", ["onecycle", "cosine_annealing", "lambda", "step", "warmup_then_cosine", "cyclic"])
def test_a_live_lr_scales_any_per_step_schedule_for_the_rest_of_the_run(kind: str) -> None:
    """``lr=0.004`` under a schedule started at 0.01 (a OneCycleLR's peak, a CyclicLR's bottom)
    scales the schedule by 0.4 from the change to its end: the scheduler's next steps do not set
    its own rate back (they did after one step, or apply_to_optimizer failed on a scheduler
    other than LambdaLR)."""
    from tunelab.torch.live import apply_to_optimizer

    def lrs(change_at: int | None) -> list[float]:
        weight = nn.Parameter(torch.zeros(2))
        optimizer = torch.optim.SGD([weight], lr=0.01, momentum=0.9)
        scheduler = _schedule(kind, optimizer, 20)
        out = []
        for step in range(20):
            if step == change_at:
                apply_to_optimizer(optimizer, scheduler, {"lr": 0.004})
                assert scheduler.get_last_lr() == [optimizer.param_groups[0]["lr"]]
            out.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return out

    plain, changed = lrs(None), lrs(7)
    assert changed[:7] == plain[:7]
    assert changed[7:] == pytest.approx([0.4 * lr for lr in plain[7:]], rel=1e-9)


def test_a_live_momentum_under_onecycle_sets_the_top_of_its_cycle() -> None:
    from tunelab.torch.live import apply_to_optimizer

    def momenta(change: bool) -> list[float]:
        weight = nn.Parameter(torch.zeros(2))
        optimizer = torch.optim.SGD([weight], lr=0.01, momentum=0.9)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.01, total_steps=20)
        out = []
        for step in range(20):
            if change and step == 5:
                apply_to_optimizer(optimizer, scheduler, {"momentum": 0.5})
            out.append(optimizer.param_groups[0]["momentum"])
            optimizer.step()
            scheduler.step()
        return out

    plain, changed = momenta(False), momenta(True)
    assert changed[5:] == pytest.approx([m * 0.5 / 0.95 for m in plain[5:]], rel=1e-9)
    assert max(changed[5:]) <= 0.5


def test_a_trainer_with_a_onecycle_schedule_keeps_a_live_lr_to_the_end(tmp_path: Path) -> None:
    study = new_study(tmp_path)
    trial = study.ask()
    other = outsider(study)
    steps = Steps(actions={7: lambda: set_live(other, trial.number, {"lr": 0.004})})
    live = trainer(optimizer=steps, schedule="constant")
    live.make_scheduler = lambda optimizer, total: torch.optim.lr_scheduler.OneCycleLR(  # type: ignore[method-assign]
        optimizer, max_lr=0.01, total_steps=total)
    trial.live_poll_seconds = 0
    live.fit({"lr": 0.01}, epochs=2, trial=trial, live=True)
    reference = Steps()
    plain = trainer(optimizer=reference, schedule="constant")
    plain.make_scheduler = live.make_scheduler  # type: ignore[method-assign]
    plain.fit({"lr": 0.01}, epochs=2)
    got, want = [g["lr"] for g in steps.groups], [g["lr"] for g in reference.groups]
    assert len(got) == 2 * STEPS_PER_EPOCH and got[:7] == want[:7]
    assert got[7:] == pytest.approx([0.4 * lr for lr in want[7:]], rel=1e-9)


def test_the_hook_applies_its_own_names_and_unknown_names_are_refused(tmp_path: Path) -> None:
    study = new_study(tmp_path)
    trial = study.ask()
    other = outsider(study)
    seen: list[float] = []

    def hook(model: nn.Module, optimizer: torch.optim.Optimizer, changes: dict[str, Any]) -> None:
        set_dropout(model, optimizer, changes)
        seen.extend(m.p for m in model.modules() if isinstance(m, nn.Dropout))

    steps = Steps(actions={3: lambda: set_live(other, trial.number, {"dropout": 0.0})})
    trial.live_poll_seconds = 0
    Trainer(build, data=digits, batch_size=64, device="cpu", optimizer=steps, on_live_change=hook,
            live_params=["dropout"]).fit({"lr": 0.01, "dropout": 0.3}, epochs=1, trial=trial, live=True)
    assert seen == [0.0]
    with pytest.raises(ConfigError, match=r"no live hyperparameter 'width'.*can change while it trains"):
        set_live(other, trial.number, {"width": 16})
    with pytest.raises(ConfigError, match="live_params"):
        Trainer(build, data=digits, live_params=["dropout"])
    with pytest.raises(ConfigError, match="live=True"):
        trainer().fit({"lr": 0.01}, epochs=1, live=True)
    with pytest.raises(ConfigError, match="resume"):
        trainer().fit({"lr": 0.01}, epochs=1, resume=tmp_path / "nowhere")


def test_the_objective_trains_with_enqueued_params_outside_its_space(tmp_path: Path) -> None:
    study = new_study(tmp_path)
    study.enqueue({"lr": 0.01, "momentum": 0.3})
    steps = Steps("sgd")
    study.optimize(trainer(optimizer=steps).objective(epochs=1, live=True), n_trials=1)
    assert study.trials[0].state == TrialState.COMPLETE
    assert steps.groups[0]["momentum"] == 0.3


# -- exact resumption ---------------------------------------------------------------------------
def _rows_after(history: list[dict[str, float]], step: int) -> list[dict[str, float]]:
    return [row for row in history if row["step"] > step]


@pytest.mark.parametrize(("eval_every", "resume_at"), [(None, 2), (7, 14), (7, 28)])
def test_resuming_from_a_checkpoint_reproduces_the_uninterrupted_run_bit_for_bit(
    tmp_path: Path, eval_every: int | None, resume_at: int
) -> None:
    study = new_study(tmp_path)
    kw: dict[str, Any] = {"epochs": 4, "eval_every": eval_every, "checkpoint_every": 1, "seed": 3}
    params = {"lr": 0.01, "dropout": 0.3}
    whole = study.ask()
    reference = trainer().fit(params, trial=whole, **kw)
    assert resume_at in [c.step for c in whole.checkpoints()]
    resumed_trial = study.ask()
    start = Checkpoint(resume_at, whole.checkpoint_dir / f"step-{resume_at}")
    resumed = trainer().fit(params, trial=resumed_trial, resume=start, **kw)
    after = _rows_after(reference.history, resume_at)
    assert after and _rows_after(resumed.history, resume_at) == after  # every metric, exactly
    assert resumed.history == reference.history  # the history before the checkpoint comes with it
    assert resumed.steps == reference.steps and resumed.value == reference.value
    for name, tensor in reference.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], tensor)
    curves = study.get_curves(resumed_trial.number)
    assert curves["val_loss"][0] == [int(r["step"]) for r in after]  # the curve goes on after the checkpoint


@pytest.mark.parametrize("own_generator", [False, True], ids=["global_rng", "loader_generator"])
@pytest.mark.parametrize(("eval_every", "resume_at"), [(7, 14), (5, 10)], ids=["mid_epoch", "epoch_end"])
def test_a_shuffling_dataloader_resumed_goes_on_bit_for_bit(
    tmp_path: Path, own_generator: bool, eval_every: int, resume_at: int
) -> None:
    # A DataLoader draws its shuffling seed from torch's global RNG when its epoch begins (or from its
    # own generator=): a resumed epoch must draw it from that state at the epoch's start, not from the
    # checkpoint's (the order and dropout went astray), and a fresh loader's own generator must be
    # brought to where the run had it (it restarted from its seed).
    from torch.utils.data import DataLoader, TensorDataset

    (x_tr, y_tr), (x_va, y_va) = digits()

    def loaders() -> tuple[DataLoader, DataLoader]:
        generator = torch.Generator().manual_seed(0) if own_generator else None
        return (DataLoader(TensorDataset(x_tr, y_tr), batch_size=64, shuffle=True, generator=generator),
                DataLoader(TensorDataset(x_va, y_va), batch_size=100))

    study = new_study(tmp_path)
    kw: dict[str, Any] = {"epochs": 3, "eval_every": eval_every, "checkpoint_every": 1, "seed": 3}
    params = {"lr": 0.01, "dropout": 0.3}
    whole = study.ask()
    reference = Trainer(build, data=loaders, device="cpu").fit(params, trial=whole, **kw)
    # optimizer step 14: 4 batches into the second epoch of 10; step 10: the end of the first
    resumed = Trainer(build, data=loaders, device="cpu").fit(
        params, trial=study.ask(), resume=Checkpoint(resume_at, whole.checkpoint_dir / f"step-{resume_at}"), **kw)
    after = _rows_after(reference.history, resume_at)
    assert after and _rows_after(resumed.history, resume_at) == after
    for name, tensor in reference.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], tensor)


def test_a_branch_with_a_changed_lr_starts_from_the_checkpoint_weights_with_the_new_lr(tmp_path: Path) -> None:
    study = new_study(tmp_path)
    study.enqueue({"lr": 0.01})
    parent = study.ask()
    trainer(optimizer=Steps(), schedule="constant").fit(parent.live_params, epochs=3, trial=parent,
                                                        checkpoint_every=1)
    number = babysit.branch(study, 0, 2, {"lr": 0.003})  # while it runs: a COMPLETE trial keeps only its newest
    study.tell(parent, 0.5)
    branch = study.ask()
    assert branch.number == number and branch.live_params["lr"] == 0.003
    assert branch.resume_from is not None and branch.resume_from.step == 2
    steps = Steps()
    result = trainer(optimizer=steps, schedule="constant").fit(branch.live_params, epochs=4, trial=branch,
                                                               checkpoint_every=1)
    assert steps.groups[0]["lr"] == 0.003 and len(steps.groups) == 2 * STEPS_PER_EPOCH
    weights = [v for k, v in _model_state(branch.resume_from.path).items() if k.endswith(("weight", "bias"))]
    assert all(torch.equal(a, b) for a, b in zip(steps.params, weights, strict=True))
    assert study.get_curves(number)["lr"] == ([3, 4], [0.003, 0.003])
    assert [int(r["step"]) for r in result.history] == [1, 2, 3, 4]


def test_a_branch_that_changes_the_optimizer_fails_before_training_unless_only_its_adaptation_changes(
    tmp_path: Path,
) -> None:
    # adam -> sgd loaded Adam's param groups into SGD and crashed at the first step (KeyError
    # 'momentum'); an optimizer and its -hd version share their state, so that change goes on.
    study = new_study(tmp_path)
    study.enqueue({"lr": 0.01, "optimizer": "adam"})
    parent = study.ask()
    trainer().fit(parent.live_params, epochs=2, trial=parent, checkpoint_every=1)
    to_sgd, to_hd = (babysit.branch(study, 0, 1, {"optimizer": name}) for name in ("sgd", "adam-hd"))
    study.tell(parent, 0.5)
    branch = study.ask()
    assert branch.number == to_sgd
    with pytest.raises(ConfigError, match=r"optimizer='adam'.*optimizer='sgd'"):
        trainer().fit(branch.live_params, epochs=2, trial=branch, checkpoint_every=1)
    study.tell(branch, state=TrialState.FAIL)
    branch = study.ask()
    assert branch.number == to_hd
    result = trainer().fit(branch.live_params, epochs=2, trial=branch, checkpoint_every=1)
    assert [int(r["step"]) for r in result.history] == [1, 2]


def _model_state(folder: Path) -> dict[str, torch.Tensor]:
    payload = torch.load(folder / "torch.pt", weights_only=True)
    return payload["model"]  # type: ignore[no-any-return]


# -- the babysat run ----------------------------------------------------------------------------
def test_train_run_trains_the_queued_branch_after_the_current_one_is_stopped(tmp_path: Path) -> None:
    study = create_run("run", {"lr": 0.01, "dropout": 0.2}, storage=f"sqlite:///{tmp_path / 'run.db'}",
                       direction="maximize", artifact_dir=tmp_path / "artifacts")
    other = outsider(study)
    queued: list[int] = []

    def roll_back() -> None:  # during epoch 3 of trial 0: back to its epoch 2, with a lower lr
        queued.append(babysit.branch(other, 0, 2, {"lr": 0.002}, note="too high"))
        request_stop(other, 0)

    steps = Steps("adamw", actions={25: roll_back})
    trained = train_run(study, trainer(optimizer=steps), epochs=4, poll_seconds=0)
    assert trained == [0, 1] == [0, *queued]
    first, second = study.trials
    assert first.state == TrialState.PRUNED and second.state == TrialState.COMPLETE
    assert study.get_curves(0)["val_acc"][0] == [1, 2]  # stopped at its next optimizer step, mid-epoch 3
    assert first.system_attrs["pruned"]["rule"] == "stopped on request"
    assert study.get_curves(1)["val_acc"][0] == [3, 4]
    assert second.system_attrs["branch"]["parent"] == 0 and second.system_attrs["branch"]["set"] == {"lr": 0.002}
    assert study.checkpoints(0), "a stopped branch keeps its checkpoints (keep_finished)"
    with pytest.raises(ConfigError, match="not a babysat run"):
        train_run(new_study(tmp_path, "plain"), trainer(), epochs=1)
    with pytest.raises(ConfigError, match="params"):
        create_run("bad", {}, storage=None)


def test_a_killed_training_process_is_resumed_from_its_last_checkpoint_exactly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'run.db'}"
    params = {"lr": 0.01, "dropout": 0.2}
    epochs = 6
    create_run("crash", params, storage=url, direction="maximize", artifact_dir=tmp_path / "a")
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=train_run_main, args=(url, "crash", epochs, 2, 0.04), daemon=True)
    child.start()
    study = tunelab.load_study("crash", url)
    deadline = time.monotonic() + 60
    while 3 not in study.get_curves(0).get("val_acc", ([], []))[0]:
        assert time.monotonic() < deadline and child.is_alive(), "the run never reached epoch 3"
        time.sleep(0.02)
    # killed as soon as epoch 3 is reported: inside epoch 4 (about 0.4 s of paced steps), after the
    # checkpoint of epoch 2, before that of epoch 4
    assert child.pid is not None
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    study_id = study.storage.get_study("crash").study_id
    while not study.storage.fail_stale_trials(study_id, 1.0):  # its heartbeat goes stale (grace 1 s)
        assert time.monotonic() < deadline, "the killed trial's heartbeat never went stale"
        time.sleep(0.05)

    trained = train_run(study, trainer(), epochs=epochs, heartbeat_interval=0.3, grace_period=1.0)
    dead, resumed = study.trials
    assert trained == [1]
    assert dead.state == TrialState.FAIL and "heartbeat lost" in (dead.error or "")
    record = resumed.system_attrs["branch"]
    assert record["kind"] == "resume" and record["parent"] == 0
    start = record["step"]
    assert start == max(c.step for c in study.checkpoints(0))
    dead_curves, resumed_curves = study.get_curves(0), study.get_curves(1)
    assert dead_curves["val_loss"][0][:3] == [1, 2, 3]  # the dead branch's curve stays
    assert resumed_curves["val_loss"][0] == list(range(start + 1, epochs + 1))

    # An uninterrupted run of the same configuration reports exactly the same values.
    reference = create_run("whole", params, storage=url, direction="maximize", artifact_dir=tmp_path / "b")
    train_run(reference, trainer(), epochs=epochs, checkpoint_every=2)
    whole = reference.get_curves(0)
    for metric in ("train_loss", "val_loss", "val_acc", "lr"):
        steps, values = whole[metric]
        expected = dict(zip(steps, values, strict=True))
        for curves in (dead_curves, resumed_curves):
            for step, value in zip(*curves[metric], strict=True):
                assert value == expected[step], (metric, step)
    assert resumed.value == reference.trials[0].value
