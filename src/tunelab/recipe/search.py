"""The recipe's searches (steps d. to f.), all in one study.

d. :func:`coarse_search`: short runs (a few epochs) over the learning-rate range of step c.,
   the weight decay and the model's own hyperparameters, in parallel workers, the worst
   stopped early by the median rule.
e. :func:`refine`: longer runs in ranges zoomed around the best coarse trials (the study's
   :class:`~tunelab.samplers.CoarseToFineSampler` moves to its second stage), optionally
   stopped when validation stops improving (``patience``).
f. :func:`final`: the best refined configuration trained for the full budget; the model is
   saved as the trial's checkpoint and its curves stay in the study.

With several objectives (``objectives=("val_acc", "params")``: accuracy against the model's
size), the study has one direction per objective, the searches return one value per objective,
the pruner is :class:`~tunelab.pruners.ParetoMedianPruner`, each stage's verdict lists its Pareto
front, and :func:`final` trains the front member :func:`choose_from_front` picks: the best in the
second objective (the smallest model) among those within :data:`FRONT_TOLERANCE` of the front's
best first objective (1 point of accuracy).

Each trial carries ``user_attrs["train"] = {"stage": ..., "epochs": ...}``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from typing import Any

from tunelab.distributions import Categorical, Float
from tunelab.errors import ConfigError
from tunelab.multiobjective import pareto_front_trials
from tunelab.pruners import MedianPruner, ParetoMedianPruner
from tunelab.recipe.steps import FAIL, PASS, StepResult
from tunelab.records import FrozenTrial, TrialState, sort_key
from tunelab.samplers import CoarseToFineSampler
from tunelab.space import SpaceEntry, space_to_json
from tunelab.study import Study
from tunelab.torch import PARAMS, Trainer, monitor_direction, objective_direction

WEIGHT_DECAY = Float(1e-6, 1e-2, log=True)
"""The weight decay searched unless the trainer's space declares its own."""
LR_MARGIN = 2.0
"""The coarse search's learning rates reach this factor beyond the range test's on each side."""
FRONT_TOLERANCE = 0.01
""":func:`choose_from_front`'s slack on the first objective: 1 point of accuracy."""
MAX_FRONT_SHOWN = 8
"""A stage's verdict names at most this many front members (its evidence holds them all)."""


def search_space(trainer: Trainer, lr_range: Sequence[float]) -> dict[str, SpaceEntry]:
    """lr log-uniform over ``lr_range`` (widened by :data:`LR_MARGIN`), weight decay, and the trainer's space."""
    low, high = lr_range
    space: dict[str, SpaceEntry] = {"lr": Float(low / LR_MARGIN, high * LR_MARGIN, log=True)}
    if "weight_decay" not in trainer.space:
        space["weight_decay"] = WEIGHT_DECAY
    space.update(trainer.space)
    return space


ADAPTABLE = ("sgd", "adam", "adamw")
"""The trainer optimizers whose hypergradient version (``-hd``) the recipe's ``adapt_lr`` uses."""


def adaptive(trainer: Trainer) -> Trainer:
    """A copy of ``trainer`` whose optimizer is the hypergradient version of its own ('adamw' ->
    'adamw-hd'; an ``-hd`` one stays): the learning rate adapts from the one it starts with."""
    if isinstance(trainer.optimizer, str) and trainer.optimizer.removesuffix("-hd") in ADAPTABLE:
        adapted = copy.copy(trainer)
        adapted.optimizer = f"{trainer.optimizer.removesuffix('-hd')}-hd"
        return adapted
    raise ConfigError(
        f"adapt_lr needs a Trainer with optimizer one of {ADAPTABLE}, got {trainer.optimizer!r}: "
        "name one of them or leave adapt_lr off"
    )


def adaptive_space(trainer: Trainer, lr: float, lr_max: float | None = None) -> dict[str, SpaceEntry]:
    """The searches' space with ``adapt_lr``: ``lr`` fixed at the range test's best ``lr`` (the
    rate adapts from it while each run trains) with ``lr_max``, its ceiling (the top of the range
    test's range: a rate that climbs past the edge of stability can kill a network in a few
    steps), weight decay, and the trainer's space."""
    space = search_space(trainer, (lr, lr))
    space["lr"] = Categorical([float(lr)])
    if lr_max is not None and lr_max > lr:
        space = {"lr": space.pop("lr"), "lr_max": Categorical([float(lr_max)]), **space}
    return space


def direction(trainer: Trainer) -> str:
    """The study's direction: that of the trainer's ``monitor`` (maximize ``val_acc``)."""
    return monitor_direction(trainer.monitor)


def check_objectives(trainer: Trainer, objectives: Sequence[str] | None) -> tuple[str, ...]:
    """The recipe's objectives: ``(monitor,)`` for None; else names of ``trainer.objective_names()``,
    the trainer's ``monitor`` first (the checks, the final value and the choice from the front
    read it), e.g. ``("val_acc", "params")``."""
    if objectives is None:
        return (trainer.monitor,)
    names = trainer.check_objectives(objectives)
    if names[0] != trainer.monitor:
        raise ConfigError(
            f"the recipe's first objective must be the trainer's monitor {trainer.monitor!r}, got {list(names)!r}: "
            f"write e.g. {','.join([trainer.monitor, *(n for n in names if n != trainer.monitor)])}"
        )
    return names


def directions(objectives: Sequence[str]) -> list[str]:
    """Each objective's direction: ``params`` minimized, the others by their name (maximize ``val_acc``)."""
    return [objective_direction(name) for name in objectives]


def sampler(coarse_trials: int, top_k: int = 5) -> CoarseToFineSampler:
    """Stage 0 (the coarse trials) samples the whole space; stage 1 (the rest) zooms in (around
    the first Pareto front with several objectives)."""
    return CoarseToFineSampler(n_stages=2, trials_per_stage=coarse_trials, top_k=top_k, shrink=0.5)


def pruner(multi_objective: bool = False) -> MedianPruner | ParetoMedianPruner:
    """The median rule on the validation loss, after 4 complete trials; with several objectives,
    the Pareto median rule on every objective's metric (stop a run behind the median in all)."""
    if multi_objective:
        return ParetoMedianPruner(n_startup_trials=4)
    return MedianPruner(n_startup_trials=4, metric="val_loss", direction="minimize")


def study_objectives(study: Study) -> tuple[str, ...] | None:
    """The objectives the searches return in ``study``: its names with several, else None (the monitor)."""
    return study.objective_names if study.is_multi_objective else None


def choose_from_front(
    front: Sequence[FrozenTrial], directions: Sequence[str], tolerance: float = FRONT_TOLERANCE
) -> tuple[FrozenTrial, FrozenTrial]:
    """``(chosen, top)``: ``top``, the front member best in the first objective, and ``chosen``, the
    best in the second objective among the members within ``tolerance`` of ``top``'s first
    objective, inclusive (ties: the other objectives in order, then the first, then the lower number).

    With ``("val_acc", "params")``: the smallest model within 1 point of the most accurate.
    """
    if not front:
        raise ConfigError("choose_from_front needs a non-empty Pareto front")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance >= 0:
        raise ConfigError(f"tolerance=... must be a number >= 0 (0.01: 1 point of accuracy), got {tolerance!r}")
    signs = [1.0 if d == "minimize" else -1.0 for d in directions]

    def loss(t: FrozenTrial) -> list[float]:
        assert t.values is not None
        return [s * v for s, v in zip(signs, t.values, strict=True)]

    top = min(front, key=lambda t: (loss(t)[0], t.number))
    near = [t for t in front if loss(t)[0] <= loss(top)[0] + tolerance + 1e-12]  # inclusive, despite rounding
    chosen = min(near, key=lambda t: (*loss(t)[1:], loss(t)[0], t.number))
    return chosen, top


def sorted_front(trials: Sequence[FrozenTrial], directions: Sequence[str]) -> list[FrozenTrial]:
    """The Pareto front of ``trials`` (feasible COMPLETE ones), best first objective first."""
    sign = 1.0 if directions[0] == "minimize" else -1.0
    front = pareto_front_trials(trials, directions)
    return sorted(front, key=lambda t: (sign * (t.values or (0.0,))[0], t.number))


def front_rows(front: Sequence[FrozenTrial], names: Sequence[str]) -> list[dict[str, Any]]:
    """The front as JSON rows: ``{"trial": number, name: value, ...}``."""
    return [{"trial": t.number, **dict(zip(names, t.values or (), strict=True))} for t in front]


def format_values(values: Mapping[str, Any]) -> str:
    """``val_acc 0.9711, params 35,498``."""
    return ", ".join(f"{k} {format_value(k, v)}" for k, v in values.items())


def format_value(name: str, value: Any) -> str:
    """An objective's value: the parameter count as ``35,498``, another number as ``0.9711``."""
    if name == PARAMS and isinstance(value, (int, float)):
        return f"{int(value):,}"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def stage_trials(study: Study, stage: str) -> list[FrozenTrial]:
    """The study's trials of one recipe stage ('coarse', 'refine' or 'final')."""
    return [t for t in study.trials if t.user_attrs.get("train", {}).get("stage") == stage]


def coarse_search(
    study: Study,
    trainer: Trainer,
    space: Mapping[str, SpaceEntry],
    *,
    n_trials: int,
    epochs: int,
    n_workers: int = 2,
    seed: int = 0,
    show_progress: bool | None = None,
) -> StepResult:
    """Step d.: ``n_trials`` runs of ``epochs`` epochs each over ``space``."""
    start = time.perf_counter()
    objective = trainer.objective(epochs=epochs, seed=seed, prune=True, tag={"stage": "coarse"},
                                  objectives=study_objectives(study))
    study.optimize(objective, n_trials=n_trials, n_workers=n_workers, space=space, show_progress=show_progress)
    result = _stage_result(study, "coarse", epochs, time.perf_counter() - start)
    result.evidence["space"] = space_to_json(space)
    return result


def refine(
    study: Study,
    trainer: Trainer,
    space: Mapping[str, SpaceEntry],
    *,
    n_trials: int,
    epochs: int,
    patience: int | None = None,
    n_workers: int = 2,
    seed: int = 0,
    show_progress: bool | None = None,
) -> StepResult:
    """Step e.: ``n_trials`` longer runs in ranges zoomed around the best coarse trials."""
    start = time.perf_counter()
    objective = trainer.objective(epochs=epochs, seed=seed, prune=False, patience=patience,
                                  tag={"stage": "refine"}, objectives=study_objectives(study))
    study.optimize(objective, n_trials=n_trials, n_workers=n_workers, space=space, show_progress=show_progress)
    result = _stage_result(study, "refine", epochs, time.perf_counter() - start)
    trials = stage_trials(study, "refine")
    ranges = next((t.system_attrs["coarse_to_fine"].get("ranges") for t in trials
                   if t.system_attrs.get("coarse_to_fine", {}).get("ranges")), None)
    result.evidence["ranges"] = ranges
    result.evidence["stopped_early"] = sum(
        1 for t in trials if t.user_attrs.get("fit", {}).get("stopped") == "patience"
    )
    return result


def final(
    study: Study,
    trainer: Trainer,
    space: Mapping[str, SpaceEntry],
    *,
    epochs: int,
    seed: int = 0,
    show_progress: bool | None = None,
    tolerance: float = FRONT_TOLERANCE,
) -> StepResult:
    """Step f.: train the best configuration (of the refine stage, else of any) for ``epochs``; save the model.

    With several objectives, the configuration :func:`choose_from_front` picks from the refine
    stage's Pareto front (else the whole study's) with ``tolerance``: the smallest model within 1
    point of the most accurate for ``("val_acc", "params")``.
    """
    start = time.perf_counter()
    pick = _pick(study, tolerance)
    if pick is None:
        return StepResult("final", FAIL, "no trial completed: nothing to train", {}, time.perf_counter() - start)
    best, why, choice = pick
    number = study.enqueue(dict(best.params))
    objective = trainer.objective(epochs=epochs, seed=seed, prune=False, save_model=True, tag={"stage": "final"},
                                  objectives=study_objectives(study))
    study.optimize(objective, n_trials=1, n_workers=1, space=space, show_progress=show_progress)
    trial = next(t for t in study.trials if t.number == number)
    seconds = time.perf_counter() - start
    evidence: dict[str, Any] = {"trial": number, "from_trial": best.number, "params": dict(best.params),
                                "epochs": epochs, "state": trial.state.value, **choice}
    if trial.state != TrialState.COMPLETE:
        return StepResult("final", FAIL, f"the final run ended {trial.state.value}: {trial.error or ''}".strip(),
                          evidence, seconds)
    fit = trial.user_attrs.get("fit", {})
    curves = study.get_curves(number)
    best_step = fit.get("best_step")
    at_best = {metric: value for metric, (steps, values) in curves.items()
               for step, value in zip(steps, values, strict=True) if step == best_step}
    evidence.update(value=trial.value, metric=trainer.monitor, best_step=best_step, at_best=at_best,
                    model=fit.get("model"), seconds_training=fit.get("seconds"))
    if study.is_multi_objective:
        values = dict(zip(study.objective_names, trial.values or (), strict=True))
        evidence["values"] = values
        shown = format_values(values)
    else:
        shown = f"{trainer.monitor} {trial.value:.4f}"
        if "val_acc" in at_best and trainer.monitor != "val_acc":
            shown += f", val_acc {at_best['val_acc']:.4f}"
    return StepResult(
        "final", PASS,
        f"trial {number} ({epochs} epochs, the configuration of trial {best.number}{why}): {shown} at epoch "
        f"{best_step}; model saved in {fit.get('model')}",
        evidence, seconds,
    )


def _pick(study: Study, tolerance: float) -> tuple[FrozenTrial, str, dict[str, Any]] | None:
    """The trial whose configuration f. trains, why (a phrase for its message) and the evidence of the choice."""
    if not study.is_multi_objective:
        best = _best(stage_trials(study, "refine"), study.direction) or _best(study.trials, study.direction)
        return None if best is None else (best, "", {})
    names, dirs = study.objective_names, study.directions
    front = sorted_front(stage_trials(study, "refine"), dirs) or sorted_front(study.trials, dirs)
    if not front:
        return None
    chosen, top = choose_from_front(front, dirs, tolerance)
    best_second = "smallest model" if names[1] == PARAMS else (
        f"{'lowest' if dirs[1] == 'minimize' else 'highest'} {names[1]}")
    rule = f"the {best_second} within {tolerance:g} {names[0]} of the front's best {names[0]}"
    top_values = dict(zip(names, top.values or (), strict=True))
    why = f", {rule}: trial {top.number} has {format_values(top_values)}" if chosen is not top else f", {rule}"
    evidence = {"rule": rule, "tolerance": tolerance, "front": front_rows(front, names), "top_trial": top.number,
                "top_values": top_values}
    return chosen, why, evidence


def _best(trials: list[FrozenTrial], direction: str) -> FrozenTrial | None:
    """The best COMPLETE trial: feasible ones first (as ``study.best_trial``), then by violation."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    key = sort_key(direction)
    return min(done, key=lambda t: (t.violation, key(t))) if done else None


def _stage_result(study: Study, stage: str, epochs: int, seconds: float) -> StepResult:
    trials = stage_trials(study, stage)
    counts = {s.value: sum(t.state == s for t in trials) for s in TrialState if any(t.state == s for t in trials)}
    evidence: dict[str, Any] = {"epochs": epochs, "trials": len(trials), "states": counts}
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    if not done:
        errors = sorted({(t.error or "").splitlines()[0] for t in trials if t.state == TrialState.FAIL} - {""})
        return StepResult(stage, FAIL, f"no {stage} trial completed" + (f": {errors[0]}" if errors else ""),
                          evidence, seconds)
    tally = ", ".join(f"{n} {s.lower()}" for s, n in counts.items())
    if study.is_multi_objective:
        front = sorted_front(done, study.directions)
        evidence["front"] = front_rows(front, study.objective_names)
        shown = "; ".join(f"trial {row['trial']}: {format_values({k: v for k, v in row.items() if k != 'trial'})}"
                          for row in evidence["front"][:MAX_FRONT_SHOWN])
        more = len(front) - MAX_FRONT_SHOWN
        return StepResult(
            stage, PASS,
            f"{len(trials)} trials of {epochs} epochs ({tally}); Pareto front of {len(front)} ({shown}"
            f"{f'; {more} more' if more > 0 else ''})",
            evidence, seconds,
        )
    best = _best(done, study.direction)
    assert best is not None  # done is not empty
    evidence.update(best_trial=best.number, best_value=best.value, best_params=dict(best.params))
    return StepResult(
        stage, PASS,
        f"{len(trials)} trials of {epochs} epochs ({tally}); best {best.value:.4f} (trial {best.number}: "
        f"{_fmt_params(best.params)})",
        evidence, seconds,
    )


def _fmt_params(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
