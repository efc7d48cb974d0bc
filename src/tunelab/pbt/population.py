"""Population-based training (Jaderberg et al. 2017): parallel search that babysits itself.

A population of trials (members) trains in parallel. Every ``interval`` steps a member
checkpoints and compares itself with the population by its latest value of ``metric``.
A member in the bottom ``quantile`` *exploits*: it takes the newest checkpoint at or before
that step and the current hyperparameters of a member of the top ``quantile``; then it *explores*: each
hyperparameter is resampled from its distribution with probability ``resample_probability``,
else numbers are multiplied by 0.8 or 1.2 (kept inside their range) and choices kept. It then
continues training from the copied checkpoint with the new hyperparameters.

Every change is stored with the member (``system_attrs["pbt"]``: its current hyperparameters
and its lineage, who it copied, at which step, with which hyperparameters), so any worker sees
the population's current hyperparameters, :func:`format_lineage` prints the family tree, and
:func:`schedule` turns a member's lineage into a hyperparameter schedule to replay in a
fresh run (:func:`params_at`).

Usage, inside the objective::

    pbt = tunelab.PopulationBasedTraining(interval=4, metric="val_acc", direction="maximize")

    def objective(trial):
        member = pbt.member(trial)
        model, opt = build(member.params)
        for epoch in range(1, 41):
            train_one_epoch(model, opt, member.params)
            trial.report(epoch, val_acc=evaluate(model))
            if member.due(epoch):
                with trial.checkpoint(epoch) as folder:
                    tunelab.save_torch(folder, model, opt)
                change = member.exploit_and_explore(epoch)
                if change is not None:
                    tunelab.load_torch(change.checkpoint, model, opt)
                    set_lr(opt, member.params["lr"])
        return evaluate(model)

    study.optimize(objective, n_trials=8, n_workers=8, space=space)   # 8 members at once
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tunelab.distributions import Distribution, Float, Int, ParamValue
from tunelab.errors import ConfigError
from tunelab.pbt.lineage import PBT_KEY
from tunelab.pruners.base import metric_kind
from tunelab.records import FrozenTrial, TrialState, check_direction

if TYPE_CHECKING:
    from tunelab.study import Trial

@dataclass(frozen=True)
class Exploit:
    """What a member took over: load ``checkpoint``, then train on with the member's new params.

    Attributes:
        step: the step at which the member exploited.
        parent: the trial number it copied.
        parent_step: the step of the parent's checkpoint.
        checkpoint: the parent's checkpoint folder.
        params: the hyperparameters after exploring.
    """

    step: int
    parent: int
    parent_step: int
    checkpoint: Path
    params: dict[str, ParamValue]


class PopulationBasedTraining:
    """The rules of a population: when members compare, who copies whom, how they explore.

    Args:
        interval: members compare every this many steps.
        metric: the reported metric that ranks members (e.g. 'val_acc').
        direction: 'minimize' or 'maximize' for that metric; None: the study's direction.
        quantile: the bottom fraction that copies, and the top fraction it copies from.
        resample_probability: per hyperparameter, the chance to draw a fresh value instead of
            perturbing the copied one.
        factors: numbers are multiplied by one of these when perturbed.
        hyperparameters: the names explore may change (default: every parameter of the trial);
            the others (e.g. the width) are copied from the parent with its checkpoint, never
            perturbed.

    Examples:
        A toy population whose "training" gains ``lr`` per step and whose checkpoint is one
        number: members that started with a small learning rate copy a better member's
        checkpoint and hyperparameters, and finish as well as it did.

        >>> import json, tempfile
        >>> import tunelab
        >>> pbt = tunelab.PopulationBasedTraining(interval=2, metric="score", direction="maximize")
        >>> def objective(trial):
        ...     member = pbt.member(trial)
        ...     score = 0.0
        ...     for step in range(1, 9):
        ...         score += member.params["lr"]
        ...         trial.report(step, score=score)
        ...         if member.due(step):
        ...             with trial.checkpoint(step) as folder:
        ...                 (folder / "state.json").write_text(json.dumps(score))
        ...             change = member.exploit_and_explore(step)
        ...             if change is not None:            # copied trial change.parent: load its state
        ...                 score = json.loads((change.checkpoint / "state.json").read_text())
        ...     return score
        >>> folder = tempfile.TemporaryDirectory()
        >>> study = tunelab.create_study(direction="maximize", sampler=tunelab.RandomSampler(), seed=0,
        ...                              artifact_dir=folder.name,
        ...                              checkpoint_policy=tunelab.CheckpointPolicy(keep_last=4, keep_finished=True))
        >>> study.optimize(objective, n_trials=4, space={"lr": tunelab.Float(0.01, 1.0, log=True)})
        >>> [t.params["lr"] < 0.1 for t in study.trials]             # the starting learning rates
        [False, False, True, True]
        >>> all(t.value > 2.5 for t in study.trials)                  # 8 steps of lr 0.02 would give 0.2
        True
        >>> tunelab.pbt.schedule(study.trials[3])[1][0]               # its first change, at step 2
        2
        >>> folder.cleanup()
    """

    def __init__(
        self,
        interval: int,
        metric: str,
        direction: str | None = None,
        quantile: float = 0.25,
        resample_probability: float = 0.25,
        factors: Sequence[float] = (0.8, 1.2),
        hyperparameters: Sequence[str] | None = None,
    ) -> None:
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ConfigError(f"PopulationBasedTraining(interval=...) must be an integer >= 1, got {interval!r}")
        if not isinstance(metric, str) or not metric:
            raise ConfigError(f"PopulationBasedTraining(metric=...) must name a reported metric, got {metric!r}")
        if isinstance(quantile, bool) or not isinstance(quantile, (int, float)) or not 0 < quantile <= 0.5:
            raise ConfigError(f"PopulationBasedTraining(quantile=...) must be in (0, 0.5], e.g. 0.25, got {quantile!r}")
        p = resample_probability
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ConfigError(f"PopulationBasedTraining(resample_probability=...) must be in [0, 1], got {p!r}")
        if not factors or any(isinstance(f, bool) or not isinstance(f, (int, float)) or f <= 0 for f in factors):
            raise ConfigError(f"PopulationBasedTraining(factors=...) must be positive numbers, got {factors!r}")
        self.interval = interval
        self.metric = metric
        self.direction = check_direction(direction) if direction is not None else None
        self.quantile = float(quantile)
        self.resample_probability = float(p)
        self.factors = tuple(float(f) for f in factors)
        self.hyperparameters = tuple(hyperparameters) if hyperparameters is not None else None

    def member(self, trial: Trial) -> Member:
        """The trial as a member of the population (records its starting hyperparameters)."""
        return Member(self, trial)


class Member:
    """One trial of a population. Use :meth:`PopulationBasedTraining.member`.

    Attributes:
        params: the current hyperparameters (they change when the member exploits).
    """

    def __init__(self, rules: PopulationBasedTraining, trial: Trial) -> None:
        self._rules = rules
        self._trial = trial
        self.params: dict[str, ParamValue] = dict(trial.params)
        if not self.params:
            raise ConfigError(
                "PopulationBasedTraining needs the trial's hyperparameters before training starts: suggest them "
                "first, or pass space=... to optimize()"
            )
        unknown = [n for n in rules.hyperparameters or () if n not in self.params]
        if unknown:  # a typo would never be explored, and nothing would say so
            raise ConfigError(
                f"PopulationBasedTraining(hyperparameters=...) names {unknown}, which trial {trial.number} does not "
                f"have; its hyperparameters are {sorted(self.params)}"
            )
        direction = rules.direction or trial.study.direction
        kind = metric_kind(rules.metric) if rules.direction is None else None
        if kind is not None and kind != direction:  # it would copy the worst members
            raise ConfigError(
                f"PopulationBasedTraining(metric={rules.metric!r}) takes the study's direction, {direction!r}, but "
                f"{rules.metric!r} looks like a metric to {kind}: give PopulationBasedTraining(metric="
                f"{rules.metric!r}, direction={kind!r}) (or direction={direction!r} if {direction} is right)"
            )
        self._lineage: list[dict[str, Any]] = []
        self._save()

    def due(self, step: int) -> bool:
        """Whether the member compares itself with the population at ``step``."""
        return step > 0 and step % self._rules.interval == 0

    def exploit_and_explore(self, step: int) -> Exploit | None:
        """Compare with the population at ``step`` (after reporting and checkpointing it).

        Returns what to load when the member is in the bottom quantile and copies a better one;
        None when it trains on unchanged.
        """
        rules, trial = self._rules, self._trial
        study = trial.study
        direction = rules.direction or study.direction
        latest: dict[int, float] = {}
        for p in study.storage.get_metric_at(study.study_id, rules.metric, None):
            if p.step <= step and p.state in (TrialState.RUNNING, TrialState.COMPLETE):
                latest[p.number] = p.value  # ordered by step: the last one wins (a NaN too: it diverged)
        if trial.number not in latest:
            reported = sorted(study.get_curves(trial.number))
            if reported and rules.metric not in reported:  # a typo would never exploit, and say nothing
                # A warning, not an error: a metric validated less often than the interval is not there yet.
                warnings.warn(
                    f"PopulationBasedTraining(metric={rules.metric!r}) ranks members by {rules.metric!r}, but trial "
                    f"{trial.number} has reported only {reported} by step {step}, so it cannot compare itself; "
                    f"report it, e.g. trial.report(step, {rules.metric}=...), or name a reported metric",
                    stacklevel=2,
                )
            return None
        if len(latest) < 2:
            return None
        # a member whose latest value is NaN (diverged) ranks last, so it copies a better one; it is never copied
        ranked = sorted(latest, key=lambda n: (math.isnan(latest[n]),
                                               latest[n] if direction == "minimize" else -latest[n], n))
        k = max(1, int(math.floor(rules.quantile * len(ranked))))
        if trial.number not in ranked[-k:]:
            return None
        top = [n for n in ranked[:k] if not math.isnan(latest[n])]
        rng = np.random.default_rng([study.seed, trial.number, step, 0x9B7])
        members = {t.number: t for t in study.get_trials((TrialState.RUNNING, TrialState.COMPLETE))}
        for parent in [int(n) for n in rng.permutation(top)]:
            # The parent's newest checkpoint at or before this step: members that run ahead are
            # copied as they were at the step being compared, so training time stays consistent.
            kept = [c for c in study.checkpoints(parent) if c.step <= step]
            if not kept:
                continue  # none (yet, or no longer): try another top member
            parent_step, checkpoint = kept[-1].step, kept[-1].path
            parent_params = _current_params(members.get(parent))
            # Exploit takes every hyperparameter of the parent (the weights go with its width, its
            # optimizer); explore then perturbs only those that may change during training.
            new = self._explore({**self.params, **parent_params}, rng)
            own = latest[trial.number]
            event = {"step": step, "parent": parent, "parent_step": parent_step, "from": dict(self.params),
                     "params": new, "value": None if math.isnan(own) else own, "parent_value": latest[parent]}
            self.params = new
            self._lineage.append(event)
            self._save()
            return Exploit(step, parent, parent_step, checkpoint, dict(new))
        return None

    def _mutable(self, name: str) -> bool:
        names = self._rules.hyperparameters
        return names is None or name in names

    def _explore(self, params: Mapping[str, ParamValue], rng: np.random.Generator) -> dict[str, ParamValue]:
        out = dict(params)
        dists = self._trial.distributions
        for name, value in params.items():
            dist = dists.get(name)
            if dist is None or not self._mutable(name):
                continue
            if rng.random() < self._rules.resample_probability:
                out[name] = dist.sample(rng)
            elif isinstance(dist, (Float, Int)) and isinstance(value, (int, float)) and not isinstance(value, bool):
                factor = self._rules.factors[int(rng.integers(len(self._rules.factors)))]
                out[name] = _clip(dist, value * factor)
        return out

    def _save(self) -> None:
        self._trial._ctx.record(PBT_KEY, {"params": dict(self.params), "lineage": list(self._lineage)})
        self._trial.flush()


def _clip(dist: Distribution, value: float) -> ParamValue:
    assert isinstance(dist, (Float, Int))
    v = min(max(value, dist.low), dist.high)
    if isinstance(dist, Int):
        return dist.cast(int(round((round(v) - dist.low) / dist.step)) * dist.step + dist.low)
    if dist.step is not None:  # the nearest point of the lattice (0.8 * 0.3 = 0.24 is no value of step=0.1)
        return dist.from_unit(dist.to_unit(v))
    return float(v)


def _current_params(trial: FrozenTrial | None) -> dict[str, ParamValue]:
    if trial is None:
        return {}
    record = trial.system_attrs.get(PBT_KEY) or {}
    return dict(record.get("params") or trial.params)


__all__ = ["Exploit", "Member", "PopulationBasedTraining"]
