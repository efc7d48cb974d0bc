"""Asynchronous successive halving (ASHA) and Hyperband (brackets of ASHA).

Rungs sit at steps ``min_resource * eta ** k`` (k = 0, 1, ...; up to ``max_resource``). When a
trial reports at a rung step, it goes on only if its value there is among the best ``1/eta``
of every value recorded at that rung so far (its own included; trials of its bracket only):
with ``n`` values, it must rank within the best ``max(1, n // eta)``. A trial whose reports step
past a rung (validation every 2 epochs against rungs at 1, 3, 9) is judged at its first report
past it, against every trial's value at that same step (like for like when the trials report
alike; Optuna judges such reports the same way). No trial waits for others
(asynchronous, as in Li et al. 2020): early trials compete with fewer, later ones with more.
The values come from the storage, so any number of workers decide alike.

Hyperband (Li et al. 2018) runs several such ladders at once: bracket ``b`` starts its
first rung ``eta ** b`` times later, so it stops less eagerly, and the last bracket stops
nothing; each bracket makes the halvings its weight counts on, so its last rung is at most
``R / eta`` whatever ``R``. Each trial belongs to one bracket, chosen by
its number with the weights of Hyperband's budget split (aggressive brackets get more trials),
spread evenly over the trial numbers so that every stretch of trials follows the split.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tunelab.errors import ConfigError
from tunelab.history import History
from tunelab.pruners.base import (
    NO_DECISION,
    PruneDecision,
    Pruner,
    better_or_equal,
    check_int,
    last_step,
    previous_step,
)


def _check_eta(owner: str, eta: object) -> int:
    if isinstance(eta, bool) or not isinstance(eta, int) or eta < 2:
        raise ConfigError(f"{owner}(reduction_factor=...) must be an integer >= 2 (3 is usual), got {eta!r}")
    return eta


def rung_steps(min_resource: int, reduction_factor: int, max_resource: int | None, first_rung: int,
               up_to: int) -> list[int]:
    """Rung steps ``min_resource * eta ** (first_rung + k)`` up to ``up_to``, below ``max_resource``
    (the full budget is the end of training, not a rung)."""
    out: list[int] = []
    k = first_rung
    while True:
        r = min_resource * reduction_factor**k
        if r > up_to or (max_resource is not None and r >= max_resource):
            return out
        out.append(r)
        k += 1


def rung_after(min_resource: int, reduction_factor: int, max_resource: int | None, first_rung: int,
               previous: int) -> int:
    """The first rung step ``min_resource * eta ** (first_rung + k)`` after ``previous``, or
    :data:`~tunelab.pruners.base.NO_DECISION` when none is left below ``max_resource``."""
    k = first_rung
    while True:
        r = int(min_resource * reduction_factor**k)
        if max_resource is not None and r >= max_resource:
            return NO_DECISION
        if r > previous:
            return r
        k += 1


def rung_judged(rungs: Sequence[int], curve: Mapping[int, float], step: int) -> int | None:
    """The rung that the report at ``step`` (the last of ``curve``) is judged at: ``step`` itself when it
    is a rung step; else the latest rung of ``rungs`` (those at or below ``step``) when the report before
    it came below that rung (the first report past a rung, as with validation every 2 epochs against
    rungs at 1, 3, 9); else None (no rung since the last report)."""
    if not rungs:
        return None
    if rungs[-1] == step:
        return step
    return rungs[-1] if rungs[-1] > previous_step(curve) else None


class SuccessiveHalvingPruner(Pruner):
    """ASHA: at each rung, keep the best ``1 / reduction_factor`` of the trials that reached it.

    Args:
        min_resource: the first rung's step (e.g. 1 epoch).
        reduction_factor: eta; each rung keeps 1/eta of the trials.
        max_resource: the full budget (e.g. 81 epochs); no rung at or past it. None: no cap.
        min_early_stopping_rate: skip this many of the first rungs (Hyperband's bracket).
        metric: see :class:`Pruner`.
        direction: see :class:`Pruner`.

    Examples:
        Rungs at epochs 1, 3 and 9 (``min_resource * reduction_factor ** k``):

        >>> import tunelab
        >>> def objective(trial):
        ...     lr = trial.suggest_float("lr", 1e-4, 1.0, log=True)
        ...     loss = 1.0
        ...     for epoch in range(1, 10):
        ...         loss *= 1.0 - min(lr, 0.5)         # "training": a larger lr learns faster
        ...         trial.report(epoch, val_loss=loss)
        ...         if trial.should_prune():
        ...             raise tunelab.TrialPruned()
        ...     return loss
        >>> pruner = tunelab.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3, max_resource=27)
        >>> pruner.rungs(27)
        [1, 3, 9]
        >>> study = tunelab.create_study(sampler=tunelab.RandomSampler(), pruner=pruner, seed=0)
        >>> study.optimize(objective, n_trials=20)
        >>> len(study.get_trials([tunelab.TrialState.PRUNED])) >= 10, study.best_value < 0.01
        (True, True)
    """

    def __init__(
        self,
        *,
        min_resource: int = 1,
        reduction_factor: int = 3,
        max_resource: int | None = None,
        min_early_stopping_rate: int = 0,
        metric: str | None = None,
        direction: str | None = None,
    ) -> None:
        super().__init__(metric, direction)
        self.min_resource = check_int("SuccessiveHalvingPruner", "min_resource", min_resource, 1)
        self.reduction_factor = _check_eta("SuccessiveHalvingPruner", reduction_factor)
        if max_resource is not None:
            check_int("SuccessiveHalvingPruner", "max_resource", max_resource, min_resource)
        self.max_resource = max_resource
        self.min_early_stopping_rate = check_int(
            "SuccessiveHalvingPruner", "min_early_stopping_rate", min_early_stopping_rate, 0
        )
        first = self.min_resource * self.reduction_factor**self.min_early_stopping_rate
        if self._needs_a_rung and max_resource is not None and first >= max_resource:
            raise ConfigError(
                f"SuccessiveHalvingPruner: the first rung (min_resource={self.min_resource} * reduction_factor="
                f"{self.reduction_factor} ** min_early_stopping_rate={self.min_early_stopping_rate} = step {first}) "
                f"is not below max_resource={max_resource}, so no trial would ever be stopped; lower min_resource "
                "(or min_early_stopping_rate) or raise max_resource"
            )

    _needs_a_rung = True
    """A pruner with no rung below max_resource is a ConfigError (a Hyperband bracket may have none)."""

    def rungs(self, up_to: int) -> list[int]:
        """The rung steps at or below ``up_to``."""
        return rung_steps(self.min_resource, self.reduction_factor, self.max_resource,
                          self.min_early_stopping_rate, up_to)

    def decide(self, history: History, number: int, metric: str, curve: Mapping[int, float]) -> PruneDecision | None:
        return self._decide_in(history, number, metric, curve, label="asha")

    def next_decision(self, history: History, number: int, previous: int) -> int:
        """The first rung after ``previous`` (a report at or past it is judged: :func:`rung_judged`)."""
        return self.rung_after(previous)

    def rung_after(self, previous: int) -> int:
        """The first rung step after ``previous``; :data:`NO_DECISION` when none is left below ``max_resource``."""
        return rung_after(self.min_resource, self.reduction_factor, self.max_resource,
                          self.min_early_stopping_rate, previous)

    def _decide_in(
        self, history: History, number: int, metric: str, curve: Mapping[int, float],
        label: str, peer: Callable[[int], bool] | None = None,
    ) -> PruneDecision | None:
        step = last_step(curve)
        rung = rung_judged(self.rungs(up_to=step), curve, step)
        if rung is None:
            return None
        value = curve[step]
        competing = [p.value for p in history.metric_at(metric, [step])
                     if p.number != number and (peer is None or peer(p.number))]
        competing.append(value)
        direction = self.direction_for(history)
        n_keep = max(1, len(competing) // self.reduction_factor)
        ranked = sorted(competing, key=lambda v: (math.isnan(v), v if direction == "minimize" else -v))
        cut = ranked[n_keep - 1]
        if better_or_equal(value, cut, direction):
            return None
        past = "" if rung == step else f", the first report past the rung at step {rung}"
        return PruneDecision(
            rule=f"{label} rung at step {rung}",
            detail=f"{metric} {value:.6g} is not among the best {n_keep} of {len(competing)} values at step {step} "
                   f"(cut {cut:.6g}, reduction factor {self.reduction_factor}{past})",
        )

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(), "min_resource": self.min_resource, "reduction_factor": self.reduction_factor,
            "max_resource": self.max_resource, "min_early_stopping_rate": self.min_early_stopping_rate,
        }


_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
"""The golden ratio's conjugate: ``frac(n * _GOLDEN)`` spreads n = 0, 1, 2, ... evenly over [0, 1)."""


def hyperband_rungs(min_resource: int, max_resource: int, reduction_factor: int) -> list[list[int]]:
    """Each Hyperband bracket's rung steps. With ``s_max = floor(log_eta(R / r))`` (r = min_resource),
    bracket ``b`` makes the ``s_max - b`` halvings its weight in Hyperband's split counts on (Li et al.
    2018), at ``r * eta ** k`` for k = b, ..., s_max - 1; so the last bracket stops nothing and every
    bracket's last rung is at most ``R / eta``. When ``R / r`` is not a power of eta, ``r * eta ** s_max``
    lies between ``R / eta`` and ``R`` and is no rung: a stop there would save less than a ``1 - 1 / eta``
    share of a training (R = 28: a rung at 27), and the brackets would make one halving more than
    their weights assume (R = 20: no bracket that trains its trials to the end).
    """
    s_max = int(math.floor(math.log(max_resource / min_resource, reduction_factor) + 1e-9))
    return [[min_resource * reduction_factor**k for k in range(b, s_max)] for b in range(s_max + 1)]


class _Bracket(SuccessiveHalvingPruner):
    """One Hyperband bracket: ASHA on a given list of rung steps."""

    _needs_a_rung = False  # the last bracket stops nothing

    def __init__(self, rungs: list[int], reduction_factor: int, max_resource: int,
                 metric: str | None, direction: str | None) -> None:
        super().__init__(min_resource=rungs[0] if rungs else max_resource, reduction_factor=reduction_factor,
                         max_resource=max_resource, metric=metric, direction=direction)
        self._rungs = list(rungs)

    def rungs(self, up_to: int) -> list[int]:
        return [r for r in self._rungs if r <= up_to]

    def rung_after(self, previous: int) -> int:
        return next((r for r in self._rungs if r > previous), NO_DECISION)


class HyperbandPruner(Pruner):
    """Hyperband: brackets of ASHA with later and later first rungs; a trial's number picks its bracket.

    Args:
        min_resource: the first rung of the most aggressive bracket.
        max_resource: the full budget (required: it sets the number of brackets; no rung past
            ``max_resource / reduction_factor``).
        reduction_factor: eta.
        metric: see :class:`Pruner`.
        direction: see :class:`Pruner`.

    Examples:
        >>> import tunelab
        >>> def objective(trial):
        ...     lr = trial.suggest_float("lr", 1e-4, 1.0, log=True)
        ...     loss = 1.0
        ...     for epoch in range(1, 10):
        ...         loss *= 1.0 - min(lr, 0.5)         # "training": a larger lr learns faster
        ...         trial.report(epoch, val_loss=loss)
        ...         if trial.should_prune():
        ...             raise tunelab.TrialPruned()
        ...     return loss
        >>> pruner = tunelab.HyperbandPruner(min_resource=1, max_resource=9, reduction_factor=3)
        >>> [b.rungs(up_to=9) for b in pruner.brackets]
        [[1, 3], [3], []]
        >>> [pruner.bracket_of(n) for n in range(17)]    # each trial's bracket by its number: 9, 5, 3 in 17
        [0, 1, 0, 2, 0, 0, 1, 0, 2, 1, 0, 1, 0, 0, 1, 0, 2]
        >>> study = tunelab.create_study(sampler=tunelab.RandomSampler(), pruner=pruner, seed=0)
        >>> study.optimize(objective, n_trials=20)
        >>> len(study.get_trials([tunelab.TrialState.PRUNED])) >= 5, study.best_value < 0.01
        (True, True)
    """

    def __init__(
        self,
        *,
        min_resource: int = 1,
        max_resource: int = 81,
        reduction_factor: int = 3,
        metric: str | None = None,
        direction: str | None = None,
    ) -> None:
        super().__init__(metric, direction)
        self.min_resource = check_int("HyperbandPruner", "min_resource", min_resource, 1)
        self.max_resource = check_int("HyperbandPruner", "max_resource", max_resource, min_resource)
        self.reduction_factor = _check_eta("HyperbandPruner", reduction_factor)
        if self.min_resource * self.reduction_factor > self.max_resource:
            raise ConfigError(
                f"HyperbandPruner(max_resource={self.max_resource}) must be at least min_resource * reduction_factor "
                f"= {self.min_resource * self.reduction_factor}: below that no bracket has a rung and no trial would "
                "ever be stopped; raise max_resource (or lower min_resource)"
            )
        rungs = hyperband_rungs(self.min_resource, self.max_resource, self.reduction_factor)
        self.n_brackets = len(rungs)
        s_max = self.n_brackets - 1
        # Bracket b (s_max - b halvings) gets Hyperband's share of the configurations:
        # ceil((s_max + 1) / (s_max - b + 1) * eta ** (s_max - b)), so every bracket spends about as much.
        self.bracket_weights = [
            math.ceil((s_max + 1) / (s_max - b + 1) * self.reduction_factor ** (s_max - b))
            for b in range(self.n_brackets)
        ]
        total = sum(self.bracket_weights)
        self._edges = [sum(self.bracket_weights[: b + 1]) / total for b in range(self.n_brackets)]
        self.brackets: list[SuccessiveHalvingPruner] = [
            _Bracket(r, self.reduction_factor, self.max_resource, metric, direction) for r in rungs
        ]

    def bracket_of(self, number: int) -> int:
        """The bracket of trial ``number``, a fixed function of it: ``frac(number * 0.618...)`` (a
        low-discrepancy sequence) falls in bracket b's share of [0, 1), so any ``n`` consecutive trials
        hold ``n * weight / total`` of bracket b, give or take 3."""
        u = (number * _GOLDEN) % 1.0
        for s, edge in enumerate(self._edges):
            if u < edge:
                return s
        return self.n_brackets - 1

    def decide(self, history: History, number: int, metric: str, curve: Mapping[int, float]) -> PruneDecision | None:
        s = self.bracket_of(number)
        bracket = self.brackets[s]
        step = last_step(curve)
        if rung_judged(bracket.rungs(up_to=step), curve, step) is None:
            return None
        return bracket._decide_in(history, number, metric, curve, label=f"hyperband bracket {s}",
                                  peer=lambda n: self.bracket_of(n) == s)

    def next_decision(self, history: History, number: int, previous: int) -> int:
        """The first rung of the trial's bracket after ``previous``."""
        return self.brackets[self.bracket_of(number)].rung_after(previous)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(), "min_resource": self.min_resource, "max_resource": self.max_resource,
            "reduction_factor": self.reduction_factor,
        }
