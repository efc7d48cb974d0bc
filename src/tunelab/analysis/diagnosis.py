"""Learning-curve diagnosis: what a trial's curves say went wrong, and what to do about it.

:func:`diagnose_curves` reads learning curves (``metric -> (steps, values)``, as
:meth:`tunelab.Study.get_curves` returns them) and returns :class:`Finding` objects, one per
condition seen (see :data:`CONDITIONS`); :func:`diagnose` does the same for a stored trial.

How it reads a curve. Every curve is turned into a *badness* (the value for a minimised
metric, its negative for a maximised one), so lower is better everywhere. Non-finite values
are dropped (a curve that *ends* non-finite has diverged). The curve is smoothed by a running
median (it keeps sudden drops sharp) followed by a short running mean, and its noise is
estimated robustly from the median absolute second difference of the raw values (a smooth
trend has almost none, isolated spikes are ignored). Every threshold is relative to the curve's
own scale: its drop from the start (``D``), its level, its noise, and positions are fractions of
its step span (uneven steps are fine). Slopes are Theil-Sen slopes; "clearly" means more than two
standard errors, computed from the noise estimate.

Curves are grouped into families by name: ``train_loss`` / ``val_loss`` (also ``loss``,
``valid_``, ``validation_``, ``eval_``, ``dev_`` prefixes, and ``train/``, ``val/``... as Lightning and
TensorBoard name them), ``train_acc`` / ``val_acc``...
A NaN or a blow-up is looked for in every family; the other conditions are read from one family,
the first loss pair (else a single loss curve, else the first family): accuracy moves in coarse
steps and says the same as the loss, less clearly. Pair conditions (overfitting, underfitting)
need both curves of that family; the others read its training curve (bad initialisation,
plateau, decay too early), its validation curve when there is one (still improving), or both
(noise). Each condition is reported once; a diverged run gets no other trend finding (its curve
says nothing more). A learning-rate curve (``lr``, ``*_lr``, ``learning_rate``) is not
diagnosed: it gives the decay steps (a drop by 2x or more from one point to the next) and the
learning rate at the start of a plateau.

The rules, with ``t`` the position in the run (0 at the first step, 1 at the last):

- divergence: the curve ends NaN/inf; or a training curve's end level rose above its best by
  more than half of what it had gained (and 10 noise units), or, with nothing gained, by half
  its starting level; a validation curve alone must end far above its start. With an expected
  initial loss: a training loss that ends 25% above it, or ends no better than it after having
  been 50% above it (a network that blew up and died).
- initial_loss: the first training-loss point is more than 25% above ``expected_initial_loss``,
  or more than 25% below it when measured at step 0 (a point reported after some training is
  expected to be lower).
- not_learning: the curve (both curves of a pair) never improved: over at least 8 points, no later
  fifth of the run averages better than its first fifth by more than 3% of its starting level (of
  1 for an accuracy-like metric in [0, 1]) or 3 standard errors of the difference (from the
  noise; a noise above 20% of that scale hides what it does), and it is not flat at a good level:
  a loss at 75% of the expected initial loss or above (any level when none is given), an
  accuracy-like metric below 0.6 (chance for a classifier). The trend conditions below are then
  not judged (a curve that never moved says nothing about plateaus, noise or capacity). Unlike
  bad_init (flat, then a sudden drop) and plateau (a drop, then flat), nothing happened at all.
- bad_init: the curve stays within 15% of its drop ``D`` from its start for at least 8% of the
  run (3 points or more), then loses the next 30% of ``D`` in less than half that time.
- plateau: the curve fell by ``D`` (from the expected initial loss when it started above it), was
  within 10% of ``D`` of its final level before the run's middle, improved less than 3.5% of
  ``D`` over the run's second half (and the run is not noisy, nor underfitting), is not near a natural floor
  (a loss above 5% of its start, an accuracy below 0.98), and no decay happened before the
  plateau began (nor had the ``lr`` curve fallen to half its start).
- decay_too_early: at a decay step before ``t=0.7`` the curve was clearly improving (a rate that,
  kept up, would have gained another 25% of ``D``), and afterwards improved at less than 15% of
  that rate (and by less than 10% of what that rate would have gained).
- overfitting: the validation curve's best is before ``t=0.85`` and it then rose steadily (a slope
  more than 2 standard errors upwards) by more than 3% of its drop and 3 noise units, while the
  training curve did not get worse: the gap grew.
- underfitting: at the end, training and validation are close (a loss within 15% of each other,
  an accuracy within 0.05) and both poor (a loss above half its starting level, an accuracy-like
  metric in [0, 1] below 0.8), after the training curve improved at all (a curve that never moved
  says nothing about the model), and the run is neither noisy, still improving, nor decayed early.
- still_improving: over the last 20% of the run, the Theil-Sen slope is favourable by more than
  two standard errors (from the curve's noise) and gains more than 7% of ``D``. The message says
  where the curve model of :mod:`tunelab.pruners.curves` (the one :class:`tunelab.LearningCurvePruner`
  uses) predicts it would be if trained as long again, with a 90% interval (the model keeps the mean and the
  interval within the metric's natural range: at least 0 for a minimised curve of positive values, in [0, 1]
  for a maximised curve in [0, 1]).
- noisy: the noise is more than 15% of the smoothed curve's range (and more than 3% of its
  level, so that a flat, quiet curve is not called noisy); or, for a curve of positive values, the
  scatter of its logarithm around the smoothed curve is more than 0.12 both in its upper and in its
  lower levels (split at the geometric middle; the curve spans 2x or more, 8 points at each level) and
  at most twice as large in the lower (points off by more than about 12% of their value at every level:
  multiplicative noise, which hides in the range of a curve that falls by 10x; additive noise near a
  floor of 0 is large relative to the low values only, also when the curve reaches them early).

A plateau's message also gives the most the curve model predicts it to gain if trained as long again
(the optimistic end of the 90% interval).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage, stats

from tunelab.errors import ConfigError
from tunelab.pruners.base import metric_kind
from tunelab.records import TrialState
from tunelab.study import STOPPED_RULE

if TYPE_CHECKING:
    from tunelab.study import Study

CONDITIONS = ("divergence", "initial_loss", "not_learning", "bad_init", "plateau", "decay_too_early", "overfitting",
              "underfitting", "still_improving", "noisy")
"""Every condition :func:`diagnose_curves` can report, in the order findings are returned."""

ACTIONS = {
    "divergence": "lower the learning rate (or clip the gradients)",
    "initial_loss": "check the output head (its initialisation and final bias), the labels and the loss function",
    "not_learning": "check that it learns at all: a learning rate far too low (run the range test), a bug (the "
                    "loss detached from the model, no optimizer.step() or zero_grad(), inputs and labels shuffled "
                    "apart, frozen parameters) or a dead initialisation: check the gradient flow (the gradient "
                    "norm of each layer after one backward pass)",
    "bad_init": "a better initialisation or normalisation (e.g. He/Xavier init, batch or layer norm)",
    "plateau": "decay the learning rate (a step or cosine schedule), or use a higher rate early on",
    "decay_too_early": "decay the learning rate later (or less): it was still improving when the rate dropped",
    "overfitting": "more regularisation (weight decay, dropout), more data, or a smaller model",
    "underfitting": "a bigger model, or less regularisation",
    "still_improving": "train longer",
    "noisy": "a smaller learning rate or a bigger batch",
    "pruned": "nothing to fix in its configuration: the pruner judged it worse than its peers at that step",
    "pruned_while_improving": "it was stopped while still improving: if such trials end among the best when "
                              "trained longer, prune later (a larger min_resource, n_warmup_steps or grace period)",
}
"""What to do about each condition (the :attr:`Finding.action`); also for a PRUNED trial's ``pruned`` finding."""

_MAXIMIZED_SUFFIXES = ("acc", "accuracy", "f1", "auc", "r2", "precision", "recall")
_TRAIN_PREFIXES = ("train_", "training_", "train/", "training/")
_VAL_PREFIXES = ("val_", "valid_", "validation_", "eval_", "dev_", "val/", "valid/", "validation/", "eval/", "dev/")
_NOT_CURVES = ("lr", "learning_rate", "epoch", "step", "time", "seconds", "momentum")
_MIN_POINTS = 5
_MAX_EVIDENCE = 200

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Finding:
    """One condition read from a trial's curves.

    Attributes:
        condition: one of :data:`CONDITIONS`.
        metric: the curve it was read from, e.g. ``"val_loss"``, or ``"train_loss/val_loss"`` for a pair.
        message: what was seen, with numbers and steps.
        action: what to do about it.
        evidence: JSON data behind it (steps, values, the numbers the rule compared).
    """

    condition: str
    metric: str
    message: str
    action: str
    evidence: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The finding as JSON data (NaN and infinities as None)."""
        return {"condition": self.condition, "metric": self.metric, "message": self.message,
                "action": self.action, "evidence": _json(self.evidence)}


def metric_direction(metric: str) -> str:
    """'maximize' or 'minimize' as the name says, read word by word as the pruners read it
    (:func:`tunelab.pruners.base.metric_kind`: ``reward``, ``bleu``, ``top1``, ``f1_score``, ``val_auroc`` are
    maximised, ``val_loss``, ``mse`` minimised); else 'maximize' for names ending in acc, accuracy, f1, auc,
    r2, precision or recall (``valacc``), and 'minimize' for the rest (``score`` is maximised, as the pruners
    and the Trainer's patience read it)."""
    return metric_kind(metric) or ("maximize" if metric.lower().endswith(_MAXIMIZED_SUFFIXES) else "minimize")


"""The words of :func:`tunelab.pruners.base.metric_kind` that say 'maximize', but for 'score'."""


# -- one curve -----------------------------------------------------------------------------------
class _Curve:
    """A curve's finite points, as badness (lower is better), smoothed, with its scale and noise."""

    def __init__(self, name: str, steps: Sequence[int], values: Sequence[float], direction: str) -> None:
        self.name = name
        self.direction = direction
        self.sign = 1.0 if direction == "minimize" else -1.0
        x = np.asarray([float(s) for s in steps], dtype=float)
        y = np.asarray([_to_float(v) for v in values], dtype=float)
        if x.shape != y.shape:
            raise ConfigError(f"curve {name!r} has {x.size} steps but {y.size} values")
        order = np.argsort(x, kind="stable")
        x, y = x[order], y[order]
        self.all_steps, self.all_values = x, y
        finite = np.isfinite(y) & np.isfinite(x)
        self.ends_nonfinite = bool(y.size and not np.isfinite(y[-1]))
        self.x, self.raw = x[finite], y[finite]
        self.b = self.sign * self.raw
        self.n = int(self.x.size)
        if self.n == 0:
            return
        span = float(self.x[-1] - self.x[0])
        self.t = (self.x - self.x[0]) / span if span > 0 else np.zeros(self.n)
        self.s = _smooth(self.x, self.b)
        self.sigma = _noise(self.b)
        self.start = float(self.s[0])
        self.end = float(self.s[-1])
        self.best_i = int(np.argmin(self.s))
        self.best = float(self.s[self.best_i])
        self.drop = self.start - self.best  # D: what it gained from its start
        self.range = float(np.max(self.s) - np.min(self.s))

    def value(self, badness: float) -> float:
        """A badness back in the metric's own units."""
        return self.sign * badness

    def step(self, i: int) -> int:
        return int(round(float(self.x[i])))

    def index_at(self, t: float) -> int:
        """The first point at or after position ``t``."""
        return min(int(np.searchsorted(self.t, t - 1e-12)), self.n - 1)

    def tail_slope(
        self, t_from: float, min_points: int = 4, alpha: float = 0.95
    ) -> tuple[float, float, float, int] | None:
        """Theil-Sen slope of the raw badness per step from ``t_from`` on, with its ``alpha`` confidence
        interval: (slope, low, high, first index)."""
        i = self.index_at(t_from)
        i = min(i, self.n - min_points)
        if i < 0:
            return None
        return (*_theil_sen(self.x[i:], self.b[i:], alpha), i)

    def positive(self) -> bool:
        """All values > 0 (a loss-like metric with a natural floor at 0)."""
        return bool(self.n and np.all(self.raw > 0))

    def unit_interval(self) -> bool:
        """All values in [0, 1] (an accuracy-like metric)."""
        return bool(self.n and np.all((self.raw >= 0) & (self.raw <= 1)))


def _to_float(v: Any) -> float:
    try:
        return float(v) if v is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def _smooth(x: FloatArray, y: FloatArray) -> FloatArray:
    """A running median (keeps sudden drops sharp, ignores spikes), then a short running mean.

    At the start the window repeats the first point (exact for a falling curve); over the last
    half-window the curve is a Theil-Sen line through the last window's points, so that the end
    level is not simply the last (noisy) point.
    """
    n = y.size
    if n < 3:
        return np.array(y, dtype=float)
    w = max(3, int(round(n / 12)) | 1)
    w = min(w, 21, n if n % 2 else n - 1)
    med: FloatArray = np.asarray(ndimage.median_filter(y, size=w, mode="nearest"), dtype=float)
    h = w // 2
    if n >= 2 * w and h >= 1:
        res = stats.theilslopes(y[-w:], x[-w:])
        med[-h:] = float(res[1]) + float(res[0]) * x[-h:]
    m = max(1, (w // 2) | 1)
    if m <= 1:
        return med
    return np.asarray(ndimage.uniform_filter1d(med, size=m, mode="nearest"), dtype=float)


def _noise(y: FloatArray) -> float:
    """Robust standard deviation of the noise: MAD of second differences / sqrt(6)."""
    if y.size < 4:
        return 0.0
    d2 = y[2:] - 2 * y[1:-1] + y[:-2]
    dev = np.abs(d2 - np.median(d2))
    mad = float(np.median(dev))
    if mad == 0.0:  # mostly exact repeats (a quantised metric such as accuracy): the mean deviation
        return 1.2533 * float(np.mean(dev)) / math.sqrt(6.0)
    return 1.4826 * mad / math.sqrt(6.0)


def _slope_se(sigma: float, x: FloatArray) -> float:
    """Standard error of a line's slope through points at ``x`` with noise ``sigma``."""
    sxx = float(np.sum((x - x.mean()) ** 2))
    return sigma / math.sqrt(sxx) if sxx > 0 else math.inf


def _theil_sen(x: FloatArray, y: FloatArray, alpha: float = 0.95) -> tuple[float, float, float]:
    if x.size > 150:  # Theil-Sen is quadratic: thin long windows evenly
        keep = np.unique(np.linspace(0, x.size - 1, 150).round().astype(int))
        x, y = x[keep], y[keep]
    if x.size < 2 or float(np.ptp(x)) == 0.0:
        return 0.0, -math.inf, math.inf
    res = stats.theilslopes(y, x, alpha=alpha)
    return float(res[0]), float(res[2]), float(res[3])


# -- curves by role ------------------------------------------------------------------------------
@dataclass
class _Family:
    base: str
    train: _Curve | None = None
    val: _Curve | None = None

    @property
    def primary(self) -> _Curve:
        """The curve that shows how training went: the training curve, else the validation curve."""
        c = self.train or self.val
        assert c is not None
        return c

    @property
    def monitor(self) -> _Curve:
        """The curve that says whether more training pays: the validation curve, else the training curve."""
        c = self.val or self.train
        assert c is not None
        return c

    @property
    def label(self) -> str:
        names = [c.name for c in (self.train, self.val) if c is not None]
        return "/".join(names)


def _is_lr(name: str) -> bool:
    low = name.lower()
    return low in ("lr", "learning_rate") or low.endswith(("_lr", "/lr", ".lr", "learning_rate"))


def _split(name: str) -> tuple[str, str]:
    low = name.lower()
    for p in _VAL_PREFIXES:
        if low.startswith(p) and len(low) > len(p):
            return "val", low[len(p):]
    for p in _TRAIN_PREFIXES:
        if low.startswith(p) and len(low) > len(p):
            return "train", low[len(p):]
    return "train", low


def _families(curves: Mapping[str, _Curve]) -> list[_Family]:
    fams: dict[str, _Family] = {}
    for name, c in curves.items():
        role, base = _split(name)
        fam = fams.setdefault(base, _Family(base))
        if role == "val":
            if fam.val is None:
                fam.val = c
        elif fam.train is None or name.lower().startswith(_TRAIN_PREFIXES):
            fam.train = c
    return sorted(fams.values(), key=lambda f: ("loss" not in f.base, f.train is None or f.val is None, f.base))


# -- the public functions ------------------------------------------------------------------------
def diagnose_curves(
    curves: Mapping[str, tuple[Sequence[int], Sequence[float]]],
    *,
    directions: Mapping[str, str] | None = None,
    expected_initial_loss: float | None = None,
    decay_steps: Sequence[int] = (),
) -> list[Finding]:
    """Diagnose learning curves: a list of :class:`Finding`, at most one per condition, in the
    order of :data:`CONDITIONS`.

    Args:
        curves: metric -> (steps, values), as :meth:`tunelab.Study.get_curves` returns them.
        directions: metric -> 'minimize' or 'maximize'; by default from the name (:func:`metric_direction`:
            accuracy, f1, auc, reward, bleu... are maximised; loss, error... and the rest minimised).
        expected_initial_loss: the loss of an untrained model (e.g. ``ln C`` for C classes);
            enables the ``initial_loss`` finding.
        decay_steps: steps at which the learning rate was decayed. Drops of the ``lr`` curve by
            2x or more from one point to the next are added.

    Curves shorter than 5 finite points only give what their first and last points say (an
    initial loss, a NaN at the end).
    """
    directions = dict(directions or {})
    for name, d in directions.items():
        if d not in ("minimize", "maximize"):
            raise ConfigError(f"direction of {name!r} must be 'minimize' or 'maximize', got {d!r}")
    if expected_initial_loss is not None and not (math.isfinite(expected_initial_loss) and expected_initial_loss > 0):
        raise ConfigError(
            f"diagnose_curves(expected_initial_loss=...) must be a positive number, got {expected_initial_loss!r}"
        )
    parsed: dict[str, _Curve] = {}
    lr: _Curve | None = None
    for name, pair in curves.items():
        steps, values = pair
        c = _Curve(name, steps, values, directions.get(name) or metric_direction(name))
        if _is_lr(name):
            lr = c
        elif name.lower() not in _NOT_CURVES and (c.n or c.ends_nonfinite):
            parsed[name] = c
    decays = sorted({int(s) for s in decay_steps} | set(_lr_decays(lr)))
    found: dict[str, Finding] = {}

    def add(f: Finding | None) -> None:
        if f is not None and f.condition not in found:
            found[f.condition] = f

    families = _families(parsed)
    if not families:
        return []
    for fam in families:  # a NaN or a blow-up anywhere
        for cv in (fam.train, fam.val):
            if cv is not None and (cv is fam.train or fam.train is None or fam.train.n < _MIN_POINTS):
                alone = fam.train is None or cv is fam.train
                add(_divergence(cv, alone, expected_initial_loss if "loss" in fam.base else None))
    if expected_initial_loss is not None:
        add(_initial_loss(families, expected_initial_loss))
    # the trend conditions are read from one family: the first loss pair, else the first family
    fam = families[0]
    if "divergence" not in found:
        add(_not_learning(fam, expected_initial_loss if "loss" in fam.base else None))
    if "divergence" not in found and "not_learning" not in found:
        p = fam.primary
        has_pair = fam.train is not None and fam.val is not None
        noisy = [f for f in (_noisy(cv) for cv in (fam.train, fam.val) if cv is not None) if f is not None]
        over = _overfitting(fam) if has_pair else None
        add(over)
        add(_bad_init(p))
        early = _decay_too_early(p, decays)
        add(early)
        improving = None if over is not None or noisy else _still_improving(fam.monitor)
        add(improving)
        # underfitting is a poor level the run settled at; a noisy run, one still improving or one
        # whose rate was cut early has not settled
        under = _underfitting(fam) if has_pair and not noisy and improving is None and early is None else None
        add(under)
        if under is None and not noisy:
            add(_plateau(p, decays, lr, expected_initial_loss if "loss" in fam.base else None))
        for f in noisy:
            add(f)
    return [found[c] for c in CONDITIONS if c in found]


def nothing_found(curves: Mapping[str, tuple[Sequence[int], Sequence[float]]]) -> str:
    """What to say of curves without findings: which were read and how long they are, or that they were too
    short (fewer than 5 finite points) or absent, which is not the same as healthy."""
    read = {m: int(np.isfinite(np.asarray([_to_float(v) for v in values], dtype=float)).sum())
            for m, (_, values) in curves.items() if not _is_lr(m) and m.lower() not in _NOT_CURVES}
    if not read:
        others = f" (only {', '.join(sorted(curves))})" if curves else ""
        return (f"it reported no learning curve{others}, so there is nothing to read; report one, e.g. "
                "trial.report(epoch, val_loss=...)")
    counts = ", ".join(f"{m}: {n} point{'' if n == 1 else 's'}" for m, n in sorted(read.items()))
    if max(read.values()) < _MIN_POINTS:
        return (f"its curves are too short to read ({counts}; {_MIN_POINTS} finite points or more are needed, "
                "shorter curves are only checked for a NaN at the end)")
    return f"nothing to flag in its curves ({counts})"


def diagnose(study: Study, number: int) -> list[Finding]:
    """Diagnose trial ``number`` of ``study`` from its stored curves.

    A metric's direction is the study's where it names it (an objective's name, the pruner's metric),
    else read from the metric's name (:func:`metric_direction`).

    The expected initial loss comes from the recipe's initial-loss check when the study has one
    (``study.system_attrs["recipe"]``); decay steps from the trial's ``lr`` curve. A trial that
    failed because its loss became NaN or infinite (tunelab stores only finite values) is
    reported as diverged. A PRUNED trial's first finding is ``pruned``: at which step and by which
    rule it was stopped (``system_attrs["pruned"]``); its curves are then read as cut short there
    (still improving means "prune later", and underfitting is not judged).
    """
    curves = study.get_curves(number)
    expected: float | None = None
    recipe = study.system_attrs.get("recipe")
    if isinstance(recipe, Mapping):
        for step in recipe.get("steps", []) or []:
            if isinstance(step, Mapping) and step.get("step") == "initial_loss":
                value = (step.get("evidence") or {}).get("expected")
                if isinstance(value, (int, float)) and math.isfinite(value) and value > 0:
                    expected = float(value)
    findings = diagnose_curves(curves, expected_initial_loss=expected, directions=_known_directions(study))
    trial = study.get_trial(number)
    if not any(f.condition == "divergence" for f in findings):
        error = trial.error or ""
        if "diverged" in error or "TrainingDivergedError" in error:
            last = {m: (s[-1], v[-1]) for m, (s, v) in curves.items() if s and not _is_lr(m)}
            where = ", ".join(f"{m} {v:.4g} at step {s}" for m, (s, v) in sorted(last.items()))
            findings.insert(0, Finding(
                "divergence", "/".join(sorted(last)) or "loss",
                "the trial failed because its loss became NaN or infinite"
                + (f" (last finite values: {where})" if where else ""),
                ACTIONS["divergence"], {"error": error[:500], "last": {m: list(p) for m, p in last.items()}},
            ))
    if trial.state == TrialState.PRUNED:
        findings = _read_as_pruned(trial.system_attrs.get("pruned"), curves, findings)
    return findings


def _known_directions(study: Study) -> dict[str, str]:
    """The directions the study knows for metrics by name, rather than from the name: its objectives'
    (``objective_names``), and the pruner's metric (``MedianPruner(metric='val_score')`` in a study that
    maximizes: a rising val_score was read as a diverging loss)."""
    known = dict(zip(study.objective_names, study.directions, strict=False))
    pruner = study.pruner
    metric = getattr(pruner, "metric", None)
    if isinstance(metric, str):
        known[metric] = getattr(pruner, "direction", None) or study.direction
    return known


# -- a pruned trial ------------------------------------------------------------------------------
_CUT_SHORT = ("not_learning", "plateau", "decay_too_early", "overfitting", "bad_init", "noisy")
"""Findings that still hold on a curve cut short by pruning, but only for the part that was trained."""


def _read_as_pruned(
    record: Any, curves: Mapping[str, tuple[Sequence[int], Sequence[float]]], findings: list[Finding]
) -> list[Finding]:
    """A PRUNED trial's findings: first what stopped it (the step, the rule and its evidence, from
    ``system_attrs["pruned"]``), then what its curves show, read as curves cut short: a curve still
    improving when the pruner stopped it says "prune later", not "train longer"; underfitting is not
    judged (the run never settled); the other trends hold for the steps it trained."""
    record = record if isinstance(record, Mapping) else {}
    reported = [s[-1] for m, (s, _) in curves.items() if len(s) and not _is_lr(m) and m.lower() not in _NOT_CURVES]
    step = record.get("step") if isinstance(record.get("step"), int) else (max(reported) if reported else None)
    at = f"at step {step}" if step is not None else "before it reported anything"
    rule = record.get("rule")
    metric = record.get("metric")
    value = record.get("value")
    said = f" ({metric} {_fmt(value)})" if isinstance(metric, str) and isinstance(value, (int, float)) else ""
    detail = f": {record['detail']}" if record.get("detail") else ""
    if rule == STOPPED_RULE:
        message = f"the trial was stopped on request {at}{said}{detail}; its curves end there"
        action = ("nothing to fix in its configuration: someone (a person, a roll-back) stopped it; resume it "
                  "from its last checkpoint if it should have gone on")
    elif rule and any(f.condition == "divergence" for f in findings):
        message = (f"the trial was pruned {at} by the rule {rule}{said}{detail}; its curves end there, after the "
                   "run diverged")
        action = "see the divergence finding: " + ACTIONS["divergence"]
    elif rule:
        message = (f"the trial was pruned {at} by the rule {rule}{said}{detail}; its curves end there, so they show "
                   "only the start of its training")
        action = ("nothing to fix in its configuration: the pruner judged it worse than its peers at that step. If "
                  "pruned trials were often still improving when stopped, prune later (a larger min_resource, "
                  "n_warmup_steps or grace period)")
    else:
        message = (f"the trial was pruned {at} (by the objective itself: it raised TrialPruned without a pruner's "
                   "decision); its curves end there, so they show only the start of its training")
        action = "check why the objective stopped it (its own early-stopping rule)"
    evidence = {"step": step, "rule": rule, "metric": metric, "value": value, "detail": record.get("detail")}
    shown = sorted(m for m in curves if not _is_lr(m) and m.lower() not in _NOT_CURVES)
    out = [Finding("pruned", metric if isinstance(metric, str) else "/".join(shown) or "-", message,
                   action, evidence)]
    cut = f" (up to step {step}, where it was pruned)" if step is not None else " (before it was pruned)"
    for f in findings:
        if f.condition == "underfitting":
            continue  # a poor level at the start of training is not one the run settled at
        if f.condition == "still_improving":
            f = Finding(f.condition, f.metric, f"{f.message}, when it was stopped", ACTIONS["pruned_while_improving"],
                        f.evidence)
        elif f.condition in _CUT_SHORT:
            f = Finding(f.condition, f.metric, f.message + cut, f.action, f.evidence)
        out.append(f)
    return out


# -- the rules -----------------------------------------------------------------------------------
def _lr_decays(lr: _Curve | None) -> list[int]:
    if lr is None or lr.n < 2:
        return []
    v = lr.raw
    out = []
    for i in range(1, lr.n):
        if v[i - 1] > 0 and v[i] <= v[i - 1] / 2:
            out.append(lr.step(i))
    return out


def _divergence(c: _Curve, alone: bool, expected: float | None = None) -> Finding | None:
    if c.ends_nonfinite:
        finite_at = np.nonzero(np.isfinite(c.all_values))[0]
        i_bad = int(finite_at[-1]) + 1 if finite_at.size else 0  # the first of the trailing non-finite points
        bad = c.all_values[i_bad]
        bad_step = int(round(float(c.all_steps[i_bad])))
        msg = f"{c.name} became {bad} at step {bad_step}"
        if c.n:
            msg += (f" (it was {_fmt(c.raw[-1])} at step {c.step(c.n - 1)}; it started at {_fmt(c.raw[0])}"
                    f" at step {c.step(0)})")
        return Finding("divergence", c.name, msg, ACTIONS["divergence"],
                       {**_series(c), "nonfinite_step": bad_step, "nonfinite_value": str(bad)})
    if c.n < _MIN_POINTS:
        return None
    k = max(2, int(math.ceil(0.1 * c.n)))
    end = float(np.median(c.b[-k:]))
    before_end = c.s[: max(1, c.n - k)]
    best_i = int(np.argmin(before_end))
    best = float(before_end[best_i])
    rise = end - best
    gained = c.start - best
    noise = 10 * c.sigma
    if expected is not None and alone and c.direction == "minimize":
        peak = float(np.max(c.raw))
        # well above an untrained model's loss at the end, or back at it after having been far above it
        if end > 1.25 * expected or (end >= 0.95 * expected and peak > 1.5 * expected):
            return Finding(
                "divergence", c.name,
                f"{c.name} ended at {_fmt(end)} (step {c.step(c.n - 1)}), no better than the {_fmt(expected)} of an "
                f"untrained model, after peaking at {_fmt(peak)}: the run diverged (it started at {_fmt(c.raw[0])},"
                f" best {_fmt(best)} at step {c.step(best_i)})",
                ACTIONS["divergence"], {**_series(c), "expected": expected, "end": end, "peak": peak, "best": best},
            )
    if alone and not c.name.lower().startswith(_VAL_PREFIXES):
        ok = rise > max(0.5 * gained, noise) and (gained > noise or rise > 0.5 * abs(c.start))
    else:  # a validation curve on its own: it must end far above its start
        ok = end - c.start > max(0.5 * abs(c.start), 0.5 * gained, noise) and rise > gained
    if not ok:
        return None
    return Finding(
        "divergence", c.name,
        f"{c.name} {'rose' if c.direction == 'minimize' else 'fell'} from {_fmt(c.value(best))} at step "
        f"{c.step(best_i)} to {_fmt(c.value(end))} by step "
        f"{c.step(c.n - 1)} (it started at {_fmt(c.raw[0])}): the run diverged",
        ACTIONS["divergence"], {**_series(c), "best": c.value(best), "best_step": c.step(best_i),
                                "end": c.value(end), "start": c.value(c.start)},
    )


def _initial_loss(families: list[_Family], expected: float) -> Finding | None:
    loss_fams = [f for f in families if "loss" in f.base] or [
        f for f in families if f.primary.direction == "minimize"]
    if not loss_fams:
        return None
    c = loss_fams[0].primary
    if c.n == 0:
        return None
    first, step0 = float(c.raw[0]), c.step(0)
    rel = (first - expected) / expected
    if abs(first - expected) <= 3 * c.sigma:
        return None  # within the curve's noise
    if rel > 0.25 or (rel < -0.25 and step0 <= 0):
        side = "above" if rel > 0 else "below"
        return Finding(
            "initial_loss", c.name,
            f"{c.name} started at {_fmt(first)} at step {step0}, {abs(rel):.0%} {side} the expected "
            f"{_fmt(expected)}",
            ACTIONS["initial_loss"], {"steps": [step0], "values": [first], "expected": expected,
                                      "relative_error": rel},
        )
    return None


def _significant_drop(c: _Curve) -> bool:
    return c.n >= 8 and c.drop > 10 * c.sigma and c.drop > 1e-12 and c.drop > 0.02 * abs(c.start)


def _flat_gain(c: _Curve) -> float | None:
    """What a curve that never improved gained (its best later fifth's mean against its first
    fifth's, in badness), or None when it improved: when a later fifth averages better than the first
    by more than 3% of its starting level (of 1 for an accuracy-like metric) or 3 standard errors of
    a difference of two such means (from the curve's noise), or when its noise, above 20% of that
    scale, hides what it does (the noisy condition speaks then)."""
    k = max(2, c.n // 5)
    first = float(np.mean(c.b[:k]))
    later = [float(np.mean(c.b[i:i + k])) for i in range(k, c.n - k + 1, k)]
    scale = 1.0 if c.direction == "maximize" and c.unit_interval() else abs(first)
    gain = first - min(later) if later else math.inf
    if gain > max(3 * c.sigma * math.sqrt(2 / k), 0.03 * scale) or c.sigma > 0.2 * scale:
        return None
    return gain


def _not_learning(fam: _Family, expected: float | None) -> Finding | None:
    c = fam.primary
    if c.n < 8:
        return None
    gains = [_flat_gain(cv) for cv in (fam.train, fam.val) if cv is not None and cv.n >= _MIN_POINTS]
    if any(g is None for g in gains):
        return None
    level = float(np.median(c.raw))
    if c.direction == "minimize":
        if expected is not None and level < 0.75 * expected:
            return None  # flat at a low loss: it had learned before these steps (a resumed run)
        where = f", the expected initial loss being {_fmt(expected)}" if expected is not None else ""
    elif c.unit_interval():
        if level >= 0.6:
            return None
        where = " (an accuracy-like metric below 0.6)"
    else:
        where = ""
    return Finding(
        "not_learning", fam.label,
        f"{c.name} stayed flat at about {_fmt(level)}{where} from step {c.step(0)} to step {c.step(c.n - 1)}: "
        f"no fifth of the run averaged clearly better than its first ({c.n} points, noise {_fmt(c.sigma)})",
        ACTIONS["not_learning"], {**_series(c), "level": level, "expected": expected,
                                       "gain": max(0.0, gains[0] or 0.0)},
    )


def _bad_init(c: _Curve) -> Finding | None:
    if not _significant_drop(c):
        return None
    d = c.drop
    below1 = np.nonzero(c.s <= c.start - 0.15 * d)[0]
    below2 = np.nonzero(c.s <= c.start - 0.45 * d)[0]
    if not below1.size or not below2.size:
        return None
    i1, i2 = int(below1[0]), int(below2[0])
    flat, fall = float(c.t[i1]), float(c.t[i2] - c.t[i1])
    if i1 < 3 or flat < 0.08 or fall > 0.5 * flat:
        return None
    # the flat start must be flat in the raw data too: it gained little before i1
    if float(np.median(c.b[: max(2, i1 // 2)])) - float(np.median(c.b[max(0, i1 - 2):i1 + 1])) > 0.3 * d:
        return None
    return Finding(
        "bad_init", c.name,
        f"{c.name} stayed flat near {_fmt(c.value(c.start))} from step {c.step(0)} to step {c.step(i1)} "
        f"({flat:.0%} of the run), then dropped to {_fmt(c.value(c.s[i2]))} by step {c.step(i2)}",
        ACTIONS["bad_init"], {**_series(c), "flat_until": c.step(i1), "drop_until": c.step(i2)},
    )


def _plateau(c: _Curve, decays: Sequence[int], lr: _Curve | None, expected: float | None) -> Finding | None:
    if not _significant_drop(c):
        return None
    final = c.end
    start = c.start
    if expected is not None and c.direction == "minimize" and start > expected > final:
        start = expected  # a far too high initial loss does not make the rest of the curve look flat
    d = start - final
    near = np.nonzero(c.s <= final + 0.1 * d)[0]
    if not near.size:
        return None
    p = int(near[0])
    if c.t[p] > 0.5 or c.n - p < 4:
        return None
    half = c.tail_slope(0.5)
    if half is None:
        return None
    slope, _, _, i_half = half
    gained = -slope * float(c.x[-1] - c.x[i_half])
    if gained > 0.035 * d:
        return None
    if c.positive() and c.direction == "minimize" and c.value(final) < 0.05 * c.value(c.start):
        return None  # near the floor of a loss: converged, not stuck
    if c.direction == "maximize" and c.unit_interval() and c.value(final) >= 0.98:
        return None
    p_step = float(c.x[p])
    tol = 0.05 * float(c.x[-1] - c.x[0])
    if any(s <= p_step + tol for s in decays):
        return None
    if lr is not None and lr.n:
        lr_at = float(np.interp(p_step, lr.x, lr.raw))
        if lr.raw[0] > 0 and lr_at <= 0.5 * float(lr.raw[0]):
            return None
    horizon = float(c.x[-1]) + float(c.x[-1] - c.x[0])
    predicted = _predict(c, horizon)
    forecast = ""
    if predicted is not None:
        # the most it may gain if trained as long again: the optimistic end of the interval
        optimistic = predicted["low"] if c.direction == "minimize" else predicted["high"]
        at_most = max(0.0, c.sign * (c.value(final) - optimistic))
        predicted["gain_at_most"] = at_most
        forecast = (f"; trained as long again (to step {predicted['step']}) it is predicted to gain less than "
                    f"{_fmt(at_most)} ({at_most / d:.0%} of its drop; 90% interval)")
    return Finding(
        "plateau", c.name,
        f"{c.name} fell from {_fmt(c.value(c.start))} to {_fmt(c.value(c.s[p]))} by step {c.step(p)} and then "
        f"stayed flat at about {_fmt(c.value(final))} until step {c.step(c.n - 1)} ({1 - float(c.t[p]):.0%} of the "
        f"run; it gained {max(gained, 0.0) / d:.0%} of its drop in the second half), with no learning-rate decay"
        f"{forecast}",
        ACTIONS["plateau"], {**_series(c), "plateau_step": c.step(p), "level": c.value(final),
                             "prediction": predicted},
    )


def _decay_too_early(c: _Curve, decays: Sequence[int]) -> Finding | None:
    if not decays or not _significant_drop(c):
        return None
    span = float(c.x[-1] - c.x[0])
    d = c.drop
    for step in decays:
        td = (step - float(c.x[0])) / span
        if not 0.0 < td <= 0.7:
            continue
        pre = np.nonzero((c.x < step) & (c.t >= td - 0.25))[0]
        post = np.nonzero(c.t >= td + 0.05)[0]
        if pre.size < 3 or post.size < 4:
            continue
        r_pre, _, _ = _theil_sen(c.x[pre], c.b[pre])
        r_post, _, _ = _theil_sen(c.x[post], c.b[post])
        rate, rate_after = -r_pre, -r_post
        rest = float(c.x[-1] - step)
        if rate <= 2 * _slope_se(c.sigma, c.x[pre]) or rate * rest < 0.25 * d:
            continue  # it was not clearly improving, or not fast enough to matter
        after = float(c.s[post[0]] - c.end)
        if rate_after > 0.15 * rate or after > max(0.1 * rate * rest, 3 * c.sigma):
            continue
        i = int(pre[-1])
        return Finding(
            "decay_too_early", c.name,
            f"{c.name} was improving by {_fmt(rate)} per step until the learning rate was decayed at step {step}, "
            f"then flattened at about {_fmt(c.value(c.end))} ({_fmt(max(rate_after, 0.0))} per step) until step "
            f"{c.step(c.n - 1)}",
            ACTIONS["decay_too_early"],
            {**_series(c), "decay_step": int(step), "rate_before": rate, "rate_after": rate_after,
             "level_at_decay": c.value(float(c.s[i]))},
        )
    return None


def _aligned(fam: _Family) -> tuple[FloatArray, FloatArray, FloatArray] | None:
    """Validation steps with the smoothed training and validation badness there (overlap only)."""
    tr, va = fam.train, fam.val
    if tr is None or va is None or tr.n < _MIN_POINTS or va.n < _MIN_POINTS:
        return None
    mask = (va.x >= tr.x[0]) & (va.x <= tr.x[-1])
    if mask.sum() < _MIN_POINTS:
        return None
    x = va.x[mask]
    return x, np.interp(x, tr.x, tr.s), va.s[mask]


def _overfitting(fam: _Family) -> Finding | None:
    tr, va = fam.train, fam.val
    al = _aligned(fam)
    if al is None or tr is None or va is None:
        return None
    x, st, sv = al
    if x.size < 8:
        return None
    t = (x - x[0]) / max(float(x[-1] - x[0]), 1e-300)
    j = int(np.argmin(sv))
    if t[j] > 0.85 or x.size - j < 3:
        return None
    dv = float(sv[0] - sv[j])
    rise = float(sv[-1] - sv[j])
    if dv <= 5 * va.sigma or rise <= max(0.03 * dv, 3 * va.sigma, 1e-12):
        return None
    # a sustained rise: the slope after the best is clearly upwards (more than 2 standard errors)
    after = (va.x >= x[j]) & (va.x <= x[-1])
    if after.sum() < 3 or _theil_sen(va.x[after], va.b[after])[0] <= 2 * _slope_se(va.sigma, va.x[after]):
        return None
    if st[-1] > st[j] + max(2 * tr.sigma, 0.25 * rise):
        return None  # training got worse too: not overfitting
    gap = sv - st
    if gap[-1] - gap[j] < 0.5 * rise:
        return None
    steps = [int(round(s)) for s in x]
    return Finding(
        "overfitting", fam.label,
        f"{va.name} {'rose' if va.direction == 'minimize' else 'fell'} from {_fmt(va.value(sv[j]))} at step "
        f"{steps[j]} to {_fmt(va.value(sv[-1]))} at step {steps[-1]} while {tr.name} kept "
        f"{'falling' if tr.direction == 'minimize' else 'rising'} ({_fmt(tr.value(st[j]))} to "
        f"{_fmt(tr.value(st[-1]))}); the gap grew from {_fmt(abs(gap[j]))} to {_fmt(abs(gap[-1]))}",
        ACTIONS["overfitting"],
        _thin({"steps": steps, "train": [tr.value(v) for v in st], "val": [va.value(v) for v in sv],
               "gap": [float(abs(g)) for g in gap], "best_step": steps[j]}),
    )


def _underfitting(fam: _Family) -> Finding | None:
    tr, va = fam.train, fam.val
    al = _aligned(fam)
    if al is None or tr is None or va is None:
        return None
    x, st, sv = al
    if tr.drop <= max(3 * tr.sigma, 0.01 * abs(tr.start)):
        return None  # it never moved: a frozen run says nothing about the model's capacity
    ft, fv = tr.value(st[-1]), va.value(sv[-1])
    noise = 3 * max(tr.sigma, va.sigma)
    if tr.direction == "minimize" and tr.positive() and va.positive():
        start = float(tr.raw[0])
        close = abs(fv - ft) <= max(0.15 * abs(ft), noise)
        poor = ft > 0.5 * start and fv > 0.5 * float(va.raw[0])
        scale = f"more than half of its start ({_fmt(start)})"
    elif tr.direction == "maximize" and tr.unit_interval() and va.unit_interval():
        close = abs(fv - ft) <= max(0.05, noise)
        poor = ft < 0.8 and fv < 0.8
        scale = "well below 1"
    else:
        return None
    if not (close and poor):
        return None
    steps = [int(round(s)) for s in x]
    return Finding(
        "underfitting", fam.label,
        f"at step {steps[-1]} {tr.name} is {_fmt(ft)} and {va.name} {_fmt(fv)}: close together and both poor "
        f"({scale})",
        ACTIONS["underfitting"],
        _thin({"steps": steps, "train": [tr.value(v) for v in st], "val": [va.value(v) for v in sv],
               "gap": [float(abs(a - b)) for a, b in zip(sv, st, strict=True)]}),
    )


def _still_improving(c: _Curve) -> Finding | None:
    if c.n < 6 or c.drop <= 0:
        return None
    tail = c.tail_slope(0.8)
    if tail is None:
        return None
    slope, _, _, i = tail
    window = float(c.x[-1] - c.x[i])
    gain = -slope * window
    # clearly favourable: the slope is more than 2 standard errors (from the curve's noise) from flat
    if -slope <= 2 * _slope_se(c.sigma, c.x[i:]) or gain <= 0.07 * c.drop:
        return None
    last = float(c.x[-1])
    horizon = last + float(c.x[-1] - c.x[0])  # trained as long again
    predicted = _predict(c, horizon)
    forecast = ""
    if predicted is not None:
        forecast = (f"; predicted to reach {_fmt(predicted['mean'])} by step {predicted['step']} if trained as long "
                    f"again (90% interval {_fmt(predicted['low'])} to {_fmt(predicted['high'])})")
    return Finding(
        "still_improving", c.name,
        f"{c.name} was still improving at the last step ({c.step(c.n - 1)}): by {_fmt(gain)} over the last "
        f"{window:.0f} steps ({_fmt(c.value(c.s[i]))} to {_fmt(c.value(c.end))}), {gain / c.drop:.0%} of its total "
        f"improvement{forecast}",
        ACTIONS["still_improving"], {**_series(c), "slope": c.sign * slope, "window_start": c.step(i),
                                     "prediction": predicted},
    )


def _noisy(c: _Curve) -> Finding | None:
    if c.n < 8 or c.range <= 0:
        return None
    level = float(np.median(np.abs(c.raw)))
    ratio = c.sigma / c.range
    if ratio > 0.15 and c.sigma > 0.03 * level:
        return Finding(
            "noisy", c.name,
            f"{c.name} is very noisy: its points scatter by about {_fmt(c.sigma)} around the smoothed curve, "
            f"{ratio:.0%} of the curve's range ({_fmt(c.range)})",
            ACTIONS["noisy"], {**_series(c), "noise": c.sigma, "range": c.range},
        )
    # Noise in proportion to the value (every point off by tens of percent): on a curve that falls by
    # 10x, the scatter early on hides in the range, but the log of the values shows it at every level.
    relative = _relative_noise(c)
    if relative is None or relative <= RELATIVE_NOISE:
        return None
    return Finding(
        "noisy", c.name,
        f"{c.name} is very noisy: its points scatter by about {relative:.0%} of their value around the smoothed "
        f"curve (more than {RELATIVE_NOISE:.0%}), at every level",
        ACTIONS["noisy"], {**_series(c), "noise": c.sigma, "range": c.range, "relative_noise": relative},
    )


RELATIVE_NOISE = 0.12
"""A positive curve whose points scatter by more than this fraction of their value is noisy."""


def _relative_noise(c: _Curve) -> float | None:
    """The scatter of log(values) around the smoothed curve (about the relative scatter of the points) in
    the curve's upper and lower levels (split at the geometric middle of the smoothed curve), the smaller of
    the two, for a curve of positive values that spans at least a factor of 2 with 5 points or more at each
    level (a curve that falls fast has few at its upper level), and whose log scatter at the lower level is at
    most three times that at the upper level (None otherwise). Noise in proportion to the value is large at
    both levels; additive noise on a curve that falls towards 0 is large relative to the low values only.
    Split by level, not by time: a curve that reaches its floor early (a plateau, a fast first phase) has its
    low values in both halves of the run, where additive noise of a few percent of its drop looked
    multiplicative."""
    if not c.positive() or c.n < 8:
        return None
    smooth = np.log(np.maximum(c.sign * c.s, np.min(c.raw)))
    lo, hi = float(np.min(smooth)), float(np.max(smooth))
    if hi - lo < math.log(2.0):
        return None
    upper = smooth >= (lo + hi) / 2
    if int(np.sum(upper)) < 5 or int(np.sum(~upper)) < 5:
        return None
    resid = np.log(c.raw) - smooth
    noise_upper, noise_lower = _mad(resid[upper]), _mad(resid[~upper])
    if noise_lower > 3.0 * noise_upper:  # the log scatter grows as the value falls: additive noise
        return None
    return min(noise_upper, noise_lower)


def _mad(r: FloatArray) -> float:
    """Robust standard deviation: 1.4826 x the median absolute deviation."""
    return 1.4826 * float(np.median(np.abs(r - np.median(r))))


# -- predictions by the curve model (tunelab.pruners.curves) -----------------------------------------
def _predict(c: _Curve, horizon: float) -> dict[str, Any] | None:
    """The curve model's prediction of ``c`` at step ``horizon``: ``{"step", "mean", "low", "high"}`` (90%
    interval) in the metric's units, or None when it cannot be fitted."""
    from tunelab.pruners.curves import fit_curve

    keep = c.x > 0
    if int(np.sum(keep)) < 5:
        return None
    model = fit_curve(c.x[keep], c.raw[keep], direction=c.direction, horizon=horizon)
    if not model.ok:
        return None
    p = model.predict(horizon, 0.9)  # kept within the metric's natural range (CurveModel.natural_range)
    return {"step": int(round(horizon)), "mean": p.mean, "low": p.low, "high": p.high, "interval": 0.9,
            "families": model.family_weights()}


# -- helpers -------------------------------------------------------------------------------------
def _fmt(v: float) -> str:
    return f"{float(v):.4g}"


def _series(c: _Curve) -> dict[str, Any]:
    return _thin({"steps": [int(round(float(s))) for s in c.all_steps], "values": [float(v) for v in c.all_values]})


def _thin(ev: dict[str, Any]) -> dict[str, Any]:
    """At most _MAX_EVIDENCE points per list (evenly spread, first and last kept)."""
    n = len(ev.get("steps", []))
    if n <= _MAX_EVIDENCE:
        return ev
    keep = np.unique(np.linspace(0, n - 1, _MAX_EVIDENCE).round().astype(int)).tolist()
    return {k: ([v[i] for i in keep] if isinstance(v, list) and len(v) == n else v) for k, v in ev.items()}


def _json(data: Any) -> Any:
    if isinstance(data, (float, np.floating)):
        f = float(data)
        return f if math.isfinite(f) else None
    if isinstance(data, (np.integer,)):
        return int(data)
    if isinstance(data, dict):
        return {str(k): _json(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_json(v) for v in data]
    return data
