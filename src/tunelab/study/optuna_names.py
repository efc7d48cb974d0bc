"""Optuna's keyword names where tunelab's differ: a call written for Optuna gets an error that names
tunelab's keyword, raised before anything runs (Python's own says only "unexpected keyword")."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from tunelab.errors import OptunaKeywordError

P = ParamSpec("P")
R = TypeVar("R")

OPTUNA_KEYWORDS: dict[str, str] = {
    "study_name": "tunelab's keyword is name=, e.g. name='my-study'",
    "n_jobs": "tunelab's keyword is n_workers=, the number of worker processes (Optuna's n_jobs are threads "
              "of one process); n_workers=2 runs two at once",
    "show_progress_bar": "tunelab's keyword is show_progress= (True or False; default: shown on a terminal)",
    "gc_after_trial": "tunelab takes no such option: remove it (a callback may call gc.collect() itself; "
                      "with n_workers > 1 each trial runs in a worker process)",
}
"""Optuna's keyword -> what to pass to tunelab instead."""


def optuna_keywords(function: Callable[P, R]) -> Callable[P, R]:
    """``function``, refusing Optuna's names of its keywords (:data:`OPTUNA_KEYWORDS`) with the fix."""

    @functools.wraps(function)
    def checked(*args: P.args, **kwargs: P.kwargs) -> R:
        if kwargs and not OPTUNA_KEYWORDS.keys().isdisjoint(kwargs):
            name = next(k for k in kwargs if k in OPTUNA_KEYWORDS)
            raise OptunaKeywordError(f"{function.__qualname__}({name}=...) is Optuna's keyword: "
                                     f"{OPTUNA_KEYWORDS[name]}")
        return function(*args, **kwargs)

    return checked
