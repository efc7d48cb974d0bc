"""What to change in a run while it trains: suggestions a person accepts, and automatic rules.

:func:`suggest` reads a branch's learning curves with :func:`tunelab.analysis.diagnosis.diagnose_curves`
and turns its findings into concrete nudges on the run's own hyperparameters ("halve the learning rate
to 0.05", "roll back to step 30 with weight_decay 3e-4"); :func:`accept` applies one.

:func:`watch` applies rules such as :class:`ReduceOnPlateau` to the run's running branch as its curve
grows. Rules keep no state of their own: "since the last change" is read from the branch's stored live
schedule and its pending requests, so a watcher restarted at any moment takes the same decisions, and
never acts twice on one plateau.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from tunelab.babysit.branches import metric_direction, monitored_metric, rollback
from tunelab.babysit.control import set_live
from tunelab.distributions import ParamValue
from tunelab.errors import ConfigError, TrialStateError
from tunelab.live import (
    LIVE_NAMES,
    current_params,
    params_at,
    pending_requests,
    read_checkpoint_params,
    schedule,
)
from tunelab.records import FrozenTrial, TrialState
from tunelab.storage import Curves
from tunelab.study import Study

if TYPE_CHECKING:
    from tunelab.analysis.diagnosis import Finding

_FAR_TOO_LOW_LR = 1e-3
"""Below this a learning rate is far below SGD's working range (1e-2 to 1e-1) and below Adam's default
(1e-3): a curve that never learned with it is first raised 10x (at or above it: a bug is likelier)."""
_VAL_PREFIXES = ("val_", "valid_", "validation_", "eval_", "dev_")
_TRAIN_PREFIXES = ("train_", "training_")


# -- suggestions ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Suggestion:
    """One change to a run that its curves call for, ready to :func:`accept`.

    Attributes:
        kind: what it does: 'halve_lr', 'lower_lr', 'raise_lr', 'raise_lr_tenfold', 'rollback_lower_lr',
            'rollback_more_weight_decay', 'rollback_more_dropout', 'less_weight_decay',
            'less_dropout', 'check_training' (a curve that never learned with a learning rate
            that is not far too low: look for a bug; nothing to change) or 'keep_going' (nothing to change).
        condition: the diagnosis it answers (one of :data:`tunelab.analysis.diagnosis.CONDITIONS`).
        message: the nudge, as a question a person answers, with the numbers behind it.
        values: the hyperparameters to set (empty for 'keep_going').
        rollback_to: the checkpoint step to go back to first, or None (change the running branch).
        trial: the branch it is about.
        metric: the curve it was read from.
        evidence: the numbers behind it (from the diagnosis' finding).
    """

    kind: str
    condition: str
    message: str
    values: dict[str, ParamValue] = field(default_factory=dict)
    rollback_to: int | None = None
    trial: int = -1
    metric: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """The suggestion's kind (stable across calls, e.g. for a dashboard's buttons)."""
        return self.kind

    def to_json(self) -> dict[str, Any]:
        return {"id": self.kind, "kind": self.kind, "condition": self.condition, "message": self.message,
                "values": dict(self.values), "rollback_to": self.rollback_to, "trial": self.trial,
                "metric": self.metric, "evidence": dict(self.evidence)}


def suggest(study: Study, number: int, *, metric: str | None = None) -> list[Suggestion]:
    """Suggestions for branch ``number`` of a run, from its curves (most urgent first).

    ``metric``: the curve to read (default: ``val_loss``, else another validation curve, else a
    loss). Single-curve conditions (divergence, plateau, decay too early, noise, still improving) are
    read from it; overfitting and underfitting from it with its training partner (``train_loss`` for
    ``val_loss``). When the branch's hyperparameters were changed while it trained, a plateau or a
    trend is read only from the evaluations since the last change: a plateau the last change
    answered is not suggested again.

    Only suggestions that apply to the branch's hyperparameters are made (no learning-rate
    suggestion without an ``lr`` / ``learning_rate`` / ``*_lr``). For a finished branch, and for
    names its loop did not declare live, a change becomes a roll-back to its newest checkpoint.
    """
    frozen = study.get_trial(number)
    curves = study.get_curves(number)
    if metric is not None:
        if metric not in curves:
            raise ConfigError(
                f"trial {number} reported no metric {metric!r}; it reported "
                f"{', '.join(sorted(curves)) or 'nothing yet'}"
            )
        monitor: str | None = metric
    else:
        monitor = monitored_metric([curves])
    if monitor is None:
        return []
    return _Advisor(study, frozen, curves, monitor).suggestions()


def accept(study: Study, number: int, suggestion: Suggestion, source: str = "suggestion") -> int:
    """Apply a suggestion to branch ``number``: a change request (:func:`~tunelab.babysit.control.set_live`; returns its
    index) or, with ``rollback_to``, a new branch from that checkpoint (:func:`rollback`; returns the
    branch's number, and the running parent is asked to stop). ConfigError for 'keep_going'."""
    if not isinstance(suggestion, Suggestion):
        raise ConfigError(f"accept() needs a Suggestion from suggest(), got {suggestion!r}")
    if not suggestion.values:
        raise ConfigError(f"suggestion {suggestion.kind!r} changes nothing: {suggestion.message}")
    if suggestion.rollback_to is not None:
        return rollback(study, to=suggestion.rollback_to, trial=number, values=suggestion.values,
                        note=f"{source}: {suggestion.message}")
    return set_live(study, number, suggestion.values, source=source, note=suggestion.message)


class _Advisor:
    """The suggestions for one branch (one call of :func:`suggest`)."""

    def __init__(self, study: Study, trial: FrozenTrial, curves: Curves, monitor: str) -> None:
        self.study = study
        self.trial = trial
        self.curves = curves
        self.monitor = monitor
        self.running = trial.state == TrialState.RUNNING
        self.params = current_params(trial)
        for request in pending_requests(trial):  # what it will run with once it syncs
            self.params.update(request.get("params") or {})
        self.live_names = trial.system_attrs.get(LIVE_NAMES)
        self.lr = _find(self.params, lambda n: n in ("lr", "learning_rate") or n.endswith(("_lr", "learning_rate")))
        self.wd = _find(self.params, lambda n: n in ("wd", "weight_decay") or n.endswith("weight_decay"))
        self.dropout = _find(self.params, lambda n: "dropout" in n, unit=True)
        self.kept = [c for c in study.checkpoints(trial.number)]
        self.last_change = max((float(e["step"]) for e in schedule(trial) if "step" in e), default=None)

    # -- reading the curves ------------------------------------------------------------------------
    def findings(self) -> list[Finding]:
        from tunelab.analysis.diagnosis import diagnose_curves  # numpy and scipy: only when asked

        lr_curves = {m: c for m, c in self.curves.items() if _is_lr(m)}
        decays = self._lr_decays()
        single = diagnose_curves({self.monitor: self.curves[self.monitor], **lr_curves}, decay_steps=decays)
        found = {f.condition: f for f in single}
        partner = _partner(self.monitor, self.curves)
        if partner is not None:
            pair = diagnose_curves({partner: self.curves[partner], self.monitor: self.curves[self.monitor],
                                    **lr_curves}, decay_steps=decays)
            for f in pair:
                if f.condition in ("overfitting", "underfitting") or (f.condition == "divergence"
                                                                        and "divergence" not in found):
                    found[f.condition] = f
            if "overfitting" in found:  # a rising validation curve is neither improving nor flat
                found.pop("still_improving", None)
                found.pop("plateau", None)
        if self.last_change is not None:
            # what the curve did since the last change decides whether to change again
            since = {m: _after(c, self.last_change) for m, c in self.curves.items()
                     if m == self.monitor or _is_lr(m)}
            recent = {f.condition: f for f in diagnose_curves(since)}
            for condition in ("plateau", "still_improving", "noisy"):
                found.pop(condition, None)
                if condition in recent:
                    found[condition] = recent[condition]
        order = ["divergence", "not_learning", "overfitting", "plateau", "decay_too_early", "noisy", "underfitting",
                 "still_improving"]
        return [found[c] for c in order if c in found]

    def _lr_decays(self) -> list[int]:
        if self.lr is None:
            return []
        out = []
        before = self.trial.params.get(self.lr)
        for entry in schedule(self.trial):
            new = (entry.get("params") or {}).get(self.lr)
            if _number(new) and _number(before) and float(before) > 0 and float(new) <= float(before) / 2:  # type: ignore[arg-type]
                out.append(int(entry["step"]))
            if new is not None:
                before = new
        return out

    # -- turning findings into suggestions -------------------------------------------------------
    def suggestions(self) -> list[Suggestion]:
        out: list[Suggestion] = []
        for f in self.findings():
            handler = getattr(self, f"_on_{f.condition}", None)
            if handler is None:
                continue
            for s in handler(f):
                if s is not None:
                    out.append(s)
        return out

    def _make(self, kind: str, f: Finding, message: str, values: Mapping[str, ParamValue],
              rollback_to: int | None = None, **evidence: Any) -> Suggestion | None:
        """A suggestion, turned into a roll-back to the newest checkpoint when the branch cannot
        take the change live (finished, or a name its loop did not declare live); None if neither."""
        values = {k: _round(v) for k, v in values.items()}
        live_ok = self.running and (self.live_names is None or all(k in self.live_names for k in values))
        if values and rollback_to is None and not live_ok:
            if not self.kept:
                return None
            rollback_to = self.kept[-1].step
            why = "it has finished" if not self.running else "its training loop cannot change " + ", ".join(values)
            message = f"{message} ({why}: roll back to its newest checkpoint, step {rollback_to})"
        small = {k: v for k, v in f.evidence.items() if not isinstance(v, (list, dict))}
        return Suggestion(kind, f.condition, message, dict(values), rollback_to, self.trial.number, f.metric,
                          {**small, **evidence, "finding": f.message})

    def _on_not_learning(self, f: Finding) -> list[Suggestion | None]:
        level = f.evidence.get("level")
        flat = f"{f.metric} never learned" + (f" (flat at about {_fmt(level)})" if isinstance(level, float) else "")
        check = ("check the gradient flow (each layer's gradient norm after one backward pass) and the data "
                 "pipeline (inputs and labels matched, the loss computed from the model's output)")
        lr = float(self.params[self.lr]) if self.lr is not None else None  # type: ignore[arg-type]
        if self.lr is not None and lr is not None and 0 < lr < _FAR_TOO_LOW_LR:
            raised = self._make("raise_lr_tenfold", f, f"{flat}: the learning rate {_fmt(lr)} is far below the range "
                                f"where most networks learn: raise it 10x to {_fmt(lr * 10)}? If it still does not "
                                f"learn, {check}", {self.lr: lr * 10}, factor=10)
            if raised is not None:
                return [raised]
        why = f"the learning rate {_fmt(lr)} is not far too low" if lr is not None and lr >= _FAR_TOO_LOW_LR \
            else "a learning rate far too low (run the range test) or a bug"
        return [Suggestion("check_training", f.condition, f"{flat}: {why}; {check}", {}, None, self.trial.number,
                           f.metric, {k: v for k, v in f.evidence.items() if not isinstance(v, (list, dict))})]

    def _on_plateau(self, f: Finding) -> list[Suggestion | None]:
        if self.lr is None:
            return []
        lr = float(self.params[self.lr])  # type: ignore[arg-type]
        since = int(f.evidence.get("plateau_step", 0))
        steps = self.curves[self.monitor][0] if self.monitor in self.curves else []
        n = sum(1 for s in steps if s > since)
        return [self._make(
            "halve_lr", f,
            f"{f.metric} flat for {n} evaluation{'s' if n != 1 else ''} since step {since}: halve the learning "
            f"rate to {_fmt(lr / 2)}?", {self.lr: lr / 2}, plateau_step=since, evaluations=n,
        )]

    def _on_noisy(self, f: Finding) -> list[Suggestion | None]:
        if self.lr is None:
            return []
        lr = float(self.params[self.lr])  # type: ignore[arg-type]
        return [self._make("lower_lr", f, f"{f.metric} is very noisy: lower the learning rate to {_fmt(lr / 2)}?",
                           {self.lr: lr / 2})]

    def _on_divergence(self, f: Finding) -> list[Suggestion | None]:
        if self.lr is None:
            return []
        name = f.metric if f.metric in self.curves else self.monitor
        best = _best_step(self.curves.get(name), name)
        before = [c for c in self.kept if best is None or c.step <= best]
        if before:
            ck = before[-1]
            lr_then = (read_checkpoint_params(ck.path) or params_at(self.trial, ck.step)).get(self.lr)
            lr = float(lr_then) if _number(lr_then) else float(self.params[self.lr])  # type: ignore[arg-type]
            where = f" (best at step {best})" if best is not None else ""
            return [self._make(
                "rollback_lower_lr", f,
                f"{name} diverged{where}: roll back to the checkpoint of step {ck.step} with the learning rate "
                f"{_fmt(lr)} -> {_fmt(lr / 10)}?", {self.lr: lr / 10}, ck.step, best_step=best,
            )]
        if not self.running:
            return []
        lr = float(self.params[self.lr])  # type: ignore[arg-type]
        return [self._make(
            "lower_lr", f, f"{name} diverged and no checkpoint from before is kept: lower the learning rate to "
            f"{_fmt(lr / 10)} now?", {self.lr: lr / 10}, best_step=best,
        )]

    def _on_overfitting(self, f: Finding) -> list[Suggestion | None]:
        best = f.evidence.get("best_step")
        before = [c for c in self.kept if best is None or c.step <= int(best)]
        to = before[-1].step if before else None
        if to is not None:
            where = f"roll back to the checkpoint of step {to} (best {self.monitor} at step {best}) with"
        else:
            where = "no checkpoint from before the best step is kept:"
        out: list[Suggestion | None] = []
        if self.wd is not None:
            wd = float(self.params[self.wd])  # type: ignore[arg-type]
            new = wd * 3 if wd > 0 else 1e-4
            out.append(self._make("rollback_more_weight_decay" if to is not None else "more_weight_decay", f,
                                  f"{self.monitor} is overfitting: {where} {self.wd} {_fmt(wd)} -> {_fmt(new)}?",
                                  {self.wd: new}, to, best_step=best))
        if self.dropout is not None:
            p = float(self.params[self.dropout])  # type: ignore[arg-type]
            new = min(p + 0.1, 0.9)
            if new > p:
                out.append(self._make("rollback_more_dropout" if to is not None else "more_dropout", f,
                                      f"{self.monitor} is overfitting: {where} {self.dropout} {_fmt(p)} -> "
                                      f"{_fmt(new)}?", {self.dropout: new}, to, best_step=best))
        return out

    def _on_decay_too_early(self, f: Finding) -> list[Suggestion | None]:
        if self.lr is None:
            return []
        lr = float(self.params[self.lr])  # type: ignore[arg-type]
        step = f.evidence.get("decay_step")
        before = params_at(self.trial, float(step) - 1e-9).get(self.lr) if isinstance(step, (int, float)) else None
        target = float(before) if _number(before) and float(before) > lr else lr * 2  # type: ignore[arg-type]
        return [self._make("raise_lr", f, f"{f.metric} flattened after the learning rate was decayed at step {step}: "
                           f"raise it back to {_fmt(target)}?", {self.lr: target}, decay_step=step)]

    def _on_underfitting(self, f: Finding) -> list[Suggestion | None]:
        out: list[Suggestion | None] = []
        if self.wd is not None and float(self.params[self.wd]) > 0:  # type: ignore[arg-type]
            wd = float(self.params[self.wd])  # type: ignore[arg-type]
            out.append(self._make("less_weight_decay", f, f"{f.metric}: both curves are poor and close together: "
                                  f"lower {self.wd} to {_fmt(wd / 3)}?", {self.wd: wd / 3}))
        if self.dropout is not None and float(self.params[self.dropout]) > 0:  # type: ignore[arg-type]
            p = float(self.params[self.dropout])  # type: ignore[arg-type]
            out.append(self._make("less_dropout", f, f"{f.metric}: both curves are poor and close together: "
                                  f"lower {self.dropout} to {_fmt(max(p - 0.1, 0.0))}?",
                                  {self.dropout: max(p - 0.1, 0.0)}))
        return out

    def _on_still_improving(self, f: Finding) -> list[Suggestion | None]:
        return [Suggestion("keep_going", f.condition, f"{f.message}: keep going, nothing to change", {}, None,
                           self.trial.number, f.metric,
                           {k: v for k, v in f.evidence.items() if not isinstance(v, (list, dict))})]


def _find(params: Mapping[str, ParamValue], match: Callable[[str], bool], unit: bool = False) -> str | None:
    for name, value in params.items():
        if match(name.lower()) and _number(value) and (not unit or 0 <= float(value) < 1):  # type: ignore[arg-type]
            return name
    return None


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_lr(name: str) -> bool:
    low = name.lower()
    return low in ("lr", "learning_rate") or low.endswith(("_lr", "/lr", ".lr", "learning_rate"))


def _partner(metric: str, curves: Curves) -> str | None:
    """The training curve of a validation metric (or the reverse), if reported."""
    low = metric.lower()
    for p in _VAL_PREFIXES:
        if low.startswith(p):
            base = metric[len(p):]
            for name in (*(t + base for t in _TRAIN_PREFIXES), base):
                if name in curves:
                    return name
            return None
    base = next((metric[len(p):] for p in _TRAIN_PREFIXES if low.startswith(p)), metric)
    return next((p + base for p in _VAL_PREFIXES if p + base in curves), None)


def _after(curve: tuple[list[int], list[float]], step: float) -> tuple[list[int], list[float]]:
    steps, values = curve
    keep = [i for i, s in enumerate(steps) if s >= step]
    return [steps[i] for i in keep], [values[i] for i in keep]


def _best_step(curve: tuple[list[int], list[float]] | None, metric: str) -> int | None:
    if not curve:
        return None
    sign = 1.0 if metric_direction(metric) == "minimize" else -1.0
    points = [(sign * v, s) for s, v in zip(*curve, strict=True) if v is not None and math.isfinite(v)]
    return min(points)[1] if points else None


def _round(value: ParamValue) -> ParamValue:
    """Floats to 4 significant digits (a person reads and types them)."""
    if isinstance(value, float) and value != 0 and math.isfinite(value):
        return float(f"{value:.4g}")
    return value


def _fmt(value: float) -> str:
    return f"{value:.4g}"


# -- automatic rules ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Action:
    """What a rule wants changed now, and why."""

    values: dict[str, ParamValue]
    before: dict[str, ParamValue | None]
    reason: str
    step: int | None = None
    """The last evaluation the decision was read at."""


class Rule(ABC):
    """An automatic rule: looks at a running branch and its curves, decides a change or nothing.

    A rule keeps no state between calls: whatever it needs to know about the past (when it last
    changed something) it reads from the trial's live schedule and pending requests.
    """

    metric: str

    @abstractmethod
    def check(self, trial: FrozenTrial) -> None:
        """ConfigError if the rule cannot apply to ``trial`` (e.g. it has no such hyperparameter)."""

    @abstractmethod
    def decide(self, trial: FrozenTrial, curves: Curves) -> Action | None:
        """The change to make now, or None."""


class ReduceOnPlateau(Rule):
    """Multiply the learning rate by ``factor`` when ``metric`` has not improved for ``patience``
    evaluations (as PyTorch's ``ReduceLROnPlateau``, but read from the stored curves).

    Args:
        metric: the curve to watch (default ``val_loss``; maximised when its name says so, e.g. ``val_acc``).
        patience: evaluations without an improvement on the best value so far after which the rate is
            reduced (only evaluations after the step of the rate's last change count: tunelab's
            Trainer and the Lightning and Hugging Face callbacks evaluate at a step and then apply a
            change at that same step, so an evaluation at the change's step may precede it).
        factor: the new rate is ``factor * rate`` (0 < factor < 1).
        min_lr: never below this; nothing happens once the rate is there.
        cooldown: evaluations right after a change that are not counted (the run settles first).
        threshold: the relative improvement that counts as one (``1e-4``: 0.01%).
        param: the hyperparameter to reduce (``lr``).
        mode: 'min' or 'max' (default: from the metric's name).
    """

    def __init__(
        self,
        metric: str = "val_loss",
        patience: int = 3,
        factor: float = 0.5,
        min_lr: float = 1e-6,
        cooldown: int = 0,
        threshold: float = 1e-4,
        param: str = "lr",
        mode: str | None = None,
    ) -> None:
        if not isinstance(metric, str) or not metric:
            raise ConfigError(f"ReduceOnPlateau(metric=...) must be a metric name such as 'val_loss', got {metric!r}")
        if not _int(patience) or patience < 1:
            raise ConfigError(f"ReduceOnPlateau(patience=...) must be an integer >= 1 (evaluations), got {patience!r}")
        if not _number(factor) or not 0 < factor < 1:
            raise ConfigError(f"ReduceOnPlateau(factor=...) must be a number in (0, 1), got {factor!r}")
        if not _number(min_lr) or min_lr < 0:
            raise ConfigError(f"ReduceOnPlateau(min_lr=...) must be a number >= 0, got {min_lr!r}")
        if not _int(cooldown) or cooldown < 0:
            raise ConfigError(f"ReduceOnPlateau(cooldown=...) must be an integer >= 0 (evaluations), got {cooldown!r}")
        if not _number(threshold) or threshold < 0:
            raise ConfigError(f"ReduceOnPlateau(threshold=...) must be a number >= 0, got {threshold!r}")
        if not isinstance(param, str) or not param:
            raise ConfigError(f"ReduceOnPlateau(param=...) must be a hyperparameter name such as 'lr', got {param!r}")
        if mode is not None and mode not in ("min", "max"):
            raise ConfigError(f"ReduceOnPlateau(mode=...) must be 'min', 'max' or None, got {mode!r}")
        self.metric = metric
        self.patience = int(patience)
        self.factor = float(factor)
        self.min_lr = float(min_lr)
        self.cooldown = int(cooldown)
        self.threshold = float(threshold)
        self.param = param
        self.mode = mode or ("max" if metric_direction(metric) == "maximize" else "min")

    def __str__(self) -> str:
        return (f"reduce_on_plateau({self.metric}, patience={self.patience}, factor={self.factor:g}, "
                f"min_lr={self.min_lr:g}, cooldown={self.cooldown})")

    def __repr__(self) -> str:
        return (f"ReduceOnPlateau(metric={self.metric!r}, patience={self.patience}, factor={self.factor!r}, "
                f"min_lr={self.min_lr!r}, cooldown={self.cooldown}, threshold={self.threshold!r}, "
                f"param={self.param!r}, mode={self.mode!r})")

    def check(self, trial: FrozenTrial) -> None:
        params = current_params(trial)
        if self.param not in params or not _number(params[self.param]):
            raise ConfigError(
                f"trial {trial.number} has no numeric hyperparameter {self.param!r} to reduce (it has "
                f"{', '.join(sorted(params)) or 'none'}); name it with ReduceOnPlateau(param=...)"
            )
        names = trial.system_attrs.get(LIVE_NAMES)
        if names is not None and self.param not in names:
            raise ConfigError(
                f"trial {trial.number}'s training loop cannot change {self.param!r} while it trains (it declared "
                f"{', '.join(names) or 'none'} live)"
            )

    def decide(self, trial: FrozenTrial, curves: Curves) -> Action | None:
        if self.metric not in curves:
            return None
        if any(self.param in (r.get("params") or {}) for r in pending_requests(trial)):
            return None  # a change is on its way: wait until the trial has applied it
        lr_value = current_params(trial).get(self.param)
        if not _number(lr_value):
            return None
        lr = float(lr_value)  # type: ignore[arg-type]
        new = max(lr * self.factor, self.min_lr)
        if lr <= self.min_lr or new >= lr:
            return None
        since = None
        for entry in schedule(trial):
            if self.param in (entry.get("params") or {}):
                since = float(entry["step"])
        sign = 1.0 if self.mode == "min" else -1.0
        points = [(s, sign * v) for s, v in zip(*curves[self.metric], strict=True)
                  if v is not None and math.isfinite(v)]
        best = math.inf
        last_better = -1
        for i, (_, b) in enumerate(points):
            if not math.isfinite(best) or b < best - self.threshold * abs(best):
                best, last_better = b, i
        window = [i for i, (s, _) in enumerate(points) if since is None or s > since][self.cooldown:]
        flat = [i for i in window if i > last_better]
        if len(flat) < self.patience:
            return None
        first = points[flat[0]][0]
        last = points[flat[-1]][0]
        return Action(
            {self.param: new}, {self.param: lr},
            f"{self.metric} has not improved on its best {_fmt(sign * best)} for {len(flat)} evaluations "
            f"(steps {first}-{last}): {self.param} {_fmt(lr)} -> {_fmt(new)}",
            step=last,
        )


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class AutoChange:
    """A change :func:`watch` made: to trial ``number``, after its evaluation at ``step``."""

    number: int
    step: int | None
    rule: str
    values: dict[str, ParamValue]
    before: dict[str, ParamValue | None]
    reason: str
    request: int
    """Its index in the trial's ``system_attrs["live_requests"]``."""
    at: str

    def __str__(self) -> str:
        values = ", ".join(f"{k} {_show(self.before.get(k))} -> {_show(v)}" for k, v in self.values.items())
        return f"trial {self.number}, step {self.step}: {values} ({self.rule}): {self.reason}"


def _show(value: object) -> str:
    return _fmt(value) if isinstance(value, float) else str(value)


def watch(
    study: Study,
    *,
    number: int | None = None,
    rules: Sequence[Rule],
    poll_seconds: float = 2.0,
    max_seconds: float | None = None,
    on_change: Callable[[AutoChange], None] | None = None,
) -> list[AutoChange]:
    """Apply ``rules`` to the run's running branch until the run is over or ``max_seconds`` passed;
    return the changes made (each also passed to ``on_change`` as it is made).

    Follows branch ``number`` while it runs (default: the newest RUNNING branch), then the newest
    RUNNING branch after it (a roll-back's new branch, the next one the training process picks).
    The rules are evaluated each time the branch reports a new evaluation (polling every
    ``poll_seconds``); each change is a :func:`~tunelab.babysit.control.set_live` request with source
    ``"auto: <rule>"``. The run is over when it has trials and none is RUNNING or WAITING.
    """
    if isinstance(rules, Rule):
        rules = [rules]
    if not rules or not all(isinstance(r, Rule) for r in rules):
        raise ConfigError(f"watch(rules=...) needs a list of rules such as [ReduceOnPlateau()], got {rules!r}")
    if not _number(poll_seconds) or poll_seconds <= 0:
        raise ConfigError(f"watch(poll_seconds=...) must be a number of seconds > 0, got {poll_seconds!r}")
    if max_seconds is not None and (not _number(max_seconds) or max_seconds < 0):
        raise ConfigError(f"watch(max_seconds=...) must be a number of seconds >= 0 or None, got {max_seconds!r}")
    if number is not None:
        study.get_trial(number)
    if on_change is not None and not callable(on_change):
        raise ConfigError(f"watch(on_change=...) must be a function of the change, got {on_change!r}")
    deadline = None if max_seconds is None else time.monotonic() + float(max_seconds)
    changes: list[AutoChange] = []
    seen: dict[int, tuple[int, int]] = {}  # trial -> (points reported, requests), when last evaluated
    checked: set[int] = set()
    while True:
        trials = study.trials
        target = _follow(trials, number)
        if target is None and trials and not any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials):
            break
        if target is not None:
            curves = study.get_curves(target.number)
            mark = (sum(len(s) for s, _ in curves.values()), len(target.system_attrs.get("live_requests") or []))
            if curves and seen.get(target.number) != mark:
                if target.number not in checked:
                    for rule in rules:
                        rule.check(target)
                    checked.add(target.number)
                seen[target.number] = mark
                for rule in rules:
                    action = rule.decide(target, curves)
                    if action is None:
                        continue
                    try:
                        index = set_live(study, target.number, action.values, source=f"auto: {rule}",
                                               note=action.reason)
                    except TrialStateError:
                        break  # it finished meanwhile
                    change = AutoChange(target.number, action.step, str(rule), dict(action.values),
                                        dict(action.before), action.reason, index,
                                        datetime.now(timezone.utc).isoformat())
                    changes.append(change)
                    if on_change is not None:
                        on_change(change)
                    break  # the next rule decides on the trial with this request pending
        if deadline is not None and time.monotonic() >= deadline:
            break
        pause = poll_seconds if deadline is None else min(poll_seconds, max(deadline - time.monotonic(), 0.0))
        time.sleep(pause)
    return changes


def _follow(trials: Sequence[FrozenTrial], number: int | None) -> FrozenTrial | None:
    """The branch to watch: ``number`` while it runs, else the newest RUNNING branch after it."""
    running = [t for t in trials if t.state == TrialState.RUNNING]
    if number is not None:
        mine = next((t for t in running if t.number == number), None)
        if mine is not None:
            return mine
        running = [t for t in running if t.number > number]
    return running[-1] if running else None


__all__ = ["Action", "AutoChange", "ReduceOnPlateau", "Rule", "Suggestion", "accept", "suggest", "watch"]
