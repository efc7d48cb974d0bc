"""A study's objective that trains with :meth:`Trainer.fit <tunelab.torch.Trainer.fit>`:
:class:`TrainObjective` (made by :meth:`Trainer.objective <tunelab.torch.Trainer.objective>`),
which returns one value or, for a study with several objectives, one per name in ``objectives``
(:data:`PARAMS`, the model's size, among them)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch import nn

from tunelab.errors import ConfigError
from tunelab.torch.checkpoint import save_torch
from tunelab.torch.reporter import monitor_direction

if TYPE_CHECKING:
    from tunelab.study import Trial
    from tunelab.torch.trainer import Trainer

PARAMS = "params"
"""The objective (and constant metric) that counts the model's trainable parameters."""


def count_parameters(model: nn.Module) -> int:
    """The number of trainable parameters (``requires_grad``) of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def objective_direction(name: str) -> str:
    """'minimize' for :data:`PARAMS`, else the metric's direction (:func:`monitor_direction`)."""
    return "minimize" if name == PARAMS else monitor_direction(name)


@dataclass
class TrainObjective:
    """``objective(trial)``: one :meth:`Trainer.fit` run with the trial's parameters (see :meth:`Trainer.objective`)."""

    trainer: Trainer
    epochs: int
    seed: int = 0
    eval_every: int | None = None
    patience: int | None = None
    prune: bool = True
    checkpoint_every: int | None = None
    save_model: bool = False
    tag: dict[str, Any] = field(default_factory=dict)
    live: bool = False
    objectives: tuple[str, ...] = ()

    def __call__(self, trial: Trial) -> float | tuple[float, ...]:
        if self.trainer.space:
            trial.suggest_space(self.trainer.space)
        trial.set_user_attr("train", {"epochs": self.epochs, **self.tag})
        # live_params: the suggested values and the enqueued ones (a branch's, outside the space too).
        result = self.trainer.fit(
            trial.live_params, epochs=self.epochs, trial=trial, seed=self.seed + trial.number,
            eval_every=self.eval_every, patience=self.patience, prune=self.prune,
            checkpoint_every=self.checkpoint_every, live=self.live, report_params=PARAMS in self.objectives,
        )
        summary: dict[str, Any] = {"best_step": int(result.best["step"]), "steps": result.steps,
                                   "stopped": result.stopped, "seconds": round(result.seconds, 3)}
        if self.save_model:  # the model, with its parameters and curves beside it, at the last curve step
            last = int(result.history[-1]["step"])
            with trial.checkpoint(last) as folder:
                save_torch(folder, result.model, extra={"best": result.best})
                (folder / "params.json").write_text(json.dumps(result.params, indent=1))
                (folder / "history.json").write_text(json.dumps(_finite_rows(result.history), indent=1))
            summary["model"] = str(trial.checkpoint_dir / f"step-{last}")
        trial.set_user_attr("fit", summary)
        if not self.objectives:
            return float(result.value)
        values = tuple(_objective_value(result.best, name) for name in self.objectives)
        return values[0] if len(values) == 1 else values


def _objective_value(best: dict[str, float], name: str) -> float:
    """Objective ``name`` read from the best evaluation's row (``params``: reported in every row)."""
    if name not in best:
        raise ConfigError(f"objective {name!r} is not among the metrics of the best evaluation, {sorted(best)}")
    return float(best[name])


def _finite_rows(rows: list[dict[str, float]]) -> list[dict[str, float | None]]:
    return [{k: (v if math.isfinite(v) else None) for k, v in row.items()} for row in rows]
