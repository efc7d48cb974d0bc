"""tunelab for the Hugging Face ``Trainer`` (transformers 5): :class:`TunelabCallback` reports each
evaluation as the trial's curves, prunes through the Trainer's own stop flag and applies live
learning-rate and weight-decay changes; :func:`search` runs a whole study of Trainers.

Usage::

    from tunelab.integrations.transformers import TunelabCallback

    def objective(trial):
        args = TrainingArguments(..., learning_rate=trial.suggest_float("learning_rate", 1e-5, 1e-2, log=True),
                                 eval_strategy="steps", eval_steps=50)
        trainer = Trainer(model=..., args=args, train_dataset=..., eval_dataset=...,
                          callbacks=[TunelabCallback(trial, monitor="eval_loss")])
        trainer.train()
        return trainer.evaluate()["eval_loss"]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from tunelab.distributions import ParamValue
from tunelab.errors import ConfigError, TrialPruned
from tunelab.integrations._common import as_number, check_monitor, check_trial, prune_now, require
from tunelab.integrations._held import HeldReports, as_logged
from tunelab.integrations._live import StepHook
from tunelab.pruners import Pruner
from tunelab.pruners.pareto import ParetoPruner
from tunelab.samplers import Sampler
from tunelab.space import SpaceEntry, validate_space
from tunelab.study import Study, Trial, create_study
from tunelab.torch.live import apply_to_optimizer

_transformers = require("transformers", "transformers", "tunelab.integrations.transformers")
Trainer: Any = _transformers.Trainer
TrainerCallback: Any = _transformers.TrainerCallback
TrainingArguments: Any = _transformers.TrainingArguments

__all__ = ["LIVE_NAMES", "BestRun", "TunelabCallback", "search"]

#: The hyperparameters a running Trainer takes from ``tunelab set``: ``learning_rate`` (or its
#: short name ``lr``) and ``weight_decay``.
LIVE_NAMES = ("learning_rate", "lr", "weight_decay")
_STEPS = ("global_step", "epoch")
_NOT_CURVES = frozenset({"epoch", "step"})  # the Trainer adds these to the metrics: they are the x axis


class TunelabCallback(TrainerCallback):  # type: ignore[misc]
    """Report every ``Trainer.evaluate()`` to ``trial``, stop training when the pruner says so, and
    apply live ``learning_rate``/``weight_decay`` changes at the next optimizer step.

    Each evaluation's numeric metrics (``eval_loss``, ``eval_accuracy``..., as the Trainer logs them,
    less ``epoch``) are reported at ``state.global_step`` (or the epoch). During training the study's
    pruner is then asked; when it says stop, the trial is marked pruned and
    ``control.should_training_stop`` is set: ``trainer.train()`` returns normally and the trial ends
    PRUNED, whether the objective then raises :class:`tunelab.TrialPruned` or returns.

    Only the main process (``state.is_world_process_zero``) reads or writes the study; under
    ``torch.distributed`` its decisions (stop, live changes) are broadcast to every rank.

    Args:
        trial: the :class:`tunelab.Trial` given to the objective; None in the other processes of a
            distributed run (only the main one needs it).
        monitor: the metric that must be logged at each evaluation (checked at the first one: a
            ConfigError names the metrics that were logged). It is the value :func:`search` optimizes.
        step: ``"global_step"`` (optimizer steps, the default) or ``"epoch"`` (for
            ``eval_strategy="epoch"``: evaluations at whole epochs).
    """

    def __init__(self, trial: Trial | None, monitor: str = "eval_loss", *, step: str = "global_step") -> None:
        self._trial = None if trial is None else check_trial(trial, "TunelabCallback")
        self.monitor = check_monitor(monitor)
        if step not in _STEPS:
            raise ConfigError(f"TunelabCallback(step=...) must be 'global_step' or 'epoch', got {step!r}")
        self._held: HeldReports[Mapping[str, float]] | None = None
        if self._trial is not None:
            self._trial.gather_reports = True  # gathered only while the storage lags
            # evaluations less than half a second apart are reported together, from the pruner's next decision on
            self._held = HeldReports(self._trial, self.monitor, f"TunelabCallback(monitor={self.monitor!r})",
                                     "transformers", as_logged)
        self.step = step
        self.last_metrics: dict[str, float] = {}
        """The numeric metrics of the last evaluation (main process)."""
        self.last_step: int | None = None
        """The global step of the last evaluation."""
        self._training = False
        self._alone = False  # training in one process (no broadcasts), known from on_train_begin to on_train_end
        self._hook: StepHook | None = None

    @property
    def trial(self) -> Trial | None:
        """The trial this callback reports to (None in a process other than the main one)."""
        return self._trial

    def _main_trial(self) -> Trial:
        if self._trial is None:
            raise ConfigError(
                "TunelabCallback(None) in the main process: give it the tunelab.Trial of the objective "
                "(None is only for the other processes of a distributed run)"
            )
        return self._trial

    # -- the Trainer's events -----------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.step == "epoch":
            _check_whole_epochs(args, state, kwargs.get("train_dataloader"))
        self._training = True
        trial = self._main_trial() if state.is_world_process_zero else None
        if trial is not None:
            trial.declare_live(LIVE_NAMES)
            if self._held is not None:
                self._held.restart()  # a Trainer trained again: its first evaluation is reported at once
        optimizer = kwargs.get("optimizer")
        if optimizer is None:
            return
        # One process: the storage says when a request comes (in memory) or a watcher thread reads them, and
        # training pays nothing per step until one comes. Several: every process looks before each step,
        # together (the main one reads, then broadcasts).
        single = not _distributed()
        self._alone = single and bool(state.is_world_process_zero)
        every_step = not single or trial is None or trial.live_poll_seconds == 0
        watched = trial if single else None

        def sync() -> None:
            self._sync_live(state, control, optimizer, kwargs.get("lr_scheduler"), kwargs.get("model"),
                            force=not every_step)

        self._hook = StepHook(watched, sync, every_step=every_step)
        self._hook.start([optimizer])

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._training = self._alone = False
        if self._hook is not None:
            self._hook.close()
            self._hook = None
        if state.is_world_process_zero and self._trial is not None:
            self._trial.flush()  # the reports gathered for the storage: written once training ends
            self.check_monitored()

    def _sync_live(self, state: Any, control: Any, optimizer: Any, scheduler: Any, model: Any, *,
                   force: bool) -> None:
        """Apply the live changes asked for, just before an optimizer step (in every process)."""
        changes: dict[str, ParamValue] = {}
        stop = False
        if state.is_world_process_zero:
            trial = self._main_trial()
            changes = trial.sync_live(state.global_step, force=force)
            stop = trial.stop_requested and prune_now(trial)  # a stop asked from outside
        changes, stop = _from_main_process((changes, stop))
        if changes:
            _apply_live(changes, optimizer, scheduler, model)
        if stop:
            control.should_training_stop = True

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._alone:  # training in one process: nothing to broadcast
            if self._report(state, kwargs.get("metrics")):
                control.should_training_stop = True
            return
        stop = False
        if state.is_world_process_zero:
            stop = self._report(state, kwargs.get("metrics"))
        if _from_main_process(stop):
            control.should_training_stop = True

    # -- what it does -------------------------------------------------------------------------
    def _report(self, state: Any, metrics: Mapping[str, Any] | None) -> bool:
        """Report one evaluation; True when the pruner stops the trial (only asked while training).

        With several evaluation datasets (``eval_dataset={"val": ..., "test": ...}``) the Trainer
        calls ``on_evaluate`` once per dataset, each with its own metrics (``eval_val_loss``, then
        ``eval_test_loss``): those of the same step are gathered in :attr:`last_metrics`, and the
        pruner is asked after the monitored dataset's evaluation only."""
        values = _curve_values(metrics)
        step = int(state.global_step)
        if step != self.last_step:  # a new evaluation: the previous one must have logged the monitor
            self.check_monitored()
        other = self.monitor not in values and _other_dataset(values, self.monitor)
        if self.monitor not in values and not other:
            self._missing(values)
        trial = self._main_trial()
        if step == self.last_step:
            self.last_metrics = {**self.last_metrics, **values}
        else:
            self.last_metrics, self.last_step = values, step
        pruner = trial.study.pruner
        if self._alone and not other and not isinstance(pruner, ParetoPruner) and self._held is not None:
            return self._held.add(self._step_of(state), values)  # training in one process, the monitored dataset
        if self._held is not None:
            self._held.report_held()  # in order
        trial.report(self._step_of(state), **values)
        if self._training and isinstance(pruner, ParetoPruner):
            # It compares the metrics of its objectives, which may come from several datasets: it is asked
            # once they are all in, with them in one report (the last, the one it reads).
            needed, _ = pruner.resolve(trial.study.objective_names, trial.study.directions)
            if any(m in values for m in needed) and all(m in self.last_metrics for m in needed):
                if not all(m in values for m in needed):
                    trial.report(self._step_of(state), **{m: self.last_metrics[m] for m in needed})
                return prune_now(trial)
            return False
        return self._training and not other and prune_now(trial)

    def check_monitored(self) -> None:
        """Raise the ConfigError naming the logged metrics when the last evaluation (all its datasets)
        did not log ``monitor``."""
        if self.last_step is None or self._trial is None:
            return
        if self.monitor not in self.last_metrics:
            self._missing(self.last_metrics)
        study = self._trial.study
        pruner = study.pruner
        if isinstance(pruner, ParetoPruner):
            needed, _ = pruner.resolve(study.objective_names, study.directions)
            missing = [m for m in needed if m not in self.last_metrics]
            if missing:
                raise ConfigError(
                    f"{type(pruner).__name__} compares the metrics {list(needed)} at each evaluation, but the "
                    f"evaluation logged no {missing} (it logged {sorted(self.last_metrics)}); name the metrics "
                    "the Trainer logs (with the 'eval_' prefix) in the study's objective_names or the pruner's metrics="
                )

    def _missing(self, values: Mapping[str, float]) -> None:
        raise ConfigError(
            f"TunelabCallback(monitor={self.monitor!r}): the evaluation logged {sorted(values) or 'no numbers'}; "
            f"monitor one of them (the Trainer prefixes evaluation metrics with 'eval_', e.g. 'eval_loss', and "
            f"with several eval datasets their names too, e.g. 'eval_val_loss')"
        )

    def _step_of(self, state: Any) -> int:
        if self.step == "global_step":
            return int(state.global_step)
        epoch = float(state.epoch or 0.0)
        if abs(epoch - round(epoch)) > 1e-6:
            raise ConfigError(
                f"TunelabCallback(step='epoch') reports at whole epochs, but an evaluation ran at epoch {epoch:g}: "
                "use eval_strategy='epoch', or step='global_step'"
            )
        return int(round(epoch))


def _check_whole_epochs(args: Any, state: Any, train_dataloader: Any) -> None:
    """``step="epoch"``: a ConfigError before the first step when an evaluation of the Trainer's
    ``eval_strategy`` would fall inside an epoch (the first one of ``"steps"``, the last one of
    ``"epoch"`` when training ends inside an epoch)."""
    try:
        batches = len(train_dataloader)
    except TypeError:  # no dataloader, or one without a length: the evaluation itself says
        return
    accumulation = max(int(args.gradient_accumulation_steps), 1)
    per_epoch = max(batches // accumulation + int(batches % accumulation > 0), 1)  # the Trainer's count
    strategy = str(getattr(args.eval_strategy, "value", args.eval_strategy))
    max_steps = int(state.max_steps)
    if strategy == "epoch" and max_steps % per_epoch:
        raise ConfigError(
            f"TunelabCallback(step='epoch') reports at whole epochs, but training ends inside an epoch: "
            f"{max_steps} steps of {per_epoch} per epoch, so eval_strategy='epoch' evaluates last at epoch "
            f"{max_steps / per_epoch:g}; train whole epochs (max_steps a multiple of {per_epoch}, or a whole "
            "num_train_epochs), or use step='global_step'"
        )
    eval_steps = int(state.eval_steps or 0) if strategy == "steps" else 0
    if 0 < eval_steps <= max_steps and eval_steps % per_epoch:
        raise ConfigError(
            f"TunelabCallback(step='epoch') reports at whole epochs, but an evaluation would run at epoch "
            f"{eval_steps / per_epoch:g} (eval_steps={eval_steps}, {per_epoch} steps per epoch): use "
            "eval_strategy='epoch', or step='global_step'"
        )


def _other_dataset(values: Mapping[str, float], monitor: str) -> bool:
    """Whether an evaluation is that of another dataset than ``monitor``'s (of an ``eval_dataset``
    dict): its metrics' prefix, read from the ``<prefix>_runtime`` the Trainer logs, is not the monitor's."""
    prefixes = [key[: -len("_runtime")] for key in values if key.endswith("_runtime")]
    return bool(prefixes) and not any(monitor.startswith(prefix + "_") for prefix in prefixes)


def _curve_values(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    """The numeric metrics of an evaluation but its x axis (``epoch``, ``step``): what each report holds."""
    out: dict[str, float] = {}
    for key, value in (metrics or {}).items():
        if type(value) is float and type(key) is str and key and key not in _NOT_CURVES:  # the Trainer's usual case
            out[key] = value
        elif key not in _NOT_CURVES:
            number = as_number(value)
            if number is not None and isinstance(key, str) and key:
                out[key] = number
    return out


def _apply_live(changes: Mapping[str, ParamValue], optimizer: Any, scheduler: Any, model: Any) -> None:
    """Set live ``learning_rate``/``lr`` on every param group (the schedule, HF's default linear
    one or any torch scheduler, goes on scaled to the new base) and ``weight_decay`` on the groups that decay."""
    if optimizer is None:
        return
    scheduler = getattr(scheduler, "scheduler", scheduler)  # accelerate's AcceleratedScheduler wraps one
    lr_scheduler = torch.optim.lr_scheduler
    if not isinstance(scheduler, (lr_scheduler.LRScheduler, lr_scheduler.ReduceLROnPlateau)):
        scheduler = None  # not a torch scheduler: set the rate as given
    lr = changes.get("learning_rate", changes.get("lr"))
    if lr is not None:
        apply_to_optimizer(optimizer, scheduler, {"lr": lr})
    if "weight_decay" in changes:
        decaying = _decay_groups(optimizer, model)
        apply_to_optimizer(_Groups(decaying), None, {"weight_decay": changes["weight_decay"]})  # type: ignore[arg-type]


class _Groups:
    """Some param groups of an optimizer, as :func:`apply_to_optimizer` reads them."""

    def __init__(self, groups: list[dict[str, Any]]) -> None:
        self.param_groups = groups


def _decay_groups(optimizer: Any, model: Any) -> list[dict[str, Any]]:
    """The param groups weight decay applies to: the Trainer puts biases and norms in a group of their own
    with weight_decay 0.0 (``Trainer.get_decay_parameter_names``), which a live change leaves alone."""
    groups: list[dict[str, Any]] = list(optimizer.param_groups)
    if model is None:
        return groups
    names = set(Trainer.get_decay_parameter_names(None, model))  # it reads only the model
    decaying = {id(p) for n, p in model.named_parameters() if n in names}
    return [g for g in groups if any(id(p) in decaying for p in g["params"])]


def _distributed() -> bool:
    """Whether several processes train together (torch.distributed with more than one rank)."""
    dist = torch.distributed
    return bool(dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1)


def _from_main_process(value: Any) -> Any:
    """``value`` as the main process has it, when several processes train together (else as is)."""
    dist = torch.distributed
    if not _distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# -- search ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BestRun:
    """The best trial of :func:`search` (like transformers' ``BestRun``).

    Attributes:
        number: the trial's number in the study.
        objective: its value (the monitored metric at the end of its training).
        hyperparameters: its parameters.
        study: the study, for everything else (``study.trials``, curves, the dashboard).
    """

    number: int
    objective: float
    hyperparameters: dict[str, ParamValue]
    study: Study

    @property
    def run_id(self) -> str:
        """The trial's number as a string (transformers' ``BestRun.run_id``)."""
        return str(self.number)


class _Objective:
    """One trial of :func:`search`: build the Trainer, attach the callback, train, evaluate at the end."""

    def __init__(self, trainer_factory: Callable[[Trial], Any], monitor: str, step: str) -> None:
        self.trainer_factory = trainer_factory
        self.monitor = monitor
        self.step = step

    def __call__(self, trial: Trial) -> float:
        trainer = self.trainer_factory(trial)
        if not isinstance(trainer, Trainer):
            raise ConfigError(f"search(trainer_factory=...) must return a transformers.Trainer, got {trainer!r}")
        _check_args_use_params(trainer.args, trial.params)
        callback = TunelabCallback(trial, self.monitor, step=self.step)
        trainer.add_callback(callback)
        trainer.train()
        if trial.marked_pruned:
            raise TrialPruned()
        if callback.last_step != trainer.state.global_step:  # not evaluated at the end of training
            trainer.evaluate()
        callback.check_monitored()
        return callback.last_metrics[self.monitor]


def _check_args_use_params(args: Any, params: Mapping[str, ParamValue]) -> None:
    """A searched parameter named like a TrainingArguments field must reach the Trainer's arguments."""
    fields = getattr(TrainingArguments, "__dataclass_fields__", {})
    for name, value in params.items():
        if name in fields and getattr(args, name) != value:
            raise ConfigError(
                f"search(): the trial's {name}={value!r} did not reach the Trainer (its TrainingArguments has "
                f"{name}={getattr(args, name)!r}); build TrainingArguments({name}=trial.params[{name!r}], ...) "
                "in trainer_factory"
            )


def search(
    trainer_factory: Callable[[Trial], Any],
    space: Mapping[str, SpaceEntry],
    n_trials: int,
    *,
    study: Study | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    direction: str | None = None,
    monitor: str = "eval_loss",
    step: str = "global_step",
    sampler: Sampler | None = None,
    pruner: Pruner | None = None,
    seed: int | None = None,
    n_workers: int = 1,
    timeout: float | None = None,
) -> BestRun:
    """Tune a Hugging Face Trainer: each trial builds one with ``trainer_factory``, trains it with a
    :class:`TunelabCallback` attached (curves, pruning, live changes) and is worth ``monitor`` at the
    end of training (the last evaluation, or one run after training when the last step was not
    evaluated). Return the best run.

    Args:
        trainer_factory: ``f(trial) -> Trainer``; the trial's ``params`` hold the values of ``space``
            (``trial.params["learning_rate"]``). A parameter named like a ``TrainingArguments`` field
            must be passed to it (checked). With ``n_workers > 1`` define it at module level.
        space: name -> tunelab distribution, e.g. ``{"learning_rate": tunelab.Float(1e-5, 1e-2, log=True)}``.
        n_trials: trials to run (an integer >= 1).
        study: an existing study to add the trials to (then give none of storage, study_name,
            direction, sampler, pruner, seed).
        storage: where a new study is kept (``"sqlite:///tunelab.db"``; None: in memory).
        study_name: the new study's name (an existing one in ``storage`` is resumed).
        direction: ``"minimize"`` (default) or ``"maximize"`` ``monitor``.
        monitor: the evaluation metric to optimize, as the Trainer logs it (``"eval_loss"``).
        step: the curves' step, ``"global_step"`` or ``"epoch"`` (see :class:`TunelabCallback`).
        sampler: the new study's sampler (default: tunelab's).
        pruner: the new study's pruner, e.g. ``tunelab.SuccessiveHalvingPruner(min_resource=50)`` (steps).
        seed: the new study's seed.
        n_workers: trials at once, each in its own process (use a file storage to share the study).
        timeout: seconds after which no new trial starts.

    Raises:
        ConfigError: a bad argument, before any training.
        TrialNotFoundError: no trial completed (all pruned or failed).
    """
    if not callable(trainer_factory):
        raise ConfigError(f"search(trainer_factory=...) must be a function trial -> Trainer, got {trainer_factory!r}")
    space = validate_space(space)
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ConfigError(f"search(n_trials=...) must be an integer >= 1, got {n_trials!r}")
    monitor = check_monitor(monitor)
    if step not in _STEPS:
        raise ConfigError(f"search(step=...) must be 'global_step' or 'epoch', got {step!r}")
    study = _the_study(study, space, storage=storage, study_name=study_name, direction=direction, sampler=sampler,
                       pruner=pruner, seed=seed)
    study.optimize(_Objective(trainer_factory, monitor, step), n_trials=n_trials, n_workers=n_workers,
                   timeout=timeout, space=space)
    best = study.best_trial
    assert best.value is not None and not isinstance(best.value, tuple)
    return BestRun(best.number, float(best.value), dict(best.params), study)


def _the_study(study: Study | None, space: Mapping[str, SpaceEntry], **new: Any) -> Study:
    if study is None:
        direction = new.pop("direction") or "minimize"
        name = new.pop("study_name")
        # the space declared: a GridSampler without its own space takes its cells from it
        return create_study(name=name, direction=direction, load_if_exists=name is not None, space=space, **new)
    if not isinstance(study, Study):
        raise ConfigError(f"search(study=...) must be a tunelab.Study, got {study!r}")
    if len(study.directions) != 1:
        raise ConfigError(
            f"search(study=...) optimizes one metric (monitor), but study {study.name!r} has "
            f"{len(study.directions)} objectives ({', '.join(study.objective_names)}); give a study with one "
            "objective, or run study.optimize with your own objective and TunelabCallback"
        )
    given = sorted(k for k, v in new.items() if v is not None)
    if given:
        raise ConfigError(
            f"search(study=...) uses that study's settings; do not also give {', '.join(given)} "
            "(they configure a new study)"
        )
    return study
