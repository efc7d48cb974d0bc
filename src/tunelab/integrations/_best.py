"""The best value of a monitored metric over boosting rounds, shared by the XGBoost and LightGBM
callbacks: an objective returns it as the trial's value (the best iteration's score)."""

from __future__ import annotations

import math

from tunelab.errors import ConfigError
from tunelab.study import Trial

DIRECTIONS = ("minimize", "maximize")


def check_direction(direction: object, who: str) -> str | None:
    """``direction=`` given to a callback: 'minimize', 'maximize' or None (decided later)."""
    if direction is not None and direction not in DIRECTIONS:
        raise ConfigError(f"{who}(direction=...) must be 'minimize', 'maximize' or None, got {direction!r}")
    return direction  # type: ignore[return-value]


def study_direction(trial: Trial, who: str) -> str:
    """The direction of the trial's study, which the objective's value follows."""
    study = trial.study
    if study.is_multi_objective:
        raise ConfigError(
            f"{who}: the study has several objectives {list(study.directions)}, so the best score's direction "
            f"is not the study's; pass direction='minimize' or direction='maximize'"
        )
    return study.direction


class BestScore:
    """The best value of one metric seen so far and the round it came at (NaN never wins).

    Args:
        direction: 'minimize' or 'maximize'.
    """

    def __init__(self, direction: str) -> None:
        self.direction = direction
        self.score: float | None = None
        self.iteration: int | None = None

    def update(self, iteration: int, value: float) -> bool:
        """Take ``value`` at ``iteration``; True when it is the new best (ties keep the earlier round)."""
        if math.isnan(value):
            return False
        better = (
            self.score is None
            or (value < self.score if self.direction == "minimize" else value > self.score)
        )
        if better:
            self.score, self.iteration = value, iteration
        return better
