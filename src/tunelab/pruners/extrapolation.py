"""Early stopping that predicts where a curve is going (learning-curve extrapolation).

:class:`LearningCurvePruner` fits each running trial's curve with the ensemble of
:mod:`tunelab.pruners.curves` and stops the trial when the probability that its value at
``max_resource`` beats the incumbent (the best value seen at ``max_resource`` by the other trials,
or the ``top_k``-th best) falls below ``1 - confidence`` (Domhan, Springenberg and Hutter, IJCAI 2015).
Every decision, to stop or to go on, carries its evidence: the prediction, its interval, the
incumbent, the probability and the predicted continuation of the curve.

With ``rung_pruner=SuccessiveHalvingPruner(...)`` it also runs ASHA, whose rungs rank trials by
their value *predicted at the next rung* (from their curve up to the rung) instead of their value at
the rung: a slow starter that the curve model expects to overtake its peers survives the rung. A rung's
quota counts the trials the curve rule stopped after the previous rung (``rung_pool="passed"``), so
that the curve rule's stops do not make the rung keep fewer trials than ASHA would. At a rung where a
curve is still too short for the model (fewer than ``min_points`` points), ``short_curves="log_slope"``
ranks it by its last two points extended linearly in log(step) to the next rung, instead of its value.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from tunelab.errors import ConfigError
from tunelab.history import History
from tunelab.pruners.asha import SuccessiveHalvingPruner
from tunelab.pruners.base import PruneDecision, Pruner, better_or_equal, check_int, last_step
from tunelab.pruners.curves import MIN_POINTS, CurveModel, fit_curve
from tunelab.records import PREDICTED_FINAL, TrialState

RUNG_POOLS = ("passed", "reached")
"""``rung_pool`` values: see :class:`LearningCurvePruner`."""
SHORT_CURVES = ("value", "log_slope")
"""``short_curves`` values: see :class:`LearningCurvePruner`."""

_RUNG_SETTINGS = ("min_resource", "reduction_factor", "max_resource", "min_early_stopping_rate", "metric",
                  "direction")
"""The settings of a ``rung_pruner`` given as a dict (those of :class:`SuccessiveHalvingPruner`)."""

_COMPLETE = frozenset((TrialState.COMPLETE,))

CONTINUATION_POINTS = 12
"""At most this many points of the predicted continuation are stored with a decision."""


@lru_cache(maxsize=4096)
def _fit(steps: tuple[int, ...], values: tuple[float, ...], direction: str, horizon: int,
         schedule: tuple[int, ...] = ()) -> CurveModel:
    """One fit per curve (a curve never changes once reported: workers fit each at most once).

    ``schedule``: the numbers of points the curve was fitted at before (increasing, below
    ``len(steps)``); the fit starts from the fit of the last of them, itself fitted the same way
    (a cache hit when the curve was judged before), so the result depends only on the curve."""
    previous = None
    if schedule:
        n = schedule[-1]
        previous = _fit(steps[:n], values[:n], direction, horizon, schedule[:-1])
    return fit_curve(steps, values, direction=direction, horizon=horizon, previous=previous)


def refit_schedule(min_points: int, growth: float, up_to: int) -> list[int]:
    """The numbers of points a curve is fitted at: ``min_points``, then each ``growth`` times the
    last (rounded, at least one more), up to ``up_to``. ``growth=1``: every point."""
    out = [min_points]
    while True:
        n = max(out[-1] + 1, round(out[-1] * growth))
        if n > up_to:
            return out
        out.append(n)


def _check_probability(name: str, value: object, low: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low < value < 1.0):
        raise ConfigError(f"LearningCurvePruner({name}=...) must be a number strictly between {low:g} and 1 "
                          f"(e.g. 0.9), got {value!r}")
    return float(value)


class LearningCurvePruner(Pruner):
    """Stop a trial when its curve, extrapolated to ``max_resource``, is unlikely to beat the incumbent.

    After each report (from the ``min_points``-th finite point on, before ``max_resource``) the
    trial's curve is fitted by an ensemble of parametric curve families (pow3, log-power, exp3,
    Janoschek, MMF, Weibull; weighted by their likelihood, with a fitted noise term and a Laplace
    approximation of each family's parameter uncertainty; see :mod:`tunelab.pruners.curves`). The
    fit predicts the value at ``max_resource`` as a distribution. The incumbent is the ``top_k``-th
    best value that the other trials reported at ``max_resource``; while fewer than ``top_k`` trials
    got there, nothing is stopped by this rule. The trial stops when ``P(value at max_resource
    better than the incumbent) < 1 - confidence``. A curve the families fit poorly gets a wide
    interval, so it is stopped only when even its optimistic end is worse. A curve whose last value is
    NaN or infinite (a diverged run) is not fitted on its earlier points: it stops once there is an
    incumbent that the value does not beat (a NaN never does; at a rung, ASHA's rule ranks it last).

    Each decision is stored with the trial: when it stops, ``system_attrs["pruned"]["evidence"]``;
    when it goes on, the latest in ``system_attrs["prediction"]``. The evidence holds the step, the
    prediction (``mean``, ``low``, ``high`` of the ``interval``), the ``incumbent``, ``p_better``,
    the family weights and the ``continuation`` (steps with the predicted mean and interval up to
    ``max_resource``), which ``tunelab trial`` prints and the dashboard draws dashed.

    Every decision made from a curve model (a rung's too) also stores ``predicted_final``, the value
    predicted at ``max_resource``. Model-based samplers (TPE, GP) fit on it: under this pruner a
    stopped or running trial counts at its predicted final value rather than as the worst value or at
    a rung (:func:`tunelab.records.predicted_final`; trials stopped before they had ``min_points``
    points still count as the worst).

    Args:
        max_resource: the step of a full training (e.g. the last epoch) that predictions are made at.
        metric: see :class:`Pruner`.
        direction: see :class:`Pruner`.
        min_points: finite points of the curve needed before it is judged (at least 4: every
            family has 3 or 4 parameters, and one more point estimates the noise).
        confidence: how sure the pruner must be that the trial will not beat the incumbent:
            it stops when the probability that it does falls below ``1 - confidence``.
        top_k: compare with the ``top_k``-th best value at ``max_resource`` (a top-k search keeps
            every trial that may still end among the best ``k``).
        interval: the central probability of the interval stored as evidence (0.9: 5% to 95%).
        rung_pruner: a :class:`SuccessiveHalvingPruner` to combine with: at its rungs, trials are
            ranked by their value predicted at the next rung (or at ``max_resource`` after the
            last rung) from their curve up to the rung; a trial with fewer than ``min_points``
            points there is ranked on its value as ASHA would. None: the curve rule alone.
        refit_growth: the curve is refitted when its number of points has grown by this factor
            since the last fit (``min_points``, then e.g. 6, 8, 10, 12, 15, 19, 24 points with 1.25);
            in between, decisions use the last fit (with the current incumbent), and each refit
            starts from the previous fit's parameters. 1: refit at every point.
        rung_pool: with ``rung_pruner``, which trials a rung ranks against. ``"passed"``: the trials
            that reached the rung and those the curve rule stopped after they passed the previous
            rung (at their value predicted at the same step, from their whole curve), so the rung keeps
            ``1 / reduction_factor`` of the trials that passed the previous rung, as ASHA does, and the
            curve rule's stops save epochs without tightening the rung. ``"reached"`` (the behaviour
            before 2026-12-06): only the trials that reached the rung; the curve rule's stops before
            the rung remove the weaker trials from its pool, so the rung cuts deeper than ASHA.
        short_curves: with ``rung_pruner``, how a rung ranks a curve with fewer than ``min_points``
            points there (too short for the model). ``"value"``: by its value at the rung, as ASHA
            does. ``"log_slope"``: by its last two points extended as a straight line in log(step) to
            the step ranked at (the next rung, or ``max_resource`` after the last rung):
            ``v + (v - v_prev) / log(step / step_prev) * log(target / step)``; a curve with one point
            is ranked on its value. A curve still falling fast at the rung (a slow starter) then ranks
            above one that has flattened at a slightly lower value: on the digits benchmark, at the rung at
            3 epochs this ranked the final val loss with a Spearman correlation of 0.48 instead of
            0.32 (benchmarks/README.md). The extrapolation is no calibrated prediction: such a stop
            stores it as ``extrapolated`` with its two ``points``, not as ``predicted_final`` (model-based
            samplers count the trial as the worst, as with ``"value"``).

    Examples:
        Trials whose learning rate is too small keep improving, but too slowly to catch the best:

        >>> import tunelab
        >>> def objective(trial):
        ...     lr = trial.suggest_float("lr", 0.01, 0.5, log=True)
        ...     for epoch in range(1, 28):
        ...         loss = 0.1 + 2.0 * (1.0 + lr * epoch) ** -1.5      # a pow3-like curve
        ...         trial.report(epoch, val_loss=loss)
        ...         if trial.should_prune():
        ...             raise tunelab.TrialPruned()
        ...     return loss
        >>> pruner = tunelab.LearningCurvePruner(max_resource=27, metric="val_loss", min_points=5)
        >>> study = tunelab.create_study(sampler=tunelab.RandomSampler(), pruner=pruner, seed=0)
        >>> study.optimize(objective, n_trials=12)
        >>> pruned = study.get_trials([tunelab.TrialState.PRUNED])
        >>> len(pruned) >= 3, sorted(pruned[0].system_attrs["pruned"]["evidence"])[:4]
        (True, ['continuation', 'families', 'fitted_to', 'high'])
    """

    def __init__(
        self,
        *,
        max_resource: int,
        metric: str | None = None,
        direction: str | None = None,
        min_points: int = 5,
        confidence: float = 0.95,
        top_k: int = 1,
        interval: float = 0.9,
        rung_pruner: SuccessiveHalvingPruner | Mapping[str, Any] | None = None,
        refit_growth: float = 1.25,
        rung_pool: str = "passed",
        short_curves: str = "value",
    ) -> None:
        super().__init__(metric, direction)
        self.max_resource = check_int("LearningCurvePruner", "max_resource", max_resource, 2)
        if isinstance(min_points, int) and not isinstance(min_points, bool) and min_points < MIN_POINTS:
            raise ConfigError(f"LearningCurvePruner(min_points=...) must be an integer >= {MIN_POINTS} (a curve "
                              f"family has up to 4 parameters and the noise needs one more point), got {min_points!r}")
        self.min_points = check_int("LearningCurvePruner", "min_points", min_points, MIN_POINTS)
        if self.min_points >= self.max_resource:  # judged at steps 1 to max_resource - 1: never enough points
            raise ConfigError(f"LearningCurvePruner(min_points={self.min_points}) must be below max_resource="
                              f"{self.max_resource}: a curve is judged before max_resource, from its points at steps "
                              f"1 to {self.max_resource - 1}, so no trial would ever be judged; lower min_points "
                              "or give the step of a full training as max_resource")
        self.confidence = _check_probability("confidence", confidence, 0.5)
        self.top_k = check_int("LearningCurvePruner", "top_k", top_k, 1)
        self.interval = _check_probability("interval", interval)
        if isinstance(rung_pruner, Mapping):
            settings = {k: v for k, v in rung_pruner.items() if k != "name"}
            unknown = sorted(set(settings) - set(_RUNG_SETTINGS))
            if unknown:
                raise ConfigError(f"LearningCurvePruner(rung_pruner={{...}}): unknown setting(s) {unknown}; a "
                                  f"SuccessiveHalvingPruner takes {', '.join(_RUNG_SETTINGS)}")
            rung_pruner = SuccessiveHalvingPruner(**settings)
        if rung_pruner is not None and not isinstance(rung_pruner, SuccessiveHalvingPruner):
            raise ConfigError(f"LearningCurvePruner(rung_pruner=...) must be a SuccessiveHalvingPruner (or None), "
                              f"got {rung_pruner!r}")
        if rung_pruner is not None and rung_pruner.max_resource not in (None, self.max_resource):
            raise ConfigError(f"LearningCurvePruner(rung_pruner=...): its max_resource ({rung_pruner.max_resource}) "
                              f"differs from max_resource={self.max_resource}; give both the same value")
        if rung_pruner is not None and not rung_pruner.rungs(up_to=self.max_resource - 1):
            first = rung_pruner.min_resource * rung_pruner.reduction_factor ** rung_pruner.min_early_stopping_rate
            raise ConfigError(f"LearningCurvePruner(rung_pruner=...): its first rung (min_resource="
                              f"{rung_pruner.min_resource}, min_early_stopping_rate="
                              f"{rung_pruner.min_early_stopping_rate}: step {first}) is not below max_resource="
                              f"{self.max_resource}, so there would be no rung at all; lower min_resource")
        if rung_pruner is not None and rung_pruner.metric is not None and rung_pruner.metric != self.metric:
            # the rungs rank the curve rule's metric: a rung pruner's own metric was ignored
            if self.metric is not None:
                raise ConfigError(f"LearningCurvePruner(metric={self.metric!r}) and its rung_pruner's "
                                  f"metric={rung_pruner.metric!r} differ; give one metric (to the LearningCurvePruner)")
            self.metric = rung_pruner.metric
        if rung_pruner is not None and rung_pruner.direction != self.direction:
            # One direction for the curve rule and the rungs (those of short curves are ASHA's own decisions):
            # a rung pruner without one read the study's, and ranked val_loss as the study's 'maximize'.
            if rung_pruner.direction is not None and self.direction is not None:
                raise ConfigError(f"LearningCurvePruner(direction={self.direction!r}) and its rung_pruner's "
                                  f"direction={rung_pruner.direction!r} differ; give one direction (to the "
                                  "LearningCurvePruner)")
            if self.direction is None:
                self.direction = rung_pruner.direction
            else:
                rung_pruner = SuccessiveHalvingPruner(
                    min_resource=rung_pruner.min_resource, reduction_factor=rung_pruner.reduction_factor,
                    max_resource=rung_pruner.max_resource, min_early_stopping_rate=rung_pruner.min_early_stopping_rate,
                    metric=rung_pruner.metric, direction=self.direction)
        self.rung_pruner = rung_pruner
        if (isinstance(refit_growth, bool) or not isinstance(refit_growth, (int, float))
                or not 1.0 <= refit_growth <= 4.0):
            raise ConfigError(f"LearningCurvePruner(refit_growth=...) must be a number from 1 (refit at every "
                              f"point) to 4, e.g. 1.25, got {refit_growth!r}")
        self.refit_growth = float(refit_growth)
        if rung_pool not in RUNG_POOLS:
            raise ConfigError(f"LearningCurvePruner(rung_pool=...) must be one of {', '.join(map(repr, RUNG_POOLS))}, "
                              f"got {rung_pool!r}")
        self.rung_pool = rung_pool
        if short_curves not in SHORT_CURVES:
            raise ConfigError(f"LearningCurvePruner(short_curves=...) must be one of "
                              f"{', '.join(map(repr, SHORT_CURVES))}, got {short_curves!r}")
        self.short_curves = short_curves

    # -- the curve model -------------------------------------------------------------------------
    def model(self, curve: Mapping[int, float], direction: str, up_to: int | None = None) -> CurveModel | None:
        """The curve model of ``curve`` (its points at steps up to ``up_to``), or None with fewer than
        ``min_points`` finite points (or when no family could be fitted)."""
        pts = sorted((int(s), float(v)) for s, v in curve.items()
                     if s > 0 and math.isfinite(v) and (up_to is None or s <= up_to))
        if len(pts) < self.min_points:
            return None
        # the curve is fitted on its first n points, n the last of the refit schedule reached: between
        # two refits the decision reuses the last fit (with the incumbent of now); each refit starts
        # from the previous one
        steps, values = tuple(s for s, _ in pts), tuple(v for _, v in pts)
        schedule = refit_schedule(self.min_points, self.refit_growth, len(pts))
        for k, n in enumerate(schedule):  # from the first fit up: each finds its predecessor cached (no deep recursion)
            m = _fit(steps[:n], values[:n], direction, self.max_resource, tuple(schedule[:k]))
        return m if m.ok else None

    def _continuation(self, model: CurveModel, step: int) -> dict[str, list[float]]:
        n = min(CONTINUATION_POINTS, self.max_resource - step)
        steps = sorted({round(step + (self.max_resource - step) * (i + 1) / n) for i in range(n)})
        return model.continuation(steps, self.interval)

    def incumbent(self, history: History, number: int, metric: str, direction: str) -> float | None:
        """The ``top_k``-th best value the other trials reported at ``max_resource``; None when fewer got there."""
        values = [p.value for p in history.metric_at(metric, [self.max_resource])
                  if p.number != number and math.isfinite(p.value)]
        if len(values) < self.top_k:
            return None
        values.sort(reverse=direction == "maximize")
        return values[self.top_k - 1]

    # -- the decision ------------------------------------------------------------------------------
    def decide(self, history: History, number: int, metric: str, curve: Mapping[int, float]) -> PruneDecision | None:
        step = last_step(curve)
        if step >= self.max_resource:
            return None
        direction = self.direction_for(history)
        if not math.isfinite(curve[step]):  # diverged: its earlier points would predict a curve it no longer is
            return self._diverged(history, number, metric, curve, step, direction)
        if self.rung_pruner is not None and step in self.rung_pruner.rungs(up_to=step):
            stop = self._rung_decision(history, number, metric, curve, step, direction)
            if stop is not None:
                return stop
        model = self.model(curve, direction)
        if model is None:
            return None
        incumbent = self.incumbent(history, number, metric, direction)
        p = model.predict(self.max_resource, self.interval)
        p_better = None if incumbent is None else p.prob_better(incumbent)
        evidence: dict[str, Any] = {
            "step": step, "fitted_to": int(model.steps[-1]), "predicted_at": self.max_resource,
            "mean": p.mean, "low": p.low, "high": p.high,
            "interval": self.interval, "incumbent": incumbent, "top_k": self.top_k, "p_better": p_better,
            PREDICTED_FINAL: p.mean,
            "families": {k: round(v, 4) for k, v in model.family_weights().items()},
            "continuation": self._continuation(model, step),
        }
        which = "best value" if self.top_k == 1 else f"{_ordinal(self.top_k)} best value"
        if incumbent is None or p_better is None:
            return PruneDecision(
                rule="curve prediction", stop=False, evidence=evidence,
                detail=f"{metric} predicted at step {self.max_resource}: {p.mean:.6g} "
                       f"[{p.low:.6g}, {p.high:.6g}]; no {which} at step {self.max_resource} yet"
                       + self._unreached(history, metric),
            )
        stops = p_better < 1.0 - self.confidence
        return PruneDecision(
            rule=f"curve prediction at step {step}" if stops else "curve prediction", stop=stops, evidence=evidence,
            detail=f"{metric} predicted at step {self.max_resource}: {p.mean:.6g}, {self.interval:.0%} interval "
                   f"[{p.low:.6g}, {p.high:.6g}]; probability of beating the {which} {incumbent:.6g} "
                   f"{p_better:.3g} ({'below' if stops else 'not below'} {1 - self.confidence:.3g})",
        )

    def _unreached(self, history: History, metric: str) -> str:
        """When ``top_k`` trials or more are COMPLETE but fewer reported at ``max_resource`` (trials that report
        epochs 0 to 26 against max_resource=27, or every 2 epochs past it), the curve rule never gets an incumbent
        and stops nothing: a warning (once per pruner and process) and the words for the decision's detail."""
        n_complete = history.count(_COMPLETE)
        if n_complete < self.top_k:
            return ""
        fix = (f"give max_resource the step at which a full training reports {metric} (e.g. 26 for epochs 0 to "
               "26), or report it at that step")
        said = (f"no COMPLETE trial ({n_complete} so far)" if self.top_k == 1
                else f"fewer than {self.top_k} of the {n_complete} COMPLETE trials")
        said += f" reported {metric} at step {self.max_resource}"
        if not self._warned_unreached:
            self._warned_unreached = True
            warnings.warn(f"LearningCurvePruner(max_resource={self.max_resource}) cannot stop any trial yet: {said}, "
                          f"so there is no value to beat; {fix}", stacklevel=2)
        return f" ({said}: {fix})"

    _warned_unreached = False

    def _diverged(self, history: History, number: int, metric: str, curve: Mapping[int, float], step: int,
                  direction: str) -> PruneDecision | None:
        """A curve whose last value is NaN or infinite: at a rung, ASHA's rule on that value (NaN ranks
        last); else stopped once an incumbent exists that the value does not beat (a NaN never does)."""
        if self.rung_pruner is not None and step in self.rung_pruner.rungs(up_to=step):
            stop = self.rung_pruner.decide(history, number, metric, curve)
            if stop is not None:
                return stop
        value = curve[step]
        incumbent = self.incumbent(history, number, metric, direction)
        if incumbent is None or better_or_equal(value, incumbent, direction):
            return None
        which = "best value" if self.top_k == 1 else f"{_ordinal(self.top_k)} best value"
        return PruneDecision(
            rule=f"non-finite value at step {step}",
            detail=f"{metric} is {value} at step {step} (the run diverged), which cannot beat the {which} "
                   f"{incumbent:.6g} at step {self.max_resource}",
            evidence={"step": step, "incumbent": incumbent, "top_k": self.top_k, "p_better": 0.0},
        )

    def _rung_decision(self, history: History, number: int, metric: str, curve: Mapping[int, float], step: int,
                       direction: str) -> PruneDecision | None:
        """ASHA at rung ``step``, ranking trials by their value predicted at the next rung."""
        assert self.rung_pruner is not None
        later = [r for r in self.rung_pruner.rungs(up_to=self.max_resource) if r > step]
        target = later[0] if later else self.max_resource
        earlier = [r for r in self.rung_pruner.rungs(up_to=step) if r < step]
        previous = earlier[-1] if earlier else 0
        curves: dict[int, dict[int, float]] = {}
        for pt in history.metric_at(metric, None):
            if pt.number != number and pt.step <= step:
                curves.setdefault(pt.number, {})[pt.step] = pt.value
        own = {s: v for s, v in curve.items() if s <= step}
        mine = self.model(own, direction)
        short = self.short_extrapolation(own, step, target) if mine is None else None
        if mine is None and short is None:  # too few points to predict: the rung as ASHA decides it
            return self.rung_pruner.decide(history, number, metric, curve)

        def score(c: Mapping[int, float]) -> float:
            m = self.model(c, direction)
            if m is not None:
                return m.predict(target, self.interval).mean
            line = self.short_extrapolation(c, step, target)
            return line[0] if line is not None else c[step]

        if mine is not None:
            value = mine.predict(target, self.interval).mean
        else:
            assert short is not None
            value = short[0]
        competing = [score(c) for c in curves.values() if step in c]
        n_stopped = 0
        if self.rung_pool == "passed":  # stopped by the curve rule after the previous rung: they count here too
            for t in history.trials((TrialState.PRUNED,)):
                c = curves.get(t.number)
                stop = t.system_attrs.get("pruned")
                if (c and step not in c and max(c) >= previous and isinstance(stop, Mapping)
                        and str(stop.get("rule", "")).startswith("curve prediction")):
                    competing.append(score(c))
                    n_stopped += 1
        competing.append(value)
        eta = self.rung_pruner.reduction_factor
        n_keep = max(1, len(competing) // eta)
        ranked = sorted(competing, key=lambda v: (math.isnan(v), v if direction == "minimize" else -v))
        cut = ranked[n_keep - 1]
        if better_or_equal(value, cut, direction):
            return None
        if mine is None:
            assert short is not None
            return self._short_rung_stop(metric, curve[step], step, target, short, cut, n_keep, len(competing),
                                         n_stopped)
        final = value if target == self.max_resource else mine.predict(self.max_resource, self.interval).mean
        return PruneDecision(
            rule=f"asha rung at step {step} (predicted at step {target})",
            detail=f"{metric} {curve[step]:.6g} at step {step}, predicted {value:.6g} at step {target}, is not among "
                   f"the best {n_keep} of {len(competing)} predictions (cut {cut:.6g}, reduction factor {eta})",
            evidence={"step": step, "predicted_at": target, "mean": value, "cut": cut, "n_keep": n_keep,
                      PREDICTED_FINAL: final, "n_stopped_before": n_stopped,
                      "n_competing": len(competing), "continuation": mine.continuation(
                          sorted({step + max(1, (target - step) * i // 6) for i in range(1, 7)}), self.interval)},
        )

    def short_extrapolation(self, curve: Mapping[int, float], step: int,
                            target: int) -> tuple[float, list[list[float]], float] | None:
        """With ``short_curves="log_slope"``: the value of ``curve`` (its points up to ``step``) at ``target``,
        its last two finite points extended as a straight line in log(step); with them and the slope
        (per unit of log(step)). None with ``"value"``, when the value at ``step`` is not finite, or with
        fewer than two finite points."""
        if self.short_curves != "log_slope" or not math.isfinite(curve.get(step, math.nan)):
            return None
        pts = sorted((int(s), float(v)) for s, v in curve.items() if 0 < s <= step and math.isfinite(v))
        if len(pts) < 2:
            return None
        (s0, v0), (s1, v1) = pts[-2], pts[-1]
        slope = (v1 - v0) / math.log(s1 / s0)
        return v1 + slope * math.log(target / s1), [[s0, v0], [s1, v1]], slope

    def _short_rung_stop(self, metric: str, at_rung: float, step: int, target: int,
                         short: tuple[float, list[list[float]], float], cut: float, n_keep: int, n_competing: int,
                         n_stopped: int) -> PruneDecision:
        """A rung stop of a curve too short for the model, ranked by its log-step extrapolation."""
        value, points, slope = short
        return PruneDecision(
            rule=f"asha rung at step {step} (extrapolated to step {target})",
            detail=f"{metric} {at_rung:.6g} at step {step}, extrapolated {value:.6g} at step {target} from its last "
                   f"two points (slope {slope:.4g} per log step), is not among the best {n_keep} of {n_competing} "
                   f"(cut {cut:.6g})",
            evidence={"step": step, "predicted_at": target, "extrapolated": value, "cut": cut, "n_keep": n_keep,
                      "short_curves": self.short_curves, "points": points, "slope_per_log_step": slope,
                      "n_stopped_before": n_stopped, "n_competing": n_competing},
        )

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(), "max_resource": self.max_resource, "min_points": self.min_points,
            "confidence": self.confidence, "top_k": self.top_k, "interval": self.interval,
            "rung_pruner": None if self.rung_pruner is None else self.rung_pruner.describe(),
            "refit_growth": self.refit_growth, "rung_pool": self.rung_pool, "short_curves": self.short_curves,
        }


def _ordinal(k: int) -> str:
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"

