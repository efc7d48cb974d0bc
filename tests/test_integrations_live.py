"""StepHook: live changes reach a framework's optimizer just before its next step, read by a watcher
thread in one process (nothing runs per step until a change is asked), or before every step."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

import tunelab
from tunelab.babysit import request_stop, set_live
from tunelab.integrations._live import StepHook

torch.set_num_threads(1)


def wait_until(condition: Any, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    pause = threading.Event()
    while time.monotonic() < deadline and not condition():
        pause.wait(0.01)
    return bool(condition())


class Loop:
    """A real torch training step and what the hook's action applied, step by step."""

    def __init__(self, trial: tunelab.Trial, lr: float = 0.1) -> None:
        torch.manual_seed(0)
        self.trial = trial
        trial.declare_live(["lr"])
        self.model = torch.nn.Linear(4, 1)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr)
        self.steps = 0
        self.lrs: list[float] = []
        self.stopped = False
        self.actions = 0

    def step(self) -> None:
        x = torch.randn(8, 4)
        loss = self.model(x).pow(2).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.lrs.append(self.optimizer.param_groups[0]["lr"])
        self.steps += 1

    def action(self) -> None:
        self.actions += 1
        changes = self.trial.sync_live(self.steps, force=True)
        if "lr" in changes:
            for group in self.optimizer.param_groups:
                group["lr"] = float(changes["lr"])
        self.stopped = self.stopped or self.trial.stop_requested


@contextmanager
def watched_loop(trial: tunelab.Trial, before_start: Callable[[], object] | None = None) -> Iterator[Loop]:
    """A Loop on ``trial`` whose live changes a watching StepHook applies (closed on leaving)."""
    loop = Loop(trial)
    if before_start is not None:
        before_start()
    hook = StepHook(trial, loop.action, every_step=False)
    hook.start([loop.optimizer])
    try:
        yield loop
    finally:
        hook.close()


@pytest.fixture
def study(tmp_path: Path) -> tunelab.Study:
    return tunelab.create_study(name="live", storage=f"sqlite:///{tmp_path / 'live.db'}", seed=0)


def test_the_watcher_hooks_the_optimizer_only_once_a_change_is_stored(study: tunelab.Study) -> None:
    trial = study.ask()
    trial.live_poll_seconds = 0.05
    with watched_loop(trial) as loop:
        for _ in range(5):
            loop.step()
        assert loop.actions == 0 and not loop.optimizer._optimizer_step_pre_hooks  # nothing runs per step
        other = tunelab.load_study("live", study.storage.url)  # as `tunelab set` would, from elsewhere
        set_live(other, trial.number, {"lr": 0.01}, source="cli")
        assert wait_until(lambda: bool(loop.optimizer._optimizer_step_pre_hooks))  # the watcher saw it
        loop.step()  # the sixth step runs with the new rate
        assert loop.lrs == [0.1] * 5 + [0.01] and loop.actions == 1
        assert not loop.optimizer._optimizer_step_pre_hooks  # unhooked again
        loop.step()
        assert loop.actions == 1
        [entry] = other.trials[0].system_attrs["live_schedule"]
        assert entry["params"] == {"lr": 0.01} and entry["step"] == 5
    assert not loop.optimizer._optimizer_step_pre_hooks


def test_a_fresh_hook_starts_without_undoing_a_start_and_a_restart_closes_the_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A framework callback builds a hook at every fit's start: nothing to close first. A second start (another
    # fit on the same hook) closes the first one's watch before it watches again.
    trial = tunelab.create_study(seed=0).ask()
    said: list[bool] = []
    watch = trial.watch_stop_requests
    monkeypatch.setattr(trial, "watch_stop_requests", lambda watched: (said.append(watched), watch(watched)))
    loop = Loop(trial)
    hook = StepHook(trial, loop.action, every_step=False)
    hook.start([loop.optimizer])
    assert said == [True]
    hook.start([loop.optimizer])
    assert said == [True, False, True]
    set_live(trial.study, trial.number, {"lr": 0.01}, source="api")
    loop.step()
    assert loop.lrs == [0.01] and loop.actions == 1  # one watch, one action
    hook.close()
    assert said == [True, False, True, False] and not loop.optimizer._optimizer_step_pre_hooks


def test_a_stop_request_reaches_the_loop_through_the_watcher(study: tunelab.Study) -> None:
    trial = study.ask()
    trial.live_poll_seconds = 0.05
    with watched_loop(trial) as loop:
        loop.step()
        request_stop(tunelab.load_study("live", study.storage.url), trial.number)
        assert wait_until(lambda: bool(loop.optimizer._optimizer_step_pre_hooks))
        loop.step()
        assert loop.stopped


def test_requests_stored_before_training_apply_at_the_first_step(study: tunelab.Study) -> None:
    trial = study.ask()
    trial.live_poll_seconds = 30.0  # the first look is at once, whatever the period
    with watched_loop(trial, before_start=lambda: set_live(study, trial.number, {"lr": 0.02})) as loop:
        assert wait_until(lambda: bool(loop.optimizer._optimizer_step_pre_hooks))
        loop.step()
        assert loop.lrs == [0.02]


def test_every_step_runs_the_action_before_each_step_of_the_first_optimizer(study: tunelab.Study) -> None:
    trial = study.ask()
    loop = Loop(trial)
    second = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    hook = StepHook(None, loop.action, every_step=True)
    hook.start([loop.optimizer, second])
    for _ in range(3):
        loop.step()
    second.step()
    assert loop.actions == 3
    hook.close()
    loop.step()
    assert loop.actions == 3


def test_a_wrapped_optimizer_is_hooked_inside_its_wrapper(study: tunelab.Study) -> None:
    class Wrapper:  # what accelerate's AcceleratedOptimizer looks like from outside
        def __init__(self, optimizer: torch.optim.Optimizer) -> None:
            self.optimizer = optimizer

    trial = study.ask()
    loop = Loop(trial)
    hook = StepHook(None, loop.action, every_step=True)
    hook.start([Wrapper(loop.optimizer)])
    loop.step()
    assert loop.actions == 1
    hook.close()


def test_a_hypergradient_optimizer_is_hooked_itself_so_that_a_live_lr_holds(study: tunelab.Study) -> None:
    # It holds its wrapped optimizer in .optimizer too, but its param groups carry the scheduled lr only outside
    # its step. Before, the hook went on the wrapped SGD and fired inside the wrapper's step: the new lr was
    # overwritten there, recorded as applied and never used (Lightning's TunelabCallback with "sgd-hd").
    from tunelab.torch import HypergradientOptimizer
    from tunelab.torch.live import apply_to_optimizer

    trial = study.ask()
    loop = Loop(trial)
    loop.optimizer = HypergradientOptimizer(loop.optimizer)
    loop.action = lambda: apply_to_optimizer(loop.optimizer, None, trial.sync_live(loop.steps, force=True))
    hook = StepHook(None, loop.action, every_step=True)
    hook.start([loop.optimizer])
    loop.step()
    set_live(study, trial.number, {"lr": 0.02})
    loop.step()
    hook.close()
    assert loop.lrs == [0.1, 0.02]
    assert loop.optimizer.param_groups[0]["hd_scale"] != 1.0  # adapting again from the new rate


def test_a_hook_without_a_trial_must_run_at_every_step() -> None:
    with pytest.raises(ValueError, match="every step"):
        StepHook(None, lambda: None, every_step=False)


def test_while_watched_should_prune_answers_from_the_watcher_s_reads(study: tunelab.Study) -> None:
    trial = study.ask()
    trial.live_poll_seconds = 0.05
    trial.report(0, loss=1.0)
    with watched_loop(trial) as loop:
        request_stop(tunelab.load_study("live", study.storage.url), trial.number)
        assert not trial.should_prune()  # no read of its own: the watcher's news arrives at the next step
        assert wait_until(lambda: bool(loop.optimizer._optimizer_step_pre_hooks))
        loop.step()
        assert loop.stopped and trial.should_prune()
    other = study.ask()  # not watched: every call reads
    other.report(0, loss=1.0)
    request_stop(tunelab.load_study("live", study.storage.url), other.number)
    assert other.should_prune()


# -- in memory: the storage says when a request is written, nothing polls ---------------------------
def memory_trial(monkeypatch: pytest.MonkeyPatch) -> tuple[tunelab.Study, tunelab.Trial]:
    """A trial of an in-memory study whose polls are counted (none is expected)."""
    study = tunelab.create_study(name="live-memory", seed=0)
    trial = study.ask()
    reads: list[int] = []
    read = trial.stored_live_state
    monkeypatch.setattr(trial, "stored_live_state", lambda: (reads.append(1), read())[1])
    trial.polls = reads  # type: ignore[attr-defined]
    return study, trial


def test_in_memory_a_live_change_from_the_same_process_hooks_the_optimizer_without_polling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    study, trial = memory_trial(monkeypatch)
    with watched_loop(trial) as loop:
        for _ in range(3):
            loop.step()
        assert loop.actions == 0 and not loop.optimizer._optimizer_step_pre_hooks
        set_live(study, trial.number, {"lr": 0.01}, source="api")  # the write itself arms the hook
        assert loop.optimizer._optimizer_step_pre_hooks
        loop.step()
        assert loop.lrs == [0.1] * 3 + [0.01] and loop.actions == 1
        assert not loop.optimizer._optimizer_step_pre_hooks
        [entry] = study.trials[0].system_attrs["live_schedule"]
        assert entry["params"] == {"lr": 0.01} and entry["step"] == 3
    assert trial.polls == []  # type: ignore[attr-defined]
    set_live(study, trial.number, {"lr": 0.5}, source="api")  # after close: nothing hooks any more
    assert not loop.optimizer._optimizer_step_pre_hooks


def test_in_memory_a_change_from_another_thread_reaches_the_next_step(monkeypatch: pytest.MonkeyPatch) -> None:
    study, trial = memory_trial(monkeypatch)
    with watched_loop(trial) as loop:
        loop.step()
        writer = threading.Thread(target=set_live, args=(study, trial.number, {"lr": 0.03}))
        writer.start()
        writer.join()
        loop.step()
        assert loop.lrs == [0.1, 0.03]
    assert trial.polls == []  # type: ignore[attr-defined]


def test_in_memory_a_stop_request_and_requests_stored_before_training_arrive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    study, trial = memory_trial(monkeypatch)
    stored_before = lambda: set_live(study, trial.number, {"lr": 0.02})  # noqa: E731 - before the hook starts
    with watched_loop(trial, before_start=stored_before) as loop:
        loop.step()
        assert loop.lrs == [0.02] and not loop.stopped
        trial.report(0, loss=1.0)
        request_stop(study, trial.number)
        assert not trial.should_prune()  # watched: the news comes through the hook
        loop.step()
        assert loop.stopped and trial.should_prune()
    assert trial.polls == []  # type: ignore[attr-defined]


def test_in_memory_a_served_worker_s_change_reaches_the_driver_s_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    from tunelab.storage.served import serve

    study, trial = memory_trial(monkeypatch)
    server = serve(study.storage)
    try:
        with watched_loop(trial) as loop:
            remote = tunelab.load_study(study.name, server.address.connect())  # a worker's view of the study
            set_live(remote, trial.number, {"lr": 0.04}, source="cli")
            loop.step()
            assert loop.lrs == [0.04]
    finally:
        server.close()
