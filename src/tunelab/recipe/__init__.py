"""The training recipe for a PyTorch model: sanity checks before compute, then a staged search.

a. initial loss vs its expected value, b. overfit a small sample, c. learning-rate range,
d. coarse search, e. refine, f. final training. Each step is a function usable alone
(:mod:`tunelab.recipe.checks`, :mod:`tunelab.recipe.search`); :func:`run` chains them in one
study, stops at the first failing step, and records every verdict with its evidence in
``study.system_attrs["recipe"]``.

Example::

    from tunelab.recipe import run, digits
    result = run(digits.trainer(), storage="sqlite:///tunelab.db")
    print(result.value, result.model_path)

With ``run(..., objectives=("val_acc", "params"))`` the searches trade accuracy against the
model's size in a study with two objectives; f. trains the configuration of the refine stage's
Pareto front that :func:`choose_from_front` picks (the smallest model within 1 point of the most
accurate).
"""

from tunelab.recipe.checks import check_initial_loss, lr_range_test, overfit_small_sample
from tunelab.recipe.run import Budget, RecipeResult, recorded_steps, run
from tunelab.recipe.search import FRONT_TOLERANCE, choose_from_front, coarse_search, final, refine, search_space
from tunelab.recipe.steps import STEPS, StepResult

__all__ = [
    "FRONT_TOLERANCE",
    "STEPS",
    "Budget",
    "RecipeResult",
    "StepResult",
    "check_initial_loss",
    "choose_from_front",
    "coarse_search",
    "final",
    "lr_range_test",
    "overfit_small_sample",
    "recorded_steps",
    "refine",
    "run",
    "search_space",
]
