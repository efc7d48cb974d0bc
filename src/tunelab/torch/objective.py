"""A study's objective that trains with :meth:`Trainer.fit <tunelab.torch.Trainer.fit>`:
:class:`TrainObjective` (made by :meth:`Trainer.objective <tunelab.torch.Trainer.objective>`)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tunelab.torch.checkpoint import save_torch

if TYPE_CHECKING:
    from tunelab.study import Trial
    from tunelab.torch.trainer import Trainer


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

    def __call__(self, trial: Trial) -> float:
        if self.trainer.space:
            trial.suggest_space(self.trainer.space)
        trial.set_user_attr("train", {"epochs": self.epochs, **self.tag})
        # live_params: the suggested values and the enqueued ones (a branch's, outside the space too).
        result = self.trainer.fit(
            trial.live_params, epochs=self.epochs, trial=trial, seed=self.seed + trial.number,
            eval_every=self.eval_every, patience=self.patience, prune=self.prune,
            checkpoint_every=self.checkpoint_every, live=self.live,
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
        return float(result.value)


def _finite_rows(rows: list[dict[str, float]]) -> list[dict[str, float | None]]:
    return [{k: (v if math.isfinite(v) else None) for k, v in row.items()} for row in rows]
