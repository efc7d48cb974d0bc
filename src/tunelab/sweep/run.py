"""Running a sweep: open (or create) its study, check it against the file, run trials up to ``n_trials``.

``n_trials`` is the study's total, not a count per call: the same file run again continues the study to
``n_trials`` trials that ran to an end (COMPLETE, PRUNED, or FAIL by the script). Trials cut off by an
interrupt (a killed or Ctrl-C'd sweep, a lost heartbeat) are recorded FAIL ("interrupted" / "heartbeat lost")
and not counted: the next run makes up for them. Trials RUNNING in other processes (another host of the
same study) are counted as they will end.

Trials always run in tunelab's worker processes (a ``trial_timeout`` is always passed: the file's, plus the
grace periods, or a week): a sweep that is killed has its running trials recorded "interrupted" by their
workers, which stop the commands' process groups.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.errors import ConfigError, StudyNotFoundError, SweepConfigError
from tunelab.execution.gpus import FAKE_GPUS_VAR, VISIBLE_DEVICES_VAR, check_gpus, find_devices
from tunelab.records import FrozenTrial, TrialState
from tunelab.samplers import RandomSampler
from tunelab.space import space_to_json, unwrap
from tunelab.storage import BaseStorage, get_storage
from tunelab.study import Study, create_study, load_study
from tunelab.sweep.config import SweepConfig, parse_gpus
from tunelab.sweep.objective import StartFailures, SweepObjective

NOT_COUNTED = ("interrupted", "heartbeat lost", "the worker process died")
"""How the errors of trials that were cut off (not results of the command) begin."""
NO_TIMEOUT = 7 * 24 * 3600.0


@dataclass
class SweepSummary:
    """What a sweep did: its study, the trials it holds by state, the counted ones, and the best."""

    study: str
    storage: str
    states: dict[str, int] = field(default_factory=dict)
    counted: int = 0
    ran: int = 0
    best_number: int | None = None
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    front: list[int] = field(default_factory=list)
    """With several objectives: the numbers of the Pareto front's trials (no single best)."""
    infeasible: int = 0
    """COMPLETE trials that break a bound of ``constraints:`` (never the best, never on the front)."""
    broken: list[str] = field(default_factory=list)
    """The constraints those trials break, as recorded with them (a file may since have changed its own)."""


def counted(trial: FrozenTrial) -> bool:
    """Whether a finished trial counts towards ``n_trials`` (it ran to an end, not cut off)."""
    if trial.state == TrialState.FAIL:
        return not (trial.error or "").startswith(NOT_COUNTED)
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED)


def _tally(study: Study) -> tuple[int, int]:
    trials = study.trials
    return sum(counted(t) for t in trials), sum(t.state == TrialState.RUNNING for t in trials)


def open_study(config: SweepConfig, storage: BaseStorage, allow_changes: bool = False) -> Study:
    """The sweep's study: created from the file, or the existing one when its direction and space match the
    file's (with ``allow_changes``, the file's space replaces the stored one)."""
    existing = _check_existing(config, storage, allow_changes)
    metrics, directions = config.objectives
    if existing is not None:
        stored = existing.system_attrs.get("space")
        wanted = space_to_json(config.space)
        if stored != wanted:  # the declared space belongs to the study record: stored by the storage itself
            storage.set_study_attrs(existing.study_id, system_attrs={"space": wanted})
    objectives: dict[str, Any] = (
        {"directions": list(directions), "objective_names": list(metrics)} if config.is_multi_objective
        else {"direction": config.direction}
    )
    return create_study(
        config.study, storage, sampler=config.build_sampler(), seed=config.seed,
        space=config.space, load_if_exists=True, pruner=config.build_pruner(), **objectives,
    )


def check_sweep(config: SweepConfig, allow_changes: bool = False) -> None:
    """What running ``config`` checks before its first trial, without running or writing anything: the GPU
    options against this host's devices, and an existing study of that name against the file (an SQLite
    file that does not exist yet holds no study: it is not created). SweepConfigError naming the key."""
    _check_devices(config)
    url = config.storage
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):].partition("?")[0]
        if path != ":memory:" and not Path(path).exists():
            if not Path(path).parent.is_dir():  # the run could not create the file
                raise SweepConfigError(
                    f"{config.where('storage')}: there is no directory {str(Path(path).parent)!r} for the SQLite "
                    "file; create it, or fix storage:", key="storage", line=config.lines.get("storage"))
            return
    storage = get_storage(url)
    try:
        _check_existing(config, storage, allow_changes)
    finally:
        storage.close()


def _check_devices(config: SweepConfig) -> dict[str, Any]:
    """The GPU options of ``optimize`` (empty without GPUs), checked against this host's devices."""
    gpu = _gpu_options(config)
    if not gpu:
        return gpu
    # The devices of this host, before the study is created; the error names the file's key and the fix in the
    # file's terms (the engine's own messages speak of optimize()'s gpus=[...] arguments).
    def refuse(key: str, text: str) -> SweepConfigError:
        return SweepConfigError(f"{config.where(key)}: {text}", key=key, line=config.lines.get(key))

    g = gpu["gpus_per_trial"]
    try:
        found = find_devices(gpu["gpus"])
    except ConfigError as e:  # TUNELAB_FAKE_GPUS that is no number
        raise refuse("gpus", f"no devices listed, and {e}; fix {FAKE_GPUS_VAR} (or unset it), or list the "
                     "devices, e.g. gpus: [0, 1]") from None
    if not found.ids:
        where = {FAKE_GPUS_VAR: f"{FAKE_GPUS_VAR}=0",
                 VISIBLE_DEVICES_VAR: f"{VISIBLE_DEVICES_VAR}={os.environ.get(VISIBLE_DEVICES_VAR, '')!r} shows none"
                 }.get(found.source, f"{VISIBLE_DEVICES_VAR} is not set and nvidia-smi lists none (or is missing)")
        raise refuse("gpus_per_trial", f"{g} GPU(s) per trial, but this host shows no GPU ({where}); write "
                     f"gpus_per_trial: 0 to run without GPUs, list the devices with gpus: [0, 1], or set "
                     f"{FAKE_GPUS_VAR}=N for N fake devices (a dry run)")
    if found.source == "gpus=":  # listed: each must be one of this host's (when the host says which it has)
        host = find_devices(None)
        if host.ids and host.source in (FAKE_GPUS_VAR, "nvidia-smi"):
            missing = [d for d in found.ids if d not in host.ids]
            if missing:
                raise refuse("gpus", f"lists device(s) {', '.join(missing)}, which this host does not have (it has "
                             f"{', '.join(host.ids)}, from {host.source}); list devices among those, or write "
                             "gpus: all")
    need = math.ceil(g)
    if need > len(found.ids):
        have, ids = len(found.ids), ", ".join(found.ids)
        if found.source == "gpus=":
            raise refuse("gpus", f"lists {have} device(s) ({ids}) but gpus_per_trial: {g} gives each trial {need}; "
                         f"list at least {need} devices, or write gpus_per_trial: {have} or less")
        raise refuse("gpus_per_trial", f"{g} GPUs per trial, but {have} found on this host ({ids}, from "
                     f"{found.source}); write gpus_per_trial: {have} or less, or make more devices visible")
    try:
        check_gpus(g, gpu["gpus"])  # the engine's own checks: whatever the above missed
    except ConfigError as e:
        raise refuse("gpus_per_trial", str(e)) from None
    return gpu


def _check_existing(config: SweepConfig, storage: BaseStorage, allow_changes: bool) -> Study | None:
    """The study the file names when it exists (None when not), checked against the file."""
    try:
        existing = load_study(config.study, storage, sampler=RandomSampler())
    except StudyNotFoundError:
        return None
    metrics, directions = config.objectives
    if existing.directions != directions:
        raise SweepConfigError(
            f"{config.where('direction')}: study {config.study!r} exists with direction(s) "
            f"{', '.join(existing.directions)}, the file says {', '.join(directions)}; name another study "
            "(study:) or fix direction:", key="direction")
    if config.is_multi_objective and existing.objective_names != metrics:
        raise SweepConfigError(
            f"{config.where('metric')}: study {config.study!r} exists with objectives "
            f"{', '.join(existing.objective_names)}, the file says {', '.join(metrics)}; name another study "
            "(study:) or fix metric:", key="metric")
    stored = existing.system_attrs.get("space")
    wanted = space_to_json(config.space)
    if stored != wanted and (stored is not None or existing.trials):
        if not allow_changes:
            raise SweepConfigError(
                f"{config.where('parameters')}: study {config.study!r} exists with another space "
                f"({_difference(stored or {}, wanted)}); run with --allow-changes to continue it with the "
                "file's parameters (a parameter must keep its type, log scale and choices), or name a new study "
                "(study:)", key="parameters")
    known = storage.get_distributions(existing.study_id)  # what --allow-changes cannot change: checked before
    for name, entry in config.space.items():              # open_study stores the file's space
        first = known.get(name)
        if first is not None and not first.compatible_with(unwrap(entry)):
            key = f"parameters.{name}"
            raise SweepConfigError(
                f"{config.where(key)}: study {config.study!r} has {name} as {first!r}, the file says "
                f"{unwrap(entry)!r}; --allow-changes may change a range or a prior, not the type, log scale or "
                f"choices: rename the parameter, or name a new study (study:)", key=key,
                line=config.lines.get("parameters"))
    return existing


def _difference(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> str:
    parts = []
    for name in sorted(set(stored) | set(wanted)):
        if name not in wanted:
            parts.append(f"{name} is stored, not in the file")
        elif name not in stored:
            parts.append(f"{name} is new in the file")
        elif stored[name] != wanted[name]:
            parts.append(f"{name}: stored {stored[name]}, file {wanted[name]}")
    return "; ".join(parts[:4]) + ("; ..." if len(parts) > 4 else "")


def _gpu_options(config: SweepConfig) -> dict[str, Any]:
    if config.gpus_per_trial <= 0:
        return {}
    g = config.gpus_per_trial
    return {"gpus_per_trial": int(g) if float(g).is_integer() else g, "gpus": parse_gpus(config.gpus)}


def run_sweep(config: SweepConfig, *, allow_changes: bool = False, show_progress: bool | None = None,
              storage: BaseStorage | None = None) -> SweepSummary:
    """Run the sweep ``config`` describes until its study holds ``n_trials`` counted trials (or ``timeout``)."""
    gpu = _check_devices(config)
    store = storage if storage is not None else get_storage(config.storage)
    study = open_study(config, store, allow_changes)
    objective = SweepObjective(config)
    backstop = (config.trial_timeout or NO_TIMEOUT) + 2 * config.prune_grace + 60.0
    watch = StartFailures(config.max_start_failures, config.where("command"), config.study)
    deadline = None if config.timeout is None else time.monotonic() + config.timeout
    total = SharedTotal(config.n_trials)
    while True:
        done, running = _tally(study)
        if config.n_trials is None:
            remaining = None
        else:
            remaining = config.n_trials - done - running
            if remaining <= 0:
                break
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            break
        study.optimize(
            objective, n_trials=remaining, timeout=left, n_workers=config.workers, trial_timeout=backstop,
            space=config.space, callbacks=[watch, total], show_progress=show_progress, **gpu,
        )
        after = _tally(study)[0]
        if config.n_trials is None or after <= done:
            break  # no limit, or no progress (a grid that ran out): stop
    return summarize(study, config.storage, total.ran)


@dataclass
class SharedTotal:
    """A callback of the sweep's own process: counts the trials it ran, and holds every process that runs
    the study (another host, the same file started twice) to ``n_trials`` in all: once the trials that
    count and the running ones (of every process) reach it, this process starts no new one
    (:meth:`~tunelab.Study.stop`). Processes that start a trial at the same moment can still overshoot by
    one each (each used to run the share it computed at its start: two sweeps of 8 trials ran 16)."""

    n_trials: int | None
    ran: int = 0

    def __call__(self, study: Study, trial: FrozenTrial) -> None:
        self.ran += 1
        if self.n_trials is not None and sum(_tally(study)) >= self.n_trials:
            study.stop()


def summarize(study: Study, storage: str, ran: int = 0) -> SweepSummary:
    """The :class:`SweepSummary` of a sweep's study."""
    trials = study.trials
    summary = SweepSummary(study.name, storage, dict(Counter(t.state.value for t in trials)),
                           sum(counted(t) for t in trials), ran)
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    summary.infeasible = sum(not t.feasible for t in complete)
    summary.broken = list(dict.fromkeys(name for t in complete for name, c in t.constraints.items()
                                        if not c.satisfied))
    if study.is_multi_objective:
        summary.front = [t.number for t in study.best_trials]
    elif summary.infeasible < len(complete):
        best = study.best_trial
        summary.best_number, summary.best_value, summary.best_params = best.number, best.value, dict(best.params)
    return summary
