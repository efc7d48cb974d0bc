"""The recipe's searches (steps d. to f.), all in one study.

d. :func:`coarse_search`: short runs (a few epochs) over the learning-rate range of step c.,
   the weight decay and the model's own hyperparameters, in parallel workers, the worst
   stopped early by the median rule.
e. :func:`refine`: longer runs in ranges zoomed around the best coarse trials (the study's
   :class:`~tunelab.samplers.CoarseToFineSampler` moves to its second stage), optionally
   stopped when validation stops improving (``patience``).
f. :func:`final`: the best refined configuration trained for the full budget; the model is
   saved as the trial's checkpoint and its curves stay in the study.

Each trial carries ``user_attrs["train"] = {"stage": ..., "epochs": ...}``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from typing import Any

from tunelab.distributions import Categorical, Float
from tunelab.errors import ConfigError
from tunelab.pruners import MedianPruner
from tunelab.recipe.steps import FAIL, PASS, StepResult
from tunelab.records import FrozenTrial, TrialState, sort_key
from tunelab.samplers import CoarseToFineSampler
from tunelab.space import SpaceEntry, space_to_json
from tunelab.study import Study
from tunelab.torch import Trainer, monitor_direction

WEIGHT_DECAY = Float(1e-6, 1e-2, log=True)
"""The weight decay searched unless the trainer's space declares its own."""
LR_MARGIN = 2.0
"""The coarse search's learning rates reach this factor beyond the range test's on each side."""


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


def sampler(coarse_trials: int, top_k: int = 5) -> CoarseToFineSampler:
    """Stage 0 (the coarse trials) samples the whole space; stage 1 (the rest) zooms in."""
    return CoarseToFineSampler(n_stages=2, trials_per_stage=coarse_trials, top_k=top_k, shrink=0.5)


def pruner() -> MedianPruner:
    """The median rule on the validation loss, after 4 complete trials."""
    return MedianPruner(n_startup_trials=4, metric="val_loss", direction="minimize")


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
    objective = trainer.objective(epochs=epochs, seed=seed, prune=True, tag={"stage": "coarse"})
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
                                  tag={"stage": "refine"})
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
) -> StepResult:
    """Step f.: train the best configuration (of the refine stage, else of any) for ``epochs``; save the model."""
    start = time.perf_counter()
    best = _best(stage_trials(study, "refine"), study.direction) or _best(study.trials, study.direction)
    if best is None:
        return StepResult("final", FAIL, "no trial completed: nothing to train", {}, time.perf_counter() - start)
    number = study.enqueue(dict(best.params))
    objective = trainer.objective(epochs=epochs, seed=seed, prune=False, save_model=True, tag={"stage": "final"})
    study.optimize(objective, n_trials=1, n_workers=1, space=space, show_progress=show_progress)
    trial = next(t for t in study.trials if t.number == number)
    seconds = time.perf_counter() - start
    evidence: dict[str, Any] = {"trial": number, "from_trial": best.number, "params": dict(best.params),
                                "epochs": epochs, "state": trial.state.value}
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
    shown = f"{trainer.monitor} {trial.value:.4f}"
    if "val_acc" in at_best and trainer.monitor != "val_acc":
        shown += f", val_acc {at_best['val_acc']:.4f}"
    return StepResult(
        "final", PASS,
        f"trial {number} ({epochs} epochs, the configuration of trial {best.number}): {shown} at epoch "
        f"{best_step}; model saved in {fit.get('model')}",
        evidence, seconds,
    )


def _best(trials: list[FrozenTrial], direction: str) -> FrozenTrial | None:
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    return sorted(done, key=sort_key(direction))[0] if done else None


def _stage_result(study: Study, stage: str, epochs: int, seconds: float) -> StepResult:
    trials = stage_trials(study, stage)
    counts = {s.value: sum(t.state == s for t in trials) for s in TrialState if any(t.state == s for t in trials)}
    evidence: dict[str, Any] = {"epochs": epochs, "trials": len(trials), "states": counts}
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    if not done:
        errors = sorted({(t.error or "").splitlines()[0] for t in trials if t.state == TrialState.FAIL} - {""})
        return StepResult(stage, FAIL, f"no {stage} trial completed" + (f": {errors[0]}" if errors else ""),
                          evidence, seconds)
    best = sorted(done, key=sort_key(study.direction))[0]
    evidence.update(best_trial=best.number, best_value=best.value, best_params=dict(best.params))
    tally = ", ".join(f"{n} {s.lower()}" for s, n in counts.items())
    return StepResult(
        stage, PASS,
        f"{len(trials)} trials of {epochs} epochs ({tally}); best {best.value:.4f} (trial {best.number}: "
        f"{_fmt_params(best.params)})",
        evidence, seconds,
    )


def _fmt_params(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
