"""What to train and how: :class:`Trainer` (a model factory, data, a loss, an optimizer; its
pieces for the recipe and your own loop; :meth:`Trainer.fit`, tunelab's loop) and
:class:`FitResult`, what ``fit`` returns."""

from __future__ import annotations

import math
import numbers
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tunelab.checkpoints import Checkpoint
from tunelab.distributions import Bool, Categorical, Distribution, ParamValue
from tunelab.errors import ConfigError
from tunelab.space import SpaceEntry, unwrap, validate_space
from tunelab.torch import data as _data
from tunelab.torch.checkpoint import resume_source
from tunelab.torch.data import Data, LoadData, Tensors, check_data
from tunelab.torch.devices import resolve_device, unavailable
from tunelab.torch.hypergradient import DEFAULT_HYPER_LR, HypergradientOptimizer
from tunelab.torch.live import OPTIMIZER_LIVE, apply_to_optimizer, optimizer_live_names
from tunelab.torch.loop import FitLoop, LoopState
from tunelab.torch.objective import PARAMS, TrainObjective, count_parameters
from tunelab.torch.reporter import Reporter, binary_hits, class_indices

if TYPE_CHECKING:
    from tunelab.study import Trial

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
OptimizerFactory = Callable[[list[nn.Parameter], Mapping[str, ParamValue]], torch.optim.Optimizer]
"""``factory(trainable_parameters, params) -> optimizer``, for an optimizer tunelab does not name."""
LiveHook = Callable[[nn.Module, torch.optim.Optimizer, dict[str, ParamValue]], None]
"""``hook(model, optimizer, changes)``: applies live changes the trainer does not know (e.g. dropout)."""

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "sgd-hd", "adam-hd", "adamw-hd")
"""The optimizers :class:`Trainer` names; ``-hd``: the same wrapped in a
:class:`~tunelab.torch.hypergradient.HypergradientOptimizer` (the rate adapts from ``lr``)."""
LOSSES = ("cross_entropy", "nll", "mse", "l1")
SCHEDULES = ("constant", "cosine")
_CLASSIFICATION = ("cross_entropy", "nll")


@dataclass
class FitResult:
    """What :meth:`Trainer.fit` returns.

    Attributes:
        model: the trained model (with the best evaluation's weights when ``restore_best``).
        history: one row per evaluation: ``step``, ``train_loss``, ``val_loss``, ``lr``...
        best: the best evaluation's row (by the trainer's ``monitor``).
        value: the best ``monitor`` value, the objective's value.
        stopped: why training ended before its budget: 'patience', or None.
        steps: optimiser steps taken.
        seconds: wall time.
        params: the hyperparameters the run trained with.
    """

    model: nn.Module
    history: list[dict[str, float]]
    best: dict[str, float]
    value: float
    stopped: str | None
    steps: int
    seconds: float
    params: dict[str, ParamValue] = field(default_factory=dict)


class Trainer:
    """What to train and how: a model factory, data, a loss and an optimizer.

    Args:
        build: ``build(params) -> nn.Module``, called with the run's parameters.
        train: training data, ``(inputs, targets)`` tensors or a DataLoader.
        val: validation data, ``(inputs, targets)`` tensors or a DataLoader.
        data: instead of ``train`` and ``val``, a function returning ``(train, val)``, called once
            per process (data loads in each worker instead of being sent to it).
        loss: 'cross_entropy' (class-index targets; accuracy is reported too), 'nll', 'mse', 'l1',
            or a function ``loss(outputs, targets) -> scalar tensor``; with ``nn.BCEWithLogitsLoss()``
            (or ``F.binary_cross_entropy_with_logits``) the accuracy of ``logit > 0`` is reported too.
        optimizer: 'sgd', 'adam', 'adamw', 'rmsprop', or ``factory(parameters, params)``; 'sgd-hd',
            'adam-hd', 'adamw-hd': the same whose learning rate adapts along its hypergradient from
            ``lr`` (:class:`~tunelab.torch.hypergradient.HypergradientOptimizer`; the parameters may
            hold its ``hyper_lr`` and ``lr_max``, a ceiling for the rate), reported as the ``lr``
            metric at each evaluation.
        batch_size: for tensor data, unless the parameters hold ``batch_size``.
        schedule: 'constant' or 'cosine' (annealed to 0 over the run's steps).
        space: the model's own hyperparameters (width, dropout...), for searches and the recipe.
        defaults: values of ``space`` for single runs (the recipe's checks); default: the middle
            of each range (geometric for log ranges), the first choice of a categorical.
        unregularized: values that switch regularisation off (e.g. ``{"dropout": 0.0}``), used by
            the recipe's initial-loss and overfitting checks.
        expected_initial_loss: the loss of an untrained model; default ``ln C`` for C-class
            cross-entropy and NLL, none for other losses.
        monitor: the metric that picks the best evaluation: default 'val_acc' for classification,
            else 'val_loss'.
        device: 'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:1'...
        grad_clip: clip the gradient norm to this value (None: no clipping).
        on_live_change: ``hook(model, optimizer, changes)``, called when hyperparameters change
            while :meth:`fit` trains with ``live=True`` (after the trainer applied ``lr``,
            ``momentum`` and ``weight_decay`` itself), for the others, e.g. setting the ``p`` of
            the model's dropout layers.
        live_params: the names ``on_live_change`` applies (declared live with the trainer's own).

    Examples:
        A tiny classifier on random points, trained for a few epochs on the CPU:

        >>> import torch
        >>> import tunelab
        >>> from tunelab.torch import Trainer
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(256, 2, generator=g)
        >>> y = (x[:, 0] + x[:, 1] > 0).long()          # two classes
        >>> def build(params):
        ...     return torch.nn.Sequential(torch.nn.Linear(2, params["width"]), torch.nn.ReLU(),
        ...                                torch.nn.Linear(params["width"], 2))
        >>> trainer = Trainer(build, train=(x[:192], y[:192]), val=(x[192:], y[192:]), batch_size=32,
        ...                   space={"width": tunelab.Int(4, 32, log=True)}, device="cpu")
        >>> result = trainer.fit({"lr": 0.01, "width": 16}, epochs=3, seed=0)   # no study needed
        >>> len(result.history), sorted(result.best)
        (3, ['lr', 'step', 'train_acc', 'train_loss', 'val_acc', 'val_loss'])
        >>> result.value > 0.8                          # the best validation accuracy
        True

        As a study's objective (``trainer.objective`` suggests the trainer's ``space``):

        >>> study = tunelab.create_study(direction="maximize", sampler=tunelab.RandomSampler(), seed=0)
        >>> study.optimize(trainer.objective(epochs=2), n_trials=3,
        ...                space={"lr": tunelab.Float(1e-3, 1e-1, log=True)})
        >>> sorted(study.best_params), [t.state.value for t in study.trials]
        (['lr', 'width'], ['COMPLETE', 'COMPLETE', 'COMPLETE'])
    """

    def __init__(
        self,
        build: Callable[[Mapping[str, ParamValue]], nn.Module],
        *,
        train: Data | None = None,
        val: Data | None = None,
        data: LoadData | None = None,
        loss: str | LossFn = "cross_entropy",
        optimizer: str | OptimizerFactory = "adam",
        batch_size: int = 64,
        schedule: str = "constant",
        space: Mapping[str, SpaceEntry] | None = None,
        defaults: Mapping[str, ParamValue] | None = None,
        unregularized: Mapping[str, ParamValue] | None = None,
        expected_initial_loss: float | None = None,
        monitor: str | None = None,
        device: str = "auto",
        grad_clip: float | None = None,
        on_live_change: LiveHook | None = None,
        live_params: Sequence[str] = (),
    ) -> None:
        if not callable(build):
            raise ConfigError(f"Trainer(build=...) must be a function build(params) -> nn.Module, got {build!r}")
        if data is None:
            if train is None or val is None:
                raise ConfigError("Trainer needs train= and val= data, or data=load returning (train, val)")
            check_data("train", train)
            check_data("val", val)
        elif train is not None or val is not None:
            raise ConfigError("Trainer takes either data= or train= and val=, not both")
        elif not callable(data):
            raise ConfigError(f"Trainer(data=...) must be a function returning (train, val), got {data!r}")
        if not callable(loss) and loss not in LOSSES:
            raise ConfigError(f"Trainer(loss=...) must be one of {LOSSES} or a function, got {loss!r}")
        if not callable(optimizer) and optimizer not in OPTIMIZERS:
            raise ConfigError(f"Trainer(optimizer=...) must be one of {OPTIMIZERS} or a factory, got {optimizer!r}")
        _check_positive_int("Trainer", "batch_size", batch_size)
        if schedule not in SCHEDULES:
            raise ConfigError(f"Trainer(schedule=...) must be one of {SCHEDULES}, got {schedule!r}")
        if expected_initial_loss is not None and not _positive_number(expected_initial_loss):
            raise ConfigError(
                f"Trainer(expected_initial_loss=...) must be a positive number, got {expected_initial_loss!r}"
            )
        if grad_clip is not None and not _positive_number(grad_clip):
            raise ConfigError(f"Trainer(grad_clip=...) must be a positive number or None, got {grad_clip!r}")
        if monitor is not None and (not isinstance(monitor, str) or not monitor):
            raise ConfigError(f"Trainer(monitor=...) must be a metric name such as 'val_loss' or None, got {monitor!r}")
        if on_live_change is not None and not callable(on_live_change):
            raise ConfigError(
                "Trainer(on_live_change=...) must be a function hook(model, optimizer, changes), "
                f"got {on_live_change!r}"
            )
        if isinstance(live_params, str) or not all(isinstance(n, str) and n for n in live_params):
            raise ConfigError(f"Trainer(live_params=...) must be a list of hyperparameter names, got {live_params!r}")
        if live_params and on_live_change is None:
            raise ConfigError(
                f"Trainer(live_params={list(live_params)!r}) needs on_live_change=hook(model, optimizer, changes) "
                "to apply them while the model trains"
            )
        resolve_device(device)
        self.on_live_change = on_live_change
        self.live_params: tuple[str, ...] = tuple(dict.fromkeys(live_params))
        self.build = build
        self.train, self.val, self.data = train, val, data
        self.loss = loss
        self.optimizer = optimizer
        self.batch_size = batch_size
        self.schedule = schedule
        try:  # no space (or an empty one): the model has no hyperparameters of its own
            self.space = validate_space(space) if space is not None and space != {} else {}
        except ConfigError as e:
            raise ConfigError(f"Trainer(space=...): {e}") from None
        self.defaults = self._check_values("defaults", defaults or {})
        self.unregularized = self._check_values("unregularized", unregularized or {})
        self.expected_initial_loss = None if expected_initial_loss is None else float(expected_initial_loss)
        self.classifier = not callable(loss) and loss in _CLASSIFICATION
        self.binary = isinstance(loss, nn.BCEWithLogitsLoss) or loss is nn.functional.binary_cross_entropy_with_logits
        """A binary (or multi-label) classifier, its loss binary cross-entropy on logits: its accuracy is
        that of ``logit > 0`` against ``target > 0.5``, each output counted (no argmax)."""
        self.monitor = monitor or ("val_acc" if self.classifier else "val_loss")
        self.device = device
        self.grad_clip = grad_clip
        self.input_dtype: torch.dtype | None = None
        """The floating dtype of the last model built (:meth:`build_model`): :meth:`batches` gives
        floating-point inputs in it (a float64 model trains on float32 tensors or loaders)."""

    def _check_values(self, arg: str, values: Mapping[str, ParamValue]) -> dict[str, ParamValue]:
        out: dict[str, ParamValue] = {}
        for name, value in values.items():
            if name in self.space:
                dist = unwrap(self.space[name])
                if not dist.contains(value):
                    raise ConfigError(f"Trainer({arg}=...): {name}={value!r} is outside its space {dist!r}")
                value = dist.cast(value)
            out[name] = value
        return out

    # -- pieces, for the recipe and for your own loop ---------------------------------------------
    def default_params(self, **overrides: ParamValue) -> dict[str, ParamValue]:
        """A value for every parameter of ``space`` (``defaults``, else a middle value), updated by ``overrides``."""
        params = {name: self.defaults.get(name, _middle(unwrap(entry))) for name, entry in self.space.items()}
        params.update(overrides)
        return params

    def load_data(self) -> tuple[Data, Data]:
        """``(train, val)``, loaded once per process when given as ``data=``."""
        if self.data is None:
            assert self.train is not None and self.val is not None
            return self.train, self.val
        return _data.load_once(self.data)

    def build_model(self, params: Mapping[str, ParamValue], seed: int = 0) -> nn.Module:
        """``build(params)`` with torch's RNG seeded first (the same seed, the same initial weights), on the device."""
        torch.manual_seed(seed)
        model = self.build(dict(params))
        if not isinstance(model, nn.Module):
            raise ConfigError(f"Trainer(build=...) must return an nn.Module, got {type(model).__name__}")
        device = resolve_device(self.device)
        missing = unavailable(device)
        if missing is not None:
            raise ConfigError(f"Trainer(device={self.device!r}): {missing}; use device='auto' (CUDA when present, "
                              "else the CPU) or 'cpu'")
        model = model.to(device)
        self.input_dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
        return model

    def make_optimizer(self, model: nn.Module, params: Mapping[str, ParamValue]) -> torch.optim.Optimizer:
        """The optimizer over the model's trainable parameters, from ``lr``, ``weight_decay``, ``momentum``
        (and ``hyper_lr`` and ``lr_max`` for the ``-hd`` optimizers)."""
        trainable = [p for p in model.parameters() if p.requires_grad]
        if not trainable:
            raise ConfigError(
                "the model has no trainable parameter (requires_grad=False everywhere): unfreeze its layers"
            )
        lr = params.get("lr")
        if not _positive_number(lr):
            raise ConfigError(f"the parameters need a positive 'lr' (the learning rate), got {lr!r}")
        choice = params.get("optimizer", self.optimizer)
        if callable(choice):
            return choice(trainable, params)
        wd = _number_param(params, "weight_decay", 0.0)
        momentum = _number_param(params, "momentum", 0.9)
        lr_f = float(lr)  # type: ignore[arg-type]
        if isinstance(choice, str) and choice.endswith("-hd") and choice in OPTIMIZERS:
            hyper_lr = params.get("hyper_lr", DEFAULT_HYPER_LR)
            if not _positive_number(hyper_lr):
                raise ConfigError(
                    f"parameter hyper_lr must be a positive number such as {DEFAULT_HYPER_LR}, got {hyper_lr!r}"
                )
            lr_max = params.get("lr_max")
            if lr_max is not None and not (_positive_number(lr_max) and float(lr_max) > lr_f):  # type: ignore[arg-type]
                raise ConfigError(
                    f"parameter lr_max (the ceiling of the adapted rate) must be a number above lr={lr_f}, "
                    f"got {lr_max!r}"
                )
            bounds = None if lr_max is None else (min(lr_f, 1e-12), float(lr_max))  # type: ignore[arg-type]
            inner = self.make_optimizer(model, {**params, "optimizer": choice.removesuffix("-hd")})
            return HypergradientOptimizer(inner, hyper_lr=float(hyper_lr), lr_bounds=bounds)  # type: ignore[arg-type]
        if choice == "sgd":
            return torch.optim.SGD(trainable, lr=lr_f, momentum=momentum, weight_decay=wd)
        if choice == "adam":
            return torch.optim.Adam(trainable, lr=lr_f, weight_decay=wd)
        if choice == "adamw":
            return torch.optim.AdamW(trainable, lr=lr_f, weight_decay=wd)
        if choice == "rmsprop":
            return torch.optim.RMSprop(trainable, lr=lr_f, momentum=momentum, weight_decay=wd)
        raise ConfigError(f"parameter optimizer={choice!r} is not one of {OPTIMIZERS}")

    def make_scheduler(
        self, optimizer: torch.optim.Optimizer, total_steps: int
    ) -> torch.optim.lr_scheduler.LRScheduler | None:
        """The learning-rate schedule over ``total_steps`` optimiser steps (None when constant).

        Override it for another torch scheduler (stepped after every optimiser step): a live
        ``lr`` change scales it (:func:`~tunelab.torch.live.apply_to_optimizer`)."""
        if self.schedule == "constant":
            return None
        total = max(1, total_steps)
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total) / total))
        )

    def loss_fn(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The training loss of a batch (a mean)."""
        if callable(self.loss):
            return self.loss(outputs, targets)
        if self.loss == "cross_entropy":
            return nn.functional.cross_entropy(outputs, targets)
        if self.loss == "nll":
            return nn.functional.nll_loss(outputs, targets)
        if self.loss == "mse":
            return nn.functional.mse_loss(outputs, targets)
        return nn.functional.l1_loss(outputs, targets)

    def class_labels(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The targets as class indices for accuracy: class-probability targets (one-hot, label
        smoothing: floats shaped like the outputs) of a classification loss by their largest
        probability; any other targets as they are."""
        if (self.classifier and targets.is_floating_point() and targets.ndim == 2
                and targets.shape == outputs.shape):
            return targets.argmax(dim=1)
        return targets

    def batch_size_of(self, params: Mapping[str, ParamValue]) -> int:
        """``params["batch_size"]`` when given, else the trainer's ``batch_size``."""
        size = params.get("batch_size", self.batch_size)
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
            raise ConfigError(f"parameter batch_size must be an integer >= 1, got {size!r}")
        return int(size)

    def batches(
        self, data: Data, batch_size: int, generator: torch.Generator | None = None, *, start: int = 0,
        epoch_rng: torch.Tensor | None = None,
    ) -> Iterator[Tensors]:
        """One epoch of ``(inputs, targets)`` batches on the device, shuffled by ``generator``
        (None: in order), from batch number ``start`` on (the epoch's order is drawn whole first,
        so a resumed epoch goes on in the same order). A DataLoader yields its own batches (a resumed
        epoch's iterator is made under ``epoch_rng``, torch's global RNG state when the epoch began).
        Floating-point inputs come in the dtype of the model built last (:attr:`input_dtype`); the
        targets as they are (the losses promote them)."""
        batches = _data.batches(data, batch_size, resolve_device(self.device), generator, start=start,
                                epoch_rng=epoch_rng)
        dtype = self.input_dtype
        if dtype is None:
            return batches
        return ((xb.to(dtype) if xb.is_floating_point() and xb.dtype != dtype else xb, yb) for xb, yb in batches)

    def steps_per_epoch(self, data: Data, batch_size: int) -> int:
        """Optimiser steps in one pass over ``data``."""
        return _data.steps_per_epoch(data, batch_size)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, data: Data, prefix: str = "val_") -> dict[str, float]:
        """Mean loss (and accuracy for classification) of ``model`` over ``data``, in eval mode."""
        was_training = model.training
        model.eval()
        loss_sum, correct, count, labelled = 0.0, 0, 0, 0
        for xb, yb in self.batches(data, 1024):
            out = model(xb)
            n = int(yb.shape[0])
            loss_sum += float(self.loss_fn(out, yb)) * n
            labels = self.class_labels(out, yb)
            if self.binary:
                correct += int(binary_hits(out, yb))
                labelled += int(out.numel())
            elif class_indices(out, labels):
                correct += int((out.argmax(dim=1) == labels).sum())
                labelled += n
            count += n
        model.train(was_training)
        if count == 0:
            raise ConfigError(f"the {prefix.rstrip('_') or 'evaluation'} data yielded no rows to evaluate on")
        metrics = {f"{prefix}loss": loss_sum / count}
        if self.classifier:
            metrics[f"{prefix}acc"] = correct / count
        elif labelled:  # a loss function of class scores and class indices (nn.CrossEntropyLoss()), or binary
            metrics[f"{prefix}acc"] = correct / labelled
        return metrics

    # -- live hyperparameters ----------------------------------------------------------------------
    def live_names(self, optimizer: torch.optim.Optimizer) -> list[str]:
        """The hyperparameters :meth:`fit` can change while it trains with this ``optimizer``:
        ``lr``, ``momentum`` (SGD/RMSprop ``momentum``, Adam/AdamW ``betas[0]``) and
        ``weight_decay`` when every param group has them, plus the trainer's ``live_params``."""
        names = optimizer_live_names(optimizer)
        names += [n for n in self.live_params if n not in names]
        return names

    def apply_live(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None,
        changes: Mapping[str, ParamValue],
    ) -> dict[str, ParamValue]:
        """Apply changed hyperparameters to every param group (and the ``on_live_change`` hook);
        return those applied.

        ``lr`` is the base learning rate: under a schedule (the cosine one, or any torch scheduler
        :meth:`make_scheduler` returns: a OneCycleLR's peak) the whole schedule is scaled to the
        new base and goes on from where it is. A value the optimizer
        cannot take (lr <= 0, momentum outside [0, 1), weight_decay < 0) is skipped with a warning:
        a person babysitting a run should not lose it to a typo.
        """
        applied = apply_to_optimizer(optimizer, scheduler, changes)
        if self.on_live_change is not None:
            hooked = {k: v for k, v in changes.items() if k in self.live_params or k not in OPTIMIZER_LIVE}
            hooked.update(applied)
            self.on_live_change(model, optimizer, hooked)
            applied.update(hooked)
        return applied

    # -- the loop ----------------------------------------------------------------------------------
    def fit(
        self,
        params: Mapping[str, ParamValue],
        *,
        epochs: int,
        trial: Trial | None = None,
        seed: int = 0,
        eval_every: int | None = None,
        patience: int | None = None,
        prune: bool = True,
        checkpoint_every: int | None = None,
        restore_best: bool = True,
        live: bool = False,
        resume: Checkpoint | str | os.PathLike[str] | None = None,
        report_params: bool = False,
    ) -> FitResult:
        """Train a model built from ``params`` for ``epochs``, evaluating after each epoch (or every
        ``eval_every`` optimiser steps) and reporting to ``trial`` when given.

        Args:
            params: the run's hyperparameters (``lr`` at least; the rest go to ``build``).
            epochs: passes over the training data.
            trial: report every evaluation to it, ask its study's pruner (``prune``), checkpoint.
            seed: seeds the initial weights, the shuffling and dropout.
            eval_every: evaluate every this many steps instead of after each epoch (and once more
                at the end when it does not divide the run's steps).
            patience: stop after this many evaluations without improving the trainer's ``monitor``.
            checkpoint_every: save model, optimizer, schedule, RNG state and the loop's position every
                this many evaluations, through ``trial.checkpoint(step)`` with the curve's step (needs
                ``trial``); resuming from one goes on exactly as the run would have.
            restore_best: leave the best evaluation's weights in the returned model.
            live: let the trial's hyperparameters change while it trains (``tunelab set``,
                ``tunelab.babysit.set_live``): the trainer declares what it can apply (:meth:`live_names`) and,
                before every optimiser step, applies the changes asked for (``trial.sync_live``, at
                the step in the curve's unit: the optimiser step with ``eval_every``, else the
                fractional epoch). Needs ``trial``.
            resume: a checkpoint written by this loop (a :class:`~tunelab.checkpoints.Checkpoint` or
                its folder) to go on from: model, optimizer, schedule, RNG states, the position in
                the epoch and the reporter's best and patience are restored, then ``params`` that
                differ from the checkpoint's (a branch's changed lr) are applied. Default: the
                trial's :attr:`~tunelab.study.Trial.resume_from` (a branch's start), if any.
            report_params: report ``params``, the model's trainable parameter count
                (:func:`~tunelab.torch.count_parameters`), with every evaluation: a constant curve
                that Pareto pruners read in a study whose objectives include the model's size.

        Raises :class:`tunelab.TrialPruned` when the pruner stops the run, and
        :class:`tunelab.errors.TrainingDivergedError` when the loss becomes NaN or infinite.
        """
        _check_fit_args(epochs, trial, eval_every, checkpoint_every, live)
        if not isinstance(report_params, bool):
            raise ConfigError(f"fit(report_params=...) must be True or False, got {report_params!r}")
        source = resume_source(resume, trial)
        start = time.perf_counter()
        params = dict(params)
        train, val = self.load_data()
        batch_size = self._fit_batch_size(train, params)
        model = self.build_model(params, seed)
        optimizer = self.make_optimizer(model, params)
        per_epoch = self.steps_per_epoch(train, batch_size)
        scheduler = self.make_scheduler(optimizer, epochs * per_epoch)
        reporter = Reporter(trial, monitor=self.monitor, patience=patience, prune=prune)
        state = LoopState(reporter, torch.Generator().manual_seed(seed), per_epoch, params, keep_best=restore_best,
                          loader_generator=None if isinstance(train, tuple) else getattr(train, "generator", None))
        constants = {PARAMS: float(count_parameters(model))} if report_params else None
        loop = FitLoop(self, state, model, optimizer, scheduler, (train, val), batch_size, trial,
                       eval_every=eval_every, checkpoint_every=checkpoint_every, live=live, constants=constants)
        if source is not None:  # last: the RNG states it restores are those the run had
            loop.resume(source)
        if live:
            assert trial is not None
            trial.declare_live(self.live_names(optimizer))
        model.train()
        for epoch in range(state.epoch, epochs):
            if state.stopped is not None or loop.train_epoch(epoch):
                break
        # eval_every longer than the run, or not dividing it: evaluate the last steps' model too
        unseen = (eval_every is not None and state.stopped is None and state.step % eval_every != 0
                  and not (reporter.history and reporter.history[-1]["step"] == state.step))  # resumed at the end
        if reporter.best is None or unseen:
            loop.evaluate_and_report()
        if restore_best and state.best_model is not None:
            model.load_state_dict(state.best_model)
        model.eval()
        best = reporter.best
        assert best is not None
        return FitResult(
            model=model, history=reporter.history, best=best, value=best[self.monitor], stopped=state.stopped,
            steps=state.step, seconds=time.perf_counter() - start, params=params,
        )

    def _fit_batch_size(self, train: Data, params: Mapping[str, ParamValue]) -> int:
        """The batch size of :meth:`fit`: the parameters' or the trainer's for tensors; a DataLoader's own."""
        if isinstance(train, tuple):
            return self.batch_size_of(params)
        if "batch_size" in params:
            raise ConfigError(
                "batch_size is a hyperparameter but the training data is a DataLoader with its own batch "
                "size: pass (inputs, targets) tensors so that tunelab can batch them"
            )
        return self.batch_size

    def objective(
        self,
        *,
        epochs: int,
        seed: int = 0,
        eval_every: int | None = None,
        patience: int | None = None,
        prune: bool = True,
        checkpoint_every: int | None = None,
        save_model: bool = False,
        tag: Mapping[str, Any] | None = None,
        live: bool = False,
        objectives: Sequence[str] | None = None,
    ) -> TrainObjective:
        """An objective for ``study.optimize``: suggests ``space`` (plus whatever the study declares),
        trains with :meth:`fit` on the trial's parameters (enqueued ones too) and returns the best
        ``monitor`` value; ``live=True`` lets its hyperparameters change while it trains, and a
        branch (``tunelab.babysit.branch``) resumes from its checkpoint. Picklable (worker processes) when
        ``build`` and ``data`` are module-level functions.

        ``objectives``, for a study with several objectives (``create_study(directions=...,
        objective_names=...)``): return one value per name, in order, each one of
        :meth:`objective_names`: a validation metric read at the best evaluation (by ``monitor``),
        or ``"params"``, the model's trainable parameter count, then also reported as a constant
        metric with every evaluation so that Pareto pruners can read it. E.g.
        ``objectives=("val_acc", "params")`` with ``directions=["maximize", "minimize"]``
        (:func:`~tunelab.torch.objective_direction` gives each name's direction)."""
        _check_positive_int("objective", "epochs", epochs)
        if not isinstance(live, bool):
            raise ConfigError(f"objective(live=...) must be True or False, got {live!r}")
        names = () if objectives is None else self.check_objectives(objectives)
        return TrainObjective(self, epochs, seed, eval_every, patience, prune, checkpoint_every, save_model,
                              dict(tag or {}), live, names)

    def objective_names(self) -> tuple[str, ...]:
        """The names :meth:`objective` can return: the ``monitor`` first, the validation metrics of
        an evaluation (``val_loss``, and ``val_acc`` for classification), and ``"params"``."""
        metrics = [self.monitor, "val_loss", *(["val_acc"] if self.classifier or self.binary else [])]
        return tuple(dict.fromkeys([*metrics, PARAMS]))

    def check_objectives(self, objectives: Sequence[str]) -> tuple[str, ...]:
        """``objectives`` as a tuple, checked: one or more distinct names of :meth:`objective_names`."""
        known = self.objective_names()
        if isinstance(objectives, str) or not objectives or not all(isinstance(n, str) for n in objectives):
            raise ConfigError(f"objectives=... must be a list of names among {', '.join(known)}, e.g. "
                              f"{[known[0], PARAMS]!r}; got {objectives!r}")
        unknown = [n for n in objectives if n not in known]
        if unknown:
            raise ConfigError(f"unknown objective{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}: "
                              f"the known objectives are {', '.join(known)}")
        if len(set(objectives)) != len(objectives):
            raise ConfigError(f"objectives=... names an objective twice: {list(objectives)!r}")
        return tuple(objectives)


def _check_positive_int(owner: str, arg: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{owner}({arg}=...) must be an integer >= 1, got {value!r}")


def _positive_number(value: object) -> bool:
    """A finite number > 0 (a numpy scalar too), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and float(value) > 0


def _number_param(params: Mapping[str, ParamValue], name: str, default: float) -> float:
    """``params[name]`` (``default`` when absent or None) as a float >= 0, or a ConfigError naming it."""
    value = params.get(name)
    if value is None:
        return default
    number = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else math.nan
    if not math.isfinite(number) or number < 0:
        raise ConfigError(f"parameter {name} must be a number >= 0, got {value!r}")
    return number


def _middle(dist: Distribution) -> ParamValue:
    """The middle of a range (geometric for a log range), the first choice of a categorical, False."""
    if isinstance(dist, Bool):
        return False
    if isinstance(dist, Categorical):
        return dist.choices[0]
    return dist.from_unit(0.5)


def _check_fit_args(
    epochs: int, trial: Trial | None, eval_every: int | None, checkpoint_every: int | None, live: bool
) -> None:
    _check_positive_int("fit", "epochs", epochs)
    if eval_every is not None:
        _check_positive_int("fit", "eval_every", eval_every)
    if checkpoint_every is not None:
        _check_positive_int("fit", "checkpoint_every", checkpoint_every)
        if trial is None:
            raise ConfigError("fit(checkpoint_every=...) needs a trial= to keep the checkpoints in")
    if not isinstance(live, bool):
        raise ConfigError(f"fit(live=...) must be True or False, got {live!r}")
    if live and trial is None:
        raise ConfigError(
            "fit(live=True) needs a trial= (from study.ask()) whose hyperparameters may change while it "
            "trains; without a study, leave live=False"
        )
