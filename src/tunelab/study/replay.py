"""Deterministic studies (``create_study(..., deterministic=True)``): parallel runs that replay.

In a deterministic study the parameters of trial ``n`` are a function of the study's seed and of
the trials numbered below ``n`` only, whatever the number of workers and the order in which they
finish. Trial ``n`` plans from the *results* of the trials numbered below ``n - width + 1`` and
counts the ``width - 1`` trials just before it as running, at their planned points (see
:mod:`tunelab.samplers.model_based`). So ``width`` trials can run at once without waiting; a
worker whose trial needs a result that is not in yet waits for it here, before planning. With one
worker nothing ever waits, and the last ``width - 1`` results are simply not used yet.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from tunelab.errors import ConfigError, TrialStateError
from tunelab.history import History
from tunelab.pruners import Pruner
from tunelab.samplers import Sampler

DETERMINISTIC_KEY = "deterministic"
"""Study system attribute: ``{"width": w}`` for a deterministic study."""
DEFAULT_WIDTH = 4
"""``deterministic=True``: trials planned without waiting for each other's results."""


def check_deterministic(value: bool | int) -> int | None:
    """The width ``create_study(deterministic=...)`` asks for (None: not deterministic)."""
    if value is False:
        return None
    if value is True:
        return DEFAULT_WIDTH
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ConfigError(
        f"deterministic must be True, False or a width >= 1 (trials that plan without waiting for each "
        f"other's results; True means {DEFAULT_WIDTH}), got {value!r}"
    )


def stored_width(system_attrs: Mapping[str, Any]) -> int | None:
    """The width stored with a study, or None when it is not deterministic."""
    entry = system_attrs.get(DETERMINISTIC_KEY)
    width = entry.get("width") if isinstance(entry, dict) else None
    return width if isinstance(width, int) and width >= 1 else None


def check_replayable(width: int | None, sampler: Sampler, pruner: Pruner | None) -> None:
    """ConfigError when a deterministic study is given a sampler or pruner that cannot honour it."""
    if width is None:
        return
    if not sampler.replayable:
        raise ConfigError(
            f"deterministic=True needs a sampler whose proposals depend only on earlier trials' results: "
            f"{sampler!r} cannot replay ({_why(sampler)}); use RandomSampler, TPESampler, GPSampler or "
            "AutoSampler, or deterministic=False"
        )
    if pruner is not None:
        raise ConfigError(
            f"deterministic=True cannot be combined with a pruner ({pruner!r}): whether a trial is pruned "
            "depends on what the other trials have reported by then, so later trials would differ from run "
            "to run; drop the pruner, or use deterministic=False"
        )


def _why(sampler: Sampler) -> str:
    return sampler.not_replayable_because or "its proposals depend on when they are made"


def wait_for_results(
    history: History, number: int, width: int, *, wait: bool, sleep: Callable[[float], None] = time.sleep
) -> None:
    """Return once every trial numbered below ``number - width + 1`` has finished.

    With ``wait`` False (:meth:`Study.ask`, where this process may be the one holding those
    trials) a missing result raises TrialStateError instead of waiting for ever.
    """
    cutoff = number - width + 1
    pause = 0.02
    while True:
        history.invalidate()
        open_ = [t.number for t in history.trials() if t.number < cutoff and not t.state.is_finished]
        if not open_:
            return
        if not wait:
            raise TrialStateError(
                f"trial {number} of a deterministic study (width {width}) plans from the results of the "
                f"trials below {cutoff}, and trial(s) {open_[:5]} are not finished: tell() them first, or "
                "create the study with a larger deterministic width"
            )
        sleep(pause)
        pause = min(0.5, pause * 1.5)
