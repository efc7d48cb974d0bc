"""Creating, loading and deleting studies: :func:`create_study`, :func:`load_study`,
:func:`delete_study`, with every check of their arguments (raised before anything is stored)."""

from __future__ import annotations

import logging
import numbers
import os
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from tunelab.checkpoints import (
    CheckpointPolicy,
    new_study_folder,
    remove_study_folder,
)
from tunelab.distributions import Distribution
from tunelab.errors import (
    ConfigError,
    DistributionConflictError,
    DuplicatedStudyError,
)
from tunelab.pruners import Pruner, pruner_from_description
from tunelab.records import (
    OBJECTIVES_KEY,
    StudyRecord,
    check_direction,
)
from tunelab.samplers import AutoSampler, RandomSampler, Sampler, sampler_from_description
from tunelab.samplers.auto import uses_nsga
from tunelab.samplers.model_based import ModelBasedSampler
from tunelab.samplers.transfer import check_warm_start
from tunelab.space import SpaceEntry, space_from_json, space_to_json, unwrap, validate_space
from tunelab.storage import BaseStorage, get_storage
from tunelab.study.enqueue import check_user_attrs
from tunelab.study.optuna_names import optuna_keywords
from tunelab.study.replay import (
    DETERMINISTIC_KEY,
    check_deterministic,
    check_replayable,
    stored_width,
)
from tunelab.study.study import Study, check_objectives_support
from tunelab.study.warm import WARM_START_KEY, absolute_sources, check_sources

logger = logging.getLogger("tunelab")

MAX_SEED = 2**63
"""Seeds are below this: storages keep them as 64-bit signed integers."""


@optuna_keywords
def create_study(
    name: str | None = None,
    storage: str | BaseStorage | None = None,
    direction: str | None = None,
    sampler: Sampler | None = None,
    seed: int | None = None,
    space: Mapping[str, SpaceEntry] | None = None,
    load_if_exists: bool = False,
    user_attrs: Mapping[str, Any] | None = None,
    pruner: Pruner | None = None,
    artifact_dir: str | os.PathLike[str] | None = None,
    checkpoint_policy: CheckpointPolicy | None = None,
    deterministic: bool | int = False,
    warm_start: Sequence[str | tuple[str, str]] | None = None,
    directions: Sequence[str] | None = None,
    objective_names: Sequence[str] | None = None,
) -> Study:
    """Create a study.

    Args:
        name: unique in the storage; default: a generated name.
        storage: ``'sqlite:///tunelab.db'``, any SQLAlchemy URL, a storage object, or
            None for in-memory.
        direction: 'minimize' (default) or 'maximize'.
        sampler: default :class:`~tunelab.samplers.AutoSampler` (a Gaussian process for the first
            200 trials, then TPE: the best of tunelab's samplers in ``benchmarks/suite.py``).
        seed: seeds every random draw; default: a random seed, stored with the study.
        space: a declared search space used by every :meth:`Study.ask` and worker.
        pruner: stops bad trials early, e.g. ``SuccessiveHalvingPruner(metric="val_loss")``
            (see :mod:`tunelab.pruners`); the objective asks ``trial.should_prune()``.
        load_if_exists: load the study of that name if it exists instead of failing. A ``sampler``,
            ``pruner`` or ``space`` given then replaces the stored one (workers that join later and the
            dashboard rebuild it; a space may change ranges and priors, not a parameter's kind); without
            them the stored ones are rebuilt, as :func:`load_study` does.
        user_attrs: JSON data to attach to the study.
        artifact_dir: where studies keep files; this one gets its own folder inside,
            ``<name>-<8 hex digits>`` (``study.artifact_dir``). Default: ``<file>.artifacts``
            beside an SQLite file, else ``./tunelab-artifacts``. Every worker must reach it. A study
            loaded by ``load_if_exists`` keeps its stored folder and ``checkpoint_policy``.
        checkpoint_policy: which checkpoints are kept; default ``CheckpointPolicy(keep_last=2)``.
        deterministic: parallel runs that replay: the parameters of trial ``n`` depend only on the
            seed and the trials numbered below it, whatever the number of workers and the order in
            which they finish. Trial ``n`` plans from the results of the trials below
            ``n - width + 1`` (``True``: width 4; an integer sets it) and counts the ones between as
            running; a worker whose trial needs a result not in yet waits for it. Needs a sampler
            that can replay (random, TPE, GP, auto) and no pruner.
        warm_start: earlier studies to learn from: names in the same storage, or ``(name, url)``
            for another storage. The GP and TPE samplers (and AutoSampler) start from what they
            found, rescale a source whose optimum or scale differs, and stop listening to one that
            turns out unrelated; their trials never count as this study's. Stored with the study.
        directions: several objectives, one direction each (instead of ``direction``), e.g.
            ``["maximize", "minimize"]``: the objective returns one value per objective (a tuple, a
            list, or a mapping by name), :attr:`Study.best_trials` is the Pareto front. The default
            :class:`~tunelab.samplers.AutoSampler` then runs the GP's log expected hypervolume
            improvement, then multi-objective TPE (two objectives) or NSGA-II (three or more).
        objective_names: the objectives' names, one per direction (default ``objective_0``, ...):
            the keys of a returned mapping, the columns of :meth:`Study.trials_dataframe`.

    Examples:
        An in-memory study (``storage=None``) with a seed, and the default sampler:

        >>> import tunelab
        >>> study = tunelab.create_study(name="quadratic", direction="minimize", seed=0)
        >>> study.optimize(lambda trial: (trial.suggest_float("x", -10.0, 10.0) - 2.0) ** 2, n_trials=15)
        >>> len(study.trials), study.best_value < 0.1
        (15, True)

        With ``storage="sqlite:///tunelab.db"`` the study lives in that file: other processes
        join it with :func:`load_study`, and it outlives this one.
    """
    given_direction = direction is not None or directions is not None  # else a loaded study keeps its own
    direction, objectives = _check_objectives(direction, directions, objective_names)
    if name is None:
        name = f"study-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"name must be a non-empty string, got {name!r}")
    if not isinstance(load_if_exists, bool):  # load_if_exists="no" would load the study
        raise ConfigError(
            f"load_if_exists must be True (load the study of that name if it exists) or False, got {load_if_exists!r}"
        )
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if seed is not None:
        seed = int(seed)  # numpy's integers too, stored as Python's
    user_attrs = check_user_attrs("create_study(user_attrs=...)", user_attrs)
    if seed is not None and seed >= MAX_SEED:
        raise ConfigError(
            f"seed must be an integer below 2**63 (it is stored as a 64-bit integer), got {seed!r}; "
            "any smaller seed gives the same quality of randomness, e.g. seed % 2**63"
        )
    if sampler is not None and not isinstance(sampler, Sampler):
        raise ConfigError(f"sampler must be a tunelab sampler such as RandomSampler(), got {sampler!r}")
    if space is not None:
        space = validate_space(space)
    store = get_storage(storage)
    given_sampler = sampler
    sampler = sampler if sampler is not None else default_sampler(objectives)
    if pruner is not None and not isinstance(pruner, Pruner):
        raise ConfigError(f"pruner must be a tunelab pruner such as MedianPruner(), got {pruner!r}")
    width = check_deterministic(deterministic)
    sources = absolute_sources(check_warm_start(warm_start))
    if sources and given_sampler is not None and not isinstance(given_sampler, ModelBasedSampler):
        raise _warm_start_needs_a_model(given_sampler)
    if sources and objectives is not None and len(objectives["directions"]) > 1:
        raise _warm_start_needs_one_objective(len(objectives["directions"]))
    if objectives is not None:
        check_objectives_support(objectives["directions"], sampler, pruner)
        n_objectives = len(objectives["directions"])
        auto_nsga = isinstance(sampler, AutoSampler) and uses_nsga(n_objectives)
        if width is not None and n_objectives > 1 and (auto_nsga or not sampler.replayable):
            reason = sampler.not_replayable_because or "its proposals depend on when they are made"
            why = ("runs NSGA-II here (after switch_at trials), whose parents are whichever trials have finished"
                   if auto_nsga else f"cannot replay ({reason})")
            raise ConfigError(
                f"deterministic=True with several objectives needs a sampler that replays them: "
                f"{type(sampler).__name__} {why}; use sampler=GPSampler() (log expected hypervolume improvement), "
                "TPESampler() (multi-objective TPE) or RandomSampler()"
            )
    check_replayable(width, sampler, pruner)
    if checkpoint_policy is not None and not isinstance(checkpoint_policy, CheckpointPolicy):
        raise ConfigError(
            f"checkpoint_policy must be a tunelab.checkpoints.CheckpointPolicy, got {checkpoint_policy!r}"
        )
    system_attrs: dict[str, Any] = {
        "sampler": sampler.describe(),
        "artifact_dir": str(new_study_folder(artifact_dir, store.url, name)),
        "checkpoint_policy": (checkpoint_policy or CheckpointPolicy()).describe(),
    }
    if pruner is not None:
        system_attrs["pruner"] = pruner.describe()
    if objectives is not None:
        system_attrs[OBJECTIVES_KEY] = objectives
    if width is not None:
        system_attrs[DETERMINISTIC_KEY] = {"width": width}
    if sources:
        check_sources(sources, store, name, space)
        system_attrs[WARM_START_KEY] = [list(s) for s in sources]
    if space is not None:
        system_attrs["space"] = space_to_json(space)
    try:
        record = store.create_study(
            name, direction, seed if seed is not None else secrets.randbits(32),
            user_attrs=user_attrs, system_attrs=system_attrs,
        )
    except DuplicatedStudyError:
        if not load_if_exists:
            raise
        loaded = load_study(name, store, sampler=given_sampler, pruner=pruner)
        wanted = tuple(objectives["directions"]) if objectives is not None else (direction,)
        if given_direction and loaded.directions != wanted:  # else it would optimize the other way unsaid
            have, asked = (
                (f"directions {list(loaded.directions)}", f"{list(wanted)}")
                if len(wanted) > 1 or loaded.is_multi_objective else
                (f"direction {loaded.direction!r}", f"{direction!r}")
            )
            raise ConfigError(
                f"study {name!r} exists with {have}, not {asked}; pass the same (or leave it out) to load it"
            ) from None
        if objective_names is not None and loaded.objective_names != tuple(objective_names):
            raise ConfigError(
                f"study {name!r} exists with objective_names {list(loaded.objective_names)}, not "
                f"{list(objective_names)}; pass the same (or leave objective_names out) to load it"
            ) from None
        if sources and loaded.is_multi_objective:  # the check above saw no directions: the stored ones count
            raise _warm_start_needs_one_objective(len(loaded.directions), f"study {name!r} exists with ") from None
        if sources and not isinstance(loaded.sampler, ModelBasedSampler):  # nor a sampler: the stored one counts
            logger.warning("%s", _warm_start_needs_a_model(loaded.sampler, f"study {name!r} exists with "))
        stored_w = stored_width(loaded.system_attrs)
        if width is not None and stored_w != width:
            raise ConfigError(
                f"study {name!r} exists and was created with deterministic="
                f"{'False' if stored_w is None else stored_w}; it cannot become deterministic={deterministic!r}: "
                "pass the same value, or leave deterministic out to load it as it is"
            ) from None
        # A sampler or pruner given here replaces the stored one, so that workers joining later
        # (tunelab worker, load_study) and the dashboard see the one the study runs with.
        replaced: dict[str, Any] = {
            k: v.describe() for k, v in (("sampler", given_sampler), ("pruner", pruner)) if v is not None
        }
        if sources:
            replaced[WARM_START_KEY] = [list(s) for s in sources]
        if space is not None:  # so is a declared space (other ranges, other priors), if every kind is kept
            _check_kinds(name, store.get_distributions(loaded.study_id), space)
            replaced["space"] = space_to_json(space)
        stored = loaded.system_attrs
        if any(stored.get(k) != v for k, v in replaced.items()):
            store.set_study_attrs(loaded.study_id, system_attrs=replaced)
            if sources or space is not None:  # the history learns from the new sources, the new space is used
                return load_study(name, store, sampler=given_sampler, pruner=pruner)
        return loaded
    return Study(store, record, sampler, space, pruner)


def _warm_start_needs_a_model(sampler: Sampler, where: str = "") -> ConfigError:
    return ConfigError(
        f"warm_start=... is learnt from by GPSampler, TPESampler and the default AutoSampler; {where}"
        f"{type(sampler).__name__}{', which' if where else ''} would ignore it: use one of those"
        f"{' (sampler=...)' if where else ''}, or leave warm_start out"
    )


def _warm_start_needs_one_objective(n_objectives: int, where: str = "") -> ConfigError:
    return ConfigError(
        "warm_start=... learns from a single value per trial, so it serves a study with one objective: "
        f"{where or 'with '}{n_objectives} objectives the GP would ignore the sources and TPE would read "
        "their first value only. Leave warm_start out; to start from what an earlier study found, "
        "enqueue its best parameters (study.enqueue(trial.params) for each of its best trials)"
    )


def _check_kinds(name: str, known: Mapping[str, Distribution], space: Mapping[str, SpaceEntry]) -> None:
    """DistributionConflictError when ``space`` gives a parameter of study ``name`` another kind of distribution."""
    for param, entry in space.items():
        first = known.get(param)
        if first is not None and not first.compatible_with(unwrap(entry)):
            raise DistributionConflictError(
                f"parameter '{param}' is {unwrap(entry)!r} in space= but {first!r} in study {name!r}; one name "
                "keeps one kind of distribution (ranges and priors may change, the kind, log scale and choices "
                "may not): use a new name or a new study"
            )


def _check_objectives(
    direction: object, directions: Sequence[str] | None, objective_names: Sequence[str] | None
) -> tuple[str, dict[str, list[str]] | None]:
    """The study's first direction and, for several objectives (or named ones), what is stored."""
    if directions is None:
        if objective_names is not None:
            raise ConfigError("objective_names=... goes with directions=[...], one name per direction")
        return check_direction("minimize" if direction is None else direction), None
    if direction is not None:
        raise ConfigError(
            "create_study() takes direction= (one objective) or directions=[...] (several), not both"
        )
    if isinstance(directions, str) or not isinstance(directions, Sequence) or not directions:
        raise ConfigError(f"directions must be a non-empty list such as ['maximize', 'minimize'], got {directions!r}")
    checked = [check_direction(d) for d in directions]
    if objective_names is None:
        names = [f"objective_{i}" for i in range(len(checked))] if len(checked) > 1 else ["value"]
    else:
        if isinstance(objective_names, str) or not isinstance(objective_names, Sequence):
            raise ConfigError(f"objective_names must be a list of names, got {objective_names!r}")
        names = list(objective_names)
        if len(names) != len(checked):
            raise ConfigError(
                f"objective_names has {len(names)} names but directions has {len(checked)} directions; "
                "give one name per direction"
            )
        if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
            raise ConfigError(f"objective_names must be distinct non-empty strings, got {names!r}")
    return checked[0], {"directions": checked, "names": names}


def default_sampler(objectives: Mapping[str, Sequence[str]] | None) -> Sampler:
    """The sampler of a study created without one: AutoSampler (multi-objective TPE for two objectives,
    NSGA-II for more)."""
    return AutoSampler()


@optuna_keywords
def load_study(
    name: str, storage: str | BaseStorage | None, sampler: Sampler | None = None, pruner: Pruner | None = None
) -> Study:
    """Load an existing study to resume it, join it as another worker, or read it.

    Without ``sampler`` (``pruner``) the sampler (pruner) stored with the study is rebuilt.

    Examples:
        A study in an SQLite file, reopened (as another process, or another day, would) and resumed:

        >>> import os, tempfile, tunelab
        >>> folder = tempfile.TemporaryDirectory()
        >>> url = "sqlite:///" + os.path.join(folder.name, "tunelab.db")
        >>> def objective(trial):
        ...     return (trial.suggest_float("lr", 1e-5, 1e-1, log=True) - 1e-3) ** 2
        >>> study = tunelab.create_study(name="mlp", storage=url, seed=0, sampler=tunelab.RandomSampler())
        >>> study.optimize(objective, n_trials=5)
        >>> again = tunelab.load_study("mlp", url)
        >>> len(again.trials), again.best_value == study.best_value, type(again.sampler).__name__
        (5, True, 'RandomSampler')
        >>> again.optimize(objective, n_trials=3)
        >>> len(tunelab.load_study("mlp", url).trials)
        8
        >>> folder.cleanup()
    """
    if sampler is not None and not isinstance(sampler, Sampler):
        raise ConfigError(f"load_study(sampler=...) must be a tunelab sampler such as RandomSampler(), got {sampler!r}")
    if pruner is not None and not isinstance(pruner, Pruner):
        raise ConfigError(f"load_study(pruner=...) must be a tunelab pruner such as MedianPruner(), got {pruner!r}")
    store = get_storage(storage)
    record = store.get_study(name)
    if sampler is None:
        sampler = sampler_from_description(record.system_attrs.get("sampler", {}))
    if pruner is None and record.system_attrs.get("pruner"):
        pruner = pruner_from_description(record.system_attrs["pruner"])
    return Study(store, record, sampler, _stored_space(record), pruner)


def read_study(name: str, storage: str | BaseStorage | None) -> Study:
    """Open a study to read it (what ``tunelab show`` and the dashboard do): the stored sampler is
    not rebuilt, and the stored pruner only where this process can. A custom class this process
    cannot import, or settings this version refuses, would make :func:`load_study` fail, and
    reading needs neither (the pruner only names the metric it watches in the curve plots). Its
    :meth:`~Study.ask` and :meth:`~Study.optimize` refuse (ConfigError): use :func:`load_study` to run trials."""
    store = get_storage(storage)
    record = store.get_study(name)
    pruner = None
    if record.system_attrs.get("pruner"):
        try:
            pruner = pruner_from_description(record.system_attrs["pruner"])
        except ConfigError as e:
            logger.debug("study %r: its stored pruner is not rebuilt for reading (%s)", name, e)
    study = Study(store, record, RandomSampler(), _stored_space(record), pruner)
    study._for_reading = True  # ask() and optimize() refuse: the stand-in sampler would run them
    return study


def _stored_space(record: StudyRecord) -> dict[str, SpaceEntry] | None:
    space_json = record.system_attrs.get("space")
    return space_from_json(space_json) if space_json else None


@optuna_keywords
def delete_study(name: str, storage: str | BaseStorage) -> None:
    """Delete a study, all its trials and its folder of checkpoints."""
    store = get_storage(storage)
    record = store.get_study(name)
    store.delete_study(record.study_id)
    remove_study_folder(record.system_attrs, record.name)
