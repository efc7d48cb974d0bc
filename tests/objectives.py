"""Objectives for tests that run trials in worker processes (spawned workers import them)."""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tunelab
from tunelab.distributions import ParamValue
from tunelab.history import History
from tunelab.pruners import PruneDecision, Pruner, register_pruner
from tunelab.samplers.base import SamplingContext


def quadratic(trial: tunelab.Trial) -> float:
    """Minimum 0 at x=1, lr=1e-3."""
    x = trial.suggest_float("x", -5, 5)
    lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    return (x - 1) ** 2 + (math.log10(lr) + 3) ** 2


def styblinski_tang(params: Mapping[str, Any]) -> float:
    """Styblinski-Tang in 3-d on [-1, 1]^3 (x 5): smooth, eight local minima, the global one near
    (-0.58, -0.58, -0.58). A model-based search keeps exploring its basins for tens of trials
    rather than refining one point to 1e-3 (as it does on a bowl)."""
    return sum(0.5 * ((5 * params[n]) ** 4 - 16 * (5 * params[n]) ** 2 + 5 * (5 * params[n])) for n in "xyz")


def styblinski_tang_3d(trial: tunelab.Trial) -> float:
    """:func:`styblinski_tang` over x, y, z in [-1, 1], suggested define-by-run."""
    return styblinski_tang({n: trial.suggest_float(n, -1, 1) for n in "xyz"})


def jittered_styblinski_tang_3d(trial: tunelab.Trial) -> float:
    """:func:`styblinski_tang_3d` after a pause drawn from the OS (not the study's seed), so workers
    finish in a different order on every run."""
    _os_jitter()
    return styblinski_tang_3d(trial)


def _os_jitter() -> None:
    """A pause of 0-50 ms drawn from the OS (not the study's seed): workers finish in a different order
    on every run, which is what the replay tests must not depend on."""
    time.sleep(int.from_bytes(os.urandom(1), "little") / 255 * 0.05)


def jittered_two_objectives(trial: tunelab.Trial) -> tuple[float, float]:
    """ZDT1 in three variables, after an OS-drawn pause (workers finish in a different order each run)."""
    _os_jitter()
    x = [trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(3)]
    g = 1.0 + 9.0 * (x[1] + x[2]) / 2
    return x[0], g * (1.0 - math.sqrt(x[0] / g))


def chaotic(trial: tunelab.Trial) -> float:
    """Sometimes raises, sometimes returns NaN, sometimes kills its own process."""
    x = trial.suggest_float("x", -5, 5)
    trial.report(0, loss=x * x)
    r = trial.number % 10
    if r == 3:
        raise ValueError(f"boom in trial {trial.number}")
    if r == 5:
        return float("nan")
    if r == 7:
        os.kill(os.getpid(), signal.SIGKILL)
    return (x - 1) ** 2


def hangs_on_first(trial: tunelab.Trial) -> float:
    """Trial 0 hangs forever; the others return at once."""
    x = trial.suggest_float("x", 0, 1)
    if trial.number == 0:
        time.sleep(3600)
    return x


def sleepy(trial: tunelab.Trial) -> float:
    """Takes a while, writing a marker file when it starts (for interrupt tests)."""
    x = trial.suggest_float("x", 0, 1)
    marker = os.environ.get("TUNELAB_TEST_MARKER")
    if marker:
        Path(marker).write_text(str(trial.number))
    time.sleep(float(os.environ.get("TUNELAB_TEST_SLEEP", "30")))
    return x


def sleepy_reporting(trial: tunelab.Trial) -> float:
    """Like :func:`sleepy`, but reports first, so its parameters are stored while it runs."""
    trial.suggest_float("x", 0, 1)
    trial.report(0, loss=1.0)
    return sleepy(trial)


def cheap(trial: tunelab.Trial) -> float:
    """Three parameters and an instant result: for load tests."""
    x = trial.suggest_float("x", -1, 1)
    trial.suggest_int("width", 16, 256, log=True)
    trial.suggest_categorical("optimizer", ["sgd", "adam"])
    return x * x


def slow_cheap(trial: tunelab.Trial) -> float:
    """Like :func:`cheap` but takes 20 ms, so that a study spans a server restart."""
    time.sleep(0.02)
    return cheap(trial)


def kills_itself_on_three(trial: tunelab.Trial) -> float:
    """Trial 3 kills its own process (SIGKILL); the others return at once."""
    x = trial.suggest_float("x", -1, 1)
    if trial.number == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return x * x


def naps(trial: tunelab.Trial) -> float:
    """Sleeps 1.5 s, recording when it started and ended (wall clock) as user attributes."""
    trial.set_user_attr("start", time.time())
    time.sleep(1.5)
    trial.set_user_attr("end", time.time())
    return trial.suggest_float("x", 0, 1)


def fails_or_nan(trial: tunelab.Trial) -> float:
    """Trial 1 raises, trial 2 returns NaN, trial 4 is pruned; the others return."""
    x = trial.suggest_float("x", 0, 1)
    if trial.number == 1:
        raise ValueError("boom in trial 1")
    if trial.number == 2:
        return float("nan")
    if trial.number == 4:
        raise tunelab.TrialPruned
    return x


def sums_params(trial: tunelab.Trial) -> float:
    """The sum of the declared space's values (for grid searches with ``space=``)."""
    return float(sum(v for v in trial.params.values() if isinstance(v, (int, float))))


def misconfigured(trial: tunelab.Trial) -> float:
    """Trial 2 suggests 'x' as a float and then as an int: a usage error that stops the study."""
    x = trial.suggest_float("x", 0, 1)
    if trial.number == 2:
        trial.suggest_int("x", 0, 1)
    return x


def staircase(trial: tunelab.Trial) -> float:
    """A learning curve with a known final value: loss(step) = q + 1 / step for steps 1..27,
    where q (enqueued, or sampled in [0, 10]) is the configuration's quality. Asks the pruner
    after every report."""
    q = trial.suggest_float("q", 0.0, 10.0)
    loss = math.inf
    for step in range(1, 28):
        loss = q + 1.0 / step
        trial.report(step, val_loss=loss)
        if trial.should_prune():
            raise tunelab.TrialPruned()
    return loss


@register_pruner
class PruneAll(Pruner):
    """A pruner that stops every trial at its first decision (to see which pruner a worker uses)."""

    def decide(self, history: History, number: int, metric: str, curve: Mapping[int, float]) -> PruneDecision | None:
        return PruneDecision(rule="prune all", detail=f"trial {number} at step {max(curve)}")


def staircase_two_metrics(trial: tunelab.Trial) -> float:
    """:func:`staircase` reporting as the README's loop does, ``train_loss`` and ``val_loss`` at
    every step; returns the last val_loss."""
    q = trial.suggest_float("q", 0.0, 10.0)
    loss = math.inf
    for step in range(1, 28):
        loss = q + 1.0 / step
        trial.report(step, train_loss=loss / 2, val_loss=loss)
        if trial.should_prune():
            raise tunelab.TrialPruned()
    return loss


def train_loss_and_val_acc(trial: tunelab.Trial) -> float:
    """Reports ``train_loss`` and ``val_acc`` (a pruner of a minimizing study cannot pick either)."""
    q = trial.suggest_float("q", 0.0, 1.0)
    for step in range(3):
        trial.report(step, train_loss=q + 1.0 / (step + 1), val_acc=1.0 - q)
        if trial.should_prune():
            raise tunelab.TrialPruned()
    return q


def checkpointing(trial: tunelab.Trial) -> float:
    """Checkpoints a tiny torch model at steps 0, 1, 2 with save_torch, loads the latest back
    into a fresh model, and records its process id, folder and the step it restored."""
    import torch

    from tunelab.torch import load_torch, save_torch

    torch.set_num_threads(1)
    torch.manual_seed(trial.number)
    x = trial.suggest_float("x", 0, 1)
    model = torch.nn.Linear(2, 1)
    for step in range(3):
        with trial.checkpoint(step) as folder:
            (folder / "owner.txt").write_text(f"{os.getpid()} {trial.number} {step}")
            save_torch(folder, model, extra={"step": step})
    latest = trial.latest_checkpoint()
    assert latest is not None
    restored = torch.nn.Linear(2, 1)
    extra = load_torch(latest.path, restored)
    assert torch.equal(restored.weight, model.weight)
    trial.set_user_attr("pid", os.getpid())
    trial.set_user_attr("checkpoint_dir", str(trial.checkpoint_dir))
    trial.set_user_attr("restored_step", extra["step"])
    return x


PBT_RULES = tunelab.PopulationBasedTraining(interval=2, metric="score", direction="maximize", quantile=0.25)


def pbt_member(trial: tunelab.Trial) -> float:
    """A population member whose 'model' is a running score: each step adds its lr. The state is
    checkpointed as JSON; exploiting loads the parent's score and continues with new params."""
    import json

    member = PBT_RULES.member(trial)
    deadline = time.monotonic() + 60  # a population trains together: wait for the 4 members to start
    while len(trial.study.get_trials((tunelab.TrialState.RUNNING, tunelab.TrialState.COMPLETE))) < 4:
        if time.monotonic() > deadline:
            raise TimeoutError("the population's 4 members did not all start")
        time.sleep(0.05)
    score = 0.0
    for step in range(1, 13):
        score += float(member.params["lr"])
        trial.report(step, score=score)
        time.sleep(0.02)
        if member.due(step):
            with trial.checkpoint(step) as folder:
                (folder / "state.json").write_text(json.dumps(score))
            change = member.exploit_and_explore(step)
            if change is not None:
                score = json.loads((change.checkpoint / "state.json").read_text())
    return score


def torch_mlp(params: dict[str, object]) -> object:
    """``build`` of tunelab.torch.Trainer: a 2 -> width -> 3 MLP (``width`` default 16)."""
    import torch

    width = int(params.get("width", 16))  # type: ignore[call-overload]
    return torch.nn.Sequential(torch.nn.Linear(2, width), torch.nn.ReLU(), torch.nn.Linear(width, 3))


def torch_blobs() -> tuple[tuple[object, object], tuple[object, object]]:
    """``data`` of tunelab.torch.Trainer: three well separated 2-D Gaussian blobs, 240 rows to
    train and 120 to validate (the same every call)."""
    import torch

    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[-3.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    y = torch.arange(360) % 3
    x = centers[y] + 0.7 * torch.randn(360, 2, generator=g)
    return (x[:240], y[:240]), (x[240:], y[240:])


def shifting(trial: tunelab.Trial) -> float:
    """``(x - optimum) ** 2`` for ``x`` in [-5, high]: a configuration's value when "the data changed".

    Read at every call (spawned workers inherit the environment): ``TUNELAB_TEST_OPTIMUM`` (default 1),
    ``TUNELAB_TEST_NOISE`` (adds ``+noise`` to odd trial numbers, ``-noise`` to even ones),
    ``TUNELAB_TEST_NAN_BELOW`` (NaN for smaller x) and ``TUNELAB_TEST_X_HIGH`` (the range's top,
    default 5: "the code narrowed the range").
    """
    x = trial.suggest_float("x", -5.0, float(os.environ.get("TUNELAB_TEST_X_HIGH", "5")))
    nan_below = os.environ.get("TUNELAB_TEST_NAN_BELOW")
    if nan_below is not None and x < float(nan_below):
        return float("nan")
    noise = float(os.environ.get("TUNELAB_TEST_NOISE", "0"))
    return (x - float(os.environ.get("TUNELAB_TEST_OPTIMUM", "1"))) ** 2 + (noise if trial.number % 2 else -noise)


# -- reliability (tests/test_reliability.py) ------------------------------------------------------
class SlowPlanningSampler(tunelab.RandomSampler):
    """Random search whose plan takes ``seconds`` (as a first GP plan importing scipy on a busy
    machine does); on trial ``kill_on`` the planning process kills itself, on ``hang_on`` it hangs."""

    def __init__(self, seconds: float = 0.0, kill_on: int | None = None, hang_on: int | None = None) -> None:
        super().__init__()
        self.seconds, self.kill_on, self.hang_on = seconds, kill_on, hang_on

    def plan(self, history: History, trial: SamplingContext) -> dict[str, ParamValue]:
        time.sleep(self.seconds)
        if trial.number == self.kill_on:
            os.kill(os.getpid(), signal.SIGKILL)
        if trial.number == self.hang_on:
            time.sleep(3600)
        return super().plan(history, trial)


def nan_attr_on_one(trial: tunelab.Trial) -> float:
    """Trial 1 sets an attribute that turns NaN after set_user_attr checked it (JSON cannot store it:
    the final write fails); the others return."""
    x = trial.suggest_float("x", 0, 1)
    box = [x]
    trial.set_user_attr("val_acc", box)
    if trial.number == 1:
        box[0] = float("nan")
    time.sleep(0.2)
    return x


def quick(trial: tunelab.Trial) -> float:
    """One parameter, an instant result."""
    return trial.suggest_float("x", 0, 1)


def hangs_writing_pid(trial: tunelab.Trial) -> float:
    """Writes its process id into the folder ``TUNELAB_TEST_MARKER`` and hangs."""
    trial.suggest_float("x", 0, 1)
    trial.report(0, loss=1.0)
    folder = Path(os.environ["TUNELAB_TEST_MARKER"])
    (folder / f"{trial.number}.pid").write_text(str(os.getpid()))
    time.sleep(3600)
    return 0.0


def records_devices(trial: tunelab.Trial) -> float:
    """Records its process's devices (``CUDA_VISIBLE_DEVICES``, ``TUNELAB_GPUS``), pid and wall-clock start
    and end in user attributes, sleeping a little in between. With ``TUNELAB_TEST_MEET`` (a folder), trials 0
    and 1 wait for each other, so that they surely run at the same time; trial ``TUNELAB_TEST_KILL`` kills
    its own process (SIGKILL)."""
    trial.set_user_attr("cvd", os.environ.get("CUDA_VISIBLE_DEVICES"))
    trial.set_user_attr("tunelab_gpus", os.environ.get("TUNELAB_GPUS"))
    trial.set_user_attr("pid", os.getpid())
    trial.set_user_attr("start", time.time())
    meet = os.environ.get("TUNELAB_TEST_MEET")
    if meet and trial.number < 2:
        Path(meet, str(trial.number)).touch()
        deadline = time.time() + 30.0
        while not Path(meet, str(1 - trial.number)).exists() and time.time() < deadline:
            time.sleep(0.02)
    if trial.number == int(os.environ.get("TUNELAB_TEST_KILL", "-1")):
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.2)
    trial.set_user_attr("end", time.time())
    return trial.suggest_float("x", 0.0, 1.0)


def zdt1_constrained(trial: tunelab.Trial) -> tuple[float, float]:
    """ZDT1 in 3-d (both objectives minimised) with the constraint x0 <= 0.8."""
    x = [trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(3)]
    g = 1.0 + 9.0 * sum(x[1:]) / 2.0
    trial.set_constraint("x0", x[0], upper=0.8)
    return x[0], g * (1.0 - math.sqrt(x[0] / g))


def never_feasible(trial: tunelab.Trial) -> float:
    """A single objective whose only constraint never holds: every COMPLETE trial is infeasible."""
    x = trial.suggest_float("x", 0.0, 1.0)
    trial.set_constraint("x_below_zero", x, upper=-1.0)
    return x


class StopEverything(BaseException):
    """A user's own BaseException (as a framework's stop signal)."""


def raises_base_exception_on_first(trial: tunelab.Trial) -> float:
    """Trial 0 raises what TUNELAB_TEST_RAISE names (SystemExit: ``sys.exit(2)``; KeyboardInterrupt,
    GeneratorExit, BaseException, StopEverything); the others wait until they are stopped (at most a minute). With
    TUNELAB_TEST_MEET (a folder), trial 0 raises only once trial 1 runs (at most a minute)."""
    x = trial.suggest_float("x", 0.0, 1.0)
    meet = os.environ.get("TUNELAB_TEST_MEET")
    if meet and trial.number == 1:
        Path(meet, "1").touch()
    if trial.number == 0:
        deadline = time.monotonic() + 60
        while meet and not Path(meet, "1").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        kind = os.environ["TUNELAB_TEST_RAISE"]
        if kind == "SystemExit":
            raise SystemExit(2)
        kinds = {"KeyboardInterrupt": KeyboardInterrupt, "GeneratorExit": GeneratorExit, "BaseException": BaseException,
                 "StopEverything": StopEverything}
        raise kinds[kind]("raised by the objective")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the driver stops this worker once trial 0's error reaches it
        time.sleep(0.01)
    return x


class OwnMistake(Exception):  # noqa: N818 - a user's name
    """A user's own plain exception, with arguments and an attribute of its own."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message, code)
        self.code = code


class Unsendable(Exception):  # noqa: N818 - a user's name
    """A user's exception that pickle refuses (it holds a lock)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        import threading

        self.lock = threading.Lock()


def raises_own_error_on_first(trial: tunelab.Trial) -> float:
    """Trial 0 raises :class:`OwnMistake` (:class:`Unsendable` when TUNELAB_TEST_RAISE says so); the others
    return x."""
    x = trial.suggest_float("x", 0.0, 1.0)
    if trial.number == 0:
        if os.environ.get("TUNELAB_TEST_RAISE") == "Unsendable":
            raise Unsendable("holds a lock")
        raise OwnMistake("raised by the objective", 7)
    return x


class WatchingRungs(Pruner):
    """Stops nothing; records the steps it is asked at (``asked``). Its rungs are ``rungs``: what
    :meth:`Pruner.next_decision` answers, so a framework callback judges only there."""

    def __init__(self, metric: str, rungs: tuple[int, ...]) -> None:
        super().__init__(metric=metric)
        self.rungs = rungs
        self.asked: list[int] = []

    def decide(self, history: Any, number: int, metric: str, curve: Any) -> None:
        self.asked.append(max(curve))

    def next_decision(self, history: Any, number: int, previous: int) -> int:
        return next((r for r in self.rungs if r > previous), tunelab.pruners.NO_DECISION)

