"""A tiny training loop without torch for the babysitting tests (importable by spawned processes).

The "model" is one number: its loss moves towards a floor at a rate set by the learning rate, and the
validation loss sits ``noise * lr`` above it (a high rate plateaus higher), so lowering the rate helps
after a plateau. Its state is checkpointed as JSON through ``trial.checkpoint(step)`` and a branch
resumes from ``trial.resume_from``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import tunelab

FLOOR = 0.2


def start(trial: tunelab.Trial) -> dict[str, Any]:
    """Suggest the hyperparameters and load the state a branch resumes from (else a fresh one)."""
    trial.suggest_float("lr", 1e-4, 1.0, log=True)
    trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True)
    trial.live_poll_seconds = 0  # read requests at every step: the tests are in lockstep
    found = trial.resume_from
    if found is not None:
        return dict(json.loads((found.path / "state.json").read_text()))
    return {"step": 0, "loss": 1.0}


def step(trial: tunelab.Trial, state: dict[str, Any], step: int, *, every: int = 5, noise: float = 0.5) -> float:
    """One training step at ``step``: apply pending changes, update, report, checkpoint every ``every``."""
    lr = float(trial.live("lr", step))  # type: ignore[arg-type]
    state["loss"] = FLOOR + (state["loss"] - FLOOR) * (1 - min(lr, 1.0))
    state["step"] = step
    val = state["loss"] + noise * lr
    trial.report(step, train_loss=state["loss"], val_loss=val, lr=lr)
    if every and step % every == 0:
        with trial.checkpoint(step) as folder:
            (folder / "state.json").write_text(json.dumps(state))
    return val


def objective(trial: tunelab.Trial) -> float:
    """The whole loop; its settings come from the study's user attribute ``loop``."""
    cfg = dict(trial.study.user_attrs.get("loop") or {})
    n_steps, delay = int(cfg.get("n_steps", 40)), float(cfg.get("delay", 0.0))
    state = start(trial)
    val = state["loss"]
    for s in range(state["step"] + 1, n_steps + 1):
        val = step(trial, state, s, every=int(cfg.get("every", 5)))
        if trial.should_prune():
            raise tunelab.TrialPruned()
        time.sleep(delay)
    return val
