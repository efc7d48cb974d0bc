"""Reporting a training loop's metrics to a trial: :class:`Reporter` (any loop, tunelab's or
your own) and :func:`monitor_direction`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from tunelab.errors import ConfigError, TrainingDivergedError, TrialPruned
from tunelab.pruners.base import metric_kind
from tunelab.study.verdict import real_metric

if TYPE_CHECKING:
    from tunelab.study import Trial

_MAXIMIZED_SUFFIXES = ("acc", "accuracy", "f1", "auc", "r2", "precision", "recall")


def monitor_direction(metric: str) -> str:
    """The direction a metric's name says, word by word as the pruners read it (``val_score``, ``val/acc``,
    ``reward``: maximize; :func:`~tunelab.pruners.base.metric_kind`), else 'maximize' for accuracy-like
    endings (``*acc``, ``*f1``, ``*auc``...), else 'minimize'."""
    return metric_kind(metric) or ("maximize" if metric.lower().endswith(_MAXIMIZED_SUFFIXES) else "minimize")


class Reporter:
    """Reports a training loop's metrics to a trial, stops diverged runs, asks the pruner and keeps
    the best evaluation (for patience-based early stopping).

    Args:
        trial: the trial to report to; None to only keep the history (a run outside a study).
        monitor: the metric that defines the best evaluation and patience (``val_loss``).
        direction: of ``monitor``; default from its name (see :func:`monitor_direction`).
        patience: evaluations without improvement after which :attr:`should_stop` turns True.
        min_delta: the least change that counts as an improvement.
        prune: ask the study's pruner after each report and raise :class:`tunelab.TrialPruned`.

    :meth:`update` accumulates the training loss (and accuracy, for class-index targets) on
    the device without synchronising; :meth:`report` writes their averages since the last
    report as ``train_loss`` / ``train_acc`` with the metrics it is given, in one storage write.
    """

    def __init__(
        self,
        trial: Trial | None = None,
        *,
        monitor: str = "val_loss",
        direction: str | None = None,
        patience: int | None = None,
        min_delta: float = 0.0,
        prune: bool = True,
    ) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise ConfigError(f"Reporter(monitor=...) must be a metric name such as 'val_loss', got {monitor!r}")
        direction = direction or monitor_direction(monitor)
        if direction not in ("minimize", "maximize"):
            raise ConfigError(f"Reporter(direction=...) must be 'minimize' or 'maximize', got {direction!r}")
        if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 1):
            raise ConfigError(f"Reporter(patience=...) must be an integer >= 1 or None, got {patience!r}")
        if not isinstance(min_delta, (int, float)) or isinstance(min_delta, bool) or min_delta < 0:
            raise ConfigError(f"Reporter(min_delta=...) must be a number >= 0, got {min_delta!r}")
        self.trial = trial
        self.monitor = monitor
        self.direction = direction
        self.patience = patience
        self.min_delta = float(min_delta)
        self.prune = prune
        self.history: list[dict[str, float]] = []
        self.best: dict[str, float] | None = None
        self._since_best = 0
        self._loss_sum: torch.Tensor | None = None
        self._correct: torch.Tensor | None = None
        self._count = 0
        self._labelled = 0

    def update(
        self, loss: torch.Tensor, outputs: torch.Tensor | None = None, targets: torch.Tensor | None = None,
        *, binary: bool = False,
    ) -> None:
        """Add one batch's loss (a mean over the batch) and, given class logits and class-index
        targets, its correct predictions; with ``binary``, ``outputs`` are logits of binary
        cross-entropy: each one's ``logit > 0`` against ``target > 0.5``. Costs a few tensor
        operations, no device sync."""
        n = int(targets.shape[0]) if targets is not None and targets.ndim > 0 else 1
        # In-place sums of detached tensors: no graph, no new accumulator per step, no sync.
        if self._loss_sum is None:
            self._loss_sum = loss.detach().to(torch.float64) * n
        else:
            self._loss_sum.add_(loss.detach(), alpha=n)
        labelled = 0
        if outputs is not None and targets is not None and binary:
            hits, labelled = binary_hits(outputs.detach(), targets), int(outputs.numel())
        elif outputs is not None and targets is not None and class_indices(outputs, targets):
            hits, labelled = torch.eq(outputs.detach().argmax(dim=1), targets).sum(), n
        if labelled:
            if self._correct is None:
                self._correct = hits
            else:
                self._correct.add_(hits)
            self._labelled += labelled
        self._count += n

    def report(self, step: int, **metrics: float) -> dict[str, float]:
        """Report the train averages since the last report and ``metrics`` at ``step``; return the row.

        Raises :class:`tunelab.errors.TrainingDivergedError` when a loss is NaN or infinite (the
        finite metrics are stored first) and :class:`tunelab.TrialPruned` when the pruner stops
        the trial.
        """
        row: dict[str, float] = {}
        if self._count and self._loss_sum is not None:
            row["train_loss"] = float(self._loss_sum) / self._count
            if self._correct is not None and self._labelled:
                row["train_acc"] = float(self._correct) / self._labelled
        self._loss_sum, self._correct, self._count, self._labelled = None, None, 0, 0
        for name, value in metrics.items():
            row[name] = value if type(value) is float else real_metric(name, value)  # float() read "0.5" and True
        finite = {k: v for k, v in row.items() if math.isfinite(v)}
        self.history.append({"step": float(step), **row})
        if self.trial is not None and finite:
            self.trial.report(step, **finite)
        broken = sorted(k for k in row if k not in finite)
        if broken:
            raise TrainingDivergedError(
                f"{', '.join(f'{k}={row[k]}' for k in broken)} at step {step}: the run diverged; "
                "lower the learning rate (or clip the gradients)"
            )
        if self.trial is not None and self.prune and self.trial.should_prune():
            raise TrialPruned(f"pruned at step {step}")
        self._track(step, row)
        return row

    def _track(self, step: int, row: Mapping[str, float]) -> None:
        if self.monitor not in row:
            return
        value = row[self.monitor]
        if self.best is None or _better(value, self.best[self.monitor], self.direction, self.min_delta):
            self.best = {"step": float(step), **row}
            self._since_best = 0
        else:
            self._since_best += 1

    def state_dict(self) -> dict[str, Any]:
        """The history, the best evaluation and the patience count, to resume (plain data).

        Taken right after :meth:`report` (the train averages are empty then), as the Trainer's
        checkpoints are."""
        return {"history": [dict(row) for row in self.history],
                "best": None if self.best is None else dict(self.best), "since_best": self._since_best}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Go on from :meth:`state_dict`'s output (nothing is reported again)."""
        self.history = [{k: float(v) for k, v in row.items()} for row in state["history"]]
        best = state["best"]
        self.best = None if best is None else {k: float(v) for k, v in best.items()}
        self._since_best = int(state["since_best"])

    @property
    def best_step(self) -> int | None:
        """The step of the best ``monitor`` value so far, or None."""
        return None if self.best is None else int(self.best["step"])

    @property
    def should_stop(self) -> bool:
        """True once ``patience`` evaluations in a row did not improve ``monitor``."""
        return self.patience is not None and self._since_best >= self.patience


def binary_hits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """How many logits of binary cross-entropy predict their target (``logit > 0`` for ``target > 0.5``)."""
    return torch.eq(logits > 0, targets.reshape(logits.shape) > 0.5).sum()


def class_indices(outputs: torch.Tensor, targets: torch.Tensor) -> bool:
    """Whether ``outputs`` are class scores (rows) and ``targets`` class indices: accuracy applies."""
    return outputs.ndim == 2 and targets.ndim == 1 and not targets.is_floating_point()


def _better(value: float, best: float, direction: str, min_delta: float) -> bool:
    return value < best - min_delta if direction == "minimize" else value > best + min_delta


