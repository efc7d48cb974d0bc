"""The Study: ask for trials and tell their results, or let it optimize; its results.

The Study coordinates; it does not sample (the sampler does), remember (the
storage does) or run processes (the executor does). Creating, loading and deleting
studies is :mod:`tunelab.study.factory`; judging what an objective returned,
:mod:`tunelab.study.verdict`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.checkpoints import (
    Checkpoint,
    CheckpointPolicy,
    CheckpointStore,
    store_for_study,
)
from tunelab.distributions import Distribution, ParamValue
from tunelab.errors import (
    ConfigError,
    SearchExhausted,
    TrialNotFoundError,
    TrialStateError,
)
from tunelab.history import History
from tunelab.multiobjective import feasible_complete, losses, non_dominated_sort, pareto_front_trials
from tunelab.pruners import ParetoPruner, Pruner
from tunelab.records import (
    FrozenTrial,
    StudyRecord,
    TrialState,
    missing_attribute,
    sort_key,
    study_directions,
    study_objective_names,
)
from tunelab.samplers import Sampler
from tunelab.samplers.base import SamplingContext
from tunelab.space import SpaceEntry, validate_space
from tunelab.storage import BaseStorage, Curves, MetricPoint
from tunelab.study.enqueue import check_enqueued, check_user_attrs
from tunelab.study.failures import shell_word, summarize_error
from tunelab.study.optuna_names import optuna_keywords
from tunelab.study.replay import (
    check_replayable,
    stored_width,
    wait_for_results,
)
from tunelab.study.services import Pruning, Suggestions, TrialServices, TrialWriter
from tunelab.study.trial import Trial, record_end
from tunelab.study.verdict import judge
from tunelab.study.warm import load_sources, stored_sources

if TYPE_CHECKING:
    import pandas as pd

    from tunelab.execution.ray import RayExecutor

logger = logging.getLogger("tunelab")

Objective = Callable[[Trial], Any]
"""``f(trial)``: a number, or for a study with several objectives a tuple, list or mapping by name."""
Callback = Callable[["Study", FrozenTrial], None]


class Study:
    """A named search over one objective, kept in a storage. Use :func:`create_study` or
    :func:`load_study` to get one.

    Attributes:
        name: the study's name.
        direction: 'minimize' or 'maximize' (the first objective's, in a study with several).
        directions: every objective's direction (one for a single-objective study).
        objective_names: every objective's name (``('value',)`` for a single-objective study
            created without names).
        seed: every random draw of the study derives from it (stored, so a study is
            reproducible even when no seed was given).
        sampler: decides parameter values.
        pruner: stops bad trials early (``trial.should_prune()``), or None.
        artifact_dir: this study's own folder (checkpoints: ``trial-<n>/step-<s>/``).
        checkpoint_policy: which checkpoints are kept (:class:`~tunelab.checkpoints.CheckpointPolicy`).
    """

    def __init__(
        self,
        storage: BaseStorage,
        record: StudyRecord,
        sampler: Sampler,
        space: Mapping[str, SpaceEntry] | None = None,
        pruner: Pruner | None = None,
    ) -> None:
        self._storage = storage
        self._record = record
        self._for_reading = False  # opened by read_study(): its sampler is a stand-in, never to run trials
        self._stopping = False  # stop() was called: the running optimize() starts no new trial
        self._reserved_here: set[int] = set()  # trial ids this object's reserve_trial() returned: known to be ours
        self._study_id = record.study_id
        self.name = record.name
        self.direction = record.direction
        self.directions: tuple[str, ...] = study_directions(record)
        names = study_objective_names(record)
        self.objective_names: tuple[str, ...] = names if names is not None else ("value",)
        self.seed = record.seed
        check_objectives_support(self.directions, sampler, pruner)
        self._history = History(storage, record, space)
        self._history.replay_width = stored_width(record.system_attrs)
        sources = stored_sources(record.system_attrs)
        self._history.set_sources((lambda: load_sources(sources, storage)) if sources else None)
        check_replayable(self._history.replay_width, sampler, pruner)
        self._suggestions = Suggestions(storage, record, sampler, self._history, space)
        self._pruning = Pruning(pruner, self._history, record.direction, self.objective_names)
        self._checkpoints = store_for_study(record.system_attrs, storage.url, record.name)
        self._services = TrialServices(record.seed, self._suggestions, self._pruning, self._checkpoints, storage)
        self.artifact_dir: Path = self._checkpoints.root
        self.checkpoint_policy: CheckpointPolicy = self._checkpoints.policy

    def __reduce__(self) -> tuple[Any, ...]:
        """A copy (``pickle``, ``copy.deepcopy``, an objective or a Ray task that holds the study) reopens the
        study from its storage URL, with this sampler, pruner and declared space. A study in memory has no
        URL another process could open: TypeError naming the fix."""
        url = self._storage.url
        if url is None or not self._storage.shareable_across_processes:
            raise TypeError(
                f"study {self.name!r} is kept in {self._storage!r}, which another process cannot open, so it "
                "cannot be copied (pickle, deepcopy, sent to a worker); create it with a storage URL, e.g. "
                "storage='sqlite:///tunelab.db', or pass its name and URL and call load_study there"
            )
        from tunelab.study.runner import _absolute_url  # (the runner imports this module)

        sampler, pruner, space = self._suggestions.sampler, self._pruning.pruner, self._history.space
        return (_reopen, (self.name, _absolute_url(url), sampler, pruner, space, self._for_reading))

    if not TYPE_CHECKING:  # hidden from type checkers, which would then accept any attribute

        def __getattr__(self, name: str) -> Any:
            raise missing_attribute(self, name, STUDY_HINTS)

    def __repr__(self) -> str:
        if self.is_multi_objective:
            return f"Study(name={self.name!r}, directions={list(self.directions)!r}, storage={self._storage!r})"
        return f"Study(name={self.name!r}, direction={self.direction!r}, storage={self._storage!r})"

    @property
    def is_multi_objective(self) -> bool:
        """Whether the study has several objectives (``create_study(directions=[...])``)."""
        return len(self.directions) > 1

    @property
    def storage(self) -> BaseStorage:
        """The storage this study lives in."""
        return self._storage

    @property
    def study_id(self) -> int:
        """The study's id in its storage (what storage calls such as ``get_metric_at`` take)."""
        return self._study_id

    @property
    def sampler(self) -> Sampler:
        """Decides parameter values (may be replaced between trials)."""
        return self._suggestions.sampler

    @sampler.setter
    def sampler(self, sampler: Sampler) -> None:
        if not isinstance(sampler, Sampler):
            raise ConfigError(f"sampler must be a tunelab sampler such as RandomSampler(), got {sampler!r}")
        check_objectives_support(self.directions, sampler, None)
        check_replayable(self._history.replay_width, sampler, self.pruner)
        self._suggestions.sampler = sampler

    @property
    def pruner(self) -> Pruner | None:
        """Stops bad trials early (``trial.should_prune()``), or None."""
        return self._pruning.pruner

    @pruner.setter
    def pruner(self, pruner: Pruner | None) -> None:
        if pruner is not None and not isinstance(pruner, Pruner):
            raise ConfigError(f"pruner must be a tunelab pruner such as MedianPruner(), got {pruner!r}")
        check_objectives_support(self.directions, None, pruner)
        check_replayable(self._history.replay_width, self.sampler, pruner)
        self._pruning.pruner = pruner

    @property
    def space(self) -> Mapping[str, SpaceEntry] | None:
        """The declared search space every trial suggests, or None (define-by-run)."""
        return self._suggestions.space

    @property
    def checkpoint_store(self) -> CheckpointStore:
        """The study's checkpoint folders, for workflows that copy or clean them (babysitting)."""
        return self._checkpoints

    # -- reading ---------------------------------------------------------------------------
    @property
    def trials(self) -> list[FrozenTrial]:
        """Every trial, ordered by number."""
        return self._storage.get_trials(self._study_id)

    def get_trials(self, states: Sequence[TrialState] | None = None) -> list[FrozenTrial]:
        """Trials ordered by number, optionally only those in ``states`` (TrialStates or their names; one
        state alone is taken as a list of it)."""
        return self._storage.get_trials(self._study_id, None if states is None else _checked_states(states))

    @property
    def best_trial(self) -> FrozenTrial:
        """The feasible COMPLETE trial with the best value; TrialNotFoundError if there is none.

        A trial whose constraints do not hold (``trial.set_constraint``) is never the best. A study
        with several objectives has no single best trial: ConfigError, pointing to :attr:`best_trials`.
        """
        self._refuse_multi_objective("best_trial")
        best = find_best_trial(self._storage, self._study_id, self.direction)
        if best is not None and not best.feasible:
            raise TrialNotFoundError(
                f"study {self.name!r} has no feasible COMPLETE trial: every COMPLETE trial violates "
                "one of its constraints (trial.constraints says which)"
            )
        if best is None:
            raise TrialNotFoundError(self._no_best_message())
        return best

    @property
    def best_trials(self) -> list[FrozenTrial]:
        """The Pareto front: the feasible COMPLETE trials no other such trial dominates, by number.

        For a single objective, the best trial (or an empty list). Infeasible trials never count.

        Examples:
            Accuracy against latency: the objective returns one value per objective.

            >>> import tunelab
            >>> study = tunelab.create_study(directions=["maximize", "minimize"],
            ...                              objective_names=["val_acc", "latency_ms"], seed=0)
            >>> def objective(trial):
            ...     width = trial.suggest_int("width", 8, 512, log=True)
            ...     trial.set_constraint("params_m", width * 0.01, upper=4.0)   # at most 4M parameters
            ...     return 1.0 - 8.0 / width, 0.05 * width
            >>> study.optimize(objective, n_trials=30)
            >>> front = study.best_trials
            >>> all(t.feasible and t.params["width"] <= 400 for t in front), len(front) > 3
            (True, True)
            >>> list(study.pareto_front().columns[:4])
            ['number', 'state', 'values_val_acc', 'values_latency_ms']
        """
        if not self.is_multi_objective:
            try:
                return [self.best_trial]
            except TrialNotFoundError:
                return []
        return pareto_front_trials(self._storage.get_trials(self._study_id, (TrialState.COMPLETE,)), self.directions)

    def pareto_front(self) -> pd.DataFrame:
        """:attr:`best_trials` as a DataFrame: number, one ``values_<name>`` column per objective,
        ``params_<name>`` per parameter (needs pandas)."""
        from tunelab.study.frames import trials_to_dataframe

        return trials_to_dataframe(self.best_trials, self.objective_names if self.is_multi_objective else None)

    def _refuse_multi_objective(self, what: str) -> None:
        if self.is_multi_objective:
            raise ConfigError(
                f"study {self.name!r} has {len(self.directions)} objectives ({', '.join(self.objective_names)}), "
                f"so it has no single {what}: use study.best_trials (the Pareto front) or study.pareto_front()"
            )

    def _no_best_message(self) -> str:
        """Why there is no best trial: no trials, or how the trials ended and the first failure's error."""
        trials = self._storage.get_trials(self._study_id)
        if not trials:
            return f"study {self.name!r} has no COMPLETE trial: it has no trials yet; run optimize() first"
        failed = [t for t in trials if t.state == TrialState.FAIL]
        if len(failed) == len(trials):
            every = f"all {len(trials)} trials" if len(trials) != 1 else "its one trial"
            head = f"study {self.name!r} has no COMPLETE trial: {every} failed; the first"
        else:
            counts = [(sum(t.state == s for t in trials), s.value.lower()) for s in _NOT_COMPLETE]
            shown = ", ".join(f"{n} {'failed' if s == 'fail' else s}" for n, s in counts if n)
            many = "s" if len(trials) != 1 else ""
            head = f"study {self.name!r} has no COMPLETE trial yet ({len(trials)} trial{many}: {shown})"
            if not failed:
                return head + "; run optimize() (again) to finish some"
            head += "; the first failure"
        first = failed[0]
        return (f"{head} (trial {first.number}): {summarize_error(first.error)} \u2014 "
                f"`tunelab trial {shell_word(self.name)} {first.number}` shows the whole error "
                f"(study.trials[{first.number}].error)")

    @property
    def best_value(self) -> float:
        """The best objective value so far (a study with several objectives: see :attr:`best_trials`)."""
        self._refuse_multi_objective("best_value")
        value = self.best_trial.value
        assert value is not None  # COMPLETE trials always have one
        return value

    @property
    def best_params(self) -> dict[str, Any]:
        """The parameters of the best trial (a study with several objectives: see :attr:`best_trials`).

        Typed ``Any`` per value, as Optuna's, so that ``train(**study.best_params)`` type-checks."""
        self._refuse_multi_objective("best_params")
        return dict(self.best_trial.params)

    @property
    def user_attrs(self) -> dict[str, Any]:
        """The study's user attributes."""
        return dict(self._storage.get_study(self.name).user_attrs)

    def set_user_attr(self, key: str, value: Any) -> None:
        """Attach JSON data to the study (a note, the data set version, ...)."""
        if not isinstance(key, str) or not key:
            raise ConfigError(f"attribute keys must be non-empty strings, got {key!r}")
        self._storage.set_study_attrs(self._study_id, user_attrs=check_user_attrs("set_user_attr", {key: value}))

    @property
    def system_attrs(self) -> dict[str, Any]:
        """What tunelab recorded for the study: its sampler, pruner, space, the recipe's verdicts."""
        return dict(self._storage.get_study(self.name).system_attrs)

    def set_system_attr(self, key: str, value: Any) -> None:
        """Record JSON data of tunelab's own tools (such as the recipe) with the study.

        Your own data goes in :meth:`set_user_attr`; the keys ``sampler``, ``pruner``, ``space``,
        ``artifact_dir`` and ``checkpoint_policy`` belong to the study itself and cannot be set here.
        """
        if not isinstance(key, str) or not key:
            raise ConfigError(f"attribute keys must be non-empty strings, got {key!r}")
        if key in _OWN_SYSTEM_ATTRS:
            raise ConfigError(f"system attribute {key!r} belongs to the study itself and cannot be changed")
        self._storage.set_study_attrs(self._study_id, system_attrs={key: value})

    def get_trial(self, number: int) -> FrozenTrial:
        """Trial ``number`` as stored now (one indexed read); TrialNotFoundError if there is none."""
        if isinstance(number, bool) or not isinstance(number, int):
            raise ConfigError(f"a trial number must be an integer, got {number!r}")
        found = self._trials_numbered(number)
        if not found or found[0].number != number:
            raise TrialNotFoundError(f"study {self.name!r} has no trial number {number}")
        return found[0]

    def get_curves(self, number: int) -> Curves:
        """The learning curves trial ``number`` reported: metric -> (steps, values)."""
        return self._storage.get_curves(self._trial_id(number))

    def get_metric(self, metric: str, steps: Sequence[int] | None = None) -> list[MetricPoint]:
        """Every trial's values of one metric, ``(number, state, step, value)``, in one read.

        Only at ``steps`` when given. For plots of many trials: one query instead of one
        :meth:`get_curves` per trial.
        """
        if not isinstance(metric, str) or not metric:
            raise ConfigError(f"get_metric(metric=...) must be a metric name such as 'val_loss', got {metric!r}")
        return self._storage.get_metric_at(self._study_id, metric, steps)

    def checkpoints(self, number: int) -> list[Checkpoint]:
        """Trial ``number``'s stored checkpoints, ``(step, path)`` pairs, oldest step first."""
        return self._checkpoints.checkpoints(number)

    def checkpoint_path(self, number: int, step: int | None = None) -> Path:
        """The folder of trial ``number``'s checkpoint at ``step`` (its newest when None), e.g. for
        population-based training to copy a better trial's state. TrialNotFoundError if none is
        kept. Read it soon: the owner's next checkpoints may delete it (``keep_last``).
        """
        found = self._checkpoints.find(number, step)
        if found is None:
            at = "any step" if step is None else f"step {step}"
            raise TrialNotFoundError(
                f"study {self.name!r} keeps no checkpoint of trial {number} at {at}; "
                f"study.checkpoints({number}) lists those it keeps"
            )
        return found.path

    def trials_dataframe(self) -> pd.DataFrame:
        """The trials as a pandas DataFrame, one row per trial (needs pandas).

        Columns: ``number``, ``state``, ``value`` (with several objectives one ``values_<name>`` each),
        ``feasible`` and ``constraints_<name>`` when trials recorded constraints, ``datetime_start``,
        ``datetime_complete``, ``duration`` (seconds), ``params_<name>``, ``user_attrs_<key>`` and
        ``error`` (its one-line summary). Every column always (Optuna's ``attrs=`` has no counterpart):
        select with pandas, ``study.trials_dataframe()[["number", "value", "params_lr"]]``.
        """
        from tunelab.study.frames import trials_to_dataframe

        return trials_to_dataframe(self.trials, self.objective_names if self.is_multi_objective else None)

    # -- asking and telling ----------------------------------------------------------------
    def enqueue(
        self,
        params: Mapping[str, ParamValue],
        user_attrs: Mapping[str, Any] | None = None,
        *,
        skip_if_exists: bool = False,
    ) -> int:
        """Queue a configuration to be tried before the sampler's own; return its trial number.

        With ``skip_if_exists`` (as Optuna's ``enqueue_trial``), a configuration some trial of the
        study already has (waiting, running or finished: the same value for each parameter given)
        is not queued again, and that trial's number is returned: every worker of a shared study
        may enqueue the same baseline.

        Parameters not given are sampled as usual when the trial runs. Each value is checked
        before anything is stored, wherever it comes from (this process, a script, the
        dashboard): against the distribution the study stored for the parameter (the kind the
        objective uses; its range, or a wider one the declared space or a recent trial uses),
        else the declared space's, else the one this process has seen; a parameter the study
        does not know yet takes any JSON scalar. A value that does not fit is a ConfigError naming
        the parameter, the value, the range and the fix. A conditional parameter of the declared
        space enqueued without its parents gets them set to the value that switches it on (the first
        one its condition accepts).
        """
        if not isinstance(params, Mapping) or not params:
            raise ConfigError("enqueue() needs a non-empty mapping of parameter name -> value")
        user_attrs = check_user_attrs("enqueue(user_attrs=...)", user_attrs)
        clean, dists = check_enqueued(
            params, self._storage.get_distributions(self._study_id), self.space, self._suggestions.known,
            self._recent_distributions,
        )
        if skip_if_exists:
            for t in self._storage.get_trials(self._study_id):
                if all(k in t.params and t.params[k] == v for k, v in clean.items()):
                    return t.number
        trial = self._storage.create_trial(
            self._study_id, TrialState.WAITING, params=clean, distributions=dists,
            user_attrs=user_attrs, system_attrs={"enqueued": True},
        )
        return trial.number

    def _recent_distributions(self) -> list[dict[str, Distribution]]:
        """The distributions of the newest 100 trials, newest first (ranges may have widened)."""
        newest = self._storage.count_trials(self._study_id)
        trials = self._storage.get_trials(self._study_id, min_number=max(0, newest - 100))
        return [dict(t.distributions) for t in reversed(trials)]

    def ask(self, space: Mapping[str, SpaceEntry] | None = None) -> Trial:
        """Start a trial: an enqueued configuration if one waits, else a new one.

        With a declared ``space`` (or the study's own), its parameters are suggested
        at once and readable from ``trial.params``.

        Examples:
            Your own loop instead of :meth:`optimize`: ask for a trial, train, tell its value.

            >>> import tunelab
            >>> study = tunelab.create_study(direction="maximize", seed=0, sampler=tunelab.RandomSampler())
            >>> for _ in range(5):
            ...     trial = study.ask()
            ...     width = trial.suggest_int("width", 8, 64, log=True)
            ...     frozen = study.tell(trial, 1.0 - 1.0 / width)     # "accuracy" grows with width
            >>> len(study.trials), 8 <= study.best_params["width"] <= 64
            (5, True)

            With a declared space the trial's parameters are drawn at once:

            >>> space = {"lr": tunelab.Float(1e-4, 1e-1, log=True), "optimizer": tunelab.Categorical(["sgd", "adam"])}
            >>> trial = study.ask(space)
            >>> sorted(trial.params)
            ['lr', 'optimizer']
            >>> study.tell(trial, 0.5).state.value
            'COMPLETE'
        """
        if space is not None:
            space = validate_space(space)
        width = self._history.replay_width
        if width is not None:  # refused before a trial number is spent (a FAIL row would shift every later plan)
            self._history.invalidate()
            trials = self._history.trials()
            if not any(t.state == TrialState.WAITING for t in trials):  # (an enqueued trial plans nothing)
                wait_for_results(self._history, max((t.number for t in trials), default=-1) + 1, width, wait=False)
        return self._prepare(self.reserve_trial(), space, wait=False)

    def reserve_trial(self, *, heartbeat: bool = False) -> FrozenTrial:
        """Start the next trial in the storage (an enqueued one first) without deciding its parameters.

        The first half of :meth:`ask`, for executors that start trials in one process and
        run them in another: pass the trial's ``trial_id`` to :meth:`ask_reserved` there.
        The trial is RUNNING from now on; whoever reserved it must see that it finishes.
        Raises :class:`~tunelab.errors.SearchExhausted` when the sampler has nothing left.
        With ``heartbeat``, the trial's heartbeat clock starts now (whoever runs it must beat).
        """
        self._check_can_run("reserve_trial()")
        self._history.invalidate()  # the sampler decides on what is stored now
        if not self.sampler.exhausted(self._history):
            started = self._storage.start_trial(self._study_id, heartbeat=heartbeat)
        else:  # enqueued configurations still run when the sampler has nothing left
            claimed = self._storage.claim_waiting_trial(self._study_id, heartbeat=heartbeat)
            if claimed is None:
                raise SearchExhausted(f"{self.sampler!r} has nothing left to propose")
            started = claimed
        self._reserved_here.add(started.trial_id)
        return started

    def ask_reserved(self, trial: int | FrozenTrial, space: Mapping[str, SpaceEntry] | None = None) -> Trial:
        """The second half of :meth:`ask`: the live Trial of a trial from :meth:`reserve_trial`.

        ``trial`` (its ``trial_id``, or the record :meth:`reserve_trial` returned, which saves a
        read) must belong to this study and still be RUNNING (TrialStateError otherwise). The
        sampler plans its parameters now, as :meth:`ask` would.
        """
        frozen = trial if isinstance(trial, FrozenTrial) else self._storage.get_trial(trial)
        if frozen.trial_id in self._reserved_here:  # reserved by this object: ours, no read needed
            self._reserved_here.discard(frozen.trial_id)
        else:
            self._check_own_trial(frozen)
        if frozen.state != TrialState.RUNNING:
            raise TrialStateError(
                f"trial {frozen.number} is {frozen.state.value}, not RUNNING; ask_reserved() needs a "
                "trial id from reserve_trial() that nobody has finished"
            )
        return self._start(frozen, space)

    def _check_own_trial(self, frozen: FrozenTrial) -> None:
        """TrialStateError naming the trial and both studies when ``frozen`` belongs to another study of the
        storage (trial ids are unique across studies; its number here may be another trial's), before
        anything is planned or written."""
        mine = self._storage.get_trials(self._study_id, min_number=frozen.number, max_number=frozen.number)
        if mine and mine[0].trial_id == frozen.trial_id:
            return
        owner = "another study"
        for summary in self._storage.list_studies():
            record = self._storage.get_study(summary.name)
            rows = self._storage.get_trials(record.study_id, min_number=frozen.number, max_number=frozen.number)
            if rows and rows[0].trial_id == frozen.trial_id:
                owner = f"study '{record.name}'"
                break
        raise TrialStateError(
            f"ask_reserved(): trial {frozen.number} (trial_id {frozen.trial_id}) belongs to {owner}, not to "
            f"study '{self.name}'; call ask_reserved() on the study whose reserve_trial() returned it"
        )

    def _start(self, frozen: FrozenTrial, space: Mapping[str, SpaceEntry] | None) -> Trial:
        """The live Trial of a trial just reserved (validates ``space``; fails the trial if it is bad)."""
        try:
            space = validate_space(space) if space is not None else None
        except ConfigError as e:
            _record_fail(self._storage, frozen, f"could not start: {e}")
            raise
        return self._prepare(frozen, space, wait=True)  # an enqueued value that does not fit: EnqueuedValueError

    def _prepare(self, frozen: FrozenTrial, space: Mapping[str, SpaceEntry] | None, *, wait: bool) -> Trial:
        """Turn a started trial into a Trial: plan its parameters, suggest ``space``.

        In a deterministic study it first waits (``wait``) for the results its plan needs, or raises
        TrialStateError (``wait`` False: :meth:`ask`, whose caller may hold those trials)."""
        self._history.invalidate()  # ... including the trial just started
        # A claimed WAITING trial always carries params (enqueue() requires some); a new one none.
        fixed = dict(frozen.params) if frozen.params else None
        ctx = SamplingContext(frozen.number, self.seed, frozen.system_attrs, fixed)
        trial: Trial | None = None
        try:
            plan = None
            width = self._history.replay_width
            if fixed is None and width is not None:
                wait_for_results(self._history, frozen.number, width, wait=wait)
            if fixed is None or self.sampler.plans_enqueued:
                plan = self._suggestions.plan(ctx)
                recorded = ctx.take_new_records()
                if recorded:  # other workers must see what this trial claimed (e.g. a grid cell)
                    self._storage.update_trial(frozen.trial_id, system_attrs=recorded)
            trial = Trial(self, self._services, frozen, fixed, ctx=ctx, plan=plan)
            space = space if space is not None else self.space
            if space is not None:
                trial.suggest_space(space)
        except BaseException as e:
            # Never leave a trial RUNNING behind. A reservation that found no work (another process
            # took the last grid cell) leaves no row at all where the storage can delete it.
            if isinstance(e, SearchExhausted) and trial is None and self._discard(frozen):
                raise
            what = "interrupted" if isinstance(e, (KeyboardInterrupt, SystemExit)) else "could not start"
            reason = f"{what}: {type(e).__name__}: {e}"
            try:
                if trial is not None:
                    trial._finish(TrialState.FAIL, None, reason)
                else:
                    _record_fail(self._storage, frozen, reason)
            except Exception:  # the storage is failing: the first error is the one to report
                logger.warning("could not record why trial %d could not start", frozen.number, exc_info=True)
            raise
        return trial

    def _discard(self, frozen: FrozenTrial) -> bool:
        """Delete a reserved trial that recorded nothing; False when it stays (then it is failed)."""
        try:
            return self._storage.discard_trial(frozen.trial_id)
        except Exception:  # the storage is failing: fall back to recording the failure
            logger.warning("could not discard trial %d", frozen.number, exc_info=True)
            return False

    def tell(
        self,
        trial: Trial,
        value: Any = None,
        state: TrialState | str | None = None,
        error: str | None = None,
        *,
        values: Any = None,
    ) -> FrozenTrial:
        """Finish a trial from :meth:`ask` with its value (or a state: PRUNED, FAIL).

        A value that is None, NaN or infinite marks the trial FAIL with the reason. A study with
        several objectives takes ``values=[...]`` (or a mapping by objective name; ``value`` may
        carry them too): a wrong number of values, or a NaN or infinity in one, marks the trial
        FAIL naming which objective. A study with one objective takes ``values=[v]`` as ``v``.

        Examples:
            >>> import tunelab
            >>> study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler())
            >>> trial = study.ask()
            >>> study.tell(trial, (trial.suggest_float("x", -1.0, 1.0) - 0.5) ** 2).state.value
            'COMPLETE'
            >>> study.tell(study.ask(), state="PRUNED").state.value      # stopped early
            'PRUNED'
            >>> study.tell(study.ask(), float("nan")).error                 # a diverged run
            'the objective returned NaN (training often diverges so: try a lower learning rate)'
            >>> [t.state.value for t in study.trials]
            ['COMPLETE', 'PRUNED', 'FAIL']
        """
        if not isinstance(trial, Trial):
            number = isinstance(trial, int) and not isinstance(trial, bool)
            raise ConfigError(
                f"tell() needs the Trial returned by ask(), got {trial!r}"
                + ("; a trial number is not enough (the Trial holds its parameters until told): keep "
                   "trial = study.ask() and pass study.tell(trial, value)" if number else "")
            )
        if trial.study is not self and (trial.study.study_id, trial.study.name) != (self.study_id, self.name):
            raise ConfigError(
                f"tell(): trial {trial.number} belongs to study '{trial.study.name}', not '{self.name}'; "
                "tell it to the study whose ask() returned it"
            )
        if values is not None:
            if value is not None:
                raise ConfigError("tell() takes value= or values=, not both")
            value = values  # (values=[v] on a study with one objective is v, as Optuna's tell takes it: judge())
        names = self.objective_names if self.is_multi_objective else None
        if trial.marked_pruned and state in (None, TrialState.COMPLETE, TrialState.COMPLETE.value):
            state = TrialState.PRUNED  # stopped by a framework callback, which let the objective return
        final_state, final_value, final_error = trial._finish(*judge(value, state, error, names=names,
                                                                    name=self.objective_names[0]))
        # The runner records Ctrl-C and stopped workers as "interrupted: ...": keep those resumable.
        interrupted = final_state == TrialState.FAIL and (final_error or "").startswith("interrupted")
        try:
            self._checkpoints.retire(trial.number, final_state, interrupted, self._ranked_complete)
        except Exception:  # the trial is recorded: tidying its folders must not undo that
            logger.warning("could not retire the checkpoints of trial %d", trial.number, exc_info=True)
        several = final_value if isinstance(final_value, tuple) else None
        return FrozenTrial(
            number=trial.number, state=final_state, value=None if several else final_value,  # type: ignore[arg-type]
            params={**trial._fixed, **trial.params},  # as stored: an enqueued value the objective never asked for too
            distributions=trial.distributions, user_attrs=trial.user_attrs,
            system_attrs=trial.system_attrs, datetime_start=trial._datetime_start,
            datetime_complete=datetime.now(timezone.utc),
            error=final_error, trial_id=trial.trial_id, values=several,
        )

    @optuna_keywords
    def optimize(
        self,
        objective: Objective,
        n_trials: int | None = None,
        timeout: float | None = None,
        n_workers: int = 1,
        *,
        space: Mapping[str, SpaceEntry] | None = None,
        catch: type[BaseException] | Sequence[type[BaseException]] = (Exception,),
        trial_timeout: float | None = None,
        callbacks: Sequence[Callback] = (),
        show_progress: bool | None = None,
        heartbeat_interval: float | None = 10.0,
        grace_period: float | None = None,
        requeue_lost_trials: bool = False,
        start_method: str = "spawn",
        executor: RayExecutor | None = None,
        gpus_per_trial: float | None = 0,
        gpus: Sequence[int | str] | None = None,
    ) -> None:
        """Run trials until ``n_trials`` more have finished or ``timeout`` seconds have passed.

        Args:
            objective: ``f(trial) -> float``; it may raise :class:`tunelab.TrialPruned`.
            n_trials: how many trials this call runs (None: until timeout or Ctrl-C).
            timeout: seconds after which no new trial starts.
            n_workers: trials at once; above 1 each runs in its own process, so a
                crashing or hanging objective cannot take the study down. The objective may
                be defined anywhere (a notebook cell, a lambda): what cannot be imported is
                sent by value; an in-memory study is served to its workers by this process.
            space: a declared search space; its parameters are in ``trial.params``.
            catch: exceptions from the objective that mark the trial FAIL and let
                the study go on: a class or a tuple (or list) of classes. Any other exception is
                recorded FAIL, then raised (``catch=()``: every one, as Optuna's default).
                tunelab's ConfigError always stops the study.
            trial_timeout: seconds after the objective starts (planning the parameters does not
                count) after which a trial's process is killed and the trial marked FAIL (runs
                trials in worker processes).
            callbacks: ``f(study, frozen_trial)`` called after each finished trial.
            show_progress: a progress bar; default: when stdout is a terminal.
            heartbeat_interval: seconds between signs of life of a running trial;
                a trial silent for ``grace_period`` is marked FAIL by any worker.
                None turns heartbeats off.
            grace_period: default ``3 * heartbeat_interval``.
            requeue_lost_trials: re-enqueue the parameters of trials lost that way.
            start_method: 'spawn' (default, safe) or 'fork' (for objectives holding
                something that cannot be copied, such as a lock) for worker processes.
            executor: run trials elsewhere, e.g. ``tunelab.RayExecutor()`` runs each as a
                Ray task; it decides how many run at once (keep ``n_workers=1``), and the
                study needs a storage URL its tasks can open.
            gpus_per_trial: GPUs each trial gets: 0 or None (default: none are assigned, nothing is set),
                a whole number of devices (1, 2, ...), or a fraction that divides one device (0.5,
                0.25, 1/3: that many trials share a device; a trial never straddles two). Trials then
                always run in worker processes, even with ``n_workers=1``: each worker owns its
                devices for its life, seen as ``CUDA_VISIBLE_DEVICES`` (and ``TUNELAB_GPUS``) set
                before it imports the objective's module, and a worker that dies or times out is
                replaced by one with the same devices. ``n_workers`` above the trials the devices
                hold at once is lowered to that, with a warning. Each trial records its devices in
                ``system_attrs["gpus"]``. Not with ``executor``: Ray assigns GPUs itself
                (``RayExecutor(num_gpus_per_trial=...)``).
            gpus: the devices to use, ids or UUIDs (``[0, 1]``); default: ``TUNELAB_FAKE_GPUS=N``
                (N fake devices, for tests and machines without a GPU), else ``CUDA_VISIBLE_DEVICES``,
                else what ``nvidia-smi`` lists. Only with ``gpus_per_trial`` > 0.

        Examples:
            >>> import tunelab
            >>> def objective(trial):
            ...     x = trial.suggest_float("x", -5.0, 5.0)
            ...     shift = trial.suggest_categorical("shift", [0.0, 1.0])
            ...     return (x - shift) ** 2
            >>> study = tunelab.create_study(seed=0, sampler=tunelab.TPESampler(n_startup_trials=5))
            >>> study.optimize(objective, n_trials=20)
            >>> study.optimize(objective, n_trials=10)      # ten more: a study goes on where it was
            >>> len(study.trials), study.best_value < 0.5
            (30, True)

            A trial that raises (or returns NaN) is recorded FAIL with its reason, and the study
            goes on:

            >>> def flaky(trial):
            ...     lr = trial.suggest_float("lr", 1e-5, 1.0, log=True)
            ...     if lr > 0.1:
            ...         raise RuntimeError("diverged")
            ...     return lr
            >>> study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler())
            >>> study.optimize(flaky, n_trials=10)
            >>> states = [t.state.value for t in study.trials]
            >>> len(states), "COMPLETE" in states and "FAIL" in states
            (10, True)
        """
        from tunelab.study.runner import OptimizeSettings, optimize

        settings = OptimizeSettings.build(
            n_trials=n_trials, timeout=timeout, n_workers=n_workers, space=space, catch=catch,
            trial_timeout=trial_timeout, callbacks=callbacks, show_progress=show_progress,
            heartbeat_interval=heartbeat_interval, grace_period=grace_period,
            requeue_lost_trials=requeue_lost_trials, start_method=start_method, executor=executor,
            gpus_per_trial=gpus_per_trial, gpus=gpus,
        )
        if not callable(objective):
            raise ConfigError(f"objective must be callable as objective(trial), got {objective!r}")
        self._check_can_run("optimize()")
        self._stopping = False
        if executor is not None and (not self._storage.shareable_across_processes or self._storage.url is None):
            raise ConfigError(
                f"executor={executor!r} runs each trial as a task that opens the study's storage itself, "
                f"which {self._storage!r} does not allow; create the study with a storage URL, e.g. "
                "storage='sqlite:///tunelab.db' (one machine or a shared disk) or a PostgreSQL URL (a cluster)"
            )
        optimize(self, objective, settings)

    def stop(self) -> None:
        """Make the running :meth:`optimize` start no new trial: the trials already running finish and are
        recorded as usual, then it returns. Safe from a callback or another thread; the next
        ``optimize()`` starts afresh.

        Several processes sharing one study can hold it to a total this way (as Optuna's
        ``MaxTrialsCallback``): a callback that counts the study's trials and calls ``stop()``.

        Examples:
            >>> import tunelab
            >>> study = tunelab.create_study(seed=0, sampler=tunelab.RandomSampler())
            >>> def enough(study, trial):
            ...     if trial.value is not None and trial.value < 0.1:
            ...         study.stop()                      # good enough: no more trials
            >>> study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=100, callbacks=[enough])
            >>> len(study.trials) < 100, study.best_value < 0.1
            (True, True)
        """
        self._stopping = True

    # -- internals ----------------------------------------------------------------------------
    def _check_can_run(self, what: str) -> None:
        if self._for_reading:
            raise ConfigError(
                f"{what}: study '{self.name}' was opened by read_study(), for reading: its stored sampler "
                "is not rebuilt, so trials would be sampled at random; open it with load_study() to run trials"
            )

    def _ranked_complete(self) -> list[int]:
        self._history.invalidate()
        if self.is_multi_objective:  # front by front, the infeasible ones last
            done = self._history.trials((TrialState.COMPLETE,))
            feasible = feasible_complete(done, len(self.directions))
            ranked: list[int] = []
            if feasible:
                points = losses([t.values for t in feasible], self.directions)  # type: ignore[misc]
                ranked = [feasible[i].number for front in non_dominated_sort(points) for i in front]
            seen = set(ranked)
            return ranked + [t.number for t in done if t.number not in seen]
        # the feasible by value, then the infeasible by violation (the nearest to feasible first), as History.top
        key = sort_key(self.direction)
        return [t.number for t in sorted(self._history.completed(), key=lambda t: (t.violation, key(t)))]

    def _trial_id(self, number: int) -> int:
        found = self._trials_numbered(number)
        if not found or found[0].number != number:
            raise TrialNotFoundError(f"study {self.name!r} has no trial number {number}")
        return found[0].trial_id

    def _trials_numbered(self, number: int) -> list[FrozenTrial]:
        """The trial numbered ``number`` (a list of one, or none); a number no 64-bit column holds
        (``tunelab trial STUDY 99999999999999999999``) is none, not an OverflowError of the database."""
        if not -(2**63) <= number < 2**63:
            return []
        return list(self._storage.get_trials(self._study_id, min_number=number, max_number=number))


def _reopen(
    name: str, url: str, sampler: Sampler, pruner: Pruner | None, space: Mapping[str, SpaceEntry] | None,
    for_reading: bool = False,
) -> Study:
    """The study ``name`` at ``url`` (what a copied :class:`Study` becomes, see :meth:`Study.__reduce__`)."""
    from tunelab.storage import get_storage

    storage = get_storage(url, create=False)
    study = Study(storage, storage.get_study(name), sampler, space, pruner)
    study._for_reading = for_reading
    return study


def _record_fail(storage: BaseStorage, frozen: FrozenTrial, reason: str) -> None:
    """Mark a trial that could not start FAIL through the one final write (a no-op if it is finished
    already); a failing storage is logged, since the error that stopped the trial is the one to raise."""
    try:
        record_end(TrialWriter(storage, frozen.trial_id), frozen.number, TrialState.FAIL, None, reason)
    except TrialStateError:
        pass
    except Exception:
        logger.warning("could not record why trial %d could not start", frozen.number, exc_info=True)


_ADD_TRIAL = (
    "tunelab has no add_trial; to record a result obtained elsewhere, study.enqueue(params), then "
    "trial = study.ask(), suggest its parameters as the objective does, and study.tell(trial, value)"
)
STUDY_HINTS = {
    "study_name": "tunelab calls it study.name",
    "enqueue_trial": "tunelab calls it study.enqueue(params, user_attrs=..., skip_if_exists=...)",
    "add_trial": _ADD_TRIAL,
    "add_trials": _ADD_TRIAL,
    "metric_names": "tunelab calls them study.objective_names",
    "set_metric_names": "tunelab names the objectives when the study is created: "
    "create_study(directions=[...], objective_names=[...])",
}
"""Optuna's names that a :class:`Study` does not have, and what to use instead."""

_OWN_SYSTEM_ATTRS = frozenset({"sampler", "pruner", "space", "artifact_dir", "checkpoint_policy"})
_NOT_COMPLETE = (TrialState.FAIL, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)



def find_best_trial(storage: BaseStorage, study_id: int, direction: str) -> FrozenTrial | None:
    """The feasible COMPLETE trial with the best value; when no COMPLETE trial is feasible, the best
    infeasible one (its ``feasible`` says so); None when no trial is COMPLETE.

    One indexed read of the best value, and a read of every COMPLETE trial only when that one is
    infeasible (so unconstrained studies pay nothing).
    """
    best = storage.get_best_trial(study_id, direction)
    if best is not None and not best.feasible:  # constrained: the best feasible one, if any
        feasible = feasible_complete(storage.get_trials(study_id, (TrialState.COMPLETE,)), 1)
        if feasible:
            best = min(feasible, key=sort_key(direction))
    return best


def check_objectives_support(directions: Sequence[str], sampler: Sampler | None, pruner: Pruner | None) -> None:
    """ConfigError when a study with several objectives gets a sampler or pruner that needs one, or a
    sampler that cannot serve this many objectives (:meth:`~tunelab.samplers.base.Sampler.check_objectives`)."""
    if sampler is not None:
        sampler.check_objectives(len(directions))
    if isinstance(pruner, ParetoPruner) and len(directions) < 2 and pruner.metrics is None:
        raise ConfigError(
            f"{type(pruner).__name__} compares several objectives, but this study has one: give it "
            "metrics=[...] and directions=[...] to compare, or use SuccessiveHalvingPruner / MedianPruner"
        )
    if isinstance(pruner, ParetoPruner):
        pruner.check_objectives(len(directions))  # metrics=[...] that take the study's directions: as many
    if len(directions) < 2:
        return
    if pruner is not None and not isinstance(pruner, ParetoPruner):
        raise ConfigError(
            f"{type(pruner).__name__} compares one metric, but this study has {len(directions)} objectives: "
            "use ParetoSuccessiveHalvingPruner() (multi-objective ASHA) or ParetoMedianPruner(), which compare "
            "every objective's reported metric at once"
        )
    if sampler is not None and not sampler.multi_objective:
        raise ConfigError(
            f"{type(sampler).__name__} optimises one objective, but this study has {len(directions)}: "
            "use AutoSampler() (the default), GPSampler() (log expected hypervolume improvement), "
            "TPESampler() (multi-objective TPE), NSGAIISampler(), RandomSampler(), GridSampler() or "
            "CoarseToFineSampler()"
        )


def _checked_states(states: object) -> list[TrialState]:
    """``get_trials(states=...)`` as TrialStates: a state's name ('COMPLETE', 'complete') or a lone state is
    taken, anything else is a ConfigError (states='COMPLETE' was read letter by letter, states=['DONE'] matched
    nothing: both returned [] unsaid)."""
    if isinstance(states, str):  # a TrialState too (a str enum)
        states = [states]
    if not isinstance(states, (list, tuple, set, frozenset)):
        raise ConfigError(f"get_trials(states=...) must be a list of trial states such as [TrialState.COMPLETE], "
                          f"got {states!r}")
    checked = []
    for state in states:
        try:
            checked.append(TrialState(state.upper() if isinstance(state, str) else state))
        except ValueError:
            raise ConfigError(
                f"get_trials(states=...): {state!r} is no trial state; use "
                f"{', '.join(s.value for s in TrialState)} (or TrialState.COMPLETE, ...)"
            ) from None
    return checked
