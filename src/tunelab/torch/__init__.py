"""PyTorch with tunelab: a training loop that reports, stops early and checkpoints, and the
reporting alone for a loop of your own.

Your own loop, two lines::

    reporter = tunelab.torch.Reporter(trial)                      # before the loop
    for epoch in range(1, epochs + 1):
        for x, y in loader:
            ...; loss.backward(); optimizer.step()
            reporter.update(loss, outputs, y)                    # optional: train averages
        reporter.report(epoch, val_loss=val_loss, val_acc=val_acc)  # stores, prunes, checks NaN

tunelab's loop::

    trainer = tunelab.torch.Trainer(build, train=(x, y), val=(x_val, y_val), optimizer="adamw")
    result = trainer.fit({"lr": 1e-3, "weight_decay": 1e-4}, epochs=10)   # no study needed
    study.optimize(trainer.objective(epochs=5), n_trials=20, n_workers=2)

``build(params) -> nn.Module`` makes the model from the trial's parameters. The trainer
itself reads ``lr`` (required), ``weight_decay`` (0), ``momentum`` (0.9, SGD and RMSprop),
``optimizer`` (a name overriding the trainer's) and ``batch_size`` from them.

The modules, one job each: ``reporter`` (:class:`Reporter`, :func:`monitor_direction`),
``devices`` (:func:`resolve_device`), ``data`` (:data:`Data`: checked, loaded once, batched),
``live`` (live changes to an optimizer), ``hypergradient`` (:class:`HypergradientOptimizer`: a
learning rate that adapts along its hypergradient), ``trainer`` (:class:`Trainer`, :class:`FitResult`),
``loop`` (the loop of :meth:`Trainer.fit`: its state and its steps), ``checkpoint``
(:func:`save_torch`, :func:`load_torch`, the format of the trainer's checkpoints) and
``objective`` (:class:`TrainObjective`; :data:`PARAMS`, :func:`count_parameters` and
:func:`objective_direction` for objectives such as the model's size).

Importing this package does not import PyTorch: ``tunelab`` itself re-exports
:func:`save_torch` and :func:`load_torch` from here (they import torch when they run). The
other names load their module, and PyTorch, on first use (``from tunelab.torch import Trainer``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tunelab.torch.checkpoint import LOOP_FILE, TORCH_FILE, Stateful, load_torch, save_torch

if TYPE_CHECKING:
    from tunelab.torch.data import Data, Tensors
    from tunelab.torch.devices import resolve_device
    from tunelab.torch.hypergradient import HypergradientOptimizer
    from tunelab.torch.objective import PARAMS, TrainObjective, count_parameters, objective_direction
    from tunelab.torch.reporter import Reporter, monitor_direction
    from tunelab.torch.trainer import (
        LOSSES,
        OPTIMIZERS,
        SCHEDULES,
        FitResult,
        LiveHook,
        LossFn,
        OptimizerFactory,
        Trainer,
    )

_LAZY = {
    "Reporter": "reporter", "monitor_direction": "reporter",
    "resolve_device": "devices",
    "Data": "data", "Tensors": "data",
    "Trainer": "trainer", "FitResult": "trainer", "LossFn": "trainer", "OptimizerFactory": "trainer",
    "LiveHook": "trainer", "OPTIMIZERS": "trainer", "LOSSES": "trainer", "SCHEDULES": "trainer",
    "TrainObjective": "objective", "PARAMS": "objective", "count_parameters": "objective",
    "objective_direction": "objective",
    "HypergradientOptimizer": "hypergradient",
}
"""The names whose module imports PyTorch: loaded by :func:`__getattr__` on first use."""

__all__ = [
    "LOOP_FILE",
    "LOSSES",
    "OPTIMIZERS",
    "PARAMS",
    "SCHEDULES",
    "TORCH_FILE",
    "Data",
    "FitResult",
    "HypergradientOptimizer",
    "LiveHook",
    "LossFn",
    "OptimizerFactory",
    "Reporter",
    "Stateful",
    "Tensors",
    "TrainObjective",
    "Trainer",
    "count_parameters",
    "load_torch",
    "monitor_direction",
    "objective_direction",
    "resolve_device",
    "save_torch",
]


def __getattr__(name: str) -> Any:
    """``tunelab.torch.Trainer`` and the other names of modules that import PyTorch (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    except ModuleNotFoundError as e:
        if e.name != "torch":
            raise
        raise ImportError(f"tunelab.torch.{name} needs PyTorch: pip install 'tunelab[torch]'") from e
    globals()[name] = value  # the next look-up is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
