"""Re-evaluating a stale study: re-run its best configurations after the data or the code changed.

:func:`reevaluate` takes the best COMPLETE trials of an old study, runs each configuration again
(``repeats`` times) in a new study linked to the old one, and says which still hold::

    old = tunelab.load_study("mlp", "sqlite:///tunelab.db")
    result = reevaluate(old, objective, top=5, repeats=3)
    print(result.summary())
    for row in result.rows:
        print(row.old_number, row.old_value, row.new_value, row.verdict)

The new study (``mlp-reeval``, ``mlp-reeval-2``, ... by default) records
``system_attrs["reevaluates"] = {"study": "mlp", "numbers": [...], "at": ..., ...}``; the old one
lists its re-evaluations in ``system_attrs["reevaluated_by"]``. Each re-evaluation trial carries
``user_attrs["reevaluates"] = {"number": old number, "value": old value}``. With ``search=N`` the
new study goes on with N trials of the old study's sampler, which starts from the re-evaluated
trials (a warm start).

**The verdict rule.** A configuration's *change* is its new value (the mean of its completed
repeats) minus its old value, counted positive when worse (so for either direction). Its margin is
the larger of

- ``tolerance`` times the *spread* of the old top values: the range (best to worst) of the old
  values of the best ``max(top, 5)`` candidate trials. Differences smaller than that spread are what
  the old study ranked its best configurations by; with five of them, 0.25 of the range is about
  one step between neighbouring ranks, so a configuration that lost more than that has lost its
  place. The spread is in the objective's own units and does not depend on its offset or sign
  (an accuracy and an error rate of the same models get the same verdicts), unlike a fraction of
  the value itself. When the spread is 0 (a single trial, equal values) ``|old best value|`` is the
  scale, and 1.0 if that is 0 too;
- with ``repeats >= 2``, the noise of one comparison: ``2 * sigma * sqrt(1 + 1/n)``, where
  ``sigma`` is the standard deviation of repeated runs pooled over all configurations and ``n`` the
  configuration's completed repeats (the old value is one run, the new one a mean of ``n``). A
  change within the noise of re-running is not a verdict on the configuration. With one repeat
  the noise is not measured and only the tolerance counts.

Then: ``"stale"`` if the change is above the margin, ``"better"`` if it is below minus the margin,
``"holds"`` otherwise, and ``"failed"`` if any repeat did not complete (it raised, returned NaN or
None, was pruned or its process died: a configuration that fails some of the time does not hold).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from tunelab.distributions import ParamValue
from tunelab.errors import ConfigError, InvalidDistributionError, StudyNotFoundError
from tunelab.records import FrozenTrial, TrialState, sort_key
from tunelab.reevaluate.stats import fmt as _fmt
from tunelab.reevaluate.stats import spearman as _spearman
from tunelab.reevaluate.stats import std as _std
from tunelab.samplers import Sampler, sampler_from_description
from tunelab.samplers.model_based import ModelBasedSampler
from tunelab.space import unwrap
from tunelab.storage import BaseStorage, get_storage
from tunelab.study import Objective, Study, create_study, pack_for_workers

__all__ = ["VERDICTS", "ReevaluatedConfig", "Reevaluation", "reevaluate"]

VERDICTS = ("holds", "better", "stale", "failed")
"""The verdicts of a re-evaluated configuration."""
LINK_KEY = "reevaluates"
"""``system_attrs`` key of the new study (and ``user_attrs`` key of its re-evaluation trials)."""
BACKLINK_KEY = "reevaluated_by"
"""``system_attrs`` key of the old study: the names of the studies that re-evaluated it."""
MIN_REFERENCE = 5
"""The spread of the old values is taken over at least this many of the best trials."""


@dataclass(frozen=True)
class ReevaluatedConfig:
    """One re-evaluated configuration (one row of :class:`Reevaluation`).

    Attributes:
        old_number: its trial number in the old study.
        params: its parameters.
        old_value: its value in the old study.
        old_rank: 1 for the old best, 2, ... among the re-evaluated configurations.
        new_numbers: the numbers of its re-evaluation trials in the new study.
        new_values: the values of those that completed.
        new_value: the mean of ``new_values`` (None if none completed).
        new_spread: the standard deviation of ``new_values`` (None with fewer than two).
        change: ``new_value - old_value`` in the objective's units (None if no value).
        new_rank: its rank by ``new_value`` among the configurations that did not fail (None if it failed).
        margin: how much worse (or better) it had to get to be stale (better); see the module's docstring.
        verdict: 'holds', 'better', 'stale' or 'failed'.
        errors: why the repeats that did not complete failed (their error text, or their state).
    """

    old_number: int
    params: Mapping[str, ParamValue]
    old_value: float
    old_rank: int
    new_numbers: tuple[int, ...]
    new_values: tuple[float, ...]
    new_value: float | None
    new_spread: float | None
    change: float | None
    new_rank: int | None
    margin: float
    verdict: str
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class Reevaluation:
    """What :func:`reevaluate` returns.

    Attributes:
        study: the new study (its trials: the re-evaluations, then any ``search`` trials).
        source: the old study's name.
        direction: 'minimize' or 'maximize' (both studies').
        rows: one per configuration, in the old order (best first).
        repeats: runs per configuration.
        tolerance: the fraction of the old top values' spread a configuration may lose and still hold.
        spread: that spread (the scale the tolerance multiplies).
        noise: the pooled standard deviation of repeated runs (None with ``repeats=1``).
        spearman: the rank correlation of old and new values over the configurations that did not
            fail (1: the same order; None with fewer than two of them, or constant values).
        best_holds: whether the old best did not fail and is still the best of the re-evaluated ones.
        search_trials: how many sampler trials ran after the re-evaluations (``search=``).
    """

    study: Study
    source: str
    direction: str
    rows: tuple[ReevaluatedConfig, ...]
    repeats: int
    tolerance: float
    spread: float
    noise: float | None
    spearman: float | None
    best_holds: bool
    search_trials: int = 0

    def by_verdict(self, verdict: str) -> list[ReevaluatedConfig]:
        """The rows with that verdict ('holds', 'better', 'stale' or 'failed')."""
        if verdict not in VERDICTS:
            raise ConfigError(f"by_verdict(verdict=...) must be one of {VERDICTS}, got {verdict!r}")
        return [r for r in self.rows if r.verdict == verdict]

    def summary(self) -> str:
        """A one-paragraph verdict: what held, what went stale, whether the old best is still the best."""
        n = len(self.rows)
        counts = {v: len(self.by_verdict(v)) for v in VERDICTS}
        runs = "1 run each" if self.repeats == 1 else f"{self.repeats} runs each"
        margin = self.tolerance * self.spread
        parts = [
            f"Re-evaluated the best {n} configuration{'s' if n != 1 else ''} of study {self.source!r} "
            f"({self.direction}) in {self.study.name!r}, {runs}: "
            + ", ".join(f"{counts[v]} {v}" for v in VERDICTS)
            + f" (a change counts beyond {_fmt(margin)}, {self.tolerance:g} x the spread {_fmt(self.spread)} "
            "of the old top values"
            + (f", or beyond the noise of re-running, sigma {_fmt(self.noise)})." if self.noise is not None else ").")
        ]
        if counts["failed"] == n:
            parts.append(f"Every configuration failed: read the errors of the trials of {self.study.name!r}.")
            return " ".join(parts)
        old_best = self.rows[0]
        ranked = [r for r in self.rows if r.new_rank is not None]
        new_best = min(ranked, key=lambda r: r.new_rank if r.new_rank is not None else math.inf)
        if old_best.verdict == "failed":
            parts.append(f"The old best, #{old_best.old_number}, failed now.")
        else:
            parts.append(
                f"The old best, #{old_best.old_number} ({_fmt(old_best.old_value)} -> {_fmt(old_best.new_value)}), "
                f"{'holds' if old_best.verdict == 'holds' else 'is ' + old_best.verdict}"
                + (" and is still the best." if self.best_holds else
                   f" but ranks {old_best.new_rank} of {len(ranked)} now; #{new_best.old_number} is the best "
                   f"({_fmt(new_best.new_value)}).")
            )
        if self.spearman is not None:
            carries = ("carries over" if self.spearman >= 0.7 else "partly carries over" if self.spearman >= 0.3
                       else "does not carry over")
            parts.append(f"The old order {carries} (Spearman rank correlation {self.spearman:.2f}).")
        stale_share = (counts["stale"] + counts["failed"]) / n
        if self.best_holds and counts["stale"] + counts["failed"] == 0:
            parts.append("The study still holds: its best configuration can be used as it is.")
        elif stale_share > 0.5 or not self.best_holds:
            parts.append("The study is stale: search again" + (
                "." if self.search_trials else " (search=N continues the new study from these re-evaluations)."))
        else:
            parts.append("The study is partly stale: prefer the configurations that hold.")
        if self.repeats == 1:
            parts.append("With one run each, noise is not measured: repeats=3 tells a change from noise.")
        if self.search_trials:
            parts.append(f"Then {self.search_trials} search trials continued the study.")
        return " ".join(parts)


def reevaluate(
    study: Study,
    objective: Objective,
    *,
    top: int = 5,
    name: str | None = None,
    storage: str | BaseStorage | None = None,
    repeats: int = 1,
    n_workers: int = 1,
    tolerance: float = 0.25,
    search: int = 0,
    where: Callable[[FrozenTrial], bool] | None = None,
    sampler: Sampler | None = None,
    seed: int | None = None,
    show_progress: bool | None = None,
) -> Reevaluation:
    """Run the best ``top`` configurations of ``study`` again in a new linked study and judge them.

    Args:
        study: the old study.
        objective: ``f(trial) -> float`` as today (new data, new code); the enqueued parameters
            are fixed, any parameter a configuration lacks is sampled.
        top: how many of the best COMPLETE trials (ties by number) to re-evaluate; fewer if the
            study has fewer.
        name: the new study's name; default ``<old name>-reeval``, then ``-reeval-2``, ...
            An explicit name that exists is an error.
        storage: where the new study goes; default the old study's storage.
        repeats: runs of each configuration (>= 2 measures the noise of re-running).
        n_workers: trials at once (above 1 in worker processes: the objective must be importable
            and the storage a file or a server).
        tolerance: the fraction of the spread of the old top values a configuration may lose and
            still hold (see the module's docstring for the whole rule).
        search: then run this many trials of the old study's sampler in the new study, which
            starts from the re-evaluations (they count towards its start-up trials) and is
            warm-started from the old study (``create_study(warm_start=...)``): the model-based
            samplers learn from all its trials, rescaled to the new values.
        where: only trials for which ``where(trial)`` is true are candidates.
        sampler: the new study's sampler; default the old study's, rebuilt from its description.
        seed: the new study's seed (default: a random one, stored).
        show_progress: a progress bar; default: when stdout is a terminal.

    The new study has the old study's direction and declared space, and no pruner (a pruned
    re-evaluation has no value to compare). A configuration whose run raises a tunelab
    ConfigError (say, its value lies outside a range the code narrowed since) is failed and the
    others still run; if no run completes at all, that error is raised.

    Examples:
        >>> import tunelab
        >>> from tunelab.reevaluate import reevaluate
        >>> def objective(trial):
        ...     return (trial.suggest_float("x", -5.0, 5.0) - 1.0) ** 2
        >>> study = tunelab.create_study(name="old", sampler=tunelab.RandomSampler(), seed=0)
        >>> study.optimize(objective, n_trials=20)
        >>> result = reevaluate(study, objective, top=3)                       # nothing changed
        >>> result.study.name, [row.verdict for row in result.rows]
        ('old-reeval', ['holds', 'holds', 'holds'])

        After a change that costs every configuration 1.0 (new data, a bug fixed):

        >>> result = reevaluate(study, lambda trial: objective(trial) + 1.0, top=3)
        >>> result.study.name, [row.verdict for row in result.rows], result.best_holds
        ('old-reeval-2', ['stale', 'stale', 'stale'], True)
    """
    if not isinstance(study, Study):
        raise ConfigError(f"reevaluate(study=...) must be a tunelab Study (load_study(...)), got {study!r}")
    if not callable(objective):
        raise ConfigError(f"reevaluate(objective=...) must be callable as objective(trial), got {objective!r}")
    top = _check_int("top", top, 1)
    repeats = _check_int("repeats", repeats, 1)
    n_workers = _check_int("n_workers", n_workers, 1)
    search = _check_int("search", search, 0)
    if (isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance)
            or tolerance < 0):
        raise ConfigError(
            f"reevaluate(tolerance=...) must be a number >= 0 (a fraction of the spread of the old top "
            f"values, e.g. 0.25), got {tolerance!r}"
        )
    if where is not None and not callable(where):
        raise ConfigError(f"reevaluate(where=...) must be a function f(frozen_trial) -> bool, got {where!r}")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ConfigError(f"reevaluate(name=...) must be a non-empty string (or None), got {name!r}")
    if sampler is not None and not isinstance(sampler, Sampler):
        raise ConfigError(f"reevaluate(sampler=...) must be a tunelab sampler such as TPESampler(), got {sampler!r}")

    if study.is_multi_objective:
        raise ConfigError(
            f"reevaluate: study {study.name!r} has {len(study.directions)} objectives "
            f"({', '.join(study.objective_names)}), but a verdict compares one value per configuration; re-run its "
            "Pareto front instead: a new study with the same directions, study.enqueue(t.params) for each t in "
            "study.best_trials"
        )
    candidates = _candidates(study, where)
    chosen = candidates[:top]
    _check_space(study, chosen)
    store = study.storage if storage is None else get_storage(storage)
    if n_workers > 1:
        pack_for_workers(objective, "reevaluate(objective=...)")  # checked before the new study is made
    new_name = _free_name(store, study.name, name)
    new_sampler = sampler if sampler is not None else _old_sampler(study)

    # -- the new study and the links --------------------------------------------------------
    # The search learns from the whole old study too (a warm start: rescaled where the objective
    # drifted, silenced if it no longer says anything), not only from the re-evaluated configurations.
    warm: list[str | tuple[str, str]] | None = None
    if search and isinstance(new_sampler, ModelBasedSampler):  # the others have no model to warm
        warm = [study.name] if store is study.storage else (
            [(study.name, study.storage.url)] if study.storage.url else None)
    new = create_study(name=new_name, storage=store, direction=study.direction, sampler=new_sampler,
                       seed=seed, space=study.space, warm_start=warm)
    link: dict[str, Any] = {
        "study": study.name, "numbers": [t.number for t in chosen],
        "at": datetime.now(timezone.utc).isoformat(), "repeats": repeats, "tolerance": tolerance,
    }
    if store is not study.storage:
        link["storage"] = study.storage.url
    new.set_system_attr(LINK_KEY, link)
    before = study.system_attrs.get(BACKLINK_KEY)
    study.set_system_attr(BACKLINK_KEY, [*(before if isinstance(before, list) else []), new.name])

    # -- the re-evaluations ------------------------------------------------------------------
    for _ in range(repeats):  # round-robin: an interrupted run has every configuration once first
        for t in chosen:
            new.enqueue(dict(t.params), user_attrs={LINK_KEY: {"number": t.number, "value": t.value}})
    superseded = _run_queue(new, objective, n_workers, show_progress)

    result = _judge(study, new, chosen, candidates, repeats, float(tolerance), superseded)
    new.set_system_attr(LINK_KEY, {**link, "verdicts": {str(r.old_number): r.verdict for r in result.rows},
                                   "spearman": result.spearman, "best_holds": result.best_holds})
    if search:
        new.optimize(objective, n_trials=search, n_workers=n_workers, show_progress=show_progress)
        result = replace(result, search_trials=search)
    return result


# -- helpers -----------------------------------------------------------------------------------
def _check_int(arg: str, value: object, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"reevaluate({arg}=...) must be an integer >= {least}, got {value!r}")
    return value


def _candidates(study: Study, where: Callable[[FrozenTrial], bool] | None) -> list[FrozenTrial]:
    """The old study's COMPLETE trials with parameters that pass ``where``, best first (ties by number; the
    trials that violate a constraint after the feasible ones)."""
    complete = [t for t in study.get_trials([TrialState.COMPLETE])
                if t.value is not None and math.isfinite(t.value)]
    if not complete:
        raise ConfigError(
            f"study {study.name!r} has no COMPLETE trial to re-evaluate; run study.optimize(...) first "
            "(or pick the study that holds the search)"
        )
    kept = [t for t in complete if t.params and (where is None or where(t))]
    if not kept:
        why = "passes where=; relax where= (or drop it)" if where is not None else (
            "has parameters; only a configuration can be run again")
        raise ConfigError(f"none of the {len(complete)} COMPLETE trials of study {study.name!r} {why}")
    key = sort_key(study.direction)
    # An infeasible trial is never among the best: after every feasible one, the nearest to feasible first.
    return sorted(kept, key=lambda t: (t.violation, key(t)))


def _check_space(study: Study, chosen: list[FrozenTrial]) -> None:
    """With a declared space, every chosen value must fit it (enqueue would refuse it later)."""
    if study.space is None:
        return
    for t in chosen:
        for param, value in t.params.items():
            if param in study.space:
                try:
                    unwrap(study.space[param]).cast(value)
                except InvalidDistributionError as e:
                    raise ConfigError(
                        f"trial {t.number} of study {study.name!r} has {param}={value!r}, outside the study's "
                        f"declared space ({e}); leave it out with where=lambda t: t.number != {t.number}"
                    ) from None


def _free_name(store: BaseStorage, old: str, name: str | None) -> str:
    """``name`` if free (an error if taken); without one the first free of ``<old>-reeval``, ``-reeval-2``, ..."""
    def taken(candidate: str) -> bool:
        try:
            store.get_study(candidate)
        except StudyNotFoundError:
            return False
        return True

    if name is not None:
        if taken(name):
            raise ConfigError(
                f"reevaluate(name={name!r}): a study of that name exists already; pick another name "
                "or leave name=None for the next free <study>-reeval-N"
            )
        return name
    candidate, n = f"{old}-reeval", 1
    while taken(candidate):
        n += 1
        candidate = f"{old}-reeval-{n}"
    return candidate


def _old_sampler(study: Study) -> Sampler:
    """The old study's sampler, rebuilt from the description stored with it."""
    description = study.system_attrs.get("sampler", {})
    try:
        return sampler_from_description(dict(description))
    except ConfigError:
        if study.sampler.describe() == description:
            return study.sampler  # a custom sampler class this process knows: samplers keep no state
        raise ConfigError(
            f"study {study.name!r} was searched with {description.get('name')!r}, which cannot be rebuilt "
            "here; pass reevaluate(..., sampler=...) for the new study"
        ) from None


def _run_queue(new: Study, objective: Objective, n_workers: int, show_progress: bool | None) -> set[int]:
    """Run every enqueued trial of ``new``; return the numbers of runs superseded by a retry.

    A ConfigError raised by one run stops ``optimize`` (it would repeat on every trial); here it
    belongs to one configuration, so the queue goes on, and runs the stop interrupted are enqueued
    again. If nothing completes at all, the first ConfigError is raised.
    """
    superseded: set[int] = set()
    first_error: ConfigError | None = None
    while True:
        waiting = len(new.get_trials([TrialState.WAITING]))
        if waiting == 0:
            break
        judged = _judged(new, superseded)
        try:
            new.optimize(objective, n_trials=waiting, n_workers=n_workers, show_progress=show_progress)
        except ConfigError as e:
            first_error = first_error or e
            _requeue_interrupted(new, superseded)
            if _judged(new, superseded) <= judged:
                raise  # no run ended on its own: the error is not a configuration's (say, pickling)
    if not new.get_trials([TrialState.COMPLETE]):
        if first_error is not None:
            raise first_error
        misfit = _enqueued_misfit(new)
        if misfit is not None:
            raise ConfigError(misfit)
    return superseded


def _enqueued_misfit(new: Study) -> str | None:
    """The message of a run that failed because its enqueued value no longer fits the objective's
    range (an EnqueuedValueError fails that run only; the study goes on), if any."""
    marker = "EnqueuedValueError: "
    for t in new.get_trials([TrialState.FAIL]):
        error = t.error or ""
        if marker in error:
            return error[error.rindex(marker) + len(marker):].strip().splitlines()[0]
    return None


def _judged(new: Study, superseded: set[int]) -> int:
    """How many runs have finished, other than those superseded by a retry."""
    finished = new.get_trials([TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL])
    return sum(t.number not in superseded for t in finished)


def _requeue_interrupted(new: Study, superseded: set[int]) -> None:
    """Enqueue again the re-evaluations that another run's stop interrupted (and supersede them)."""
    for t in new.get_trials([TrialState.FAIL]):
        if t.number not in superseded and (t.error or "").startswith("interrupted") and LINK_KEY in t.user_attrs:
            superseded.add(t.number)
            new.enqueue(dict(t.params), user_attrs={LINK_KEY: dict(t.user_attrs[LINK_KEY])})


def _judge(
    old: Study, new: Study, chosen: list[FrozenTrial], candidates: list[FrozenTrial], repeats: int,
    tolerance: float, superseded: set[int],
) -> Reevaluation:
    """The rows, the noise, the ranks and the correlation of a finished re-evaluation."""
    runs: dict[int, list[FrozenTrial]] = {t.number: [] for t in chosen}
    for t in new.trials:
        link = t.user_attrs.get(LINK_KEY)
        if isinstance(link, Mapping) and link.get("number") in runs and t.number not in superseded:
            runs[link["number"]].append(t)
    values = {n: [t.value for t in ts if t.state == TrialState.COMPLETE and t.value is not None]
              for n, ts in runs.items()}
    reference = [t.value for t in candidates[:max(len(chosen), MIN_REFERENCE)] if t.value is not None]
    spread = max(reference) - min(reference)
    if spread <= 0:
        spread = abs(reference[0]) or 1.0
    # Pooled standard deviation of repeated runs (each configuration's own mean removed).
    squares, dof = 0.0, 0
    for vs in values.values():
        if len(vs) >= 2:
            mean = sum(vs) / len(vs)
            squares += sum((v - mean) ** 2 for v in vs)
            dof += len(vs) - 1
    noise = math.sqrt(squares / dof) if dof else None
    sign = 1.0 if old.direction == "minimize" else -1.0

    staged: list[dict[str, Any]] = []
    for rank, t in enumerate(chosen, start=1):
        assert t.value is not None  # COMPLETE trials have one
        ts, vs = runs[t.number], values[t.number]
        new_mean = sum(vs) / len(vs) if vs else None
        margin = tolerance * spread
        if noise is not None and vs:
            margin = max(margin, 2.0 * noise * math.sqrt(1.0 + 1.0 / len(vs)))
        errors = tuple(x.error or f"{x.state.value}" for x in ts if x.state != TrialState.COMPLETE)
        if errors or new_mean is None:
            verdict = "failed"
        else:
            worse = sign * (new_mean - t.value)
            verdict = "stale" if worse > margin else "better" if worse < -margin else "holds"
        staged.append({
            "old_number": t.number, "params": dict(t.params), "old_value": t.value, "old_rank": rank,
            "new_numbers": tuple(x.number for x in ts), "new_values": tuple(vs), "new_value": new_mean,
            "new_spread": _std(vs), "change": None if new_mean is None else new_mean - t.value, "new_rank": None,
            "margin": margin, "verdict": verdict, "errors": errors,
        })
    ok = [s for s in staged if s["verdict"] != "failed"]
    for rank, s in enumerate(sorted(ok, key=lambda s: (sign * s["new_value"], s["old_rank"])), start=1):
        s["new_rank"] = rank
    rows = tuple(ReevaluatedConfig(**s) for s in staged)
    spearman = _spearman([s["old_value"] for s in ok], [s["new_value"] for s in ok])
    best_holds = rows[0].verdict != "failed" and rows[0].new_rank == 1
    return Reevaluation(
        study=new, source=old.name, direction=old.direction, rows=rows, repeats=repeats, tolerance=tolerance,
        spread=spread, noise=noise, spearman=spearman, best_holds=best_holds,
    )
