"""The live trial an objective receives: suggest parameters, report curves, set attributes.

Parameter values are decided by the study's sampler (or fixed by an enqueued
configuration) and kept in the trial until it reports or finishes, when they are
written to the storage together: a trial costs two short transactions, not one
per parameter.
"""

from __future__ import annotations

import logging
import math
import numbers
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from tunelab.checkpoints import Checkpoint
from tunelab.distributions import Bool, Categorical, Distribution, Float, Int, ParamValue
from tunelab.errors import (
    AttributeValueError,
    ConfigError,
    DistributionConflictError,
    EnqueuedValueError,
    InvalidDistributionError,
    StorageError,
    TrialStateError,
)
from tunelab.live import (
    DEFAULT_POLL_SECONDS,
    LIVE_NAMES,
    LIVE_REQUESTS,
    STOP_REQUESTED,
    Branch,
    LiveCallback,
    LiveParams,
    branch_of,
    write_checkpoint_params,
)
from tunelab.priors import Prior
from tunelab.pruners.base import Curve, last_step
from tunelab.records import CONSTRAINTS_KEY, PREDICTION_KEY, FrozenTrial, TrialState, missing_attribute
from tunelab.samplers.base import SamplingContext
from tunelab.space import Conditional, SpaceEntry, name_error, unwrap, validate_space
from tunelab.study.attrs import JSON_RULE, json_data, shown
from tunelab.study.background import call_later
from tunelab.study.services import Pacer
from tunelab.study.verdict import real_metric

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from tunelab.study.services import TrialServices, TrialWriter
    from tunelab.study.study import Study


#: The rule recorded in ``system_attrs["pruned"]`` of a trial stopped that way.
STOPPED_RULE = "stopped on request"
#: The key of ``system_attrs`` where a trial keeps its pruner's latest decision to go on that carried
#: evidence (:class:`tunelab.LearningCurvePruner`'s prediction of its curve).
PREDICTION = PREDICTION_KEY


TRIAL_HINTS = {
    "suggest_uniform": "use trial.suggest_float(name, low, high)",
    "suggest_loguniform": "use trial.suggest_float(name, low, high, log=True)",
    "suggest_discrete_uniform": "use trial.suggest_float(name, low, high, step=q)",
    "intermediate_values": "study.get_curves(trial.number) gives what the trial reported, by metric name",
}
"""Optuna's names that a :class:`Trial` does not have, and what to use instead."""


class Trial:
    """One evaluation of the objective. Created by :meth:`Study.ask`; do not build it yourself.

    Attributes:
        number: the trial's number in the study (0, 1, 2, ...).
    """

    def __init__(
        self,
        study: Study,
        services: TrialServices,
        frozen: FrozenTrial,
        fixed: Mapping[str, ParamValue] | None = None,
        *,
        ctx: SamplingContext | None = None,
        plan: Mapping[str, ParamValue] | None = None,
    ) -> None:
        self._study = study
        self._suggestions = services.suggestions
        self._pruning = services.pruning
        self._checkpoints = services.checkpoints
        self._writer = services.writer(frozen.trial_id)
        self._trial_id = frozen.trial_id
        self._datetime_start = frozen.datetime_start  # for the record tell() returns
        self.number = frozen.number
        self._fixed = dict(fixed or {})
        self._params: dict[str, ParamValue] = {}
        self._dists: dict[str, Distribution] = {}
        self._unsaved: dict[str, None] = {}  # ordered set
        self._user_attrs: dict[str, Any] = dict(frozen.user_attrs)
        self._unsaved_attrs: dict[str, Any] = {}
        self._ctx = ctx if ctx is not None else SamplingContext(frozen.number, services.seed, frozen.system_attrs)
        self._plan: dict[str, ParamValue] = dict(plan or {})
        self._finished = False
        self._curves: dict[str, Curve] = {}  # this trial's own reports: metric -> step -> value
        self._last_report: dict[str, float] = {}
        self._live: LiveParams | None = None
        self._poll_seconds = DEFAULT_POLL_SECONDS  # see live_poll_seconds
        self._marked_pruned = False
        self._before_end: list[Callable[[], None]] = []
        self._stop_reads = Pacer()  # should_prune reads the stop request within the storage's time share
        self._stop_request: Any = None
        self._stop_read_due = False  # a background read of the stop request is scheduled
        self._stop_watched = False  # see watch_stop_requests
        self._stop_told: Callable[[], None] | bool | None = None  # see _read_stop_request
        self._stop_told_quiet = False  # the storage says when a stop request is written: no read is due

    if not TYPE_CHECKING:  # hidden from type checkers, which would then accept any attribute

        def __getattr__(self, name: str) -> Any:
            raise missing_attribute(self, name, TRIAL_HINTS)

    # -- suggestions -----------------------------------------------------------------------
    def suggest_float(
        self, name: str, low: float, high: float, *, log: bool = False, step: float | None = None,
        prior: Prior | None = None,
    ) -> float:
        """A real value in ``[low, high]``; ``log=True`` for scale parameters such as the learning rate.

        ``prior`` is a belief about where good values lie (:mod:`tunelab.priors`), e.g.
        ``prior=tunelab.priors.LogNormal(center=3e-4, spread=1.0)`` for a log parameter.

        Examples:
            >>> import tunelab
            >>> study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler())
            >>> trial = study.ask()
            >>> lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)            # log-uniform
            >>> dropout = trial.suggest_float("dropout", 0.0, 0.5, step=0.1)     # 0.0, 0.1, ..., 0.5
            >>> 1e-5 <= lr <= 1e-1, dropout in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
            (True, True)
            >>> trial.suggest_float("lr", 1e-5, 1e-1, log=True) == lr           # asked again: the same value
            True
            >>> study.tell(trial, lr).state.value
            'COMPLETE'
        """
        dist = self._build(name, Float, low, high, log=log, step=step, prior=prior)
        return self.suggest(name, dist)  # type: ignore[return-value]

    def suggest_int(
        self, name: str, low: int, high: int, *, log: bool = False, step: int = 1, prior: Prior | None = None
    ) -> int:
        """An integer in ``[low, high]``, every ``step``, or log-uniform with ``log=True`` (``prior``: a belief,
        :mod:`tunelab.priors`)."""
        return self.suggest(name, self._build(name, Int, low, high, log=log, step=step,  # type: ignore[return-value]
                                              prior=prior))

    # The type of the value follows the choices (as Optuna's): ``optimizer: str = trial.suggest_categorical(
    # "optimizer", ["adam", "sgd"])`` type-checks; mixed choices give the union.
    @overload
    def suggest_categorical(
        self, name: str, choices: Sequence[None], *, prior: Sequence[float] | None = None
    ) -> None: ...
    @overload
    def suggest_categorical(
        self, name: str, choices: Sequence[bool], *, prior: Sequence[float] | None = None
    ) -> bool: ...
    @overload
    def suggest_categorical(
        self, name: str, choices: Sequence[int], *, prior: Sequence[float] | None = None
    ) -> int: ...
    @overload
    def suggest_categorical(
        self, name: str, choices: Sequence[float], *, prior: Sequence[float] | None = None
    ) -> float: ...
    @overload
    def suggest_categorical(
        self, name: str, choices: Sequence[str], *, prior: Sequence[float] | None = None
    ) -> str: ...
    @overload
    def suggest_categorical(
        self, name: str, choices: Sequence[ParamValue], *, prior: Sequence[float] | None = None
    ) -> ParamValue: ...
    def suggest_categorical(
        self, name: str, choices: Sequence[ParamValue], *, prior: Sequence[float] | None = None
    ) -> ParamValue:
        """One of ``choices`` (None, bool, int, float or str values); ``prior``: a probability per choice.

        Examples:
            A parameter that exists only for one choice (a conditional parameter):

            >>> import tunelab
            >>> def objective(trial):
            ...     optimizer = trial.suggest_categorical("optimizer", ["sgd", "adam"])
            ...     if optimizer == "sgd":
            ...         trial.suggest_float("momentum", 0.0, 0.99)
            ...     return 0.1 if optimizer == "adam" else 0.2
            >>> study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler())
            >>> study.optimize(objective, n_trials=10)
            >>> sorted({t.params["optimizer"] for t in study.trials})
            ['adam', 'sgd']
            >>> all(("momentum" in t.params) == (t.params["optimizer"] == "sgd") for t in study.trials)
            True
        """
        if isinstance(choices, (list, tuple)):
            choices = tuple(choices)
        return self.suggest(name, self._build(name, Categorical, choices, prior=prior))

    def suggest_bool(self, name: str, p: float = 0.5) -> bool:
        """True with probability ``p`` under random search (an on/off switch)."""
        return self.suggest(name, self._build(name, Bool, p))  # type: ignore[return-value]

    @staticmethod
    def _build(name: str, cls: type[Distribution], *args: Any, **kwargs: Any) -> Distribution:
        _check_name(name)
        try:
            return cls(*args, **kwargs)
        except InvalidDistributionError as e:
            raise name_error(name, e) from None

    def suggest(self, name: str, distribution: Distribution) -> ParamValue:
        """A value for ``name`` drawn from ``distribution`` (the general form of ``suggest_*``).

        Suggesting the same name again in one trial returns the same value (it must fit the
        distribution given again: DistributionConflictError otherwise).
        """
        _check_name(name)
        if not isinstance(distribution, Distribution):
            raise ConfigError(f"parameter '{name}': expected a distribution, got {distribution!r}")
        if name in self._params:
            value = self._params[name]
            if not self._dists[name].compatible_with(distribution):
                raise DistributionConflictError(
                    f"parameter '{name}' was suggested twice in trial {self.number} with different "
                    f"distributions: {self._dists[name]!r} and {distribution!r}"
                )
            # A range that changed within the trial: its value must fit both (a grid that shifts its
            # edges takes values past the declared range on purpose).
            if not distribution.contains(value) and not self._suggestions.sampler.extends_ranges:
                raise DistributionConflictError(
                    f"parameter '{name}' was suggested twice in trial {self.number}: its value {value!r}, "
                    f"drawn from {self._dists[name]!r}, is outside {distribution!r}; suggest it with one "
                    "range per trial (or use another name for the second)"
                )
            return value
        self._check_running()  # a new parameter of a finished trial would be in its params, never stored
        self._suggestions.register(name, distribution)
        if name in self._fixed:
            try:
                value = distribution.cast(self._fixed[name])
            except InvalidDistributionError as e:  # this trial fails, the study goes on (not a ConfigError)
                raise EnqueuedValueError(f"trial {self.number}: the enqueued value {self._fixed[name]!r} of parameter "
                                         f"'{name}' does not fit {distribution!r}: {e}") from None
        elif name in self._plan and (
            planned := _planned(name, self._plan[name], distribution, self._suggestions.sampler.extends_ranges)
        ) is not None:
            value, distribution = planned
        else:  # define-by-run, or a plan past a range narrowed since the trials it was made from
            value = self._suggestions.sample(self._ctx, name, distribution)
        self._params[name] = value
        self._dists[name] = distribution
        self._unsaved[name] = None
        return value

    def suggest_space(self, space: Mapping[str, SpaceEntry]) -> dict[str, Any]:
        """Suggest every active parameter of a declared space; return their values (``Any`` each, as
        :attr:`params`: ``train(**trial.suggest_space(space))`` type-checks).

        Conditional parameters are suggested only when their condition holds.
        """
        space = validate_space(space)
        values: dict[str, Any] = {}
        for name, entry in space.items():
            if isinstance(entry, Conditional) and not entry.is_active(values):
                continue
            values[name] = self.suggest(name, unwrap(entry))
        return values

    # -- reading -----------------------------------------------------------------------------
    @property
    def trial_id(self) -> int:
        """The trial's id in the storage (unique across studies; ``number`` is per study)."""
        return self._trial_id

    @property
    def params(self) -> dict[str, Any]:
        """The parameters suggested so far (a copy). Typed ``Any`` per value, as Optuna's, so that
        ``train(**trial.params)`` and ``lr: float = trial.params["lr"]`` type-check."""
        return dict(self._params)

    @property
    def distributions(self) -> dict[str, Distribution]:
        """The distributions of the parameters suggested so far."""
        return dict(self._dists)

    @property
    def user_attrs(self) -> dict[str, Any]:
        """User attributes set so far."""
        return dict(self._user_attrs)

    @property
    def system_attrs(self) -> dict[str, Any]:
        """What tunelab recorded for this trial (e.g. the sampler's stage and ranges)."""
        return dict(self._ctx.recorded)

    @property
    def study(self) -> Study:
        """The study this trial belongs to (e.g. to read another trial's checkpoint)."""
        return self._study

    # -- checkpoints -------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        """This trial's folder, ``<study.artifact_dir>/trial-<number>`` (created on first use).

        Checkpoints go in ``step-<step>/`` folders inside it, through :meth:`checkpoint`; other
        files may be put there too (they survive the retention policy).
        """
        return self._checkpoints.trial_dir(self.number, create=not self._finished)

    def checkpoint(self, step: int) -> AbstractContextManager[Path]:
        """A fresh folder to write the checkpoint of ``step`` into, atomically::

            with trial.checkpoint(epoch) as folder:
                tunelab.save_torch(folder, model, optimizer, scheduler)

        It becomes ``checkpoint_dir / f"step-{step}"`` when the block ends without an exception
        (nothing is kept otherwise). This trial's checkpoints after ``step`` are then deleted (a
        roll-back's abandoned future) and the study's policy keeps the ``keep_last`` newest.
        The hyperparameters in effect (:attr:`live_params`) are written into it too
        (``tunelab-params.json``), so that a roll-back to it resumes with them.
        """
        self._check_running()
        if isinstance(step, numbers.Integral) and not isinstance(step, bool):
            step = int(step)  # a numpy integer, as report() takes it
        self._writer.write_reports()  # the stored curve reaches the checkpoint's step (a roll-back reads it)
        return self._checkpoint_with_params(self._checkpoints.write(self.number, step), step)

    @contextmanager
    def _checkpoint_with_params(self, writing: AbstractContextManager[Path], step: int) -> Iterator[Path]:
        with writing as folder:
            yield folder
            write_checkpoint_params(folder, step, self.live_params)

    def checkpoints(self) -> list[Checkpoint]:
        """This trial's stored checkpoints, ``(step, path)`` pairs, oldest step first."""
        return self._checkpoints.checkpoints(self.number)

    def latest_checkpoint(self) -> Checkpoint | None:
        """This trial's newest checkpoint, ``(step, path)``, or None (e.g. to resume)."""
        return self._checkpoints.find(self.number)

    # -- live hyperparameters (babysitting) --------------------------------------------------
    @property
    def branch(self) -> Branch | None:
        """Where this trial starts, when it is a branch of another (``tunelab rollback``, a
        resumed run): the parent, the step and checkpoint it starts from, the changed values."""
        return branch_of(self._ctx.recorded)

    @property
    def resume_from(self) -> Checkpoint | None:
        """The checkpoint this trial must load before training (a branch's start), or None.

        ConfigError when a branch's checkpoint is missing on disk: the run cannot go on from it.
        """
        branch = self.branch
        if branch is None:
            return None
        if not branch.checkpoint.is_dir():
            raise ConfigError(
                f"trial {self.number} branches from trial {branch.parent} at step {branch.step}, but its "
                f"checkpoint {branch.checkpoint} is gone; roll back to a checkpoint that is kept "
                "(tunelab tree lists them)"
            )
        return Checkpoint(branch.step, branch.checkpoint)

    @property
    def live_params(self) -> dict[str, ParamValue]:
        """Every hyperparameter of this trial as it is now: the suggested and enqueued values with
        the changes applied so far (by :meth:`sync_live`) laid over them."""
        if self._live is None:
            return {**self._fixed, **self._params}
        return {**self._fixed, **self._params, **self._live.values}

    def live(self, name: str, step: float | None = None) -> ParamValue:
        """The current value of hyperparameter ``name``, which may change while the trial trains::

            for step in range(n_steps):
                for group in optimizer.param_groups:
                    group["lr"] = trial.live("lr", step)   # a `tunelab set RUN lr=...` applies here

        With ``step``, first applies the changes asked for since the last call (see :meth:`sync_live`).
        """
        if step is not None:
            self.sync_live(step)
        values = self.live_params
        if name not in values:
            raise ConfigError(
                f"trial {self.number} has no hyperparameter {name!r} (it has {', '.join(sorted(values)) or 'none'}): "
                "suggest it before reading it live"
            )
        return values[name]

    def sync_live(self, step: float, *, force: bool = False, **extra: Any) -> dict[str, ParamValue]:
        """Apply the hyperparameter changes asked for since the last sync, as taking effect at
        ``step`` (the step about to run, in the loop's own unit); return the changed values.

        Reads the trial's row at most every :attr:`live_poll_seconds` (unless ``force``); each
        application is stored in ``system_attrs["live_schedule"]`` with ``step`` and ``extra``
        (JSON) and passed to the callbacks of :meth:`on_live_change`.
        """
        self._check_running()
        return self._live_state().sync(_live_step(step), force=force, **extra)

    def on_live_change(self, callback: LiveCallback) -> None:
        """Call ``callback(step, changes)`` whenever changes take effect."""
        if not callable(callback):
            raise ConfigError(f"on_live_change(callback) needs a function callback(step, changes), got {callback!r}")
        self._live_state().on_change(callback)

    def declare_live(self, names: Sequence[str]) -> None:
        """Say which hyperparameters the training loop can change while it runs: ``tunelab set``
        then refuses others with a clear error instead of recording a change nothing applies."""
        self._check_running()
        if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):
            raise ConfigError(f"declare_live(names) needs a list of hyperparameter names, got {names!r}")
        self._ctx.record(LIVE_NAMES, sorted(set(names)))
        self._write_pending()

    def stored_live_state(self) -> tuple[bool, int]:
        """``(stop requested, number of live requests)`` as stored now: what a watcher thread polls to
        learn that :meth:`sync_live` has work, without applying anything (a light read of two
        attributes; safe from another thread, unlike every other method of a trial)."""
        stored = self._writer.stored_system_attrs((STOP_REQUESTED, LIVE_REQUESTS))
        requests = stored[LIVE_REQUESTS]
        return stored[STOP_REQUESTED] is not None, len(requests) if isinstance(requests, list) else 0

    def watch_live_state(self, callback: Callable[[], None]) -> Callable[[], None] | None:
        """Call ``callback()`` whenever this trial's stop request or live requests are written, where
        the storage sees every write (in memory, its served workers' writes included), in the thread
        that wrote them (safe from any thread, like :meth:`stored_live_state`); once at once when
        some are already stored (asked before the watch began). Return the function that stops
        the calls, or None where the storage cannot tell: poll :meth:`stored_live_state` then."""
        stop = self._writer.watch((STOP_REQUESTED, LIVE_REQUESTS), callback)
        if stop is not None:
            stored = self._writer.stored_system_attrs((STOP_REQUESTED, LIVE_REQUESTS))
            if stored[STOP_REQUESTED] is not None or stored[LIVE_REQUESTS]:
                callback()
        return stop

    def watch_stop_requests(self, watched: bool) -> None:
        """Say that something else reads this trial's stop request while it trains (a framework
        callback's watcher, which then stops the loop through :meth:`sync_live`): :meth:`should_prune`
        then skips its own read (about 0.2 ms on SQLite) and answers from what was last read."""
        self._stop_watched = bool(watched)

    @property
    def gather_reports(self) -> bool:
        """Whether reports that come faster than the storage writes them cheaply are gathered.

        Off by default: every :meth:`report` is written at once (another process, the dashboard,
        ``tunelab suggest`` see it at once, and a killed worker loses nothing it reported). Turn
        it on for a loop that reports every few milliseconds (a boosting round; the XGBoost and
        LightGBM callbacks do): the storage then takes at most about 0.2% of the loop's time, each
        gathered batch is written in one transaction at most 0.5 s later (by a background thread
        when no report follows), at a checkpoint, at :meth:`flush` and at the trial's end, and
        the stop request that :meth:`should_prune` answers from is read at the same pace, by that
        thread. The in-memory storage,
        where a write costs next to nothing, writes at once either way.
        """
        return self._writer.gathering

    @gather_reports.setter
    def gather_reports(self, on: bool) -> None:
        if not isinstance(on, bool):
            raise ConfigError(f"gather_reports must be True or False, got {on!r}")
        if not on:
            self._writer.write_reports()
        self._writer.gathering = on

    @property
    def stop_requested(self) -> bool:
        """Whether the last read of :meth:`sync_live` saw a stop request (a roll-back, the dashboard's
        stop button): a loop may then call :meth:`should_prune` (which records it) and raise
        :class:`tunelab.TrialPruned` at once instead of at its next evaluation."""
        return self._live is not None and self._live.stop_requested

    @property
    def live_poll_seconds(self) -> float:
        """How often, at most, :meth:`sync_live` reads the storage (default 0.5 s; 0: every call)."""
        return self._live.poll_seconds if self._live is not None else self._poll_seconds

    @live_poll_seconds.setter
    def live_poll_seconds(self, seconds: float) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
            raise ConfigError(f"live_poll_seconds must be a number of seconds >= 0, got {seconds!r}")
        self._poll_seconds = float(seconds)  # kept here until the live state is needed (a fit's start reads it)
        if self._live is not None:
            self._live.poll_seconds = self._poll_seconds

    def _live_state(self) -> LiveParams:
        if self._live is None:
            self._write_pending()  # `tunelab set` checks names and kinds against the stored parameters

            def write(key: str, value: Any) -> None:
                self._ctx.record(key, value)
                self._write_pending()

            def read() -> dict[str, Any]:  # the two attributes a live loop polls, not the whole row
                found = self._writer.stored_system_attrs((STOP_REQUESTED, LIVE_REQUESTS))
                if found[STOP_REQUESTED] is not None:
                    self._stop_request = found[STOP_REQUESTED]  # should_prune needs no read of its own then
                return {key: value for key, value in found.items() if value is not None}

            self._live = LiveParams({**self._fixed, **self._params}, read, write, self._ctx.recorded)
            self._live.poll_seconds = self._poll_seconds
        return self._live

    # -- writing ---------------------------------------------------------------------------
    def set_user_attr(self, key: str, value: Any) -> None:
        """Attach JSON data to the trial (written with the next report or at the end).

        Numpy numbers and arrays (in lists and dicts too) are stored as the Python values they hold.
        Raises :class:`~tunelab.errors.AttributeValueError` (the trial fails, the study goes on)
        when ``value`` is not JSON data: NaN, infinity, an object.
        """
        self._check_running()
        if not isinstance(key, str) or not key:
            raise ConfigError(f"attribute keys must be non-empty strings, got {key!r}")
        value, problem = json_data(value)
        if problem is not None:
            raise AttributeValueError(f"set_user_attr('{key}', {shown(value)}): {problem}; {JSON_RULE}")
        self._user_attrs[key] = value
        self._unsaved_attrs[key] = value

    def set_constraint(
        self, name: str, value: float, *, upper: float | None = None, lower: float | None = None
    ) -> None:
        """Record a measured quantity and its bound: the trial is feasible when every bound holds.

        ``trial.set_constraint("peak_memory_gb", 9.1, upper=8.0)`` says the trial used 9.1 GB where
        8 GB was allowed. An infeasible trial is never the best (:attr:`Study.best_trial`,
        :attr:`Study.best_trials`); samplers see how far it missed (``FrozenTrial.violation``).
        Written with the next report or at the end (``system_attrs["constraints"]``); setting a
        name again replaces it. A bound that is not a number, or neither bound, is a ConfigError;
        a value that is NaN or infinite an AttributeValueError (the trial fails, the study goes on).

        Examples:
            >>> import tunelab
            >>> study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler())
            >>> trial = study.ask()
            >>> trial.set_constraint("peak_memory_gb", 9.1, upper=8.0)
            >>> frozen = study.tell(trial, 0.1)
            >>> frozen.feasible, round(frozen.violation, 2)
            (False, 1.1)
        """
        self._check_running()
        if not isinstance(name, str) or not name:
            raise ConfigError(f"constraint names must be non-empty strings, got {name!r}")
        bounds: dict[str, float | None] = {}
        for side, bound in (("lower", lower), ("upper", upper)):
            if bound is None:
                bounds[side] = None
                continue
            number = bound if isinstance(bound, numbers.Real) and not isinstance(bound, bool) else None
            if number is None or not math.isfinite(_float_or_inf(number)):
                raise ConfigError(
                    f"constraint {name!r}: {side}={bound!r} must be a finite number (or None for no bound)"
                )
            bounds[side] = float(bound)
        if bounds["lower"] is None and bounds["upper"] is None:
            raise ConfigError(
                f"constraint {name!r} needs a bound: set_constraint({name!r}, value, upper=...) and/or lower=..."
            )
        if bounds["lower"] is not None and bounds["upper"] is not None and bounds["lower"] > bounds["upper"]:
            raise ConfigError(f"constraint {name!r}: lower={lower!r} is above upper={upper!r}")
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigError(f"constraint {name!r}: the value must be a number, got {value!r}")
        if not math.isfinite(_float_or_inf(value)):
            raise AttributeValueError(
                f"constraint {name!r}: the measured value is {_float_or_inf(value)}; record a finite number"
            )
        current = dict(self._ctx.recorded.get(CONSTRAINTS_KEY) or {})
        current[name] = {"value": float(value), **bounds}
        self._ctx.record(CONSTRAINTS_KEY, current)

    def report(self, step: int, *values: float, **metrics: float) -> None:
        """Record intermediate metrics at ``step`` (an epoch or iteration), e.g.
        ``trial.report(epoch, train_loss=0.31, val_loss=0.42, val_acc=0.88, lr=1e-3)``.

        Curves are stored as they come (gathered and written together with
        :attr:`gather_reports`); several metrics may be reported per step. Metrics go by name:
        a value given by position (as in Optuna's ``report(value, step)``) is a ConfigError, and so is a value
        that is not a real number (a string such as ``"0.5"``, a bool); NaN and infinities are kept (a
        curve that diverged).
        """
        if values:
            raise ConfigError(
                f"report() takes the step, then each metric by name: trial.report(epoch, val_loss=...), got "
                f"report({step!r}, {', '.join(repr(v) for v in values)}) (Optuna's report(value, step) is the "
                "other way round and unnamed)"
            )
        if self._finished:
            self._check_running()
        if type(step) is not int or not 0 <= step <= _MAX_STEP:
            step = _checked_step(step)
        if not metrics:
            raise ConfigError("report() needs at least one metric, e.g. report(epoch, val_loss=0.3)")
        if "" in metrics:
            raise ConfigError("report() got a metric with an empty name (report(step, **{'': ...})); name it, "
                              "e.g. report(epoch, val_loss=0.3)")
        for v in metrics.values():  # ``metrics`` is this call's own dict: kept as it is when all are floats
            if type(v) is not float:
                metrics = _floats(metrics)
                break
        self._write_pending()
        self._writer.report(step, metrics)
        self._add_to_curves(step, metrics)
        self._last_report = metrics

    def report_steps(self, points: Sequence[tuple[int, Mapping[str, float]]]) -> None:
        """Record several steps at once, in order: ``[(step, {metric: value, ...}), ...]``, as many
        :meth:`report` calls would (the same checks and curves), handed to the storage together: a loop
        that holds its reports back (a boosting callback, between the pruner's rungs) writes them in one
        transaction where the storage gathers reports (:attr:`gather_reports`)."""
        if self._finished:
            self._check_running()
        checked: list[tuple[int, dict[str, float]]] = []
        for step, metrics in points:
            if type(step) is not int or not 0 <= step <= _MAX_STEP:
                step = _checked_step(step)
            if not metrics or "" in metrics:
                raise ConfigError(f"report_steps() needs each step's metrics by name, e.g. [(3, {{'val_loss': 0.3}})], "
                                  f"got {metrics!r} at step {step}")
            checked.append((step, _floats(metrics)))
        if not checked:
            return
        self._write_pending()
        self._writer.report_steps(checked)
        for step, metrics in checked:
            self._add_to_curves(step, metrics)
        self._last_report = checked[-1][1]

    def _add_to_curves(self, step: int, metrics: Mapping[str, float]) -> None:
        curves = self._curves
        for k, v in metrics.items():
            curve = curves.get(k)
            if curve is None:
                curve = curves[k] = Curve()
            curve[step] = v

    def should_prune(self) -> bool:
        """Whether the study's pruner stops this trial after its last report; then raise
        :class:`tunelab.TrialPruned`::

            trial.report(epoch, val_loss=val_loss)
            if trial.should_prune():
                raise tunelab.TrialPruned()

        False when the study has no pruner or nothing was reported yet. A True answer is
        recorded with the trial (``system_attrs["pruned"]``: the step, the metric, its value,
        the rule that fired and the pruner's evidence), and the curve reported so far stays stored.
        A pruner's decision to go on with evidence (a curve prediction) is kept, the latest one,
        in ``system_attrs["prediction"]``.

        Also True, with or without a pruner, once :func:`tunelab.babysit.control.request_stop` asked this trial to
        stop (rule "stopped on request"): each call reads that attribute of the trial's row (about
        0.2 ms on SQLite) until it is seen (in memory only the first: the storage then says when it
        is written); with :attr:`gather_reports` at the same pace as the
        writes, off the training thread, and not at all while a framework callback's watcher reads it
        (:meth:`watch_stop_requests`).
        """
        if self._finished:
            self._check_running()
        request = self._stop_request
        if request is None and not self._stop_told_quiet:  # in memory, once told: the storage says when
            request = self._read_stop_request()
        if request is not None:
            metric = next(iter(self._last_report), None)
            step = value = None
            if metric is not None:
                step = last_step(self._curves[metric])
                value = _json_value(self._curves[metric][step])
            at = request.get("at") if isinstance(request, Mapping) else None
            self._ctx.record("pruned", {
                "step": step, "metric": metric, "value": value,
                "rule": STOPPED_RULE, "detail": f"a stop was requested at {at}" if at else "a stop was requested",
            })
            return True
        if not self._last_report:
            return False
        found = self._pruning.decide(self.number, self._last_report, self._curves)
        if found is None:
            return False
        metric, decision = found
        step = last_step(self._curves[metric])
        record = {"step": step, "metric": metric, "value": _json_value(self._curves[metric][step]),
                  "rule": decision.rule, "detail": decision.detail}
        if decision.evidence is not None:
            record["evidence"] = _json_evidence(decision.evidence)
        if not decision.stop:  # a decision to go on, with evidence: the latest is kept (e.g. a curve prediction)
            self._ctx.record(PREDICTION, record)
            return False
        self._ctx.record("pruned", record)
        return True

    def next_pruning_step(self, after: int) -> int:
        """The first step after ``after`` (the trial's last report) at which the study's pruner could stop this
        trial: its next rung, the median rule's next step past its warm-up, ``2**63 - 1`` when none can (no
        pruner, no rung left, too few trials complete yet: an answer that depends on the other trials holds
        until asked again). A loop that reports many steps a second may report the steps before it together
        and call :meth:`should_prune` from that step on; a stop request (``tunelab stop``) is seen only by
        :meth:`should_prune`, so call it at least every half second as well."""
        return self._pruning.next_decision(self.number, after)

    def mark_pruned(self) -> None:
        """Say that this trial was stopped by its pruner while the objective goes on to return.

        A framework's callback (Lightning, Keras, XGBoost...) cannot raise :class:`tunelab.TrialPruned`
        through the framework's loop: it stops training cleanly instead, and the objective then
        returns (or raises ``TrialPruned``). After ``mark_pruned()`` the trial ends PRUNED either way,
        with its curve, whatever value the objective returns. Call it after :meth:`should_prune`
        answered True (which recorded the decision and its evidence).
        """
        self._check_running()
        self._marked_pruned = True

    @property
    def marked_pruned(self) -> bool:
        """Whether :meth:`mark_pruned` was called: the trial will end PRUNED."""
        return self._marked_pruned

    def flush(self) -> None:
        """Write unsaved parameters, attributes and gathered reports now (the end of the trial does;
        ``report`` writes parameters and attributes, and its points as the storage keeps up); the reports
        a framework callback holds back (:meth:`before_end`) are made first."""
        for report_held in self._before_end:
            report_held()
        self._write_pending()
        self._writer.write_reports()

    def before_end(self, report_held: Callable[[], None]) -> None:
        """Have ``report_held()`` called before the trial's end is recorded, and by :meth:`flush`: a framework
        callback that holds back reports (a boosting round every few milliseconds, reported in batches) makes
        them there, whoever ends training (another callback, an exception). An error it raises at the end is
        logged and the end recorded anyway."""
        if not callable(report_held):
            raise ConfigError(f"before_end(...) needs a function to call, got {report_held!r}")
        self._before_end.append(report_held)

    def _write_pending(self) -> None:
        if not (self._unsaved or self._unsaved_attrs):
            if self._ctx.has_new_records:  # records alone (a declaration, a pruner's prediction): that field alone
                self._writer.update(system_attrs=self._ctx.take_new_records())
            return  # the common case in a training loop: nothing new since the last report
        pending = self._pending()
        if any(pending.values()):
            self._writer.update(**pending)

    def _read_stop_request(self) -> Any:
        """The stored stop request (None when there is none): read at every call (in memory: once,
        then the storage says when one is written), or, with
        :attr:`gather_reports` on a storage where a read costs (about 0.2 ms on SQLite, too much
        before every boosting round), by the process's background thread when the pacer allows,
        the answer taken at the first call after it came."""
        if self._stop_watched or self._stop_request is not None:
            return self._stop_request  # a watcher reads the trial's requests (and sync_live records a stop)
        if not self._writer.paced:
            if self._stop_told is None:  # the first call: a storage that sees every write (in memory) tells
                told = self._writer.watch((STOP_REQUESTED,), self._on_stop_request)
                self._stop_told = False if told is None else told
                self._stop_told_quiet = told is not None
                self._stop_request = self._writer.stored_system_attr(STOP_REQUESTED)  # asked before the watch
            elif self._stop_told is False:  # the others: read at every call
                self._stop_request = self._writer.stored_system_attr(STOP_REQUESTED)
        elif not self._stop_read_due and self._stop_reads.wait() <= 0:
            self._stop_read_due = True
            call_later(0.0, self._read_stop_request_in_background)
        return self._stop_request

    def _on_stop_request(self) -> None:
        """A stop request was just written (the storage's watch, in the writing thread)."""
        self._stop_request = self._writer.stored_system_attr(STOP_REQUESTED)

    def _read_stop_request_in_background(self) -> None:
        """One read of the stop request, on the background thread (see :meth:`_read_stop_request`)."""
        started = time.monotonic()
        try:
            found = self._writer.stored_system_attr(STOP_REQUESTED)
            if found is not None:
                self._stop_request = found
        finally:
            self._stop_reads.ran(started)
            self._stop_read_due = False

    def _pending(self) -> dict[str, Any]:
        out = {
            "params": {k: self._params[k] for k in self._unsaved},
            "distributions": {k: self._dists[k] for k in self._unsaved},
            "user_attrs": dict(self._unsaved_attrs),
            "system_attrs": self._ctx.take_new_records(),
        }
        self._unsaved.clear()
        self._unsaved_attrs.clear()
        return out

    def _finish(
        self, state: TrialState, value: float | tuple[float, ...] | None, error: str | None
    ) -> tuple[TrialState, float | tuple[float, ...] | None, str | None]:
        """Record the trial's end (see :func:`record_end`); return the state, value and error recorded."""
        if self._finished:
            raise TrialStateError(f"trial {self.number} has already been told its result")
        hooks, self._before_end = self._before_end, []
        for report_held in hooks:
            try:
                report_held()
            except Exception:  # the end is recorded whatever a callback's held reports do
                logger.exception("trial %d: reporting what a callback held back failed", self.number)
        self._finished = True  # whatever happens below, this object writes no more
        return record_end(self._writer, self.number, state, value, error, self._pending())

    def _check_running(self) -> None:
        if self._finished:
            raise TrialStateError(f"trial {self.number} is finished; it cannot change")

    def __reduce__(self) -> tuple[Any, ...]:
        """A running trial belongs to the process that runs it (its unsaved parameters, its heartbeat): it
        cannot be copied. TypeError naming what can be."""
        raise TypeError(
            f"trial {self.number} is running in this process and cannot be copied (pickle, deepcopy, sent to a "
            "worker); send what the other side needs instead: trial.params, trial.number, or the finished record "
            f"study.get_trial({self.number}) (a FrozenTrial)"
        )

    def __repr__(self) -> str:
        return f"Trial(number={self.number}, params={self._params!r})"


_MAX_STEP = 2**63 - 1
"""The largest step a storage keeps (a 64-bit integer column)."""


def _float_or_inf(number: numbers.Real) -> float:
    """``float(number)``, or an infinity of its sign for an integer too large for a float (``10**400``)."""
    try:
        return float(number)
    except OverflowError:
        return -math.inf if number < 0 else math.inf


def _checked_step(step: Any) -> int:
    """A report's step as an int, or a ConfigError (a bool, a float, a negative number or one past
    a 64-bit integer is refused)."""
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ConfigError(f"report(step=...) must be a non-negative integer, got {step!r}")
    value = int(step)
    if value > _MAX_STEP:
        raise ConfigError(f"report(step=...) must be at most 2**63 - 1 (the storage keeps 64-bit steps), got {step!r}")
    return value


def _live_step(step: Any) -> int | float:
    """A live change's step as a plain int or float (a numpy number too: it is stored as JSON), or a
    ConfigError (a bool, text, None, NaN or an infinity: the schedule compares steps as numbers)."""
    if isinstance(step, bool) or not isinstance(step, numbers.Real) or not math.isfinite(float(step)):
        raise ConfigError(
            f"sync_live(step=...) and live(name, step) need the step about to run as a finite number (the loop's "
            f"own unit, e.g. the optimizer step or a fractional epoch), got {step!r}"
        )
    return int(step) if isinstance(step, numbers.Integral) else float(step)


def _floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Reported metrics as floats, or a ConfigError naming the first that is not a real number
    (:func:`~tunelab.study.verdict.real_metric`)."""
    return {k: v if type(v) is float else real_metric(k, v) for k, v in metrics.items()}


#: Pauses (seconds) before each round of attempts at a trial's final write: a storage that fails for
#: a moment (a busy disk, a reconnect) still gets the result; one that keeps failing is given up.
FINAL_WRITE_PAUSES = (0.0, 0.2, 0.5, 1.0, 2.0)
_MAX_WHY = 1000


def record_end(
    writer: TrialWriter,
    number: int,
    state: TrialState,
    value: float | tuple[float, ...] | None,
    error: str | None,
    fields: Mapping[str, Any] | None = None,
    pauses: Sequence[float] = FINAL_WRITE_PAUSES,
) -> tuple[TrialState, float | tuple[float, ...] | None, str | None]:
    """Write a trial's end, the one final write of every path; return the state, value and error recorded.

    Each round tries, in order: the end as given with ``fields`` (unsaved params and attributes);
    FAIL with why that could not be written, keeping only the params (attributes that are not JSON,
    such as NaN, are dropped); a bare FAIL. The first that the storage takes wins. Rounds follow
    ``pauses``; when every round fails the storage is failing, and :class:`StorageError` says so
    (the trial stays RUNNING, and once its heartbeat stops a later process fails it as lost).
    When the storage was only unavailable (a :attr:`StorageError.transient` error: an SQLite file
    locked by another writer, a lost connection) the end as given is tried again in the next round,
    not replaced by FAIL at once: a result is turned into FAIL only in the last round.
    TrialStateError when the trial was finished already (by another process, as lost).
    """
    fields = dict(fields or {})
    keep = {k: fields[k] for k in ("params", "distributions") if fields.get(k)}
    why = ""
    for i, pause in enumerate(pauses):
        if pause:
            time.sleep(pause)
        try:
            writer.finish(state, value, error, **fields)
            return state, value, error
        except TrialStateError:
            raise
        except Exception as e:  # noqa: BLE001 - bad data or a failing storage: fall back below
            why = error_line(e)
            if getattr(e, "transient", False) and i < len(pauses) - 1:
                continue  # the database was busy or away, not the end unrecordable: the next round tries it again
        reason = _unrecorded(state, value, error, why)
        for fallback in (keep, {}):
            try:
                writer.finish(TrialState.FAIL, None, reason, **fallback)
                return TrialState.FAIL, None, reason
            except TrialStateError:
                raise
            except Exception as e:  # noqa: BLE001 - the storage itself is failing: try again later
                why = error_line(e)
    raise StorageError(
        f"the storage failed while recording the end of trial {number} ({state.value}), "
        f"{len(pauses)} times over {sum(pauses):g}s: {why}. The trial stays RUNNING until its "
        "heartbeat goes stale, when the next process of the study marks it FAIL"
    )


def error_line(e: BaseException) -> str:
    """One line on what went wrong (a database driver's message can run to its SQL and parameters)."""
    text = str(getattr(e, "orig", None) or e).strip().splitlines()
    line = f"{type(e).__name__}: {text[0] if text else ''}"
    return line if len(line) <= _MAX_WHY else line[: _MAX_WHY - 3] + "..."


def _unrecorded(state: TrialState, value: float | tuple[float, ...] | None, error: str | None, why: str) -> str:
    if state == TrialState.FAIL and error:
        return f"{error}\n(recorded without its attributes: {why})"
    got = f"{state.value} with value {value!r}" if value is not None else state.value
    return f"the trial ended {got}, but that could not be recorded: {why}"


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"parameter names must be non-empty strings, got {name!r}")


def _planned(
    name: str, value: ParamValue, distribution: Distribution, widen: bool
) -> tuple[ParamValue, Distribution] | None:
    """A value the sampler planned, typed for ``distribution``; past its range, None unless ``widen``.

    A grid that shifts past the edge of the declared range proposes such values on purpose
    (``widen``, :attr:`Sampler.extends_ranges`): the trial records the range it actually used.
    Other samplers plan over the ranges of earlier trials; a value past a range the objective
    has narrowed since is not used (None: the sampler's :meth:`~Sampler.sample` decides).
    """
    if distribution.contains(value) or (isinstance(distribution, Int) and isinstance(value, float)
                                        and value.is_integer() and distribution.contains(int(value))):
        return distribution.cast(value), distribution
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not isinstance(distribution, (Float, Int)) or not numeric:
        raise ConfigError(
            f"parameter '{name}': the sampler planned {value!r}, which {distribution!r} cannot take; "
            "make the sampler's space and the objective's suggestion agree"
        )
    assert isinstance(value, (int, float))
    if not widen:
        return None
    low, high = min(distribution.low, value), max(distribution.high, value)
    if isinstance(distribution, Int):
        step = distribution.step if (int(value) - distribution.low) % distribution.step == 0 else 1
        widened: Distribution = Int(int(low), int(high), log=distribution.log, step=step, prior=distribution.prior)
        return int(value), widened
    step_f = distribution.step
    if step_f is not None:
        ratio = (value - distribution.low) / step_f
        span = (high - low) / step_f
        if abs(ratio - round(ratio)) > 1e-9 or abs(span - round(span)) > 1e-9:
            step_f = None
    return float(value), Float(low, high, log=distribution.log, step=step_f, prior=distribution.prior)


def _json_evidence(value: Any) -> Any:
    """A pruner's evidence as a stored attribute holds it: its NaN and infinities (a metric reported as
    NaN, which Pareto ASHA ranks last) as None, at any depth, so that the decision can be recorded."""
    if isinstance(value, float):
        return _json_value(value)
    if isinstance(value, Mapping):
        return {k: _json_evidence(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_evidence(v) for v in value]
    return value


def _json_value(value: float) -> float | None:
    """A reported value as a stored attribute holds it: None for NaN and infinities, which JSON has no
    number for (the decision's detail names the value)."""
    return value if math.isfinite(value) else None
