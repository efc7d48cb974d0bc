"""Objectives of the MLflow and TensorBoard integration tests, importable by worker processes.

``descend`` is a short real optimisation (gradient descent on a quadratic) whose trials end in a
known way by number: trial 1 fails, trial 2 is pruned (its loss is above the pruner's limit), and
with ``crash`` trial 3's worker process kills itself mid-trial.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from typing import Any

import tunelab
from tunelab.pruners.base import PruneDecision

FAILS, PRUNED, CRASHES = 1, 2, 3
STEPS = 4


class AboveLimit(tunelab.Pruner):
    """Stops a trial whose ``loss`` at its last step is above ``limit``."""

    def __init__(self, limit: float = 5.0) -> None:
        super().__init__(metric="loss")
        self.limit = limit

    def decide(self, history: Any, number: int, metric: str, curve: Mapping[int, float]) -> PruneDecision | None:
        value = curve[max(curve)]
        return PruneDecision("above limit", f"loss {value:.3g} > {self.limit}") if value > self.limit else None


def descend(trial: tunelab.Trial, cb: Any = None, crash: bool = False) -> float:
    """Gradient descent on ``x**2`` from ``x0`` with step ``lr``; reports loss and x per step
    through ``cb.report`` (or ``trial.report`` when ``cb`` is None)."""
    x = trial.suggest_float("x0", 1.0, 2.0)
    lr = trial.suggest_float("lr", 0.05, 0.4, log=True)
    width = trial.suggest_int("width", 2, 8)
    kind = trial.suggest_categorical("kind", ["sgd", "adam"])
    offset = 10.0 if trial.number == PRUNED else 0.0
    report = trial.report if cb is None else (lambda step, **m: cb.report(trial, step, **m))
    for step in range(STEPS):
        x -= lr * 2.0 * x
        report(step, loss=x * x + offset, x=x)
        if trial.should_prune():
            raise tunelab.TrialPruned()
        if step == 1 and trial.number == FAILS:
            raise RuntimeError(f"boom in trial {trial.number}")
        if step == 1 and crash and trial.number == CRASHES:
            os.kill(os.getpid(), signal.SIGKILL)
    return x * x + 0.01 * width + (0.1 if kind == "sgd" else 0.0)


def two_objectives(trial: tunelab.Trial, cb: Any = None) -> tuple[float, float]:
    """Two objectives, one reported curve."""
    x = trial.suggest_float("x", 0.0, 1.0)
    cb.report(trial, 0, loss=x)
    return x, 1.0 - x
