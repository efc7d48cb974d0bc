"""The training loop of :meth:`Trainer.fit <tunelab.torch.Trainer.fit>`: where it stands
(:class:`LoopState`, saved in its checkpoints so that a resumed run goes on bit for bit) and one
run of it (:class:`FitLoop`: an epoch, an optimiser step, the live changes before each step, an
evaluation with its report, pruning, checkpoint and patience)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tunelab.distributions import ParamValue
from tunelab.errors import ConfigError, TrialPruned
from tunelab.torch.checkpoint import load_fit_checkpoint, save_fit_checkpoint
from tunelab.torch.data import Data
from tunelab.torch.hypergradient import effective_lr
from tunelab.torch.reporter import Reporter

if TYPE_CHECKING:
    from tunelab.study import Trial
    from tunelab.torch.trainer import Trainer

_MISSING = object()


@dataclass(eq=False)
class LoopState:
    """Where one run of the loop stands.

    Attributes:
        reporter: the run's Reporter: the history, the best evaluation, the patience count.
        generator: shuffles the training data; each epoch's order is drawn from its state when
            the epoch begins (``epoch_rng``).
        steps_per_epoch: batches (optimiser steps) in one epoch.
        params: the hyperparameters in effect (live changes update them).
        keep_best: keep a copy of the best evaluation's weights (``fit(restore_best=...)``).
        step: optimiser steps taken; evaluations: evaluations done.
        epoch: the epoch under way; batch: its batches done.
        best_model: the best evaluation's weights (with ``keep_best``), or None.
        improved: whether the last evaluation was the best so far.
        stopped: why training ends before its budget ('patience'), or None.
    """

    reporter: Reporter
    generator: torch.Generator
    steps_per_epoch: int
    params: dict[str, ParamValue]
    keep_best: bool = True
    step: int = 0
    evaluations: int = 0
    epoch: int = 0
    batch: int = 0
    epoch_rng: torch.Tensor = field(init=False)
    epoch_torch_rng: torch.Tensor | None = None
    """torch's global RNG state when the epoch under way began (a DataLoader draws its shuffling seed from it)."""
    loader_generator: torch.Generator | None = None
    """The training DataLoader's own generator (``DataLoader(generator=...)``), which it shuffles with instead."""
    epoch_loader_rng: torch.Tensor | None = None
    """That generator's state when the epoch under way began."""
    best_model: dict[str, torch.Tensor] | None = None
    improved: bool = False
    stopped: str | None = None

    def __post_init__(self) -> None:
        self.epoch_rng = self.generator.get_state()

    def begin_epoch(self, epoch: int) -> None:
        """Enter ``epoch`` (the one under way, resumed, goes on from its ``batch``) and note the
        shuffling state its order is drawn from."""
        if epoch != self.epoch:
            self.epoch, self.batch = epoch, 0
        self.epoch_rng = self.generator.get_state()
        if self.batch == 0:  # a resumed epoch keeps the state its checkpoint gave (None in older ones)
            self.epoch_torch_rng = torch.get_rng_state()
            if self.loader_generator is not None:
                self.epoch_loader_rng = self.loader_generator.get_state()

    def evaluated(self, model: nn.Module, improved: bool) -> None:
        """Count an evaluation; copy the weights when it is the best so far (``keep_best``)."""
        self.evaluations += 1
        self.improved = improved
        if self.keep_best and improved:
            self.best_model = _copy(model)

    def state_dict(self) -> dict[str, Any]:
        """The state to resume from, right after an evaluation (plain data and tensors).

        The position is the epoch, the batches done in it and the generator's state at its start
        (a resumed epoch redraws the same order and skips those batches); after an epoch's last
        batch, the next epoch's start. The best weights are left out when the model holds them.
        """
        if self.batch >= self.steps_per_epoch:
            epoch, batch, generator, torch_rng = self.epoch + 1, 0, self.generator.get_state(), None
            loader_rng = None if self.loader_generator is None else self.loader_generator.get_state()
        else:
            epoch, batch, generator, torch_rng = self.epoch, self.batch, self.epoch_rng, self.epoch_torch_rng
            loader_rng = self.epoch_loader_rng
        return {
            "optimizer_step": self.step, "epoch": epoch, "batch": batch, "generator": generator,
            "steps_per_epoch": self.steps_per_epoch, "evaluations": self.evaluations,
            "reporter": self.reporter.state_dict(), "params": dict(self.params),
            "best_is_last": self.keep_best and self.improved,
            "best_model": self.best_model if self.keep_best and not self.improved else None,
            "epoch_torch_rng": torch_rng if batch else None,  # added last: older checkpoints lack it
            # the DataLoader's own generator at the start of the epoch to resume (None: it has none)
            "epoch_loader_rng": loader_rng,
        }

    def load_state_dict(self, state: Mapping[str, Any], model: nn.Module) -> None:
        """Go on from :meth:`state_dict`'s output; ``model`` holds the checkpoint's weights (the
        best ones when it was written at the best evaluation). ``params`` stay this run's:
        :meth:`FitLoop.resume` applies those that differ from the checkpoint's."""
        self.reporter.load_state_dict(state["reporter"])
        self.step, self.evaluations = int(state["optimizer_step"]), int(state["evaluations"])
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])
        self.generator.set_state(state["generator"])
        self.epoch_rng = self.generator.get_state()
        self.epoch_torch_rng = state.get("epoch_torch_rng")  # None in checkpoints written before it was kept
        self.epoch_loader_rng = state.get("epoch_loader_rng")
        if self.loader_generator is not None and self.epoch_loader_rng is not None:
            self.loader_generator.set_state(self.epoch_loader_rng)  # the resumed epoch draws its order from it
        if self.keep_best and state["best_is_last"]:
            self.best_model = _copy(model)
        elif self.keep_best and state["best_model"] is not None:
            self.best_model = dict(state["best_model"])


class FitLoop:
    """One run of :meth:`Trainer.fit`: the pieces it trains and its :class:`LoopState`.

    ``eval_every``: evaluate every this many optimiser steps (the curve's step is then the
    optimiser step), else after each epoch (the curve's step is the epoch). ``checkpoint_every``:
    checkpoint through the trial every this many evaluations. ``live``: apply the trial's live
    changes before every optimiser step. ``constants``: metrics reported with every evaluation
    (the model's size, ``params``, that Pareto pruners read).
    """

    def __init__(
        self,
        trainer: Trainer,
        state: LoopState,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None,
        data: tuple[Data, Data],
        batch_size: int,
        trial: Trial | None = None,
        *,
        eval_every: int | None = None,
        checkpoint_every: int | None = None,
        live: bool = False,
        constants: Mapping[str, float] | None = None,
    ) -> None:
        self.trainer, self.state = trainer, state
        self.constants = dict(constants or {})
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.train, self.val = data
        self.batch_size = batch_size
        self.trial = trial
        self.eval_every, self.checkpoint_every, self.live = eval_every, checkpoint_every, live

    def resume(self, source: Path) -> None:
        """Load a checkpoint of :meth:`Trainer.fit` (model, optimizer, schedule, RNG states and the
        loop's state), then apply the ``params`` that differ from its own (a branch's changed lr:
        the loaded optimizer holds the old one)."""
        saved = load_fit_checkpoint(source, self.model, self.optimizer, self.scheduler, self.state.steps_per_epoch)
        before = saved["params"].get("optimizer", self.trainer.optimizer)
        now = self.state.params.get("optimizer", self.trainer.optimizer)
        if before != now and not (isinstance(before, str) and isinstance(now, str)
                                  and before.removesuffix("-hd") == now.removesuffix("-hd")):
            raise ConfigError(
                f"fit(resume=...): {str(source)!r} was trained with optimizer={before!r} and this run asks for "
                f"optimizer={now!r}, whose state (moments, momentum buffers) the checkpoint does not hold: "
                "resume or branch with the checkpoint's optimizer (or its -hd version), or start a new trial"
            )
        self.state.load_state_dict(saved, self.model)
        differ = {k: v for k, v in self.state.params.items() if saved["params"].get(k, _MISSING) != v}
        if differ:
            self.trainer.apply_live(self.model, self.optimizer, self.scheduler, differ)
        elif self.state.reporter.should_stop:  # the run stopped there (patience): a plain resume stops too
            self.state.stopped = "patience"

    def train_epoch(self, epoch: int) -> bool:
        """Train one epoch (from the batch where the state stands), evaluating every ``eval_every``
        steps or at its end; return True when training stops early."""
        state = self.state
        state.begin_epoch(epoch)
        for xb, yb in self.trainer.batches(self.train, self.batch_size, state.generator, start=state.batch,
                                           epoch_rng=state.epoch_torch_rng):
            if self.live:
                self.apply_live_changes()
            self.train_step(xb, yb)
            if self.eval_every and state.step % self.eval_every == 0:
                self.evaluate_and_report()
                if state.stopped:
                    return True
        if not self.eval_every:
            self.evaluate_and_report()
        return state.stopped is not None

    def train_step(self, xb: torch.Tensor, yb: torch.Tensor) -> None:
        """One optimiser step on a batch (and the schedule's), added to the reporter's train averages."""
        outputs = self.model(xb)
        loss = self.trainer.loss_fn(outputs, yb)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        if self.trainer.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.trainer.grad_clip)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.state.reporter.update(loss, outputs, self.trainer.class_labels(outputs, yb), binary=self.trainer.binary)
        self.state.step += 1
        self.state.batch += 1

    def apply_live_changes(self) -> None:
        """Apply the changes asked for since the last step (``trial.sync_live``, at the curve's step:
        the optimiser step with ``eval_every``, else the fractional epoch); a stop request (a
        roll-back) ends the run now with :class:`tunelab.TrialPruned`."""
        assert self.trial is not None
        state = self.state
        at = state.step if self.eval_every else state.step / state.steps_per_epoch
        changes = self.trial.sync_live(at, optimizer_step=state.step)
        if changes:
            state.params.update(self.trainer.apply_live(self.model, self.optimizer, self.scheduler, changes))
        if self.trial.stop_requested and self.trial.should_prune():
            raise TrialPruned(f"stopped at optimizer step {state.step}")

    def evaluate_and_report(self) -> None:
        """Evaluate on the validation data and report (the Reporter raises on divergence and when
        the pruner stops the run), keep the best weights, checkpoint every ``checkpoint_every``
        evaluations, and stop once patience runs out."""
        state, reporter = self.state, self.state.reporter
        previous_best = reporter.best
        metrics = self.trainer.evaluate(self.model, self.val)
        metrics["lr"] = effective_lr(self.optimizer)  # the adapted rate for a HypergradientOptimizer
        metrics.update(self.constants)
        at = state.step if self.eval_every else state.step // state.steps_per_epoch
        row = reporter.report(at, **metrics)
        if self.trainer.monitor not in row:
            raise ConfigError(
                f"Trainer(monitor={self.trainer.monitor!r}) is not among the metrics of an evaluation, {sorted(row)}"
            )
        state.evaluated(self.model, improved=reporter.best is not previous_best)
        if self.checkpoint_every and self.trial is not None and state.evaluations % self.checkpoint_every == 0:
            self.checkpoint(at)
        if reporter.should_stop:
            state.stopped = "patience"

    def checkpoint(self, at: int) -> None:
        """Save the pieces and the loop's state through ``trial.checkpoint(at)``."""
        assert self.trial is not None
        loop = self.state.state_dict()
        with self.trial.checkpoint(at) as folder:
            save_fit_checkpoint(folder, self.model, self.optimizer, self.scheduler, at, loop)


def _copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
