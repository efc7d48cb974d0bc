"""The read-only view of a study that samplers and pruners receive.

Samplers never get the Study: they get a :class:`History`, which can read
trials but cannot change anything. Finished trials never change, so the view
caches them and asks the storage only for trials it has not seen finish.
"""

from __future__ import annotations

import math
import secrets
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tunelab.multiobjective import crowding_distance, feasible_complete, losses, non_dominated_sort
from tunelab.records import FrozenTrial, StudyRecord, TrialState, sort_key, study_directions
from tunelab.space import SpaceEntry
from tunelab.storage.base import BaseStorage, MetricPoint


@dataclass(frozen=True)
class SourceStudy:
    """An earlier study a warm-started study learns from (``create_study(warm_start=...)``).

    Attributes:
        name: its name (and storage, when another: ``name @ url``).
        direction: its direction.
        trials: its COMPLETE trials, as they were when this process loaded it.
    """

    name: str
    direction: str
    trials: tuple[FrozenTrial, ...]


_STORAGE_TOKENS: weakref.WeakKeyDictionary[BaseStorage, str] = weakref.WeakKeyDictionary()


def _storage_token(storage: BaseStorage) -> str:
    """A token for this storage object, never given to another one (unlike ``id``, reused once the
    object is gone)."""
    try:
        token = _STORAGE_TOKENS.get(storage)
        if token is None:
            token = _STORAGE_TOKENS[storage] = secrets.token_hex(8)
        return token
    except TypeError:  # a storage that cannot be referred to weakly: a token for this view alone
        return secrets.token_hex(8)


class History:
    """Read-only access to one study's trials, refreshed lazily once per trial.

    Attributes:
        study_name: the study's name.
        direction: 'minimize' or 'maximize' (the first objective's, in a study with several).
        directions: every objective's direction (one for a single-objective study): each trial's
            ``values`` hold one value per direction.
        seed: the study's seed (every random draw derives from it).
        space: the declared search space, or None for define-by-run objectives.
        pruning: when the study has a pruner, ``(metric, direction)`` of the metric that drives
            early stopping (metric None when the pruner did not name it); else None.
        sources: the earlier studies a warm-started study learns from (loaded once, when a sampler
            first reads them), or empty.
        replay_width: in a deterministic study, trial ``n`` plans from the results of the trials
            numbered below ``n - replay_width + 1`` only (see :mod:`tunelab.study.replay`); else None.
        study_key: which study of which storage object this is: a sampler that caches what it learnt
            from one study's trials (by trial number) starts over when it is handed another study.
    """

    def __init__(
        self,
        storage: BaseStorage,
        study: StudyRecord,
        space: Mapping[str, SpaceEntry] | None = None,
    ) -> None:
        self._storage = storage
        self._study_id = study.study_id
        self.study_key: tuple[object, ...] = (_storage_token(storage), study.study_id, study.name, study.seed)
        self.study_name = study.name
        self.direction = study.direction
        self.directions: tuple[str, ...] = study_directions(study)
        self.seed = study.seed
        self.space = space
        self.pruning: tuple[str | None, str] | None = None
        self.replay_width: int | None = None
        self._sources: tuple[SourceStudy, ...] | None = ()
        self._load_sources: Callable[[], tuple[SourceStudy, ...]] | None = None
        self._finished: dict[int, FrozenTrial] = {}
        self._prefix = 0  # every trial numbered below this is finished and cached
        self._trials: list[FrozenTrial] | None = None
        self._counts: dict[frozenset[TrialState], int] = {}

    def set_sources(self, load: Callable[[], tuple[SourceStudy, ...]] | None) -> None:
        """Where :attr:`sources` come from: ``load()`` is called once, at the first read."""
        self._load_sources = load
        self._sources = None if load is not None else ()

    @property
    def sources(self) -> tuple[SourceStudy, ...]:
        if self._sources is None:
            assert self._load_sources is not None
            self._sources = self._load_sources()
        return self._sources

    def invalidate(self) -> None:
        """Forget the unfinished part; the next read asks the storage again."""
        self._trials = None
        self._counts.clear()

    def count(self, states: Iterable[TrialState]) -> int:
        """How many trials are in ``states`` (``len(trials(states))``, kept until the next refresh:
        a pruner asks it at every report)."""
        key = frozenset(states)
        if self._trials is None or key not in self._counts:
            self._counts[key] = len(self.trials(key))
        return self._counts[key]

    def trials(self, states: Iterable[TrialState] | None = None) -> list[FrozenTrial]:
        """All trials ordered by number, optionally only those in ``states``."""
        if self._trials is None:
            self._trials = self._refresh()
            self._counts.clear()
        if states is None:
            return list(self._trials)
        wanted = set(states)
        return [t for t in self._trials if t.state in wanted]

    def _refresh(self) -> list[FrozenTrial]:
        fresh = self._storage.get_trials(self._study_id, min_number=self._prefix)
        for t in fresh:
            if t.state.is_finished:
                self._finished[t.number] = t
        while self._prefix in self._finished:
            self._prefix += 1
        cached = [self._finished[n] for n in range(self._prefix)]
        return cached + [t for t in fresh if t.number >= self._prefix]

    def completed(self) -> list[FrozenTrial]:
        """COMPLETE trials with a finite value, in number order."""
        return [
            t for t in self.trials((TrialState.COMPLETE,))
            if t.value is not None and math.isfinite(t.value)
        ]

    def pending(self, exclude: int | None = None) -> list[FrozenTrial]:
        """Trials RUNNING now (other workers' trials), optionally without trial ``exclude``.

        What a parallel-aware sampler avoids proposing again: their params so far (written
        at their first report) and what samplers recorded for them (e.g. a grid cell, at
        once). Model-based samplers use them as "constant liars".
        """
        return [t for t in self.trials((TrialState.RUNNING,)) if t.number != exclude]

    @property
    def is_multi_objective(self) -> bool:
        """Whether the study has several objectives."""
        return len(self.directions) > 1

    def completed_values(self) -> list[FrozenTrial]:
        """COMPLETE trials with every objective's value (finite), feasible or not, in number order."""
        n = len(self.directions)
        return [
            t for t in self.trials((TrialState.COMPLETE,))
            if t.values is not None and len(t.values) == n and all(math.isfinite(v) for v in t.values)
        ]

    def losses(self, trials: Sequence[FrozenTrial]) -> np.ndarray:
        """The trials' values as losses, shape (n, objectives): maximised objectives negated."""
        return losses([t.values for t in trials], self.directions)  # type: ignore[misc]

    def top(self, k: int) -> list[FrozenTrial]:
        """The ``k`` best COMPLETE trials, best first (ties by lower number); feasible ones first, then the
        infeasible ones by their total violation (Deb's constraint-domination: the nearest to feasible first).

        Several objectives: the first Pareto front of the feasible trials first (its least crowded
        trials first), then the next front, ...
        """
        if not self.is_multi_objective:
            key = sort_key(self.direction)
            return sorted(self.completed(), key=lambda t: (t.violation, key(t)))[:k]
        done = self.completed_values()
        feasible = feasible_complete(done, len(self.directions))
        ranked: list[FrozenTrial] = []
        if feasible:
            points = self.losses(feasible)
            for front in non_dominated_sort(points):
                crowd = crowding_distance(points[front])
                ranked.extend(feasible[front[i]] for i in np.argsort(-crowd, kind="stable"))
                if len(ranked) >= k:
                    break
        if len(ranked) < k:
            ranked.extend(sorted((t for t in done if not t.feasible), key=lambda t: (t.violation, t.number)))
        return ranked[:k]

    def metric_at(self, metric: str, steps: Sequence[int] | None) -> list[MetricPoint]:
        """Every trial's value of ``metric`` at ``steps`` (all steps when None), read from the
        storage now (not cached: running trials report all the time). For pruners."""
        return self._storage.get_metric_at(self._study_id, metric, steps)
