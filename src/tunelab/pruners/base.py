"""The pruner protocol: from the stored curves, decide whether a running trial should stop now.

A pruner (a scheduler, in Ray Tune's words) gets the same read-only :class:`History` as a
sampler, plus the trial's number, the step it just reported and its value there. Every
decision derives from what the storage holds (:meth:`History.metric_at`), so any number of
workers on one database make the same decisions; a pruner keeps no state of its own.
"""

from __future__ import annotations

import functools
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tunelab.errors import ConfigError
from tunelab.history import History
from tunelab.records import check_direction


@dataclass(frozen=True)
class PruneDecision:
    """Stop the trial, and why (stored with the pruned trial as evidence).

    Attributes:
        rule: the pruner's short name and the rule that fired, e.g. 'asha rung 3'.
        detail: the evidence in words: values compared, how many trials.
        evidence: the evidence as JSON data (e.g. a prediction, its interval, the incumbent), stored
            with the decision; None: the words say it all.
        stop: True (the default): stop the trial. False: a decision to go on that is worth keeping
            (the curve pruner's prediction): the trial stores the latest one as
            ``system_attrs["prediction"]`` and goes on, as if the pruner had returned None.
    """

    rule: str
    detail: str
    evidence: Mapping[str, Any] | None = None
    stop: bool = True


class Curve(dict[int, float]):
    """A trial's values of one metric by step, as it reports them, keeping what pruners ask at every
    report in O(1): the last (highest) step, the one before it, and the lowest and highest values so
    far (NaN left out)."""

    def __init__(self) -> None:
        super().__init__()
        self.last_step = -1
        self.previous_step = -1
        self.low = math.inf
        self.high = -math.inf
        self.counted = 0

    def __setitem__(self, step: int, value: float) -> None:
        dict.__setitem__(self, step, value)  # not super(): this runs at every report of every metric
        if step > self.last_step:
            self.previous_step = self.last_step
            self.last_step = step
        if value == value:  # not NaN
            if value < self.low:
                self.low = value
            if value > self.high:
                self.high = value
            self.counted += 1


def last_step(curve: Mapping[int, float]) -> int:
    """The highest step of ``curve`` (O(1) for a :class:`Curve`)."""
    if isinstance(curve, Curve) and curve.last_step >= 0:
        return curve.last_step
    return max(curve)


def previous_step(curve: Mapping[int, float]) -> int:
    """The highest step of ``curve`` below its last one, -1 when there is none (O(1) for a :class:`Curve`)."""
    if isinstance(curve, Curve) and curve.last_step >= 0:
        return curve.previous_step
    steps = sorted(curve)
    return steps[-2] if len(steps) > 1 else -1


def best_so_far(curve: Mapping[int, float], direction: str) -> float | None:
    """The best value of ``curve``, NaN left out (None when every value is NaN; O(1) for a
    :class:`Curve`, where a value replaced by a second report at its step still counts)."""
    if isinstance(curve, Curve):
        if not curve.counted:
            return None
        return curve.low if direction == "minimize" else curve.high
    values = [v for v in curve.values() if not math.isnan(v)]
    if not values:
        return None
    return min(values) if direction == "minimize" else max(values)


_VALIDATION_PREFIXES = ("val_", "val-", "valid_", "validation_", "eval_",
                        "val/", "valid/", "validation/", "eval/")  # 'val/loss', 'eval/loss': Lightning, HF, TensorBoard
_TRAINING_PREFIXES = ("train_", "train-", "training_", "train/", "training/")
_MINIMIZED_WORDS = frozenset({"loss", "error", "err", "mse", "mae", "rmse", "nll", "perplexity", "ppl", "cost",
                              "regret", "wer", "cer"})
_MAXIMIZED_WORDS = frozenset({"acc", "accuracy", "score", "f1", "auc", "auroc", "roc", "precision", "recall", "r2",
                              "map", "iou", "dice", "bleu", "rouge", "reward", "top1", "top5"})


def report_example(names: Sequence[str], step: str = "step") -> str:
    """``trial.report(step, val_loss=...)`` for ``names``, as Python takes them: a name that is not an
    identifier (``validation-logloss``, ``val/loss``) goes in ``**{...}``."""
    if all(n.isidentifier() for n in names):
        return f"trial.report({step}, {', '.join(f'{n}=...' for n in names)})"
    return f"trial.report({step}, **{{{', '.join(f'{n!r}: ...' for n in names)}}})"


def is_validation_metric(name: str) -> bool:
    """Whether ``name`` is a validation metric by its prefix (``val_``, ``valid_``, ``eval_``, ``val/``...)."""
    return name.lower().startswith(_VALIDATION_PREFIXES)


@functools.lru_cache(maxsize=1024)
def metric_kind(name: str) -> str | None:
    """'minimize' or 'maximize' when a metric's name says so (``val_loss``, ``val_error``;
    ``val_acc``, ``f1_score``, ``auc``), else None. Names are read word by word."""
    words = set(re.split(r"[^a-z0-9]+", name.lower()))
    low, high = bool(words & _MINIMIZED_WORDS), bool(words & _MAXIMIZED_WORDS)
    if low == high:
        return None
    return "minimize" if low else "maximize"


def choose_metric(reported: Sequence[str], direction: str) -> tuple[str | None, str]:
    """The metric a pruner without ``metric=`` stops trials on, among several ``reported`` at once
    (the rule of :meth:`Pruner.metric_of`): ``(name, "")``, or ``(None, why not)``."""
    validation = [m for m in reported if m.lower().startswith(_VALIDATION_PREFIXES)]
    candidates = validation or [m for m in reported if not m.lower().startswith(_TRAINING_PREFIXES)]
    what = "validation metrics" if validation else "metrics"
    if not candidates:
        return None, "they are all training metrics"
    matching = [m for m in candidates if metric_kind(m) == direction]
    if len(matching) == 1:
        return matching[0], ""
    if len(matching) > 1:
        return None, f"the {what} {matching} all look like metrics to {direction}"
    neutral = [m for m in candidates if metric_kind(m) is None]
    if len(candidates) == 1 and neutral:
        return candidates[0], ""
    if not neutral:
        other = "maximize" if direction == "minimize" else "minimize"
        return None, f"the {what} {candidates} look like metrics to {other}, and the pruning direction is {direction}"
    return None, f"none of the {what} {candidates} says by its name whether to {direction} it"


NO_DECISION = 2**63 - 1
"""What :meth:`Pruner.next_decision` answers when no later report can be stopped (the largest step stored)."""


class Pruner(ABC):
    """Base class of pruners.

    Args:
        metric: the reported metric that drives early stopping (e.g. 'val_loss'). None: the
            only metric the trial reports or, when it reports several, the validation metric
            whose name fits the direction (see :meth:`metric_of`).
        direction: 'minimize' or 'maximize' for that metric; None: the study's direction.
    """

    def __init__(self, metric: str | None = None, direction: str | None = None) -> None:
        if metric is not None and (not isinstance(metric, str) or not metric):
            raise ConfigError(f"{type(self).__name__}(metric=...) must be a metric name such as 'val_loss', "
                              f"got {metric!r}")
        self.metric = metric
        self.direction = check_direction(direction) if direction is not None else None

    def metric_of(self, reported: Mapping[str, float], direction: str | None = None) -> str:
        """The metric this pruner reads among those a trial reported at its last step.

        ``metric=`` when given. Without it: the only metric reported; of several, the one
        validation metric (``val_*``, ``valid_*``, ``validation_*``, ``eval_*``, ``val/*``, ``eval/*``; when
        there is none, the metrics not named ``train_*`` or ``train/*``) whose name fits the pruning direction
        (``direction``: this pruner's, else the study's): ``loss``, ``error``, ``mse``... for
        minimize, ``acc``, ``f1``, ``auc``, ``score``... for maximize; or the one such metric
        whose name says neither. So ``report(epoch, train_loss=..., val_loss=..., val_acc=...)``
        prunes on ``val_loss`` in a study that minimizes and on ``val_acc`` in one that maximizes.
        Anything else (two validation losses, ``val_acc`` alone in a minimizing study) is a
        ConfigError that names the metrics and the fix, raised at the first decision.

        A named validation metric (``metric='val_loss'``) missing from a report of training metrics only
        (``train_loss`` every epoch, ``val_loss`` every 2), or reported at earlier steps, means no
        decision at that report (the study's engine asks this only when the report holds it, or when the
        report holds another validation metric: a typo).
        """
        if self.metric is not None:
            if self.metric not in reported:
                raise ConfigError(
                    f"{type(self).__name__} stops trials on metric '{self.metric}', but the trial reported "
                    f"only {sorted(reported)}; report it, e.g. {report_example([self.metric], 'epoch')}"
                )
            return self.metric
        if len(reported) == 1:
            return next(iter(reported))
        direction = self.direction or direction or "minimize"
        names = sorted(reported)
        chosen, why = choose_metric(names, direction)
        if chosen is not None:
            return chosen
        example = next((m for m in names if m.lower().startswith(_VALIDATION_PREFIXES)), names[0])
        kind = metric_kind(example) or direction
        raise ConfigError(
            f"{type(self).__name__} cannot tell which of the metrics the trial reports, {names}, drives early "
            f"stopping: {why}. Name it, e.g. {type(self).__name__}(metric={example!r}, direction={kind!r})"
        )

    def direction_for(self, history: History) -> str:
        """The direction of the pruning metric: this pruner's, else the study's. A ConfigError when the
        pruner names a metric whose name says the other direction (``metric='val_acc'`` in a study that
        minimizes val_loss), which it would otherwise rank upside down, stopping the best trials."""
        if self.direction is not None:
            return self.direction
        direction = history.direction
        if self.metric is not None:
            kind = metric_kind(self.metric)
            if kind is not None and kind != direction:
                name = type(self).__name__
                raise ConfigError(
                    f"{name}(metric={self.metric!r}) takes the study's direction, {direction!r}, but "
                    f"{self.metric!r} looks like a metric to {kind}: give {name}(metric={self.metric!r}, "
                    f"direction={kind!r}) (or direction={direction!r} if {direction} is right)"
                )
        return direction

    @abstractmethod
    def decide(self, history: History, number: int, metric: str, curve: Mapping[int, float]) -> PruneDecision | None:
        """A decision to stop trial ``number`` now; None (or a decision with ``stop=False``): go on.

        ``curve`` is the trial's own ``metric`` by step so far; its last step is the one just reported.
        """

    def next_decision(self, history: History, number: int, previous: int) -> int:
        """The first step after ``previous`` (trial ``number``'s last report; -1: none) at which a report could
        be stopped: :meth:`decide` answers None to a report below it that follows ``previous`` (between rungs,
        in a warm-up; :data:`NO_DECISION` when nothing can be stopped yet, as before ``n_startup_trials``
        complete). An answer that depends on the other trials holds until the caller asks again: callbacks that
        report many steps a second (a boosting round every few milliseconds) ask the pruner only from that step
        on, and ask this again at least every half second. The base answers ``previous + 1``."""
        return previous + 1

    def describe(self) -> dict[str, Any]:
        """A JSON description stored with the study (class name and settings)."""
        return {"name": type(self).__name__, "metric": self.metric, "direction": self.direction}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "name")
        return f"{type(self).__name__}({args})"


def better_or_equal(a: float, b: float, direction: str) -> bool:
    """Whether ``a`` is at least as good as ``b`` (NaN is never good)."""
    if math.isnan(a):
        return False
    if math.isnan(b):
        return True
    return a <= b if direction == "minimize" else a >= b


def check_int(owner: str, name: str, value: object, minimum: int) -> int:
    """``value`` as an int >= ``minimum``, or a ConfigError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{owner}({name}=...) must be an integer >= {minimum}, got {value!r}")
    return value
